"""Trial 13 D1: a process that takes the run's lock flocks train.lock first and writes its record ("PID on HOST" /
"evaluating" or "training") right after. A reader in between met an empty file (or a killed holder's record, not
yet rewritten) and acted on it: `check_not_training` (predict, export, load_run, identify, features) refused a run
being *evaluated* as "being trained by process (unknown)", and a competing eval / train was told "(unknown)" and
"trained". A record not whole yet (`_record`) is now read again for a bounded moment."""

import os
import socket
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import openlt.engine.run as run_module
from openlt.engine.run import EVALUATING, TRAINING, Run, _record
from openlt.errors import RunDirError

HOST = socket.gethostname()


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


# ------------------------------------------------------------------ the record


# PID stands for this process's pid, filled in by the test: a pid in the parameter would make the test ids differ
# between pytest-xdist workers (which then refuse to run)
@pytest.mark.parametrize("template", ["", "\n", "PID on HOST", "PID on HOST\n", "PID on HOST\nevalu",
                                      "PID on HOST\nevaluating", "PID on HOST\nsleeping\n", "x on HOST\ntraining\n",
                                      "PID\ntraining\n", "PID on HOST\ntraining\nmore\n"])
def test_a_record_not_whole_is_none(template):
    assert _record(template.replace("PID", str(os.getpid())).replace("HOST", HOST)) is None


def test_a_whole_record():
    assert _record(f"{os.getpid()} on {HOST}\nevaluating\n") == (f"{os.getpid()} on {HOST}", EVALUATING)
    assert _record(f"{os.getpid()} on {HOST}\ntraining\n") == (f"{os.getpid()} on {HOST}", TRAINING)
    assert _record("4242 on elsewhere\nevaluating\n") == ("4242 on elsewhere", EVALUATING)  # another host: as read


def test_a_killed_holders_record_on_this_host_is_not_its_holders():
    pid = _dead_pid()
    assert _record(f"{pid} on {HOST}\nevaluating\n") is None
    assert _record(f"{pid} on elsewhere\nevaluating\n") == (f"{pid} on elsewhere", EVALUATING)


# ------------------------------------------------------------------ a holder writing its record late


def _held(run: Run, before: str, after: str, delay: float = 0.2):
    """train.lock holding `before`, flocked (another open file: it conflicts as another process's would), then
    rewritten to `after` by a thread `delay` seconds later, as a taker truncates and writes its record."""
    import fcntl

    run.lock_file.write_text(before)
    fh = open(run.lock_file, "a+", encoding="utf-8")
    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def write():
        time.sleep(delay)
        fh.seek(0)
        fh.truncate()
        fh.write(after)
        fh.flush()

    writer = threading.Thread(target=write)
    writer.start()
    return fh, writer


@pytest.fixture
def run(tmp_path):
    run = Run(tmp_path / "run")
    run.path.mkdir()
    return run


def test_an_evaluation_starting_is_not_taken_for_a_training(run):
    fh, writer = _held(run, "", "4242 on elsewhere\nevaluating\n")
    try:
        start = time.monotonic()
        run.check_not_training("label images with")  # was: "being trained by process (unknown)"
        assert time.monotonic() - start < run_module.TAKING_S
        with pytest.raises(RunDirError) as refused:
            with run.eval_lock():
                pass
        assert "is being evaluated by process 4242 on elsewhere" in str(refused.value)
    finally:
        writer.join()
        fh.close()


def test_a_competing_eval_is_told_who_evaluates_not_unknown(run):
    fh, writer = _held(run, "", "4242 on elsewhere\nevaluating\n")
    try:
        with pytest.raises(RunDirError) as refused:
            with run.eval_lock():
                pass
        assert f"{run.path} is being evaluated by process 4242 on elsewhere (`openlt eval`" in str(refused.value)
    finally:
        writer.join()
        fh.close()


def test_a_half_written_record_is_read_again(run):
    fh, writer = _held(run, "4242 on elsew", "4242 on elsewhere\nevaluating\n")  # (as if written in two parts)
    try:
        run.check_not_training("label images with")  # was: "being trained by process 4242 on elsew"
    finally:
        writer.join()
        fh.close()


def test_a_training_taking_over_a_killed_evaluations_file_is_not_taken_for_it(run):
    """The mirror case: a killed eval's file ("evaluating"), flocked by a train that has not truncated it yet: a
    predict reading it then was let in while training started."""
    fh, writer = _held(run, f"{_dead_pid()} on {HOST}\nevaluating\n", "4242 on elsewhere\ntraining\n")
    try:
        with pytest.raises(RunDirError, match=r"is being trained by process 4242 on elsewhere; label images with"):
            run.check_not_training("label images with")
    finally:
        writer.join()
        fh.close()


def test_a_record_that_stays_empty_is_waited_for_a_bounded_time(run, monkeypatch):
    monkeypatch.setattr(run_module, "TAKING_S", 0.1)
    fh, writer = _held(run, "", "4242 on elsewhere\nevaluating\n", delay=1.0)
    try:
        start = time.monotonic()
        with pytest.raises(RunDirError, match=r"is being trained by process \(unknown\)"):  # as before: held
            run.check_not_training("label images with")
        with pytest.raises(RunDirError, match=r"is being trained by process \(unknown\)"):
            with run.eval_lock():
                pass
        assert time.monotonic() - start < 0.8
    finally:
        writer.join()
        fh.close()


# ------------------------------------------------------------------ two processes (the tester's stress, bounded)

LOCKER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from openlt.engine.run import Run
    from openlt.errors import RunDirError
    run, end, refused = Run(Path(sys.argv[1])), time.monotonic() + float(sys.argv[2]), []
    while time.monotonic() < end:
        try:
            with run.eval_lock():
                time.sleep(0.0005)
        except RunDirError as exc:
            refused.append(str(exc))
        time.sleep(0.0005)
    print(len(refused), refused[:1])
""")

CHECKER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from openlt.engine.run import Run
    from openlt.errors import RunDirError
    run, end, refused, n = Run(Path(sys.argv[1])), time.monotonic() + float(sys.argv[2]), [], 0
    while time.monotonic() < end:
        n += 1
        try:
            run.check_not_training("label images with")
        except RunDirError as exc:
            refused.append(str(exc))
    print(len(refused), n, refused[:1])
""")


def test_two_evaluators_and_a_checker_never_see_a_training(run):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", code, str(run.path), "2.0"], stdout=subprocess.PIPE, text=True,
                              env=env) for code in (LOCKER, LOCKER, CHECKER)]
    outs = [p.communicate(timeout=60)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    for out in outs[:2]:  # refused by the other evaluator only, named
        assert "(unknown)" not in out and "trained" not in out, out
    assert outs[2].split()[0] == "0", outs[2]  # no refusal: only evaluations held the lock
    assert int(outs[2].split()[1]) > 100, outs[2]  # (the checker did check)
    assert not run.lock_file.exists()


def test_a_held_lock_file_of_bytes_not_utf8_is_a_refusal_not_an_internal_error(run, monkeypatch):
    """A held train.lock whose bytes are not UTF-8 (a foreign or damaged file): a competing eval is refused like
    any held run (was: UnicodeDecodeError, an internal error)."""
    import fcntl

    monkeypatch.setattr(run_module, "TAKING_S", 0.1)
    run.lock_file.write_bytes(b"\xff\xfe\x00garbage\n")
    fh = open(run.lock_file, "rb")
    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    try:
        with pytest.raises(RunDirError, match=r"is being trained by process"):
            with run.eval_lock():
                pass
    finally:
        fh.close()
