"""The run directory's layout lives in `Run` alone: the names of every file, as the runs on disk have them."""

from pathlib import Path

import pytest

from openlt.config import build_config
from openlt.engine.run import Run, new_run, open_run
from openlt.errors import RunDirError


def test_every_path_of_a_run_directory(tmp_path):
    run = Run(tmp_path)
    names = {
        "config.yaml": run.config_file, "split_manifest.json": run.manifest_file, "metrics.jsonl": run.log_file,
        "tensorboard": run.tensorboard_dir, "calibration.json": run.calibration_file, "metrics.json": run.metrics_file,
        "report.md": run.report_file, "splits": run.splits_dir, "checkpoints": run.checkpoints_dir,
        "features": run.features_dir, "decouple.json": run.decouple_file, "tau_curve.png": run.tau_curve_file,
        "report.html": run.report_html_path(), "predictions.npz": run.predictions_path(),
        "open-score.safetensors": run.open_score_path(), "checkpoints/best.safetensors": run.checkpoint("best"),
        "features/val.safetensors": run.feature_cache("val"),
    }
    for name, path in names.items():
        assert path == tmp_path / name, name


def test_a_tag_names_the_files_of_an_extra_evaluation(tmp_path):
    run = Run(tmp_path)
    assert [p.name for p in (run.metrics_path("energy"), run.report_path("energy"), run.report_html_path("energy"),
                             run.predictions_path("energy"), run.open_score_path("energy"))] == [
        "metrics-energy.json", "report-energy.md", "report-energy.html", "predictions-energy.npz",
        "open-score-energy.safetensors"]
    assert run.metrics_path(None) == run.metrics_file and run.report_path(None) == run.report_file


def test_new_and_open_run(tmp_path):
    cfg = build_config(None, [f"out_dir={tmp_path}"])
    run = new_run(cfg, "x")
    assert run.checkpoints_dir.is_dir() and run.path.parent == tmp_path and run.path.name.startswith("x-")
    with pytest.raises(RunDirError, match="no config.yaml"):
        open_run(run.path)
    run.write_config(cfg)
    assert open_run(run.path) == run and open_run(str(run.path)).config().out_dir == str(tmp_path)
    with pytest.raises(RunDirError, match="not found"):
        open_run(Path(tmp_path) / "missing")
