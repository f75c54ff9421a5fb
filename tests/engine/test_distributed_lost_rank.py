"""A lost peer is named for any number of processes (issue 14): with 3 gloo processes on the CPU, the last rank
ends (os._exit, as a killed process) and each of the others, waiting in a barrier, says which rank went away (was
"another process of the job" for more than 2 processes). Real processes, a few seconds each, every wait bounded."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

from dist_env import PROBE, ROOT, clean_env, finish, free_port  # tests/helpers

from openlt.engine import distributed
import forked_python  # tests/helpers


def _job(scenario: str, world: int) -> list[subprocess.Popen]:
    port = free_port()
    return [forked_python.Popen([sys.executable, str(PROBE), scenario], cwd=ROOT, text=True, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE,
                                env=clean_env(RANK=r, WORLD_SIZE=world, LOCAL_RANK=r, MASTER_ADDR="127.0.0.1",
                                              MASTER_PORT=port, OPENLT_DIST_INIT_TIMEOUT=60, OPENLT_DIST_TIMEOUT=60))
               for r in range(world)]


def test_the_lost_rank_is_named_with_3_processes():
    results = finish(_job("die-last", 3), timeout=90)
    assert results[2][0] == 9, results
    for rank in (0, 1):
        code, out, err = results[rank]
        assert code == 0, (rank, code, err)
        line = out.strip().splitlines()[-1]
        assert line.startswith(f"PeerLost: rank {rank} of 3: rank 2 of the job "), line
        assert "GLHF" not in line and "another process" not in line, line


def test_a_peer_alive_on_this_host_is_not_named(monkeypatch):
    """Only a process that has ended is named; one that is running (this one) or unknown is not."""
    monkeypatch.setattr(distributed, "LOST_WAIT_S", 0.2)
    monkeypatch.setattr(distributed, "_PEERS", {0: ("elsewhere", 1), 1: (socket.gethostname(), os.getpid())})
    assert distributed._lost_ranks(2, 3) == "another process"
    assert distributed._lost_ranks(0, 2) == "rank 1"  # 2 processes: the other one, as before
    done = subprocess.Popen([sys.executable, "-c", "pass"])
    done.wait()  # reaped: the id is free
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])
    time.sleep(1.0)  # ended, not reaped yet: a zombie
    monkeypatch.setattr(distributed, "_PEERS", {1: (socket.gethostname(), done.pid),
                                                3: (socket.gethostname(), zombie.pid)})
    assert distributed._lost_ranks(0, 4) == "ranks 1, 3"
    zombie.wait()
