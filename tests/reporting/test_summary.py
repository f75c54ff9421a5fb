"""`openlt summary` and the bench tables average runs only when they were evaluated alike, mark cells that fewer
runs have than the row, and refuse a malformed metrics.json with one line naming it.

Three tables through the CLI (exit 2, one line, no traceback): runs evaluated under different band rules, class
lists or split files put in one row; malformed metrics files; and (exit 0) rows whose cells some runs lack.
"""

from __future__ import annotations

import copy
import csv
import hashlib
import io
import json
from pathlib import Path
from typing import Callable

import pytest

from openlt.cli import main
from openlt.errors import RunDirError
from summary_files import cli, write  # tests/helpers, on the path through conftest
from openlt.reporting.bench_report import csv_text, markdown, write_bench_results
from openlt.reporting.summary import aggregate, format_cell, summarize

SHA = {"train": "a" * 64, "val": "b" * 64, "test": "c" * 64, "open": "d" * 64}


def metrics(run: str, few: float | None = 0.2, auroc: float | None = 0.7) -> dict:
    """A metrics.json as `openlt eval` writes it (the parts the tables read)."""
    return {
        "run": f"/work/runs/{run}", "checkpoint": "best", "checkpoint_sha256": hashlib.sha256(run.encode()).hexdigest(),
        "epoch": 4, "epoch_base": 1,
        "bands": {"rule": "many > 100, medium 20-100, few < 20", "per_class": ["many", "medium", "few"],
                  "many_above": 100, "few_below": 20, "inclusive": False},
        "class_names": ["ant", "bee", "cat"], "train_counts": [120, 50, 10],
        "closed": {"many": 0.9, "medium": 0.5, "few": few, "overall": 0.6},
        "open": {"f_measure": 0.5, "auroc": auroc, "fpr95": 0.4,
                 "bands_with_rejection": {"many": 0.8, "medium": 0.4, "few": 0.1}},
        "split_files": dict(SHA),
        "open_score": {"name": "msp"},
        "calibration": {"score": "msp", "threshold": 0.61, "source": "validation: keeps 90% of the known validation "
                        "images"},
    }




def changed(edit: Callable[[dict], None]) -> dict:
    m = metrics("s1")
    edit(m)
    return m


# ---------------------------------------------------------------------------- runs that must not share a row
def _set(path: tuple[str, ...], value) -> Callable[[dict], None]:
    def edit(m: dict) -> None:
        for key in path[:-1]:
            m = m[key]
        m[path[-1]] = value
    return edit


INCOMPARABLE = {
    "band-rule-edges": (_set(("bands", "rule"), "many > 50, medium 10-50, few < 10"), ("band rules", "many > 50")),
    "band-rule-inclusive": (_set(("bands", "rule"), "many >= 100, medium 20-99, few <= 20"), ("band rules", ">=")),
    "class-list-longer": (lambda m: m.update(class_names=["ant", "bee", "cat", "dog"], train_counts=[120, 50, 10, 5]),
                          ("class lists", "3 vs 4 classes")),
    "class-list-remapped": (_set(("class_names",), ["bee", "ant", "cat"]), ("class lists", "label 0: 'ant' vs 'bee'")),
    "test-split-changed": (_set(("split_files", "test"), "e" * 64), ("split files", "test: sha256 cccccccccccc vs eeeeeeeeeeee")),
    "train-split-changed": (_set(("split_files", "train"), "f" * 64), ("split files", "train: sha256")),
    "open-split-missing": (lambda m: m["split_files"].pop("open"), ("split files", "open: sha256 dddddddddddd vs none")),
    "open-score-differs": (lambda m: m.update(open_score={"name": "energy"}, calibration={
        **m["calibration"], "score": "energy", "threshold": 4.2}), ("open-set decisions", "'energy, threshold valid")),
    "fixed-vs-calibrated": (_set(("calibration", "source"), "fixed (eval.open_threshold)"),
                            ("open-set decisions", "'msp, threshold fixed at 0.61'")),
    "keep-known-differs": (_set(("calibration", "source"), "validation: keeps 95% of the known validation images"),
                           ("open-set decisions", "keeps 95%")),
    "nothing-rejected": (lambda m: m.pop("calibration"), ("open-set decisions", "'msp, nothing rejected'")),
    "checkpoint-last": (_set(("checkpoint",), "last"), ("{a} is an evaluation of its checkpoint 'best', {b} of its "
                                                        "checkpoint 'last'", "`openlt eval RUN --checkpoint best`")),
}


