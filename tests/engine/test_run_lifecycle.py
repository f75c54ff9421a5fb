"""A run's life beyond its epochs, through real `python -m openlt` processes: a run directory moved or deleted while
it trains stops the process with one line (never a recreated folder), a SIGTERM in train's final evaluation names
the run and the command that finishes it, and an evaluation holds the run's lock for its whole length (a
`train --resume` started meanwhile is refused, naming it); the commands after them (the resume, the refusals) are
openlt's main in this process, which saves a process start-up each. In this process: a closed-set re-evaluation
removes a stale calibration.json inside its write group, and the tau curve goes through the report figures'
writer."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from openlt_processes import ENV, TIMEOUT, finished, hooked_openlt, lock_holder, tiny_on_cpu, wait_for  # tests/helpers
from openlt.engine.checkpoint import checkpoint_state
from tiny_run import cli  # tests/helpers
import forked_python  # tests/helpers

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")

EPOCHS = 2
TINY = tiny_on_cpu("resnet10", EPOCHS)
FINISHED: dict[str, Path] = {}  # a finished run a test leaves for the next one

# `python -m openlt` that waits at a chosen point (OPENLT_TEST_MODE) until MARKER.go exists, MARKER created there:
#   wait-in-epoch-N      after step 3 of epoch N
#   wait-in-evaluation   when an evaluation starts computing outputs (the run's lock is held then)
HOOKED = hooked_openlt("""
import openlt.engine.evaluate as evaluate

def wait_here():
    open(marker, "w").close()
    deadline = time.monotonic() + 600
    while not os.path.exists(marker + ".go") and time.monotonic() < deadline:
        time.sleep(0.02)

def after_step(epoch, step):
    if mode == f"wait-in-epoch-{epoch}" and step == 3:
        wait_here()

real_outputs = evaluate._split_outputs

def split_outputs(*args, **kwargs):
    if mode == "wait-in-evaluation":
        wait_here()
    return real_outputs(*args, **kwargs)

