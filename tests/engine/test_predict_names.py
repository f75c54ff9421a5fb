"""`openlt predict` and the names of the files it is given (trial 10): one rule for folders, patterns and files
named directly (a name without an image extension is skipped in a folder or pattern with one warning line that says
how many and which, and refused when named: D12); CSV cells that start like a spreadsheet formula get a leading
single quote (D13); a file name that is not UTF-8 is refused for a CSV --output before any image is labelled
(D16)."""

import csv
import json
import os

import numpy as np
import pytest
from PIL import Image

from openlt.cli import main
from openlt.engine import predict
from openlt.engine.predict import csv_cell, expand_inputs, write_records
from openlt.errors import ConfigError
from synthetic_run import make_run


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("names")
    made, _ = make_run(root / "run")
    return made


def png(path):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(path, "PNG")


@pytest.fixture
def mixed(tmp_path):
    """mixed/: A.JPG and sub/b.PNG (images), readme.txt, photo.heic and noext (a PNG without its extension)."""
    folder = tmp_path / "mixed"
    (folder / "sub").mkdir(parents=True)
    png(folder / "A.JPG")
    png(folder / "sub" / "b.PNG")
    png(folder / "photo.heic")
    png(folder / "noext")
    (folder / "readme.txt").write_text("hi")
    return folder