@pytest.mark.parametrize("name", INCOMPARABLE)
def test_runs_evaluated_differently_are_not_averaged_into_one_row(name, tmp_path, capsys):
    edit, expected = INCOMPARABLE[name]
    a, b = write(tmp_path, "s0", metrics("s0")), write(tmp_path, "s1", changed(edit))
    code, out, err = cli([f"plain={a}", f"plain={b.parent}"], capsys)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    for text in ("cannot average {a} and {b} into one row 'plain'", "different labels", *expected):
        text = text.format(a=a, b=b.parent)  # the runs as given (a: its metrics.json, b: its folder)
        assert text in err, (text, err)
    code, out, err = cli([f"a={a}", f"b={b}"], capsys)  # in rows of their own they are fine
    assert code == 0 and "| a | 1 |" in out and "| b | 1 |" in out, err


def test_older_files_without_split_hashes_share_a_row_and_thresholds_chosen_on_validation_may_differ(tmp_path, capsys):
    a = write(tmp_path, "s0", metrics("s0"))
    old = metrics("s1")
    del old["split_files"], old["calibration"], old["open_score"]  # an older metrics.json: compared on what it records
    b = write(tmp_path, "s1", old)
    other = metrics("s2")
    other["calibration"]["threshold"] = 0.55  # chosen on another seed's validation images: a value of its own
    c = write(tmp_path, "s2", other)
    code, out, err = cli([f"x={a}", f"x={b}", f"x={c}"], capsys)
    assert code == 0 and "| x | 3 |" in out, err


def test_the_same_run_twice_in_a_row_is_refused_naming_both(tmp_path, capsys):
    """Given twice, as its directory and its metrics.json, two evaluations of it (metrics-TAG.json), or a copy of
    it: one run is not two seeds."""
    a = write(tmp_path, "s0", metrics("s0"))
    (a.parent / "config.yaml").write_text("{}")  # a run directory
    (a.parent / "metrics-again.json").write_text(a.read_text())
    for given in ([a, a], [a.parent, a], [a, a.parent / "metrics-again.json"]):
        code, out, err = cli([f"x={g}" for g in given], capsys)
        assert code == 2 and out == "" and len(err.strip().splitlines()) == 1, err
        assert err.strip() == (f"openlt summary: error: {given[0]} and {given[1]} are the same run ({a.parent}) in the "
                               "row 'x': a row averages different runs (e.g. seeds); give each evaluation its own "
                               "label (LABEL=RUN)")
    copy = write(tmp_path, "copy", metrics("s0"))  # metrics.json of a copied run directory: the same weights
    code, out, err = cli([f"x={a}", f"x={copy.parent}"], capsys)
    sha = metrics("s0")["checkpoint_sha256"][:12]
    assert code == 2 and err.strip() == (f"openlt summary: error: cannot average {a} and {copy.parent} into one row "
                                         f"'x': both are evaluations of the same weights (checkpoint sha256 {sha}: one "
                                         "run, or a copy of it) (a row averages different runs, e.g. seeds); give each "
                                         "its own label (LABEL=RUN) or leave one out")
    code, out, err = cli([f"x={a}", f"y={a}"], capsys)  # in rows of their own: fine
    assert code == 0, err


def test_the_model_is_the_identity_not_the_path_string_evaluate_recorded(tmp_path, capsys):
    """Two runs evaluated as "runs/x" from two working directories are two runs when their weights differ; a
    copy evaluated again (its own path, the same weights) is the same model; an older metrics.json (no sha256) is
    the same run only under the same absolute path."""
    a, b = metrics("s0"), metrics("s1")
    a["run"] = b["run"] = "runs/x"
    code, out, err = cli([f"x={write(tmp_path, 'a', a)}", f"x={write(tmp_path, 'b', b)}"], capsys)
    assert code == 0 and "| x | 2 |" in out, err
    moved = metrics("s0")
    moved["run"] = "/elsewhere/moved/r1"
    code, out, err = cli([f"x={tmp_path / 'a'}", f"x={write(tmp_path, 'moved', moved)}"], capsys)
    assert code == 2 and "both are evaluations of the same weights" in err, err
    old = [metrics(n) for n in ("o0", "o1", "o2", "o3")]
    for m, run in zip(old, ("runs/x", "runs/x", "/abs/r", "/abs/r")):
        del m["checkpoint_sha256"]
        m["run"] = run
    paths = [write(tmp_path, f"old{i}", m) for i, m in enumerate(old)]
    code, out, err = cli([f"x={paths[0]}", f"x={paths[1]}"], capsys)  # relative: cannot tell, not refused
    assert code == 0, err
    code, out, err = cli([f"x={paths[2]}", f"x={paths[3]}"], capsys)
    assert code == 2 and "both are evaluations of the run /abs/r" in err, err