evaluate._split_outputs = split_outputs
""")


def train_args(ws: Path, out: str, *extra: str) -> list[str]:
    return ["train", str(ws / "tiny.yaml"), f"data.root={ws / 'images'}", f"out_dir={ws / out}", *TINY, "--quiet",
            *extra]


def hooked(args: list[str], mode: str, marker: Path) -> subprocess.Popen:
    return forked_python.Popen([sys.executable, "-c", HOOKED, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env={**ENV, "OPENLT_TEST_MODE": mode, "OPENLT_TEST_MARKER": str(marker)})


def openlt(*args: str) -> subprocess.CompletedProcess:
    return forked_python.run([sys.executable, "-m", "openlt", *args], capture_output=True, text=True, env=ENV,
                             timeout=TIMEOUT)


def finish(proc: subprocess.Popen, code: int) -> tuple[str, list[str]]:
    """(stdout, the non-empty stderr lines) of `proc` once it exits, which must be with `code`."""
    out, err = finished(proc, code)
    return out, [line for line in err.splitlines() if line.strip()]


def only_run(folder: Path) -> Path:
    runs = [p for p in folder.iterdir() if p.is_dir()]
    assert len(runs) == 1, runs
    return runs[0]


def logged_epochs(run: Path) -> list[int]:
    return [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]


# ---------------------------------------------------------------------------- a run moved or deleted while it trains
@pytest.mark.parametrize("how", ["moved", "deleted"])
def test_a_run_moved_or_deleted_while_it_trains_stops_with_one_line_and_is_not_recreated(workspace, how, capsys):
    marker = workspace / f"in-epoch-2-{how}"
    proc = hooked(train_args(workspace, f"runs-{how}", "--no-eval"), "wait-in-epoch-2", marker)
    wait_for(marker.exists, proc, marker.name)
    run = only_run(workspace / f"runs-{how}")
    moved = run.with_name(run.name + "-moved")
    if how == "moved":
        os.rename(run, moved)  # `mv runs/x runs/y`
    else:
        shutil.rmtree(run)
    Path(f"{marker}.go").touch()
    _, err = finish(proc, 2)
    if how == "moved":
        assert err == [f"openlt train: error: the run directory {run} was moved to {moved} while it was in use; "
                       f"stopped: the checkpoint of epoch 2 was not written, nothing more was written (continue "
                       f"with `openlt train --resume {moved}`)"]
        assert checkpoint_state(moved / "checkpoints" / "last.safetensors")["epoch"] == 0  # epoch 1's, kept
        assert logged_epochs(moved) == [1] and not list(moved.rglob("*.tmp"))
    else:
        assert err == [f"openlt train: error: the run directory {run} was moved or deleted while it was in use; "
                       f"stopped: the checkpoint of epoch 2 was not written, nothing more was written and the "
                       f"directory is not recreated"]
    assert not run.exists()  # no orphan folder with a lone checkpoint
    if how == "moved":  # the command the line names continues the run where it is now
        code, out, err = cli(capsys, "train", "--resume", moved, "--quiet", "--no-eval")  # openlt's main, here
        assert code == 0, err
        assert f"resuming {moved} after epoch 1/{EPOCHS}" in out and logged_epochs(moved) == [1, 2]
        assert not run.exists()


# ---------------------------------------------------------------------------- SIGTERM in train's final evaluation
def test_sigterm_in_the_final_evaluation_names_the_run_and_the_command_that_finishes_it(workspace, capsys):
    marker = workspace / "in-final-evaluation"
    proc = hooked(train_args(workspace, "runs-final"), "wait-in-evaluation", marker)
    wait_for(marker.exists, proc, marker.name)
    os.kill(proc.pid, signal.SIGTERM)
    _, err = finish(proc, 128 + signal.SIGTERM)
    run = only_run(workspace / "runs-final")
    assert err == [f"openlt train: interrupted (SIGTERM): the run {run} has finished training, its final evaluation "
                   f"was stopped (nothing of it was written, or all of it); finish it with "
                   f"`openlt train --resume {run}`"]
    assert logged_epochs(run) == [1, 2] and not (run / "metrics.json").exists()
    code, _, err = cli(capsys, "train", "--resume", run, "--quiet")  # the command, as the line gives it
    assert code == 0, err
    assert json.loads((run / "metrics.json").read_text())["epoch"] in (1, 2)
    FINISHED["run"] = run  # (the next test evaluates this finished run again)


# ---------------------------------------------------------------------------- an evaluation holds the run's lock
def test_a_resume_started_while_an_evaluation_runs_is_refused_naming_it(workspace, capsys):
    run = FINISHED.get("run")
    if run is None:  # run alone: a finished, unevaluated run of its own
        done = openlt(*train_args(workspace, "runs-locked", "--no-eval"))
        assert done.returncode == 0, done.stderr
        run = only_run(workspace / "runs-locked")
    marker = workspace / "in-eval"
    evaluation = hooked(["eval", str(run), "--quiet"], "wait-in-evaluation", marker)
    wait_for(marker.exists, evaluation, marker.name)
    before = {p: p.read_bytes() for p in (run / "checkpoints").iterdir()}
    code, _, err = cli(capsys, "train", "--resume", run, "--quiet")  # openlt's main in this process
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith(f"openlt train: error: {run} is being evaluated by process {evaluation.pid} on "), lines
    assert lines[0].endswith("(`openlt eval` or the final evaluation of `openlt train`); train it once it has ended")
    code, _, err = cli(capsys, "eval", run, "--quiet")  # one evaluation at a time: its files are one group
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and f"is being evaluated by process {evaluation.pid}" in lines[0]
    Path(f"{marker}.go").touch()
    finish(evaluation, 0)
    assert {p: p.read_bytes() for p in (run / "checkpoints").iterdir()} == before
    from openlt.engine.run import Run

    with Run(run).lock():  # released when the evaluation ended
        pass


def test_an_evaluation_is_refused_while_the_run_trains_and_its_own_lock_is_enough(tmp_path):
    from openlt.engine.run import Run
    from openlt.errors import RunDirError

    run = Run(tmp_path)
    with lock_holder(tmp_path) as holder:
        with pytest.raises(RunDirError, match=f"is being trained by process {holder.pid} on .*; evaluate it once "
                                              f"training has ended"):
            with run.eval_lock():
                pass
    with run.lock(), run.eval_lock():  # this process trains and then evaluates
        assert run.lock_file.read_text().splitlines()[1] == "training"
    with run.eval_lock():
        assert run.lock_file.read_text().splitlines()[1] == "evaluating"
        run.check_not_training("label images with")  # predict / export may read a run being evaluated
        with pytest.raises(RunDirError, match=f"is being evaluated by process {os.getpid()} on .*; train it once"):
            with Run(tmp_path).lock():
                pass


# ---------------------------------------------------------------------------- a stale calibration.json
def test_a_closed_set_re_evaluation_removes_a_stale_calibration_json_in_its_write_group(tmp_path, monkeypatch):
    import openlt.engine.evaluate as evaluate
    from tiny_run import train_tiny_run

    run = train_tiny_run(tmp_path, "data.split.open_classes=0", "train.device=cpu", "data.workers=0")
    assert not run.calibration_file.exists()  # a closed-set run's evaluation takes no open-set decision
    stale = json.dumps({"score": "msp", "threshold": 0.5, "source": "auto"})  # as an older openlt wrote one
    run.calibration_file.write_text(stale)
    metrics_before = run.metrics_file.read_bytes()

    def broken_reports(*args, **kwargs):
        raise RuntimeError("disk gone")

    monkeypatch.setattr(evaluate, "write_reports", broken_reports)
    with pytest.raises(RuntimeError, match="disk gone"):
        evaluate.evaluate_run(run, quiet=True)
    assert run.calibration_file.read_text() == stale and run.metrics_file.read_bytes() == metrics_before  # all or none
    monkeypatch.undo()
    metrics = evaluate.evaluate_run(run, quiet=True)
    assert not run.calibration_file.exists() and "calibration" not in metrics
    assert json.loads(run.metrics_file.read_text())["checkpoint_sha256"] == metrics["checkpoint_sha256"]


# ---------------------------------------------------------------------------- the tau curve figure
def test_the_tau_curve_is_drawn_through_the_report_figures_writer(tmp_path, monkeypatch):
    import openlt.reporting.figures as figures
    from openlt.engine.decouple import _plot_tau_curve
    from openlt.engine.run import Run

    curve = [{"tau": t / 10, "many": 0.9 - t / 50, "medium": 0.5, "few": None if t == 0 else 0.1 + t / 30,
              "overall": 0.6} for t in range(11)]
    run = Run(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing reaches the user: no tight-layout or pyplot warning
        _plot_tau_curve(curve, 0.5, run, lambda line: pytest.fail(line))
    assert run.tau_curve_file.read_bytes().startswith(b"\x89PNG") and not list(tmp_path.glob(".*.tmp"))
    assert "matplotlib.pyplot" not in sys.modules or not sys.modules["matplotlib.pyplot"].get_fignums()
    seen = []
    monkeypatch.setattr(figures, "to_png", lambda fig, dpi=110: seen.append(dpi) or b"drawn by to_png")
    _plot_tau_curve(curve, 0.5, run, lambda line: pytest.fail(line))
    assert seen == [120] and run.tau_curve_file.read_bytes() == b"drawn by to_png"


def test_a_move_between_the_check_and_the_write_recreates_nothing(tmp_path):
    """The window between ``Run.check_in_place`` and the write: the checkpoint's folder is created only inside an
    existing directory, and the failed write is reported as the move it is."""
    import torch

    from openlt.engine.checkpoint import save_checkpoint
    from openlt.engine.run import Run, RunMovedError
    from openlt.engine.train import _in_place

    (tmp_path / "x" / "checkpoints").mkdir(parents=True)
    run, moved = Run(tmp_path / "x"), tmp_path / "y"
    model = torch.nn.Linear(2, 2)

    def moved_then_written():
        os.rename(run.path, moved)
        save_checkpoint(run.checkpoint("last"), model, parents=False)

    with run.watched():
        with pytest.raises(RunMovedError, match=f"^the run directory {run.path} was moved to {moved} while it was in "
                                                f"use; stopped: the checkpoint of epoch 2 was not written"):
            _in_place(run, "the checkpoint of epoch 2", moved_then_written)
    assert not run.path.exists() and sorted(p.name for p in moved.rglob("*")) == ["checkpoints"]
