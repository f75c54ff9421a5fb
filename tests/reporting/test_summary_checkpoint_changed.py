"""`openlt summary` of a run whose checkpoint changed since its metrics file was written (`openlt train --resume RUN
--no-eval` with train.epochs raised: a new best checkpoint, metrics.json still the old one's): refused in one line
naming the file, both sha256 and `openlt eval`, as `openlt bench --report-only` refuses it and `openlt predict`
refuses its calibration (was: the old checkpoint's numbers averaged as the run's, exit 0). `openlt report` redraws
such a file as it was evaluated, with a note saying so (was: without a word)."""

import shutil

from tiny_run import cli, the_run

REPORT_FIGURES = "unrasterized"  # tests/conftest.py: report.html figures built, not rendered (none is looked at)


def test_summary_refuses_a_metrics_file_of_a_checkpoint_since_replaced(tmp_path, capsys, shared_run):
    # train_tiny_run(tmp_path / "a", "train.amp=none")
    run = the_run(shared_run("api-fp32", tmp_path / "a") / "runs")
    assert cli(capsys, "summary", run.path)[0] == 0  # as evaluated: shown
    best = run.path / "checkpoints" / "best.safetensors"
    best.touch()  # written again with the same weights (a resume whose best epoch stayed): still shown
    assert cli(capsys, "summary", run.path)[0] == 0
    shutil.copyfile(run.path / "checkpoints" / "last.safetensors", best)  # other bytes: trained on since
    code, out, err = cli(capsys, "summary", f"x={run.path}")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert "metrics.json" in err and "checkpoints/best.safetensors" in err and "sha256" in err
    assert f"openlt eval {run.path}" in err and out == ""


def test_report_redraws_a_metrics_file_of_a_replaced_checkpoint_with_a_note(tmp_path, capsys, shared_run):
    # train_tiny_run(tmp_path / "b", "train.amp=none")
    run = the_run(shared_run("api-fp32", tmp_path / "b") / "runs")
    code, out, err = cli(capsys, "report", run.path)
    assert code == 0 and "note:" not in out, err
    shutil.copyfile(run.path / "checkpoints" / "last.safetensors", run.path / "checkpoints" / "best.safetensors")
    code, out, err = cli(capsys, "report", run.path)
    assert code == 0 and out.startswith("report: "), err
    note = out.splitlines()[1]
    assert note.startswith("note: ") and "checkpoints/best.safetensors" in note and f"openlt eval {run.path}" in note