def test_a_run_path_with_an_equals_sign_is_a_path(tmp_path, capsys, monkeypatch):
    """Hydra-style sweep folders: an existing path is a run whatever it holds; LABEL=RUN splits at the first '='
    followed by an existing path."""
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "sweep" / "lr=0.1", "run", metrics("s0"))
    write(tmp_path / "sweep" / "lr=0.2", "run", metrics("s1"))
    code, out, err = cli(["sweep/lr=0.1/run", "sweep/lr=0.2/run"], capsys)
    assert code == 0 and "| runs | 2 |" in out, err
    code, out, err = cli(["a=b=sweep/lr=0.1/run", "lr=0.2=sweep/lr=0.2/run"], capsys)
    assert code == 0 and "| a=b | 1 |" in out and "| lr=0.2 | 1 |" in out, err
    code, out, err = cli(["x=sweep/lr=0.3/run"], capsys)  # nothing there: LABEL=RUN at the first '=', not found
    assert code == 2 and "sweep/lr=0.3/run not found (no such run directory)" in err, err
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["summary", "--help"])
    assert "existing file or folder is a run" in " ".join(capsys.readouterr().out.split())


@pytest.mark.parametrize("args", [["=runs/x"], ["x="], ["--label", "", "runs/x"], ["--label", "  ", "runs/x"]])
def test_an_empty_label_or_run_is_refused(args, tmp_path, capsys):
    code, out, err = cli(args, capsys)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert "--label must not be empty" in err or "give LABEL=RUN with a label and a run directory" in err


@pytest.mark.parametrize("args", [["A‡=runs/x"], ["B†=runs/x"], ["--label", "ok ‡", "runs/x"]])
def test_a_label_with_a_tables_mark_is_refused(args, capsys):
    """A label with † or ‡, the marks a table puts after a row's label (was: `| A‡ † |` read as not checked and
    warned; helper trial, session 22): one line naming the mark, before any run is read."""
    code, out, err = cli(args, capsys)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert "the mark the table puts after a row's label" in err and "choose another label" in err


