"""Environments for tests that launch processes of one torchrun-style job by hand (RANK / WORLD_SIZE /
MASTER_ADDR ...): a free local port, and os.environ without any distributed variable of the test process."""

from __future__ import annotations

import os
import socket

from openlt.engine import distributed

VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
        distributed.INIT_TIMEOUT_ENV, distributed.TIMEOUT_ENV, "TORCHELASTIC_USE_AGENT_STORE")


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
