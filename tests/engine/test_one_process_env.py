"""The torchrun refusal of a one-process command (cli._one_process_refusal) reads RANK / WORLD_SIZE through
dist_env.check_env, as train, eval and features do: a valid torchrun environment is refused by rank 0 alone (the
others silent, tests/engine/test_distributed_commands.py), a malformed one is this process's own one-line error,
and without the variables (or WORLD_SIZE=1) the command runs."""

from __future__ import annotations

import pytest

from openlt.cli import main

TORCHRUN = {"LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29999"}


@pytest.fixture
def env(monkeypatch):
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
                "TORCHELASTIC_RUN_ID"):
        monkeypatch.delenv(key, raising=False)
    return monkeypatch


@pytest.mark.parametrize("values, says", [
    ({"RANK": "2", "WORLD_SIZE": "2"}, "environment variable RANK=2 is not a rank of WORLD_SIZE=2 (ranks are 0 .. 1)"),
    ({"RANK": "one", "WORLD_SIZE": "2"}, "environment variable RANK must be an integer, got 'one'"),
    ({"WORLD_SIZE": "2"}, "environment variable WORLD_SIZE=2 is set but RANK is not"),
])
def test_a_malformed_torchrun_environment_is_one_line_of_the_process_whose_it_is(env, capsys, tmp_path, values,
                                                                                 says):
    env.chdir(tmp_path)
    for key, value in {**TORCHRUN, **values}.items():
        env.setenv(key, value)
    assert main(["configs"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith(f"openlt configs: error: {says}") and err.count("\n") == 1, err


@pytest.mark.parametrize("values", [{}, {"WORLD_SIZE": "1"}, {"WORLD_SIZE": "1", "RANK": "0"}])
def test_one_process_runs(env, capsys, values):
    for key, value in values.items():
        env.setenv(key, value)
    assert main(["configs"]) == 0
    assert "fmnist_lt/plain" in capsys.readouterr().out
