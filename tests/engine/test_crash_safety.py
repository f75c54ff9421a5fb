"""Crash-safe runs: a training process killed with SIGKILL (in epoch 1 before any checkpoint, mid-epoch, in the
middle of writing a checkpoint, between the checkpoint and its metrics.jsonl line) or stopped with SIGTERM resumes
with `openlt train --resume RUN` to exactly the result of an uninterrupted run (CPU, workers=0: bit-exact; its
metrics.jsonl but for time_s and its metrics.json line for line), a killed write never leaves a half-written
checkpoint behind the real name, and a second `--resume` of a run that is training is refused.

Every run is a real `python -m openlt train` process; the reference run and the runs stopped at a hook start
together at the module's start (each waits there for its test), so that their start-ups overlap on two busy cores;
the refusals, which train nothing, are openlt's main in this process."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from openlt_processes import ENV, TIMEOUT, finished, hooked_openlt, tiny_on_cpu, wait_for  # tests/helpers
from tiny_run import cli  # tests/helpers
from openlt.engine.checkpoint import read_checkpoint
from openlt.io import atomic_path, remove_stale_temp
import forked_python  # tests/helpers

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")

EPOCHS = 3
TINY = tiny_on_cpu("resnet20", EPOCHS)

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
        time.sleep(3600)  # until killed: started with the module, its test may come minutes later
checkpoint.save_file = save_file
sys.argv[0] = "openlt"
runpy.run_module("openlt", run_name="__main__", alter_sys=True)
"""

# `python -m openlt` stopped at a chosen point (OPENLT_TEST_MODE), OPENLT_TEST_MARKER created when it gets there:
#   freeze-in-epoch-N       after step 3 of epoch N, wait (for the signal the test sends)
#   kill-before-log-line-N  SIGKILL itself after epoch N's checkpoints, before its metrics.jsonl line
#   wait-holding-the-lock   wait inside the run's lock (before reading the split files) until MARKER.go exists
HOOKED = hooked_openlt("""
import openlt.engine.tracking as tracking

def stop(kill=False):
    open(marker, "w").close()
    if kill:
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(3600)  # until the test's signal: started with the module, its test may come minutes later

def after_step(epoch, step):
    if mode == f"freeze-in-epoch-{epoch}" and step == 3:
        stop()

real_append, real_prepare = tracking.append_jsonl, train.prepare_data

def append_jsonl(path, record):
    if mode == f"kill-before-log-line-{record['epoch']}":
        stop(kill=True)
    return real_append(path, record)

def prepare_data(*args, **kwargs):
    if mode == "wait-holding-the-lock":
        open(marker, "w").close()
        while not os.path.exists(marker + ".go"):
            time.sleep(0.02)
    return real_prepare(*args, **kwargs)

train.prepare_data, tracking.append_jsonl = prepare_data, append_jsonl
""")


def train_args(ws: Path, out: str) -> list[str]:
    # --no-eval: the metrics are computed in this process below (without the report figures, which cost more
    # than the training itself here)
    return ["train", str(ws / "tiny.yaml"), f"data.root={ws / 'images'}", f"out_dir={ws / out}", *TINY, "--quiet",
            "--no-eval"]


def metrics_of(run: Path, monkeypatch) -> dict:
    import openlt.engine.evaluate as evaluate
    from openlt.engine.run import open_run

    if not (run / "metrics.json").is_file():  # evaluated once (the reference serves every test)
        monkeypatch.setattr(evaluate, "write_reports", lambda *args, **kwargs: None)
        evaluate.evaluate_run(open_run(run), "best", quiet=True)
    return json.loads((run / "metrics.json").read_text())


def assert_same_as_uninterrupted(run: Path, ref: Path, monkeypatch) -> None:
    """metrics.jsonl line for line but for time_s, metrics.json line for line (its run path aside), and both
    checkpoints tensor for tensor."""
    def log_lines(path: Path) -> list[dict]:
        return [{k: v for k, v in json.loads(line).items() if k != "time_s"}
                for line in (path / "metrics.jsonl").read_text().splitlines()]

    assert log_lines(run) == log_lines(ref) and len(log_lines(ref)) == EPOCHS
    metrics_of(run, monkeypatch), metrics_of(ref, monkeypatch)
    got, want = ((p / "metrics.json").read_text().replace(str(p), "RUN").splitlines() for p in (run, ref))
    assert got == want
    for name in ("last", "best"):
        assert_same_tensors(run / "checkpoints" / f"{name}.safetensors", ref / "checkpoints" / f"{name}.safetensors")
    assert not temp_files(run)


