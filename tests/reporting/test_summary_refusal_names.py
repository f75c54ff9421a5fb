"""`openlt summary`'s refusals of runs evaluated differently (split files, class lists, ..., checkpoints) name the
runs as the user gave them, as its other refusals do: a copied run old/C was named by its metrics.json's "run", the
original's name (C), so the message pointed at another folder than the one given."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest

from openlt.errors import RunDirError
from openlt.reporting.summary import aggregate, load_metrics
from summary_files import cli, write  # tests/helpers, on the path through conftest

# test_summary.py's metrics dict (the tests are no package)
_spec = importlib.util.spec_from_file_location("summary_tests_module", Path(__file__).with_name("test_summary.py"))
_summary_tests = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_summary_tests)
metrics = _summary_tests.metrics


def test_a_copied_run_on_other_split_files_is_named_by_the_path_given(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "A", metrics("A"))
    c = metrics("C")  # metrics.json "run": /work/runs/C, its original folder
    c["split_files"]["open"] = "4" * 64
    write(tmp_path / "old", "C", c)
    code, out, err = cli(["A", "old/C"], capsys)
    assert code == 2 and out == "" and err.strip() == (
        "openlt summary: error: cannot average A and old/C into one row 'runs': they were evaluated under different "
        "split files (open: sha256 dddddddddddd vs 444444444444); give them different labels (LABEL=RUN) or evaluate "
        "them alike"), err
    code, out, err = cli(["old/C/metrics.json", "A/metrics.json"], capsys)
    assert code == 2 and "cannot average old/C/metrics.json and A/metrics.json into one row 'runs': they were " \
                         "evaluated under different split files (open: sha256 444444444444 vs dddddddddddd)" in err, err


def test_a_copied_run_of_another_checkpoint_is_named_by_the_path_given(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "A", metrics("A"))
    write(tmp_path / "old", "C", {**metrics("C"), "checkpoint": "last"})
    code, out, err = cli(["x=A", "x=old/C"], capsys)
    assert code == 2 and "cannot average A and old/C into one row 'x': A is an evaluation of its checkpoint 'best', " \
                         "old/C of its checkpoint 'last'" in err, err


def test_without_names_the_runs_are_named_by_their_run_field(tmp_path):
    a = write(tmp_path, "A", metrics("A"))
    c = metrics("C")
    c["split_files"]["open"] = "4" * 64
    copy = tmp_path / "old" / "C2"
    shutil.copytree(write(tmp_path, "C", c).parent, copy)  # (a bench report aggregates without names)
    with pytest.raises(RunDirError, match=r"^cannot average A and C into one row 'm': .*different split files"):
        aggregate({"m": [load_metrics(a), load_metrics(copy / "metrics.json")]})
