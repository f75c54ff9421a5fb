"""The path a run is loaded from (trial 10): ``openlt.load_run`` makes a relative run path absolute when it opens the
run, so a notebook's later ``os.chdir`` neither breaks ``evaluate()`` nor is blamed on a run "moved or deleted" (D4)."""

import os
import shutil

import pytest

import openlt
from tiny_run import train_tiny_run


@pytest.fixture(scope="module")
def trained(tmp_path_factory, single_thread):
    root = tmp_path_factory.mktemp("load-run-paths")
    return root, train_tiny_run(root, "train.device=cpu")


def _copy(trained, tmp_path, name="run"):
    copy = tmp_path / name
    shutil.copytree(trained[1].path, copy, ignore=shutil.ignore_patterns("train.lock"))
    return copy


def test_a_relative_run_path_survives_a_change_of_working_directory(trained, tmp_path, monkeypatch):
    copy = _copy(trained, tmp_path)
    monkeypatch.chdir(tmp_path)
    run = openlt.load_run("run", device="cpu")
    assert run.path == copy and run.path.is_absolute()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    metrics = run.evaluate(tag="cwd")
    assert 0.0 <= metrics["closed"]["overall"] <= 1.0
    assert (copy / "metrics-cwd.json").is_file() and not (elsewhere / "run").exists()
    assert os.getcwd() == str(elsewhere)