def start(args: list[str], code: str | None = None, **env) -> subprocess.Popen:
    head = [sys.executable, "-c", code] if code else [sys.executable, "-m", "openlt"]
    return forked_python.Popen(head + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**ENV, **env})


def finish(proc: subprocess.Popen, code: int = 0) -> str:
    """stdout of `proc` once it exits with `code` (stderr instead when the code is not 0)."""
    out, err = finished(proc, code)
    return out if code == 0 else err


def hooked(args: list[str], mode: str, marker: Path) -> subprocess.Popen:
    return start(args, HOOKED, OPENLT_TEST_MODE=mode, OPENLT_TEST_MARKER=str(marker))


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


# The interrupted runs (their out folders under the workspace) and where each stops (HOOKED's mode; None:
# FREEZE_MID_WRITE).
STOPPED = {"killed-in-epoch-1": "freeze-in-epoch-1", "terminated": "freeze-in-epoch-2",
           "between-writes": "kill-before-log-line-2", "mid-write": None}


@pytest.fixture(scope="module")
def started(workspace):
    """{out folder: (process, its marker)} of the module's trainings that need no test to start them, all started
    at once (their start-ups overlap): the uninterrupted reference run and the runs of STOPPED, each of which
    waits where it stops (or kills itself there) until its test comes; those left are killed at the end."""
    procs = {"reference": (start(train_args(workspace, "reference")), None)}
    for name, mode in STOPPED.items():
        marker = workspace / f"{name}.marker"
        procs[name] = (hooked(train_args(workspace, name), mode, marker) if mode else
                       start(train_args(workspace, name), FREEZE_MID_WRITE, OPENLT_TEST_MARKER=str(marker)), marker)
    yield procs
    for proc, _ in procs.values():
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


@pytest.fixture(scope="module")
def reference(workspace, started):
    """The uninterrupted run, trained in the background while the first test kills its own run."""
    proc, _ = started["reference"]
    done: dict[str, Path] = {}

    def result() -> Path:
        if "run" not in done:
            finish(proc)
            done["run"] = only_run(workspace / "reference")
        return done["run"]

    return result


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
    assert_same_as_uninterrupted(run, ref, monkeypatch)


def test_sigkill_in_epoch_1_before_any_checkpoint_resumes_from_the_start(workspace, started, reference,
                                                                         monkeypatch):
    """The run directory appears complete (config.yaml, split_manifest.json, split files) before training starts,
    so a run killed before its first checkpoint is resumable, from epoch 1, not "checkpoint not found"."""
    proc, marker = started["killed-in-epoch-1"]
    wait_for(marker.exists, proc, "step 3 of epoch 1")
    kill(proc)
    run = only_run(workspace / "killed-in-epoch-1")  # one directory, its final name: nothing staged is left
    assert not run.name.startswith(".")
    for name in ("config.yaml", "split_manifest.json", "splits/train.txt", "splits/manifest.json", "train.lock"):
        assert (run / name).is_file(), name
    assert not (run / "checkpoints" / "last.safetensors").exists() and logged_epochs(run) == []
    manifest = json.loads((run / "split_manifest.json").read_text())
    assert all(Path(info["file"]).parent == run / "splits" for info in manifest["files"].values())

    out = finish(start(["train", "--resume", str(run), "--quiet", "--no-eval"]))
    assert f"resuming {run} from epoch 1 (no epoch had finished)" in out
    assert_same_as_uninterrupted(run, reference(), monkeypatch)


