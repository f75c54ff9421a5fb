"""A malformed torchrun environment is the one line of dist_env.check_env for a one-process command too (cli.
_one_process_refusal): `WORLD_SIZE=` (was: the command ran, the variables ignored), RANK beyond WORLD_SIZE (was:
the process waited silently for a stop as a rank > 0 does) and WORLD_SIZE=2 without MASTER_ADDR (was: "runs in one
process", not the missing variable), before the command reads anything (here: files that do not exist)."""

from __future__ import annotations

import pytest

from openlt.cli import main

VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
             "TORCHELASTIC_RUN_ID")
COMMANDS = [["configs"], ["summary", "missing/metrics.json"], ["export", "missing-run", "missing-out"]]
CASES = [
    ({"WORLD_SIZE": "", "RANK": "0"}, "environment variable WORLD_SIZE must be an integer, got ''"),
    ({"RANK": "3", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29999"},
     "environment variable RANK=3 is not a rank of WORLD_SIZE=2 (ranks are 0 .. 1)"),
    ({"RANK": "0", "WORLD_SIZE": "2", "MASTER_PORT": "29999"},
     "RANK / WORLD_SIZE are set (RANK=0, WORLD_SIZE=2) but environment variable MASTER_ADDR is not"),
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
@pytest.mark.parametrize("values, says", CASES, ids=["empty-world", "rank-beyond", "no-master-addr"])
def test_a_malformed_torchrun_environment_is_one_line_for_every_command(monkeypatch, capsys, tmp_path, command,
                                                                         values, says):
    for key in VARIABLES:
        monkeypatch.delenv(key, raising=False)
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    assert main(command) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith(f"openlt {command[0]}: error: {says}") and err.count("\n") == 1, err
    assert list(tmp_path.iterdir()) == []  # nothing made
