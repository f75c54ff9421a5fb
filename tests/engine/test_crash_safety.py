"""Crash-safe runs: a training process killed with SIGKILL (mid-epoch, or in the middle of writing a checkpoint)
resumes with `openlt train --resume RUN` to exactly the result of an uninterrupted run (CPU, workers=0:
bit-exact), and a killed write never leaves a half-written checkpoint behind the real name.

Every run is a real `python -m openlt train` process; the reference run starts in the background while the
first interrupted run trains, so the module stays well under a minute of wall time on two busy cores."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from openlt.engine.checkpoint import read_checkpoint
from openlt.io import atomic_path, remove_stale_temp

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")

EPOCHS = 3
TINY = ["data.dataset=image-folder", "data.image_size=16", "model.backbone=resnet20", f"train.epochs={EPOCHS}",
        "train.batch_size=8", "train.lr=0.05", "train.device=cpu", "data.workers=0", "eval.batch_size=64",
        "eval.many_above=30", "eval.few_below=15", "data.split.n_max=40", "data.split.n_min=8",
        "data.split.open_classes=[eel]", "data.split.val_per_class=4", "data.split.test_per_class=6",
        "data.split.order=label"]
# One thread in every process: the same arithmetic in each of them (bit-exact comparison), and less contention.
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENLT_TENSORBOARD": "0",
       "PYTHONUNBUFFERED": "1"}
TIMEOUT = 240  # seconds for one process on a slow shared CPU; a healthy one takes 5-20

# `python -m openlt` with one change: the write of epoch 2's last.safetensors stops half-way (the temporary
# file truncated to half its size) and the process then waits to be killed, as if SIGKILL came mid-write.
FREEZE_MID_WRITE = """
import json, os, runpy, sys, time
import openlt.engine.checkpoint as checkpoint
real_save = checkpoint.save_file
def save_file(tensors, filename, metadata=None):
    real_save(tensors, filename, metadata=metadata)
    if ".last.safetensors." in filename and json.loads(metadata["openlt"])["state"]["epoch"] == 1:
        with open(filename, "r+b") as fh:
            fh.truncate(os.path.getsize(filename) // 2)
        open(os.environ["OPENLT_TEST_MARKER"], "w").close()
        time.sleep(600)
checkpoint.save_file = save_file
sys.argv[0] = "openlt"
runpy.run_module("openlt", run_name="__main__", alter_sys=True)
"""


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    from images import make_image_folder  # tests/helpers, on the path through conftest

    root = tmp_path_factory.mktemp("crash")
    make_image_folder(root / "images", {"ant": 60, "bee": 40, "cat": 30, "dog": 25, "eel": 25})
    (root / "tiny.yaml").write_text("name: tiny\n")
    return root


def train_args(ws: Path, out: str) -> list[str]:
    # --no-eval: the metrics are computed in this process below (without the report figures, which cost more
    # than the training itself here)
    return ["train", str(ws / "tiny.yaml"), f"data.root={ws / 'images'}", f"out_dir={ws / out}", *TINY, "--quiet",
            "--no-eval"]


def metrics_of(run: Path, monkeypatch) -> dict:
    import openlt.engine.evaluate as evaluate
    from openlt.engine.run import open_run

    monkeypatch.setattr(evaluate, "write_reports", lambda *args, **kwargs: None)
    evaluate.evaluate_run(open_run(run), "best", quiet=True)
    return json.loads((run / "metrics.json").read_text())


def start(args: list[str], code: str | None = None, **env) -> subprocess.Popen:
    head = [sys.executable, "-c", code] if code else [sys.executable, "-m", "openlt"]
    return subprocess.Popen(head + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**ENV, **env})


def finish(proc: subprocess.Popen) -> str:
    try:
        out, err = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"openlt did not finish within {TIMEOUT}s:\n{out}\n{err}")
    assert proc.returncode == 0, f"exit {proc.returncode}\n{out}\n{err}"
    return out


def wait_for(condition, proc: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"openlt exited ({proc.returncode}) before {what}:\n{out}\n{err}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.01)


def kill(proc: subprocess.Popen) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL


def only_run(folder: Path) -> Path:
    runs = [p for p in folder.iterdir() if p.is_dir()]
    assert len(runs) == 1, runs
    return runs[0]


def logged_epochs(run: Path) -> list[int]:
    path = run / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line)["epoch"] for line in path.read_text().splitlines() if line.strip()]


def temp_files(run: Path) -> list[Path]:
    return sorted(run.rglob("*.tmp"))


def assert_same_tensors(a: Path, b: Path) -> None:
    ta, tb = load_file(a), load_file(b)
    assert ta.keys() == tb.keys()
    for key in ta:
        assert torch.equal(ta[key], tb[key]), f"{key} differs between {a} and {b}"


@pytest.fixture(scope="module")
def reference(workspace):
    """The uninterrupted run, trained in the background while the first test kills its own run."""
    proc = start(train_args(workspace, "reference"))
    done: dict[str, Path] = {}

    def result() -> Path:
        if "run" not in done:
            finish(proc)
            done["run"] = only_run(workspace / "reference")
        return done["run"]

    yield result
    if proc.poll() is None:
        proc.kill()
        proc.communicate()


def test_sigkill_mid_epoch_then_resume_matches_an_uninterrupted_run(workspace, reference, monkeypatch):
    proc = start(train_args(workspace, "killed"))
    folder = workspace / "killed"
    # The first epoch is over once its line is in metrics.jsonl (written after both checkpoints); the process
    # goes straight on to the next epoch, and is killed there.
    wait_for(lambda: folder.is_dir() and any(logged_epochs(r) for r in folder.iterdir()), proc, "the first epoch")
    kill(proc)
    run = only_run(folder)
    done = logged_epochs(run)
    assert 1 <= len(done) < EPOCHS, f"the kill came too late to interrupt training: {done}"
    state = read_checkpoint(run / "checkpoints" / "last.safetensors")[1]["state"]
    assert state["epoch"] + 1 == len(done)  # the checkpoint and the log agree on the last finished epoch
    assert not (run / "metrics.json").exists()

    out = finish(start(["train", "--resume", str(run), "--quiet", "--no-eval"]))
    assert f"resuming {run}" in out
    ref = reference()
    assert logged_epochs(run) == logged_epochs(ref) == list(range(1, EPOCHS + 1))
    got, want = metrics_of(run, monkeypatch), metrics_of(ref, monkeypatch)
    assert got["closed"] == want["closed"] and got["open"] == want["open"]
    assert got["per_class_accuracy"] == want["per_class_accuracy"]
    for name in ("last", "best"):
        assert_same_tensors(run / "checkpoints" / f"{name}.safetensors", ref / "checkpoints" / f"{name}.safetensors")
    assert not temp_files(run)


def test_sigkill_during_a_checkpoint_write_keeps_the_previous_checkpoint(workspace, reference):
    marker = workspace / "frozen-mid-write"
    proc = start(train_args(workspace, "mid-write"), FREEZE_MID_WRITE,
                 OPENLT_TEST_MARKER=str(marker))
    wait_for(marker.exists, proc, "the checkpoint write of epoch 2")
    kill(proc)
    run = only_run(workspace / "mid-write")
    checkpoints = run / "checkpoints"
    leftovers = [p.name for p in temp_files(run)]
    assert len(leftovers) == 1 and leftovers[0].startswith(".last.safetensors."), leftovers  # the killed write
    # The real name still holds epoch 1's complete checkpoint: the half-written bytes never replaced it.
    tensors, meta = read_checkpoint(checkpoints / "last.safetensors")
    assert meta["state"]["epoch"] == 0 and "optimizer" in meta
    assert logged_epochs(run) == [1]

    out = finish(start(["train", "--resume", str(run), "--quiet", "--no-eval"]))
    assert "resuming" in out
    assert not temp_files(run), "the killed write's temporary file should be cleaned up on resume"
    assert logged_epochs(run) == list(range(1, EPOCHS + 1))
    assert_same_tensors(checkpoints / "last.safetensors", reference() / "checkpoints" / "last.safetensors")


def test_a_failed_write_removes_its_temporary_file_and_keeps_the_old_file(tmp_path):
    path = tmp_path / "state.json"
    path.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(path) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert path.read_text() == "old" and list(tmp_path.iterdir()) == [path]


def test_stale_temporary_files_are_removed_and_nothing_else(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    stale = [tmp_path / "checkpoints" / ".last.safetensors.k3j2h1.tmp", tmp_path / ".metrics.json.a1b2c3.tmp"]
    kept = [tmp_path / "checkpoints" / "last.safetensors", tmp_path / "notes.tmp", tmp_path / "config.yaml"]
    for p in stale + kept:
        p.write_text("x")
    assert sorted(remove_stale_temp(tmp_path)) == sorted(stale)
    assert all(p.exists() for p in kept) and not any(p.exists() for p in stale)


def test_corrupt_checkpoint_through_a_real_openlt_process(workspace, reference, tmp_path):
    """`openlt eval RUN` on a run whose best checkpoint was cut short: exit 2, one line naming the file."""
    run = tmp_path / "run"
    shutil.copytree(reference(), run)
    best = run / "checkpoints" / "best.safetensors"
    best.write_bytes(best.read_bytes()[:1000])
    before = sorted(p.name for p in run.iterdir())
    proc = subprocess.run([sys.executable, "-m", "openlt", "eval", str(run), "--quiet"], capture_output=True,
                          text=True, env=ENV, timeout=TIMEOUT)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("openlt eval: error: checkpoint "), proc.stderr
    assert str(best) in lines[0] and "corrupt" in lines[0]
    assert sorted(p.name for p in run.iterdir()) == before