# ---------------------------------------------------------------------------- cells fewer runs have than the row
def test_a_cell_fewer_runs_have_than_the_row_is_marked(tmp_path, capsys):
    without_open = metrics("s2")
    del without_open["open"]
    paths = [write(tmp_path, "s0", metrics("s0", few=0.2)), write(tmp_path, "s1", metrics("s1", few=None)),
             write(tmp_path, "s2", without_open)]
    code, out, err = cli([f"m={p}" for p in paths], capsys)
    assert code == 0, err
    row = next(line for line in out.splitlines() if line.startswith("| m |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[:6] == ["m", "3", "90.0 ± 0.0", "50.0 ± 0.0", "20.0 ± 0.0 (2/3)", "60.0 ± 0.0"]
    assert cells[-3:] == ["0.500 ± 0.000 (2/3)", "0.700 ± 0.000 (2/3)", "0.400 ± 0.000 (2/3)"]


@pytest.mark.parametrize("cell, column, runs, text", [
    ((71.25, 0.3, 2), "overall", 3, "71.2 ± 0.3 (2/3)"), ((71.25, 0.3, 3), "overall", 3, "71.2 ± 0.3"),
    ((50.0, 0.0, 1), "few", 4, "50.0 (1/4)"), ((50.0, 0.0, 1), "few", None, "50.0"),
    ((0.5, 0.01, 2), "F", 5, "0.500 ± 0.010 (2/5)"), (None, "F", 3, "–"),
])
def test_format_cell(cell, column, runs, text):
    assert format_cell(cell, column, runs) == text


# ---------------------------------------------------------------------------- malformed metrics files
MALFORMED = {
    "torn-json": ('{"closed": {"many": 0.9', "not readable JSON"),
    "empty-file": ("", "not readable JSON"),
    "a-list": ("[1, 2, 3]", "a JSON list, not an object"),
    "nan-number": (json.dumps(metrics("x")).replace('"few": 0.2', '"few": NaN'), "NaN is not a JSON number"),
    "infinity": (json.dumps(metrics("x")).replace('"auroc": 0.7', '"auroc": Infinity'), "Infinity"),
    "closed-not-an-object": (changed(_set(("closed",), "high")), '"closed" must be an object'),
    "metric-a-string": (changed(_set(("closed", "many"), "90%")), "closed.many must be a finite number or null"),
    "metric-a-bool": (changed(_set(("open", "f_measure"), True)), "open.f_measure must be a finite number"),
    "no-bands": (changed(lambda m: m.pop("bands")), '"bands" must be an object'),
    "class-names-not-a-list": (changed(_set(("class_names",), "ant bee cat")), '"class_names" must be a list'),
    "train-counts-short": (changed(_set(("train_counts",), [1, 2])), '"train_counts" must hold one count per class'),
    "split-files-a-list": (changed(_set(("split_files",), ["a"])), '"split_files" must map'),
}


@pytest.mark.parametrize("name", MALFORMED)
def test_a_malformed_metrics_file_is_one_line_naming_it(name, tmp_path, capsys):
    content, expected = MALFORMED[name]
    good = write(tmp_path, "good", metrics("good"))
    bad = write(tmp_path, "bad", content)
    code, out, err = cli([good, bad.parent], capsys)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert str(bad) in err and expected in err, err


def test_a_metrics_file_that_is_not_utf8_is_one_line(tmp_path, capsys):
    bad = tmp_path / "bad" / "metrics.json"
    bad.parent.mkdir()
    bad.write_bytes(json.dumps({"run": "caf\xe9"}, ensure_ascii=False).encode("latin-1"))
    code, _, err = cli([bad], capsys)
    assert code == 2 and "not UTF-8" in err and str(bad) in err


def test_the_tables_cover_every_kind():
    assert len(INCOMPARABLE) >= 10 and len(MALFORMED) >= 10


# ---------------------------------------------------------------------------- the bench report: the same rules
class Spec:
    name, seeds, paper, methods, path = "toy", [0, 1], None, [], "toy.yaml"

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir


def test_the_bench_report_marks_short_cells_and_refuses_mixed_rows_before_writing(tmp_path):
    spec = Spec(tmp_path / "bench")
    spec.out_dir.mkdir()
    groups = {"plain": [metrics("s0"), metrics("s1", auroc=None)]}
    assert "| plain | 2 | 90.0 ± 0.0 |" in markdown(spec, groups) and "0.700 (1/2)" in markdown(spec, groups)
    row = next(csv.DictReader(io.StringIO(csv_text(groups))))
    assert row["AUROC n"] == "1" and row["few n"] == "2" and row["AUROC std"] == "0.0000"
    warned = copy.deepcopy(groups)  # the † / ‡ of results.md as counts (was: lost in the CSV; session 22)
    warned["plain"][0]["convergence"] = {"warning": "the model may be under-trained: x", "unchecked": None}
    warned["plain"][1]["convergence"] = {"warning": None, "unchecked": "1 evaluation"}
    row = next(csv.DictReader(io.StringIO(csv_text(warned))))
    assert (row["under-trained runs"], row["unchecked runs"]) == ("1", "1")
    assert next(csv.DictReader(io.StringIO(csv_text(groups))))["unchecked runs"] == "0"
    mixed = copy.deepcopy(groups)
    mixed["plain"][1]["class_names"] = ["ant", "cat", "bee"]
    files = {"plain": [write(tmp_path, f"s{i}", m) for i, m in enumerate(mixed["plain"])]}
    with pytest.raises(RunDirError, match="cannot average s0 and s1 into one row 'plain'.*class lists"):
        write_bench_results(spec, files)
    assert not any(spec.out_dir.iterdir())  # nothing written
    with pytest.raises(RunDirError, match="different band rules"):
        aggregate({"x": [metrics("a"), changed(_set(("bands", "rule"), "many > 1, medium 1-1, few < 1"))]})
    assert "| plain | 2 |" in summarize(groups)


# ---------------------------------------------------------------------------- what the tables say under them
def test_the_summary_and_bench_tables_say_the_std_is_the_population_one(tmp_path, capsys):
    a, b = metrics("s0", auroc=0.8333333333333334), metrics("s1", auroc=0.6388888888888888)
    code, out, err = cli([f"S={write(tmp_path, 's0', a)}", f"S={write(tmp_path, 's1', b)}"], capsys)
    assert code == 0, err
    assert "0.736 ± 0.097" in out  # ddof=0; the sample std (ddof=1) would be 0.138
    assert "± is the population standard deviation over a row's runs (ddof=0: divided by n, not n - 1)" in out
    spec = Spec(tmp_path / "bench")
    assert "(ddof=0: divided by n, not n - 1)" in markdown(spec, {"S": [a, b]})


def test_rows_on_different_data_get_one_note_naming_them(tmp_path, capsys):
    same = [f"a={write(tmp_path, 's0', metrics('s0'))}", f"b={write(tmp_path, 's1', metrics('s1'))}"]
    code, out, err = cli(same, capsys)
    assert code == 0 and "different data" not in out, err
    other = metrics("s2")
    other.update(class_names=["ant", "bee", "cat", "dog"], train_counts=[120, 50, 10, 5])
    code, out, err = cli([same[0], f"c={write(tmp_path, 's2', other)}"], capsys)
    assert code == 0, err
    assert ("note: the rows are on different data (different class lists: a: 3 classes (ant, bee, cat); c: 4 "
            "classes (ant, bee, cat, ...)): their numbers are not comparable") in out
    moved = metrics("s3")
    moved["split_files"]["train"] = "f" * 64
    code, out, err = cli([same[0], f"d={write(tmp_path, 's3', moved)}"], capsys)
    assert code == 0 and ("different split files: a: train sha256 aaaaaaaaaaaa; d: train sha256 ffffffffffff"
                          in out), out
    for run, dataset in (("s0", "fashion-mnist"), ("s2", "cifar10")):  # run directories: config.yaml names the dataset
        (tmp_path / run / "config.yaml").write_text(f"data:\n  dataset: {dataset}\n")
    code, out, err = cli([same[0], f"c={tmp_path / 's2'}"], capsys)
    assert code == 0 and ("note: the rows are on different data (a: fashion-mnist (3 classes); c: cifar10 (4 "
                          "classes)): their numbers are not comparable") in out, out


# ---------------------------------------------------------------------------- labels a table cell cannot hold
def test_labels_with_a_bar_or_a_line_break_stay_one_cell_of_one_row(tmp_path, capsys):
    """trial 10 D7: `a|b=RUN` gave an extra column, a label with a newline split its row over two lines."""
    args = [f"a|b={write(tmp_path, 's0', metrics('s0'))}", f"x\ny={write(tmp_path, 's1', metrics('s1'))}",
            f"c\\d={write(tmp_path, 's2', metrics('s2'))}"]
    code, out, err = cli(args, capsys)
    assert code == 0, err
    rows = [line for line in out.splitlines() if line.startswith("| ") and not line.startswith("| method")]
    assert [row.split(" | ")[0] for row in rows] == ["| a\\|b", "| x\\ny", "| c\\\\d"]
    header = out.splitlines()[0]
    assert all(len(row.replace("\\|", "").split("|")) == len(header.split("|")) for row in rows)
    spec = Spec(tmp_path / "bench")
    assert "\n| a\\|b | 1 | 90.0 |" in markdown(spec, {"a|b": [metrics("s0")]})


# ---------------------------------------------------------------------------- seeds of one row on other image folders
def _on(folder: str, seed_run: str, tmp_path, packed: dict | None = None) -> Path:
    m = metrics(seed_run)
    m["data"] = {"root": folder, "open_root": None, "split_dir": f"{folder}-splits"}
    path = write(tmp_path, seed_run, m)
    if packed is not None:
        (path.parent / "split_manifest.json").write_text(json.dumps({"class_names": m["class_names"], "data_files": {
            "data.root": {"folder": folder, "files": {n: {"sha256": h} for n, h in packed.items()}}}}))
    return path


def test_seeds_on_different_image_folders_get_a_note_and_other_data_files_are_refused(tmp_path, capsys):
    """trial 10 D6: an RGB and a grayscale folder with the same file names (so identical split files) were averaged
    as seeds of one row without a word."""
    rgb, gray, rgb2 = _on("/data/rgb", "s0", tmp_path), _on("/data/gray", "s1", tmp_path), _on("/data/rgb", "s2", tmp_path)
    code, out, err = cli([f"A={rgb}", f"A={gray}"], capsys)
    assert code == 0, err
    assert (f"note: rows averaging runs on different image folders, with the same split files: A ({rgb}: /data/rgb, "
            f"{gray}: /data/gray); nothing shows that the folders hold the same images") in out
    code, out, err = cli([f"A={rgb}", f"A={rgb2}", f"B={gray}"], capsys)
    assert code == 0 and "different image folders" not in out, out
    same = [_on(f"/copy{i}", f"p{i}", tmp_path, {"train-images.gz": "1" * 64}) for i in range(2)]
    code, out, err = cli([f"F={same[0]}", f"F={same[1]}"], capsys)
    assert code == 0 and "different image folders" not in out, out  # the same data files, copied elsewhere
    other = _on("/copy2", "p2", tmp_path, {"train-images.gz": "2" * 64})
    code, out, err = cli([f"F={same[0]}", f"F={other}"], capsys)
    assert code == 2 and out == "" and err.strip() == (
        f"openlt summary: error: cannot average {same[0]} and {other} into one row 'F': they were trained and evaluated on "
        "different data files (data.root: split_manifest.json data_files differ); give them different labels "
        "(LABEL=RUN)"), err
