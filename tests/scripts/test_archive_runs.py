"""scripts/archive_runs.py: the small record files of evaluated runs copied out of a bench folder."""

import json
from pathlib import Path

import pytest
from script_loader import load_script  # tests/helpers


@pytest.fixture(scope="module")
def archive_module():
    return load_script("archive_runs")


def _run(folder: Path, name: str, evaluated: bool = True) -> Path:
    run = folder / name
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "best.safetensors").write_bytes(b"weights")
    (run / "config.yaml").write_text("train: {epochs: 4}\n", encoding="utf-8")
    (run / "metrics.jsonl").write_text(json.dumps({"epoch": 1}) + "\n", encoding="utf-8")
    (run / "predictions.npz").write_bytes(b"big")
    if evaluated:
        (run / "metrics.json").write_text(json.dumps({"closed": {"overall": 0.5}}), encoding="utf-8")
        (run / "report.html").write_text("<html>", encoding="utf-8")
    return run


def test_copies_the_records_of_evaluated_runs_only(tmp_path, archive_module, capsys):
    source, dest = tmp_path / "runs", tmp_path / "results" / "study"
    _run(source, "plain_e4-s0-20261201-100000")
    _run(source, "plain_e4-s1-20261201-100001", evaluated=False)  # still training: left out
    (source / ".plain.bench.lock").write_text("1 on host", encoding="utf-8")
    assert archive_module.main([str(source), str(dest)]) == 0
    assert sorted(p.name for p in dest.iterdir()) == ["plain_e4-s0-20261201-100000"]
    kept = sorted(p.name for p in (dest / "plain_e4-s0-20261201-100000").iterdir())
    assert kept == ["config.yaml", "metrics.json", "metrics.jsonl"]  # no weights, predictions or report
    assert capsys.readouterr().out.strip() == str(dest / "plain_e4-s0-20261201-100000")


def test_a_second_archive_overwrites_a_re_evaluated_run(tmp_path, archive_module):
    source, dest = tmp_path / "runs", tmp_path / "kept"
    run = _run(source, "crt_e4-s0-20261201-100000")
    archive_module.archive(source, dest)
    (run / "metrics.json").write_text(json.dumps({"closed": {"overall": 0.7}}), encoding="utf-8")
    assert archive_module.archive(source, dest) == ["crt_e4-s0-20261201-100000"]
    assert json.loads((dest / run.name / "metrics.json").read_text())["closed"]["overall"] == 0.7


def test_refuses_a_destination_inside_the_source_or_a_missing_source(tmp_path, archive_module, capsys):
    source = tmp_path / "runs"
    run = _run(source, "plain_e4-s0-20261201-100000")
    assert archive_module.main([str(source), str(run / "sub")]) == 2
    assert "inside one of its runs" in capsys.readouterr().err
    assert archive_module.main([str(source), str(source)]) == 2
    assert archive_module.main([str(tmp_path / "nope"), str(tmp_path / "out")]) == 2
    assert "is not a folder" in capsys.readouterr().err
    assert not (run / "sub").exists()


def test_says_so_when_nothing_is_evaluated(tmp_path, archive_module, capsys):
    _run(tmp_path / "runs", "plain_e4-s0-20261201-100000", evaluated=False)
    assert archive_module.main([str(tmp_path / "runs"), str(tmp_path / "out")]) == 0
    assert "no evaluated run" in capsys.readouterr().err
