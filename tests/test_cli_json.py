"""--json of every command that has it (eval, predict, identify: tests/engine/test_identify.py): stdout holds the
JSON document alone, progress and notes go to stderr, also without --quiet (trial 8 D4)."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from images import make_image_folder
from openlt.data import datasets
from tiny_run import cli, the_run

REPORT_FIGURES = "unrasterized"  # tests/conftest.py: report.html figures built, not rendered (none is looked at)


@pytest.fixture(scope="module")
def run(tmp_path_factory, shared_run, single_thread):
    return the_run(shared_run("api", tmp_path_factory.mktemp("json")) / "runs")  # train_tiny_run there


@pytest.fixture
def notes_large_images(monkeypatch):
    """Every 16 px image of the tiny run is 'large' (256 pixels, above a warning limit of 200, below the error
    limit of 400): each read logs a `note: ... has 256 pixels` line, as a real large image does."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 200)
    monkeypatch.setattr(datasets, "_NOTED_LARGE", set())


def test_eval_json_prints_the_json_alone(run, capsys, notes_large_images):
    code, out, err = cli(capsys, "eval", run.path, "data.workers=0", "--json", "--tag", "json")
    assert code == 0, err
    shown = json.loads(out)  # the whole of stdout
    written = json.loads(run.metrics_path("json").read_text())
    assert shown == {k: written[k] for k in ("closed", "open", "calibration")}
    assert "note: " in err and "has 256 pixels, above PIL's warning limit of 200" in err
    datasets._NOTED_LARGE.clear()
    code, out, err = cli(capsys, "eval", run.path, "data.workers=0", "--tag", "json")  # without --json: stdout
    assert code == 0 and out.startswith("note: ") and "metrics: " in out


def test_predict_json_prints_the_json_alone(run, capsys, tmp_path, notes_large_images):
    images = make_image_folder(tmp_path / "images", {"ant": 2})
    files = sorted(str(p) for p in images.rglob("*.png"))
    code, out, err = cli(capsys, "predict", run.path, *files, "--json", "--output", tmp_path / "p.jsonl")
    assert code == 0, err
    records = json.loads(out)  # the whole of stdout: no note, no "2 predictions: ..." line either
    assert err.count("has 256 pixels, above PIL's warning limit of 200") == 2
    assert [r["path"] for r in records] == files
    assert [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()] == records
    datasets._NOTED_LARGE.clear()
    code, out, err = cli(capsys, "predict", run.path, *files, "--output", tmp_path / "q.jsonl")
    assert code == 0 and out.startswith("note: ") and out.splitlines()[-1] == f"2 predictions: {tmp_path / 'q.jsonl'}"