def cli(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_a_folder_says_how_many_files_it_skipped_and_which(run, mixed, capsys, single_thread):
    code, out, err = cli(capsys, "predict", run.path, mixed)
    assert code == 0 and [line.split("\t")[0] for line in out.splitlines()] == [str(mixed / "A.JPG"),
                                                                                str(mixed / "sub" / "b.PNG")]
    assert err.splitlines() == [f"openlt: warning: {mixed}: skipped 3 files without an image extension (noext, "
                                f"photo.heic, readme.txt); openlt labels .jpg .jpeg .png .bmp .webp .gif .tif .tiff "
                                f".ppm .pgm (any case): convert or rename the others (e.g. .heic to .jpg)"]


def test_files_named_directly_follow_the_folder_rule(run, mixed, capsys, single_thread):
    code, out, err = cli(capsys, "predict", run.path, mixed / "photo.heic", mixed / "noext", mixed / "A.JPG")
    lines = out.splitlines()
    assert code == 2 and len(lines) == 3  # were: both labelled (read by content), exit 0
    assert lines[0] == (f"{mixed / 'photo.heic'}\terror: {mixed / 'photo.heic'} is not an image file name: openlt "
                        f"labels .jpg .jpeg .png .bmp .webp .gif .tif .tiff .ppm .pgm (any case), named directly or "
                        f"in a folder alike; convert or rename it (e.g. .heic to .jpg)")
    assert lines[1].startswith(f"{mixed / 'noext'}\terror: {mixed / 'noext'} is not an image file name")
    assert "\terror:" not in lines[2]
    assert "2 of 3 images could not be labelled" in err


def test_a_pattern_skips_the_same_files_with_the_same_warning(mixed, caplog):
    found = expand_inputs([str(mixed / "*")])  # the matching folder's images too, as the shell's unquoted * gives
    assert found == [(str(mixed / "A.JPG"), None), (str(mixed / "sub" / "b.PNG"), None)]
    assert [r.getMessage() for r in caplog.records] == [
        f"{mixed / '*'}: skipped 3 files without an image extension ({mixed / 'noext'}, {mixed / 'photo.heic'}, "
        f"{mixed / 'readme.txt'}); openlt labels .jpg .jpeg .png .bmp .webp .gif .tif .tiff .ppm .pgm (any case): "
        f"convert or rename the others (e.g. .heic to .jpg)"]
    assert expand_inputs([str(mixed / "*.txt")]) == [(str(mixed / "*.txt"), f"no image file matches {str(mixed / '*.txt')!r}")]


def test_more_than_three_skipped_files_are_counted(tmp_path, caplog):
    for i in range(5):
        (tmp_path / f"n{i}.txt").write_text("x")
    png(tmp_path / "a.png")
    assert expand_inputs([str(tmp_path)]) == [(str(tmp_path / "a.png"), None)]
    assert "skipped 5 files without an image extension (n0.txt, n1.txt, n2.txt, ... (2 more))" in caplog.text


@pytest.mark.parametrize("name", ["=cmd.png", "+SUM.png", "-x.png", "@a.png", "\tt.png", "\rr.png"])
def test_a_path_that_starts_like_a_formula_is_quoted_in_the_csv(run, tmp_path, capsys, monkeypatch, name,
                                                                single_thread):
    png(tmp_path / name)
    png(tmp_path / "plain.png")
    monkeypatch.chdir(tmp_path)
    code, out, err = cli(capsys, "predict", run.path, "--output", "p.csv", "--", name, "plain.png")
    assert code == 0, err
    rows = list(csv.reader((tmp_path / "p.csv").open(newline="")))
    assert rows[1][0] == "'" + name and rows[2][0] == "plain.png"  # were: '=cmd.png' as the first cell: a formula
    assert rows[1][1] in ("-1", "0", "1", "2")  # numbers as they are
    code, out, err = cli(capsys, "predict", run.path, "--output", "p.jsonl", "--", name)
    assert code == 0 and json.loads((tmp_path / "p.jsonl").read_text())["path"] == name  # kept exactly


def test_a_carriage_return_in_a_path_keeps_its_row_whole(tmp_path):
    names = ["x.png\r", "a\rb.png", "plain.png"]  # a path from a Windows list; the writer left \r unquoted
    write_records([{"path": n, **{k: None for k in predict.COLUMNS[1:]}} for n in names], tmp_path / "p.csv")
    rows = list(csv.reader((tmp_path / "p.csv").open(newline="")))
    assert [row[0] for row in rows[1:]] == names and all(len(row) == len(predict.COLUMNS) for row in rows)


def test_csv_cells_quote_formula_text_only():
    assert [csv_cell(v) for v in ("=1+1", "-x", "a-b", "", None, -1, -0.5, "@x", "+1")] == [
        "'=1+1", "'-x", "a-b", "", "", -1, -0.5, "'@x", "'+1"]


def test_a_name_that_is_not_utf8_is_refused_for_a_csv_before_any_labelling(run, tmp_path, capsys, monkeypatch,
                                                                         single_thread):
    bad = tmp_path / "bad"
    bad.mkdir()
    png(bad / "a.png")
    png(os.fsencode(bad) + b"/\xffx.png")
    labelled = []
    real = predict.Predictor.label
    monkeypatch.setattr(predict.Predictor, "label", lambda self, *a, **k: labelled.append(1) or real(self, *a, **k))
    code, out, err = cli(capsys, "predict", run.path, bad, "--output", tmp_path / "out.csv")
    name = os.fsdecode(os.fsencode(bad) + b"/\xffx.png")
    assert code == 2 and out == "" and labelled == []  # was: every image labelled, then an internal error, exit 1
    assert err.strip().splitlines() == [
        f"openlt predict: error: --output {tmp_path / 'out.csv'}: the file name {name!r} is not UTF-8 (bytes "
        f"{os.fsencode(name)!r}), which a CSV file (UTF-8 text) cannot hold; rename the file, or write .jsonl (it "
        f"keeps such names, as \\udcXX escapes: os.fsencode gives the bytes back)"]
    assert not (tmp_path / "out.csv").exists()
    code, out, err = cli(capsys, "predict", run.path, bad, "--output", tmp_path / "out.jsonl")
    assert code == 0 and "\\udcffx.png" in (tmp_path / "out.jsonl").read_text()
    with pytest.raises(ConfigError, match="is not UTF-8"):
        write_records([{"path": name, **{k: None for k in predict.COLUMNS[1:]}}], tmp_path / "w.csv")
