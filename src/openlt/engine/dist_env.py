"""The distributed environment of this process: the variables torchrun sets, checked once where they enter.

`check_env` (called by `distributed.setup`) reads RANK / WORLD_SIZE / LOCAL_RANK, integers with
0 <= RANK < WORLD_SIZE, and with WORLD_SIZE > 1 MASTER_ADDR and MASTER_PORT set; a problem is one ConfigError
line naming the variable. Two variables bound the waits of `distributed`: joining the group waits at most
``OPENLT_DIST_INIT_TIMEOUT`` seconds (default 600) for every rank, collectives time out after
``OPENLT_DIST_TIMEOUT`` seconds (default 1800). Without the torchrun variables (a plain `openlt train`) the
environment is one process: rank 0 of 1.
"""

from __future__ import annotations

import math
import os
from typing import NamedTuple

from openlt.errors import ConfigError

__all__ = ["INIT_TIMEOUT_ENV", "INIT_TIMEOUT_S", "TIMEOUT_ENV", "TIMEOUT_S", "World", "check_env", "env_world"]

INIT_TIMEOUT_ENV, INIT_TIMEOUT_S = "OPENLT_DIST_INIT_TIMEOUT", 600.0  # joining: every rank must come within it
TIMEOUT_ENV, TIMEOUT_S = "OPENLT_DIST_TIMEOUT", 1800.0  # one collective (rank 0 may build splits while others wait)


class World(NamedTuple):
    """The distributed environment of this process, as checked by `check_env`."""
    rank: int
    world_size: int
    local_rank: int
    master_addr: str | None
    master_port: int | None
    init_timeout: float
    timeout: float


def _int_env(key: str, default: int | None) -> int | None:
    raw = os.environ.get(key)
    if raw is None:
        return default
    try:
        return int(raw.strip())
    except ValueError:
        raise ConfigError(f"environment variable {key} must be an integer, got {raw!r} (torchrun sets RANK, "
                          f"WORLD_SIZE and LOCAL_RANK; unset them for one process)") from None


def _seconds_env(key: str, default: float) -> float:
    raw = os.environ.get(key)
    if raw is None or not raw.strip():
        return default
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"environment variable {key} must be a number of seconds > 0, got {raw!r} "
                          f"(default {default:g})")
    return value


def check_env() -> World:
    """The torchrun variables of this process, checked once where they enter (`distributed.setup`): ConfigError,
    one line naming the variable, for a non-integer, RANK outside 0 .. WORLD_SIZE - 1, WORLD_SIZE < 1, a
    WORLD_SIZE > 1 without RANK or without MASTER_ADDR / MASTER_PORT, a LOCAL_RANK outside 0 ..
    LOCAL_WORLD_SIZE - 1, or a timeout that is not a positive number of seconds."""
    world = _int_env("WORLD_SIZE", 1)
    rank_ = _int_env("RANK", None)
    local_rank = _int_env("LOCAL_RANK", 0)
    local_world = _int_env("LOCAL_WORLD_SIZE", None)
    assert world is not None and local_rank is not None
    if world < 1:
        raise ConfigError(f"environment variable WORLD_SIZE must be at least 1, got {world}")
    if rank_ is None:
        if world > 1:
            raise ConfigError(f"environment variable WORLD_SIZE={world} is set but RANK is not: launch with "
                              f"torchrun (it sets both), or set RANK (0 .. {world - 1}) in each process")
        rank_ = 0
    if not 0 <= rank_ < world:
        raise ConfigError(f"environment variable RANK={rank_} is not a rank of WORLD_SIZE={world} (ranks are "
                          f"0 .. {world - 1})")
    if local_rank < 0 or (local_world is not None and local_rank >= local_world):
        raise ConfigError(f"environment variable LOCAL_RANK={local_rank} is not below LOCAL_WORLD_SIZE="
                          f"{local_world}" if local_world is not None and local_rank >= 0 else
                          f"environment variable LOCAL_RANK must not be negative, got {local_rank}")
    addr = port = None
    if world > 1:
        addr = (os.environ.get("MASTER_ADDR") or "").strip()
        raw_port = (os.environ.get("MASTER_PORT") or "").strip()
        for key, value in (("MASTER_ADDR", addr), ("MASTER_PORT", raw_port)):
            if not value:
                raise ConfigError(f"RANK / WORLD_SIZE are set (RANK={rank_}, WORLD_SIZE={world}) but environment "
                                  f"variable {key} is not: launch with torchrun, or set MASTER_ADDR and "
                                  f"MASTER_PORT (rank 0's address and a free port) in every process")
        try:
            port = int(raw_port)
        except ValueError:
            port = -1
        if not 1 <= port <= 65535:
            raise ConfigError(f"environment variable MASTER_PORT must be a port number 1 .. 65535, got {raw_port!r}")
    return World(rank_, world, local_rank, addr, port, _seconds_env(INIT_TIMEOUT_ENV, INIT_TIMEOUT_S),
                 _seconds_env(TIMEOUT_ENV, TIMEOUT_S))


def env_world() -> tuple[int, int, int]:
    """(rank, world size, local rank) from the variables torchrun sets (checked: `check_env`); (0, 1, 0) when
    they are absent."""
    world = check_env()
    return world.rank, world.world_size, world.local_rank