def test_sigterm_mid_epoch_keeps_the_checkpoint_names_the_resume_and_a_second_resume_is_refused(
        workspace, started, reference, monkeypatch, capsys):
    """SIGTERM (a scheduler, `docker stop`) ends training as Ctrl-C does: one line naming the run, the checkpoint
    it keeps and the command to continue, exit 143. A torn last metrics.jsonl line (a crash while it was
    written) is dropped with a note. While one `--resume` trains the run, a second is refused, naming the first
    one's PID; the first then ends exactly as an uninterrupted run."""
    proc, marker = started["terminated"]
    wait_for(marker.exists, proc, "step 3 of epoch 2")
    os.kill(proc.pid, signal.SIGTERM)
    err = finish(proc, code=128 + signal.SIGTERM).strip().splitlines()
    run = only_run(workspace / "terminated")
    last = run / "checkpoints" / "last.safetensors"
    assert err == [f"openlt train: interrupted (SIGTERM): the run {run} keeps the checkpoint of epoch 1 ({last}); "
                   f"continue with `openlt train --resume {run}`"]
    assert read_checkpoint(last)[1]["state"]["epoch"] == 0 and logged_epochs(run) == [1] and not temp_files(run)
    with open(run / "metrics.jsonl", "a") as fh:
        fh.write('{"epoch": 2, "train_loss": 0.8')  # torn: no end, no newline

    first = hooked(["train", "--resume", str(run), "--quiet", "--no-eval"], "wait-holding-the-lock", marker)
    marker.unlink()
    wait_for(marker.exists, first, "the first --resume to hold the lock")
    code, _, err = cli(capsys, "train", "--resume", run, "--quiet", "--no-eval")  # in this process: no startup
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith(f"openlt train: error: {run} is being trained by process {first.pid} on ")
    Path(f"{marker}.go").touch()
    out = finish(first)
    assert f"{run / 'metrics.jsonl'}, line 2: dropped a torn last line" in out
    assert f"resuming {run} after epoch 1/{EPOCHS}" in out
    assert_same_as_uninterrupted(run, reference(), monkeypatch)
    from openlt.engine.run import Run

    with Run(run).lock():  # released when the process ended
        pass


def test_a_kill_between_the_checkpoint_and_its_log_line_loses_no_line(workspace, started, reference, monkeypatch):
    """Epoch 2's checkpoint is written, the process dies before metrics.jsonl gets epoch 2's line: `--resume`
    writes the line from the checkpoint (which keeps the epoch's record) and goes on with epoch 3."""
    proc, marker = started["between-writes"]
    proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == -signal.SIGKILL and marker.exists()
    run = only_run(workspace / "between-writes")
    state = read_checkpoint(run / "checkpoints" / "last.safetensors")[1]["state"]
    assert state["epoch"] == 1 and state["record"]["epoch"] == 2 and logged_epochs(run) == [1]

    out = finish(start(["train", "--resume", str(run), "--quiet", "--no-eval"]))
    assert f"note: epoch 2's line of {run / 'metrics.jsonl'} restored from" in out
    assert f"resuming {run} after epoch 2/{EPOCHS}" in out
    assert_same_as_uninterrupted(run, reference(), monkeypatch)


def test_sigkill_during_a_checkpoint_write_keeps_the_previous_checkpoint(workspace, started, reference):
    proc, marker = started["mid-write"]
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
    proc = forked_python.run([sys.executable, "-m", "openlt", "eval", str(run), "--quiet"], capture_output=True,
                             text=True, env=ENV, timeout=TIMEOUT)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("openlt eval: error: checkpoint "), proc.stderr
    assert str(best) in lines[0] and "corrupt" in lines[0]
    assert sorted(p.name for p in run.iterdir()) == before


# ---------------------------------------------------------------- checkpoints: valid safetensors, bad openlt metadata
def _write(path: Path, tensors: dict, meta) -> Path:
    from safetensors.torch import save_file

    save_file(tensors, str(path), metadata=None if meta is None else {"openlt": meta if isinstance(meta, str) else
                                                                      json.dumps(meta)})
    return path


GOOD_META = {"format": "openlt-checkpoint/1", "state": {"epoch": 1, "best_val": 0.5},
             "optimizer": {"param_groups": [{"params": [0], "lr": 0.1}], "scalars": {}}}
WEIGHTS = {"model.w": torch.zeros(2), "optim.0.momentum_buffer": torch.zeros(2)}


def _changed(**parts) -> dict:
    meta = json.loads(json.dumps(GOOD_META))
    for dotted, value in parts.items():
        *path, key = dotted.split("__")
        target = meta
        for p in path:
            target = target[p]
        target[key] = value
    return meta


