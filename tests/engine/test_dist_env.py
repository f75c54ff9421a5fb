"""The distributed environment at its boundary (trial 8 D6): the torchrun variables (RANK / WORLD_SIZE /
LOCAL_RANK / MASTER_ADDR / MASTER_PORT, the timeouts) checked once by `dist_env.check_env`, with one line naming
the variable, before any process group; and `openlt train` launched with such an environment (exit 2)."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist

from openlt.engine import dist_env, distributed
from openlt.errors import ConfigError

from dist_env import TRAIN, VARS, clean_env as _env, run_cli  # tests/helpers


@pytest.mark.parametrize("values,message", [
    ({"RANK": "0", "WORLD_SIZE": "2"}, "RANK / WORLD_SIZE are set (RANK=0, WORLD_SIZE=2) but environment variable "
                                       "MASTER_ADDR is not: launch with torchrun, or set MASTER_ADDR and MASTER_PORT"),
    ({"RANK": "0", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1"}, "but environment variable MASTER_PORT is not"),
    ({"RANK": "0", "WORLD_SIZE": "2", "MASTER_ADDR": "h", "MASTER_PORT": "http"},
     "environment variable MASTER_PORT must be a port number 1 .. 65535, got 'http'"),
    ({"RANK": "0", "WORLD_SIZE": "2", "MASTER_ADDR": "h", "MASTER_PORT": "70000"}, "MASTER_PORT must be a port number"),
    ({"RANK": "2", "WORLD_SIZE": "2"}, "environment variable RANK=2 is not a rank of WORLD_SIZE=2 (ranks are 0 .. 1)"),
    ({"RANK": "1"}, "environment variable RANK=1 is not a rank of WORLD_SIZE=1 (ranks are 0 .. 0)"),
    ({"RANK": "-1", "WORLD_SIZE": "2"}, "RANK=-1 is not a rank of WORLD_SIZE=2"),
    ({"WORLD_SIZE": "0"}, "environment variable WORLD_SIZE must be at least 1, got 0"),
    ({"WORLD_SIZE": "2"}, "environment variable WORLD_SIZE=2 is set but RANK is not: launch with torchrun"),
    ({"WORLD_SIZE": "two"}, "environment variable WORLD_SIZE must be an integer, got 'two'"),
    ({"RANK": ""}, "environment variable RANK must be an integer, got ''"),
    ({"LOCAL_RANK": "-1"}, "environment variable LOCAL_RANK must not be negative, got -1"),
    ({"LOCAL_RANK": "2", "LOCAL_WORLD_SIZE": "2"}, "environment variable LOCAL_RANK=2 is not below LOCAL_WORLD_SIZE=2"),
    ({dist_env.INIT_TIMEOUT_ENV: "0"}, "environment variable OPENLT_DIST_INIT_TIMEOUT must be a number of "
                                          "seconds > 0, got '0' (default 600)"),
    ({dist_env.TIMEOUT_ENV: "soon"}, "environment variable OPENLT_DIST_TIMEOUT must be a number of seconds > 0, "
                                        "got 'soon' (default 1800)"),
])
def test_a_bad_distributed_environment_is_one_line_naming_the_variable(monkeypatch, values, message):
    for key in VARS:
        monkeypatch.delenv(key, raising=False)
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ConfigError) as info:
        dist_env.check_env()
    assert message in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(ConfigError):  # and through setup, before any process group
        distributed.setup(torch.device("cpu"))
    assert not dist.is_initialized()


def test_a_good_environment_and_its_defaults(monkeypatch):
    for key in VARS:
        monkeypatch.delenv(key, raising=False)
    assert dist_env.check_env() == (0, 1, 0, None, None, 600.0, 1800.0)
    for key, value in {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "MASTER_ADDR": "node0",
                       "MASTER_PORT": "29500", dist_env.INIT_TIMEOUT_ENV: "2.5"}.items():
        monkeypatch.setenv(key, value)
    assert dist_env.check_env() == (1, 2, 1, "node0", 29500, 2.5, 1800.0)
    assert dist_env.env_world() == (1, 2, 1)


def test_bad_torchrun_variables_are_a_config_error(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ConfigError, match="WORLD_SIZE"):
        dist_env.env_world()


def test_train_without_master_addr_is_one_line_exit_2(tmp_path):
    """D6: was `internal error: ValueError: Error initializing torch.distributed using env:// rendezvous`."""
    result = run_cli([*TRAIN, f"out_dir={tmp_path / 'runs'}"], _env(RANK=0, WORLD_SIZE=2, LOCAL_RANK=0))
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        "openlt train: error: RANK / WORLD_SIZE are set (RANK=0, WORLD_SIZE=2) but environment variable MASTER_ADDR "
        "is not: launch with torchrun, or set MASTER_ADDR and MASTER_PORT (rank 0's address and a free port) in "
        "every process"]
    assert not (tmp_path / "runs").exists()
