"""SIGTERM / Ctrl-C while a process waits for its peers (trial 8 D7), the watchdog of `dist_signals`: while
rank 0 waits in Python for a rank that never comes to the join, the main thread's own handler ends it; while a
rank is blocked in gloo's C++ barrier, where Python's handler cannot run, the watchdog thread ends it with the
usual line. Real processes: 2 of them at most, every wait bounded."""

from __future__ import annotations

import signal
import socket
import subprocess
import time

import pytest

from dist_env import ROOT, TRAIN, WITH_CTRL_C, clean_env as _env, free_port as _free_port, probe_pair  # tests/helpers
import forked_python  # tests/helpers


def _wait_for(predicate, timeout: float) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.1)


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


@pytest.mark.parametrize("signum,code,how", [(signal.SIGTERM, 143, "SIGTERM"), (signal.SIGINT, 130, "Ctrl-C")])
def test_a_signal_while_waiting_for_peers_ends_train(tmp_path, signum, code, how):
    """D7: SIGTERM and Ctrl-C while rank 0 waits for a rank that never comes (were ignored: only SIGKILL ended it)."""
    port = _free_port()
    proc = forked_python.Popen([*WITH_CTRL_C, "-m", "openlt", *TRAIN, f"out_dir={tmp_path / 'runs'}"], cwd=ROOT,
                               env=_env(RANK=0, WORLD_SIZE=2, LOCAL_RANK=0, MASTER_ADDR="127.0.0.1", MASTER_PORT=port),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(lambda: _listening(port) or proc.poll() is not None, 25)
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=10)
    finally:
        proc.kill()
    assert proc.returncode == code, err
    assert err.strip().splitlines()[-1] == f"openlt train: interrupted ({how})"


@pytest.mark.parametrize("signum,code,how", [(signal.SIGTERM, 143, "SIGTERM"), (signal.SIGINT, 130, "Ctrl-C")])
def test_a_signal_during_a_collective_blocked_in_cpp_ends_the_process(signum, code, how):
    """Rank 1 blocked in gloo's barrier (C++: Python's handler cannot run) while rank 0 never comes to it: the
    watchdog ends it with the usual line within about a second (was: signal ignored until the 30-min timeout)."""
    procs = probe_pair("stuck")
    try:
        assert procs[1].stdout.readline().strip() == "waiting"
        time.sleep(1.0)  # inside the barrier
        sent = time.monotonic()
        procs[1].send_signal(signum)
        _, err = procs[1].communicate(timeout=15)
        took = time.monotonic() - sent
    finally:
        for p in procs:
            p.kill()
            p.communicate(timeout=10)
    assert procs[1].returncode == code, err
    assert err.strip().splitlines()[-1].endswith(f": interrupted ({how}) while waiting for the other processes")
    assert took < 8