@pytest.mark.parametrize("meta, found", [
    (None, "not written by openlt"),
    ("{not json", "not written by openlt"),
    ({"format": "other/1", "state": {}}, "not written by openlt"),
    ({"format": "openlt-checkpoint/1", "state": []}, "not written by openlt"),
    (_changed(state__epoch="3"), "state.epoch must be an integer >= 0, got '3'"),
    (_changed(state__epoch=-1), "state.epoch must be an integer >= 0, got -1"),
    (_changed(state__epoch=1.5), "state.epoch must be an integer >= 0"),
    (_changed(state__best_val="high"), "state.best_val must be null or a number"),
    (_changed(state__grad_scaler=[1]), "state.grad_scaler must be an object"),
    (_changed(state__record=[1]), "state.record must be an object"),
    (_changed(state__record={"epoch": 5}), "state.record is of epoch 5, not 2"),
    (_changed(optimizer=[]), "optimizer must hold param_groups"),
    (_changed(optimizer__param_groups={"lr": 1}), "optimizer must hold param_groups"),
    (_changed(optimizer__param_groups=[{"lr": 1}]), "optimizer must hold param_groups"),
    (_changed(optimizer__scalars=[]), "optimizer must hold param_groups"),
    (_changed(optimizer__scalars={"x.step": 1}), "unexpected entry 'optim.x.step'"),
])
def test_a_checkpoint_with_malformed_openlt_metadata_is_refused_naming_it(tmp_path, meta, found):
    from openlt.engine.checkpoint import checkpoint_state
    from openlt.errors import RunDirError

    path = _write(tmp_path / "last.safetensors", WEIGHTS, meta)
    for read in (read_checkpoint, checkpoint_state):
        with pytest.raises(RunDirError, match=re.escape(found)) as err:
            read(path)
        assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_a_stray_tensor_or_optimizer_state_of_another_shape_is_refused_naming_the_checkpoint(tmp_path):
    from torch import nn

    from openlt.engine.checkpoint import load_checkpoint
    from openlt.errors import RunDirError

    stray = _write(tmp_path / "stray.safetensors", {**WEIGHTS, "extra": torch.zeros(1)}, GOOD_META)
    with pytest.raises(RunDirError, match=f"{re.escape(str(stray))} has malformed openlt metadata: unexpected "
                                          f"entry 'extra'"):
        read_checkpoint(stray)
    model = nn.Linear(2, 1, bias=False)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    two_groups = _changed(optimizer__param_groups=[{"params": [0], "lr": 0.1}, {"params": [1], "lr": 0.1}])
    path = _write(tmp_path / "groups.safetensors", {"model.weight": torch.zeros(1, 2)}, two_groups)
    with pytest.raises(RunDirError, match=f"{re.escape(str(path))} has optimizer state that does not fit"):
        load_checkpoint(path, model, optimizer)


def test_resume_with_a_malformed_checkpoint_or_log_line_is_one_line_and_rewrites_nothing(workspace, reference,
                                                                                        tmp_path, capsys):
    """Through the CLI (openlt's main, in this process) on copies of the finished reference run: exit 2, one line
    naming the file (and the line of metrics.jsonl), every file as it was."""
    cases = {
        "checkpoint": (lambda run: _write(run / "checkpoints" / "last.safetensors", WEIGHTS,
                                          _changed(state__epoch="2")),
                       "last.safetensors has malformed openlt metadata: state.epoch"),
        "log-line": (lambda run: (run / "metrics.jsonl").write_text(
            '{"epoch": 1}\n{"epoch": 2, "trai\n{"epoch": 3}\n'), "metrics.jsonl, line 2: not a line of the per-epoch log"),
    }
    for name, (damage, found) in cases.items():
        run = tmp_path / name
        shutil.copytree(reference(), run)
        damage(run)
        before = files_of(run)
        code, _, err = cli(capsys, "train", "--resume", run, "--quiet", "--no-eval")
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1, err
        assert lines[0].startswith("openlt train: error: ") and found in lines[0], lines[0]
        assert str(run) in lines[0]
        assert files_of(run) == before


def files_of(run: Path) -> dict[Path, bytes]:
    """Every file's bytes but train.lock's (the lock: the PID of the process that last took it)."""
    return {p: p.read_bytes() for p in run.rglob("*") if p.is_file() and p.name != "train.lock"}
