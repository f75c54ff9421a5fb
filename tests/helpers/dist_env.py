"""Environments for tests that launch processes of one torchrun-style job by hand (RANK / WORLD_SIZE /
MASTER_ADDR ...): a free local port, and os.environ without any distributed variable of the test process; and
the launchers the distributed tests share (`run_cli`, `probe_pair`, `finish`)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from openlt.engine.dist_env import INIT_TIMEOUT_ENV, TIMEOUT_ENV
import forked_python  # tests/helpers

VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
        INIT_TIMEOUT_ENV, TIMEOUT_ENV, "TORCHELASTIC_USE_AGENT_STORE")


def free_port() -> int:
    """A TCP port on 127.0.0.1 free at the time of asking (the job's MASTER_PORT)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def clean_env(**values) -> dict[str, str]:
    """os.environ without :data:`VARS`, one thread, no TensorBoard, plus `values` (as text)."""
    env = {k: v for k, v in os.environ.items() if k not in VARS}
    env.update({"OMP_NUM_THREADS": "1", "OPENLT_TENSORBOARD": "0"})
    env.update({k: str(v) for k, v in values.items()})
    return env


ROOT = Path(__file__).parents[2]
PROBE = Path(__file__).parent / "dist_probe.py"
TRAIN = ["train", "fmnist_lt/plain", "train.epochs=1", "train.warmup_epochs=0", "train.device=cpu", "data.workers=0"]


# A suite started as a background job of a non-interactive shell (`make test &`, `nohup sh -c 'make test' &`) runs
# with SIGINT ignored, and every child inherits that: Python then installs no KeyboardInterrupt handler and openlt
# (rightly, as shells expect of `cmd &`) never sees a Ctrl-C. Tests that send SIGINT start their processes through
# this prefix (forked_python.WITH_CTRL_C, which knows it), which restores the default disposition and execs the real
# command (exec keeps SIG_DFL; preexec_fn is not safe with the threads of an xdist worker).
WITH_CTRL_C = forked_python.WITH_CTRL_C


def run_cli(args, env, timeout=60) -> subprocess.CompletedProcess:
    """`python -m openlt ARGS` in the repository root with `env`, its output captured as text."""
    return forked_python.run([sys.executable, "-m", "openlt", *args], capture_output=True, text=True, env=env,
                             timeout=timeout, cwd=ROOT)


def probe_pair(scenario: str, **extra) -> list[subprocess.Popen]:
    """Ranks 0 and 1 of a 2-process gloo job running `dist_probe.py SCENARIO` (pipes for stdout / stderr)."""
    port = free_port()
    return [forked_python.Popen([*WITH_CTRL_C, str(PROBE), scenario], cwd=ROOT, text=True, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE,
                                env=clean_env(RANK=r, WORLD_SIZE=2, LOCAL_RANK=r, MASTER_ADDR="127.0.0.1",
                                              MASTER_PORT=port, OPENLT_DIST_INIT_TIMEOUT=20, **extra)) for r in (0, 1)]


def finish(procs, timeout: float = 25) -> list[tuple[int, str, str]]:
    """(exit code, stdout, stderr) of each process once it ends (killed after `timeout` seconds)."""
    try:
        outs = [p.communicate(timeout=timeout) for p in procs]
    finally:
        for p in procs:
            p.kill()
    return [(p.returncode, out, err) for p, (out, err) in zip(procs, outs)]
