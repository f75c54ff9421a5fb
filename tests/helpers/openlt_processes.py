"""Real `python -m openlt` processes for the tests that stop, kill or race them (tests/engine/test_crash_safety.py,
test_run_lifecycle.py, test_stage2_integrity.py): one thread each, the tiny image-folder run's overrides for the
CPU, a process's end and a condition waited for within TIMEOUT, a process holding a run's lock, and the code of a
`python -m openlt` with test hooks (e.g. stopped after an optimizer step). The tests start these processes through
forked_python (forked from a server that has imported openlt and torch: ~0.1 s each, not ~6)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import forked_python  # tests/helpers

# One thread in every process: the same arithmetic in each of them (bit-exact comparison), and less contention.
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENLT_TENSORBOARD": "0",
       "PYTHONUNBUFFERED": "1"}
TIMEOUT = 240  # seconds for one process on a slow shared CPU; a healthy one takes 5-20

# The head of hooked_openlt's code: its imports, mode and marker, and train's epoch and optimizer step wrapped to
# keep `where` and call the hooks' after_step.
_HOOKED_HEAD = """
import os, runpy, signal, sys, time
import openlt.engine.train as train
mode, marker = os.environ["OPENLT_TEST_MODE"], os.environ["OPENLT_TEST_MARKER"]
where = {"epoch": 0, "step": 0}
real_epoch, real_step = train.train_one_epoch, train.optimizer_step

def train_one_epoch(*args, **kwargs):
    where.update(epoch=args[6] + 1, step=0)  # train_one_epoch's 7th argument: the 0-based epoch
    return real_epoch(*args, **kwargs)

def optimizer_step(*args, **kwargs):
    real_step(*args, **kwargs)
    where["step"] += 1
    after_step(where["epoch"], where["step"])

train.train_one_epoch, train.optimizer_step = train_one_epoch, optimizer_step
"""
_RUN_OPENLT = '\nsys.argv[0] = "openlt"\nrunpy.run_module("openlt", run_name="__main__", alter_sys=True)\n'


def hooked_openlt(hooks: str) -> str:
    """Code for `python -c CODE ARGS...` that runs `python -m openlt ARGS...` once `hooks` ran: code that sees the
    modules os, runpy, signal, sys, time and openlt.engine.train (as `train`), `mode` and `marker` (the
    environment's OPENLT_TEST_MODE and OPENLT_TEST_MARKER), and defines ``after_step(epoch, step)``, called after
    every optimizer step (`epoch` 1-based, `step` the steps taken in that epoch so far)."""
    return _HOOKED_HEAD + hooks + _RUN_OPENLT


def tiny_on_cpu(backbone: str, epochs: int) -> list[str]:
    """The overrides of a tiny image-folder run (16 px, batches of 8, eel the open class) of `backbone` for
    `epochs` epochs, on the CPU with no loader workers."""
    return ["data.dataset=image-folder", "data.image_size=16", f"model.backbone={backbone}", f"train.epochs={epochs}",
            "train.batch_size=8", "train.lr=0.05", "train.device=cpu", "data.workers=0", "eval.batch_size=64",
            "eval.many_above=30", "eval.few_below=15", "data.split.n_max=40", "data.split.n_min=8",
            "data.split.open_classes=[eel]", "data.split.val_per_class=4", "data.split.test_per_class=6",
            "data.split.order=label"]


def finished(proc: subprocess.Popen, code: int) -> tuple[str, str]:
    """(stdout, stderr) of `proc` once it exits, which must be with `code`; a test failure after TIMEOUT."""
    try:
        out, err = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"openlt did not finish within {TIMEOUT}s:\n{out}\n{err}")
    assert proc.returncode == code, f"exit {proc.returncode}\n{out}\n{err}"
    return out, err


def wait_for(condition: Callable[[], bool], proc: subprocess.Popen, what: str) -> None:
    """Wait until `condition()` holds; a test failure naming `what` when `proc` exits first or after TIMEOUT."""
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"openlt exited ({proc.returncode}) before {what}:\n{out}\n{err}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.01)


@contextmanager
def lock_holder(run_dir: Path) -> Iterator[subprocess.Popen]:
    """Another process holding the lock of the run in `run_dir` (``Run.lock``: as one training it) inside the
    block, killed at its end: the process (its pid is the one the refusals name)."""
    with _holding("import sys, time\nfrom pathlib import Path\nfrom openlt.engine.run import Run\n"
                  "with Run(Path(sys.argv[1])).lock():\n    print('locked', flush=True)\n    time.sleep(120)\n",
                  run_dir) as holder:
        yield holder


@contextmanager
def bench_lock_holder(lock: Path) -> Iterator[subprocess.Popen]:
    """Another process holding a bench's choice lock OUT_DIR/.NAME.bench.lock (as a bench choosing, training or
    evaluating NAME) inside the block, killed at its end."""
    with _holding("import fcntl, os, sys, time\nfh = open(sys.argv[1], 'a+')\nfcntl.flock(fh, fcntl.LOCK_EX)\n"
                  "fh.write(f'{os.getpid()} on testhost\\n')\nfh.flush()\nprint('locked', flush=True)\n"
                  "time.sleep(120)\n", lock) as holder:
        yield holder


@contextmanager
def _holding(code: str, path: Path) -> Iterator[subprocess.Popen]:
    """A Python process running `code` (given `path` as its argument) that prints "locked" once it holds its lock;
    killed at the block's end."""
    holder = forked_python.Popen([sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE, text=True, env=ENV)
    try:
        assert holder.stdout.readline().strip() == "locked"
        yield holder
    finally:
        holder.kill()
        holder.wait()
