"""`openlt predict` at its boundary (issue 14): an --output that cannot be written is refused, naming the cause,
before the run is loaded or any image read; a dangling symlink and a name the filesystem refuses (too long) get
their own error line while the other images are labelled; --threshold is a plainly written number (no '1_0', no
full-width digits) and an out-of-range one is named as given; a path with a tab or a newline keeps its image on one
line (printed as a Python string literal). Also the path keys of a config whose value the filesystem refuses."""

import ast
import csv
import json
import os

import numpy as np
import pytest
from PIL import Image

from openlt.cli import main
from openlt.config import build_config
from openlt.engine import predict
from openlt.errors import ConfigError
from synthetic_run import make_run

LONG = "a" * 300  # longer than a file name may be (255 bytes)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A calibrated synthetic run (random weights: labels do not matter here) and a folder `images` with two
    images, ant.png and bee.png."""
    root = tmp_path_factory.mktemp("boundary")
    made, _ = make_run(root / "run")
    images = root / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for name in ("ant", "bee"):
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(images / f"{name}.png")
    return made, images


def cli(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def _no_load(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the run was loaded before --output was checked")

    monkeypatch.setattr(predict.Predictor, "load", refuse)


def _refused_output(capsys, monkeypatch, run, images, output) -> str:
    _no_load(monkeypatch)
    code, out, err = cli(capsys, "predict", run.path, images, "--output", output)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1, err
    return err.strip()


def test_an_output_that_is_a_folder_is_refused_before_the_run_is_loaded(run, tmp_path, capsys, monkeypatch,
                                                                        single_thread):
    made, images = run
    (tmp_path / "d.csv").mkdir()
    err = _refused_output(capsys, monkeypatch, made, images, tmp_path / "d.csv")
    assert err == (f"openlt predict: error: --output {tmp_path / 'd.csv'} is a folder; give a file name (e.g. "
                   f"{tmp_path / 'd.csv' / 'predictions.csv'})")


def test_an_output_folder_without_a_suffix_is_called_a_folder(run, tmp_path, capsys, monkeypatch, single_thread):
    """(Session 27: `--output out/` said `give a .csv or .jsonl file name (got 'no suffix')`.)"""
    made, images = run
    (tmp_path / "out").mkdir()
    err = _refused_output(capsys, monkeypatch, made, images, tmp_path / "out")
    assert err == (f"openlt predict: error: --output {tmp_path / 'out'} is a folder; give a file name (e.g. "
                   f"{tmp_path / 'out' / 'predictions.csv'})")


@pytest.mark.parametrize("below", ["p.csv", "x/y/p.jsonl"])
def test_an_output_under_a_file_names_that_file(run, tmp_path, capsys, monkeypatch, below, single_thread):
    made, images = run
    (tmp_path / "notdir").write_text("x")
    err = _refused_output(capsys, monkeypatch, made, images, tmp_path / "notdir" / below)
    assert err == (f"openlt predict: error: --output {tmp_path / 'notdir' / below}: {tmp_path / 'notdir'} is a "
                   f"file, not a folder")  # not "File exists" (mkdir's words)


def test_an_output_under_a_dangling_symlink_names_the_link_and_its_target(run, tmp_path, capsys, monkeypatch,
                                                                          single_thread):
    made, images = run
    (tmp_path / "gone").symlink_to(tmp_path / "nowhere")
    err = _refused_output(capsys, monkeypatch, made, images, tmp_path / "gone" / "p.csv")
    assert err == (f"openlt predict: error: --output {tmp_path / 'gone' / 'p.csv'}: {tmp_path / 'gone'} is a "
                   f"symlink to a missing folder ({tmp_path / 'nowhere'}); remove it or restore its target")


def test_an_output_in_a_folder_that_cannot_be_written_is_refused(run, tmp_path, capsys, monkeypatch, single_thread):
    made, images = run
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        folder = locked if not os.access(locked, os.W_OK) else "/proc/sys"  # root writes anywhere but in /proc/sys
        if os.access(folder, os.W_OK | os.X_OK):
            pytest.skip("no folder this user cannot write into")
        err = _refused_output(capsys, monkeypatch, made, images, f"{folder}/new/p.csv")
        assert err == (f"openlt predict: error: --output {folder}/new/p.csv: the folder {folder} cannot be written "
                       f"into (permission denied or a read-only filesystem)")
    finally:
        locked.chmod(0o755)


def test_an_output_name_too_long_is_refused(run, tmp_path, capsys, monkeypatch, single_thread):
    made, images = run
    err = _refused_output(capsys, monkeypatch, made, images, tmp_path / f"{LONG}.csv")
    assert err == f"openlt predict: error: --output {tmp_path / (LONG + '.csv')}: File name too long"


def test_missing_folders_of_the_output_are_created(run, tmp_path, capsys, single_thread):
    made, images = run
    code, out, err = cli(capsys, "predict", made.path, images, "--output", tmp_path / "new" / "sub" / "p.jsonl")
    assert code == 0, err
    assert [json.loads(line)["path"] for line in (tmp_path / "new" / "sub" / "p.jsonl").read_text().splitlines()] \
        == [str(images / "ant.png"), str(images / "bee.png")]


def test_a_dangling_symlink_gets_its_own_error_line_and_the_others_are_labelled(run, tmp_path, capsys,
                                                                               single_thread):
    made, images = run
    folder = tmp_path / "f"
    folder.mkdir()
    (folder / "ant.png").write_bytes((images / "ant.png").read_bytes())
    (folder / "dangle.png").symlink_to("/nonexistent")
    (folder / "loop.png").symlink_to(folder / "loop.png")
    (folder / "notes").symlink_to("/nonexistent")  # no image extension: not an image of the folder
    code, out, err = cli(capsys, "predict", made.path, folder)
    lines = out.splitlines()
    assert code == 2 and len(lines) == 3, out
    assert lines[0].startswith(f"{folder / 'ant.png'}\t") and "error" not in lines[0]
    assert lines[1] == (f"{folder / 'dangle.png'}\terror: {folder / 'dangle.png'} is a symlink to a missing file "
                        f"(/nonexistent); remove it or restore its target")
    assert lines[2] == (f"{folder / 'loop.png'}\terror: {folder / 'loop.png'} is a symlink loop "
                        f"({folder / 'loop.png'} leads back to itself); remove it")
    assert err.strip() == (f"openlt predict: error: 2 of 3 images could not be labelled (see their lines); first: "
                           f"{folder / 'dangle.png'} is a symlink to a missing file (/nonexistent); remove it or "
                           f"restore its target")
    # named, or matched by a pattern: the same line
    code, out, _ = cli(capsys, "predict", made.path, folder / "dangle.png", f"{folder}/d*.png")
    assert code == 2 and out.splitlines() == [lines[1], lines[1]]


def test_a_name_too_long_gets_its_own_error_line_and_the_others_are_labelled(run, tmp_path, capsys,
                                                                            single_thread):
    made, images = run
    code, out, err = cli(capsys, "predict", made.path, images / "ant.png", f"{LONG}.png", images / "bee.png")
    lines = out.splitlines()
    assert code == 2 and len(lines) == 3, out
    assert lines[0].startswith(f"{images / 'ant.png'}\t") and lines[2].startswith(f"{images / 'bee.png'}\t")
    assert "error" not in lines[0] + lines[2]
    assert lines[1] == f"{LONG}.png\terror: cannot read {LONG}.png: File name too long"
    assert err.strip() == (f"openlt predict: error: 1 of 3 images could not be labelled (see their lines); first: "
                           f"cannot read {LONG}.png: File name too long")


@pytest.mark.parametrize("value", ["1_0", "0_5", "\uff11", "0.\uff15", " 0.5", "0.5 ", "infinity"])
def test_a_threshold_not_written_plainly_is_refused(run, capsys, value, single_thread):
    """Python's float() takes '1_0' (10), full-width digits and spaces; a config value does not, nor does the
    option."""
    made, images = run
    with pytest.raises(SystemExit) as exit_:
        main(["predict", str(made.path), str(images), "--threshold", value])
    err = capsys.readouterr().err
    said = "must be a finite number" if value == "infinity" else "must be a plain decimal number (e.g. 0.1, 1e-4)"
    assert exit_.value.code == 2 and err.strip().splitlines()[-1] == \
        f"openlt predict: error: argument --threshold: {said}, got {value!r}"


@pytest.mark.parametrize("value", ["1.0000001", "-0.000001", "1e3", "123456789"])
def test_a_threshold_outside_the_range_is_named_as_given(run, capsys, value, single_thread):
    made, images = run
    code, out, err = cli(capsys, "predict", made.path, images, "--threshold", value)
    shown = {"1e3": "1000", "-0.000001": "-1e-06"}.get(value, value)  # its shortest exact form (repr)
    assert code == 2 and out == "" and err.strip() == (
        f"openlt predict: error: --threshold {shown} is outside the range of the open-set score msp ([0, 1]): a "
        f"threshold above 1 rejects every image, one below 0 none")


def test_paths_with_a_tab_or_a_newline_are_printed_as_string_literals(run, tmp_path, capsys, single_thread):
    made, images = run
    folder = tmp_path / "odd"
    folder.mkdir()
    names = ["a\tb.png", "c\nd.png", "'q.png", "plain.png"]
    for name in names:
        (folder / name).write_bytes((images / "ant.png").read_bytes())
    (folder / "e\nf.png").symlink_to("/no\twhere")
    code, out, err = cli(capsys, "predict", made.path, folder, "--output", tmp_path / "p.csv")
    lines = out.splitlines()[:-1]  # the last: "5 predictions: ..."
    assert code == 2 and len(lines) == 5 and all(len(line.split("\t")) in (2, 3) for line in lines), out
    printed = [line.split("\t")[0] for line in lines]
    paths = sorted(str(folder / n) for n in [*names, "e\nf.png"])
    assert printed == [p if p.isprintable() and not p.startswith("'") else repr(p) for p in paths]
    assert [ast.literal_eval(p) if p[0] in "'\"" else p for p in printed] == paths
    assert printed[0] == str(folder / "'q.png")  # the quote is not at the path's start: printed as it is
    error = next(line for line in lines if "\terror: " in line)
    assert error == (repr(str(folder / "e\nf.png")) + f"\terror: {folder}/e\\nf.png is a symlink to a missing file "
                     f"(/no\\twhere); remove it or restore its target")
    assert "\n" not in err.strip() and "e\\nf.png" in err
    with open(tmp_path / "p.csv", newline="") as fh:  # the CSV file keeps the paths as they are (quoted)
        assert sorted(row["path"] for row in csv.DictReader(fh)) == paths
    code, out, _ = cli(capsys, "predict", made.path, folder / "a\tb.png", folder / "'q.png", "--json")
    assert code == 0 and [r["path"] for r in json.loads(out)] == [str(folder / "a\tb.png"), str(folder / "'q.png")]


def test_a_path_starting_with_a_quote_is_printed_as_a_string_literal(run, tmp_path, capsys, monkeypatch,
                                                                     single_thread):
    made, images = run
    (tmp_path / "'q.png").write_bytes((images / "ant.png").read_bytes())
    monkeypatch.chdir(tmp_path)
    code, out, err = cli(capsys, "predict", made.path, "'q.png")
    assert code == 0, err
    assert out.split("\t")[0] == "\"'q.png\""


@pytest.mark.parametrize("key", ["data.root", "data.split_dir", "model.pretrained", "train.init_from",
                                 "data.class_names"])
def test_a_path_key_too_long_for_the_filesystem_names_the_key(key):
    value = "/" + "a" * 5000
    with pytest.raises(ConfigError) as error:
        build_config(None, ["data.dataset=image-folder", f"{key}={value}"])
    assert str(error.value).endswith(f"config key {key!r} cannot be used as a path: File name too long, got "
                                     f"{value[:40]!r}... (5001 characters)")
    assert len(str(error.value).splitlines()) == 1


def test_train_and_eval_refuse_a_data_root_too_long_in_one_line(run, tmp_path, capsys, single_thread):
    made, _ = run
    value = "/" + "a" * 300
    for args in (["train", "fmnist_lt/plain", "data.dataset=image-folder", f"data.root={value}",
                  f"out_dir={tmp_path}"], ["eval", made.path, f"data.root={value}"]):
        code, out, err = cli(capsys, *args)
        assert code == 2 and out == "" and len(err.strip().splitlines()) == 1, err
        assert err.strip().endswith(f"config key 'data.root' cannot be used as a path: File name too long, got "
                                    f"{value[:40]!r}... (301 characters)"), err
        assert "Errno" not in err
    assert list(tmp_path.iterdir()) == []


def test_a_sub_folder_that_cannot_be_listed_gets_its_own_error_line(run, tmp_path, capsys, monkeypatch,
                                                                   single_thread):
    """(pathlib's rglob skipped it without a word.) Root lists any folder: the refusal is simulated, as the
    filesystem gives it, at os.scandir."""
    made, images = run
    folder = tmp_path / "f"
    (folder / "private").mkdir(parents=True)
    for name in ("ant.png", "private/bee.png"):
        (folder / name).write_bytes((images / "ant.png").read_bytes())
    scandir = os.scandir

    def refuse(path="."):
        if os.fspath(path) == str(folder / "private"):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return scandir(path)

    monkeypatch.setattr(os, "scandir", refuse)
    code, out, err = cli(capsys, "predict", made.path, folder)
    lines = out.splitlines()
    assert code == 2 and len(lines) == 2, out
    assert lines[0].startswith(f"{folder / 'ant.png'}\t") and "error" not in lines[0]
    assert lines[1] == (f"{folder / 'private'}\terror: cannot list the folder {folder / 'private'}: Permission "
                        f"denied (its images are not labelled; fix its permissions)")
    assert err.strip().startswith("openlt predict: error: 1 of 2 images could not be labelled")


def test_the_help_says_how_odd_paths_are_printed(capsys):
    with pytest.raises(SystemExit):
        main(["predict", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert ("A path that is not printable text (a tab, a newline, another control character) or that starts with a "
            "quote is printed as a Python string literal ('a\\tb.png'); --json and --output keep paths as they "
            "are (a CSV cell that starts with = + - @, a tab or a carriage return gets a leading ', so that no "
            "spreadsheet reads it as a formula; a CSV cannot hold a name that is not UTF-8: use .jsonl).") in text
    assert "others are skipped in folders and patterns (one warning line) and refused when named" in text


def test_a_symlinked_sub_folder_is_followed_once_and_loops_add_nothing(run, tmp_path, capsys, caplog,
                                                                       single_thread):
    """(Trial 16 D1: a symlinked sub-folder was skipped without a word, while `openlt split` and a `**` pattern
    follow it.) Its images are labelled under the link's name; a link to a folder listed already (inside the
    folder, or back up: `sub/up -> ..`) adds nothing, and a link to a folder that holds the one named is not
    followed, with a warning naming it."""
    made, images = run
    png = (images / "ant.png").read_bytes()
    outside, folder = tmp_path / "outside", tmp_path / "f"
    (outside / "deep").mkdir(parents=True)
    (folder / "sub").mkdir(parents=True)
    for name in (outside / "o1.png", outside / "deep" / "o2.png", folder / "own.png", folder / "sub" / "s.png"):
        name.write_bytes(png)
    (folder / "linked").symlink_to("../outside")
    (folder / "again").symlink_to("sub")  # a folder listed already: its image once, by its real path
    (folder / "sub" / "up").symlink_to("..")  # a loop: adds nothing
    (outside / "back").symlink_to(folder)  # from the linked folder back into the walk
    (folder / "top").symlink_to(tmp_path)  # holds the folder: not followed
    got = predict.expand_inputs([str(folder)])
    assert got == [(str(folder / name), None) for name in ("linked/deep/o2.png", "linked/o1.png", "own.png",
                                                           "sub/s.png")]
    assert [r.getMessage() for r in caplog.records] == [
        f"{folder / 'top'}: not followed: a symlink to {tmp_path}, a folder that holds {folder} (a loop); the "
        f"images there are not labelled (name them directly)"]
    code, out, err = cli(capsys, "predict", made.path, folder)
    assert code == 0 and [line.split("\t")[0] for line in out.splitlines()] == [path for path, _ in got], err
    from openlt import load_run

    assert [r["path"] for r in load_run(made.path).predict([str(folder)])] == [path for path, _ in got]
