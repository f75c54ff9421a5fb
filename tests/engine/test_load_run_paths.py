"""The path a run is loaded from (trial 10): ``openlt.load_run`` makes a relative run path absolute when it opens the
run, so a notebook's later ``os.chdir`` neither breaks ``evaluate()`` nor is blamed on a run "moved or deleted" (D4); a run directory whose path is not UTF-8 is refused once, where the run is opened, with
one line (D16: was an internal UnicodeEncodeError from `openlt report`, and a valid checkpoint called "corrupt" by
predict / eval / export)."""

import os
import shutil

import pytest

import openlt
from openlt.errors import RunDirError
from tiny_run import cli, the_run

REPORT_FIGURES = "unrasterized"  # tests/conftest.py: report.html figures built, not rendered (none is looked at)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, shared_run, single_thread):
    root = shared_run("api-cpu", tmp_path_factory.mktemp("load-run-paths"))  # train_tiny_run(root, "train.device=cpu")
    return root, the_run(root / "runs")


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


ODD = "is not valid UTF-8: openlt cannot open its checkpoints (safetensors takes UTF-8 paths only)"


@pytest.mark.parametrize("command", [["report"], ["predict", "IMAGE"], ["eval"], ["export", "OUT"]])
def test_a_run_directory_path_that_is_not_utf8_is_one_line(trained, tmp_path, capsys, command):
    copy = _copy(trained, tmp_path, os.fsdecode(b"r\xff"))
    image = sorted((trained[0] / "images" / "bee").glob("*.png"))[0]
    args = [{"IMAGE": str(image), "OUT": str(tmp_path / "bundle")}.get(a, a) for a in command[1:]]
    code, out, err = cli(capsys, command[0], str(copy), *args)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1, (code, out, err)
    assert f"{tmp_path}/r\\xff {ODD}" in err and "corrupt" not in err
    assert not (tmp_path / "bundle").exists()


def test_load_run_refuses_a_path_that_is_not_utf8(trained, tmp_path):
    copy = _copy(trained, tmp_path, os.fsdecode(b"r\xff"))
    with pytest.raises(RunDirError, match=ODD.replace("(", r"\(").replace(")", r"\)")):
        openlt.load_run(copy, device="cpu")
