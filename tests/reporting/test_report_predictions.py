"""`openlt report` draws predictions.npz only with the metrics.json of the same evaluation (issue 14 item 10: a
predictions-openmax.npz copied over predictions.npz, or another run's, was drawn without a word): predictions.npz
records its open-set score and checkpoint sha256; a file of an older openlt (without them) is accepted. And the
messages of a run without an untagged evaluation (item 11): predict, report and summary name the tagged metrics
files and how to use one; `openlt summary FOLDER` of a folder of runs says so and suggests FOLDER/*."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from tiny_run import cli, the_run

REPORT_FIGURES = "unrasterized"  # tests/conftest.py: report.html figures built, not rendered (none is looked at)


@pytest.fixture(scope="module")
def run(tmp_path_factory, shared_run):
    from openlt.engine.evaluate import evaluate_run

    run = the_run(shared_run("api", tmp_path_factory.mktemp("report_predictions")) / "runs")  # train_tiny_run there
    evaluate_run(run, overrides=["eval.open_score=openmax"], quiet=True, tag="openmax")
    return run


def _npz(path: Path) -> dict:
    with np.load(path) as data:
        return {key: data[key] for key in data.files}


def test_predictions_record_their_score_and_checkpoint(run):
    import json

    metrics = json.loads(run.metrics_file.read_text())
    table, tagged = _npz(run.path / "predictions.npz"), _npz(run.path / "predictions-openmax.npz")
    assert str(table["score_name"]) == "msp" and str(tagged["score_name"]) == "openmax"
    assert str(table["checkpoint_sha256"]) == metrics["checkpoint_sha256"] and len(metrics["checkpoint_sha256"]) == 64


@pytest.fixture
def copy(run, tmp_path):
    target = tmp_path / run.path.name
    shutil.copytree(run.path, target, ignore=shutil.ignore_patterns("train.lock", "checkpoints"))
    shutil.copytree(run.path / "checkpoints", target / "checkpoints")
    return target


def test_report_refuses_predictions_of_another_score(copy, capsys):
    shutil.copy(copy / "predictions-openmax.npz", copy / "predictions.npz")
    code, _, err = cli(capsys, "report", copy)
    assert code == 2 and err == (f"openlt report: error: {copy}/predictions.npz is not from the evaluation that "
                                 f"wrote {copy}/metrics.json: its open-set score is 'openmax', metrics.json's 'msp'; "
                                 "evaluate the run again to write both together\n")
    assert cli(capsys, "report", copy, "--tag", "openmax")[0] == 0  # each with its own


def test_report_refuses_predictions_of_another_checkpoint(copy, capsys):
    table = _npz(copy / "predictions.npz")
    table["checkpoint_sha256"] = np.array("ab" * 32)  # another run's
    np.savez_compressed(copy / "predictions.npz", **table)
    code, _, err = cli(capsys, "report", copy)
    assert code == 2 and "its checkpoint sha256 is abababababab..., metrics.json's " in err
    assert err.count("\n") == 1 and f"{copy}/predictions.npz" in err and f"{copy}/metrics.json" in err


def test_report_accepts_an_older_predictions_file_without_the_fields(copy, capsys):
    table = _npz(copy / "predictions.npz")
    del table["score_name"], table["checkpoint_sha256"]
    np.savez_compressed(copy / "predictions.npz", **table)
    code, out, _ = cli(capsys, "report", copy)
    assert code == 0 and out == f"report: {copy}/report.html\n"


def test_a_run_with_only_tagged_evaluations_names_them(copy, capsys):
    for name in ("metrics.json", "calibration.json", "predictions.npz"):
        (copy / name).unlink()
    code, _, err = cli(capsys, "predict", copy, copy / "missing.png")
    assert code == 2 and err == (
        f"openlt predict: error: {copy} has no calibration.json: it has no untagged evaluation, only tagged ones "
        f"(metrics-openmax.json), which choose no threshold for prediction; choose it on validation with "
        f"`openlt eval {copy}` (no --tag), or give a fixed one (--threshold T)\n")
    code, _, err = cli(capsys, "report", copy)
    assert code == 2 and err == (
        f"openlt report: error: {copy}/metrics.json not found: the run has no untagged evaluation, only tagged ones "
        f"(metrics-openmax.json); give one with `openlt report {copy} --tag openmax`, or evaluate the run untagged "
        f"(`openlt eval {copy}`)\n")
    code, _, err = cli(capsys, "summary", copy)
    assert code == 2 and err == (
        f"openlt summary: error: {copy}/metrics.json not found: the run has no untagged evaluation, only tagged ones "
        f"(metrics-openmax.json); give one with its file, e.g. `openlt summary {copy}/metrics-openmax.json`, or "
        f"evaluate the run untagged (`openlt eval {copy}`)\n")
    assert cli(capsys, "summary", copy / "metrics-openmax.json")[0] == 0


def test_summary_of_a_folder_of_runs_says_so(copy, capsys):
    code, _, err = cli(capsys, "summary", copy.parent)
    assert code == 2 and err == (f"openlt summary: error: {copy.parent} is a folder of runs, not a run (it has no "
                                 f"config.yaml): give the runs themselves, e.g. `openlt summary {copy.parent}/*`\n")


def test_summary_of_a_folder_of_bench_folders_names_the_runs_below(copy, capsys, tmp_path):
    """A folder whose runs are a level further down (runs/ holding bench out_dirs): the table of the folder that
    holds them is suggested (was: "metrics.json not found", how to evaluate the folder as a run)."""
    (tmp_path / "top").mkdir()
    (tmp_path / "top" / "bench").symlink_to(copy.parent)
    code, _, err = cli(capsys, "summary", tmp_path / "top")
    assert code == 2 and err == (f"openlt summary: error: {tmp_path / 'top'} is a folder of runs, not a run (it has "
                                 f"no config.yaml): give the runs themselves, e.g. `openlt summary "
                                 f"{tmp_path / 'top' / 'bench'}/*`\n")


def test_summary_of_what_is_no_run_says_what_it_is(copy, capsys, tmp_path):
    """A file (was: "FILE/metrics.json not found (evaluate the run with `openlt eval FILE`)"), a run's
    metrics.jsonl, an empty folder (was: the same advice to evaluate it) and a missing path: each one line saying
    what it is (helper trial, session 22)."""
    (tmp_path / "notes.txt").write_text("x", encoding="utf-8")
    (tmp_path / "empty").mkdir()
    for given, said in ((tmp_path / "notes.txt", f"{tmp_path / 'notes.txt'} is a file, not a run directory: give a "
                         "run's folder, or its metrics.json / metrics-TAG.json"),
                        (copy / "metrics.jsonl", f"{copy / 'metrics.jsonl'} is a file, not a run directory"),
                        (tmp_path / "empty", f"{tmp_path / 'empty'} is not a run directory (it has no config.yaml, "
                         "nor runs in it): give a run's folder"),
                        (tmp_path / "gone", f"{tmp_path / 'gone'} not found (no such run directory)")):
        code, _, err = cli(capsys, "summary", given)
        assert code == 2 and err.startswith(f"openlt summary: error: {said}") and err.count("\n") == 1, err
