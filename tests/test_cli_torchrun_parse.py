"""Under torchrun, an argparse error (a bad option, an unknown command) is printed once, by rank 0; the other ranks
exit with the same status silently (issue 14; each of N ranks printed the usage and the error). Help is unchanged."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from openlt.cli import main

BAD = [["train", "--bogus"], ["bogus-command"], ["eval", "RUN", "--checkpoint"], ["eval"]]


def _main(monkeypatch, capsys, argv, **env):
    for key in ("RANK", "WORLD_SIZE", "TORCHELASTIC_RUN_ID"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, str(value))
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        main(argv)
    out, err = capsys.readouterr()
    return info.value.code, out, err


@pytest.mark.parametrize("argv", BAD)
def test_a_rank_other_than_0_exits_2_silently(monkeypatch, capsys, argv):
    assert _main(monkeypatch, capsys, argv, WORLD_SIZE=3, RANK=2) == (2, "", "")


@pytest.mark.parametrize("argv", BAD)
@pytest.mark.parametrize("env", [{"WORLD_SIZE": 3, "RANK": 0}, {}, {"WORLD_SIZE": 1, "RANK": 1}])
def test_rank_0_and_a_plain_process_print_the_error(monkeypatch, capsys, argv, env):
    code, out, err = _main(monkeypatch, capsys, argv, **env)
    assert code == 2 and out == "" and err.startswith("usage: openlt")
    assert len([line for line in err.splitlines() if ": error: " in line]) == 1, err


def test_help_is_printed_by_every_rank(monkeypatch, capsys):
    code, out, err = _main(monkeypatch, capsys, ["train", "--help"], WORLD_SIZE=3, RANK=1)
    assert code == 0 and out.startswith("usage: openlt train") and err == ""


@pytest.mark.skipif(shutil.which("torchrun", path=str(Path(sys.executable).parent)) is None, reason="no torchrun")
def test_torchrun_with_3_processes_prints_the_error_once(tmp_path):
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "MASTER_PORT", "MASTER_ADDR")}
    result = subprocess.run([torchrun, "--nproc-per-node", "3", "-m", "openlt", "train", "--bogus"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120, env={**env, "OMP_NUM_THREADS": "1"})
    assert result.returncode != 0
    said = (result.stdout + result.stderr).splitlines()
    assert [line for line in said if "error: unrecognized arguments" in line] == [
        "openlt: error: unrecognized arguments: --bogus"], said
    assert sum(line.startswith("usage: openlt") for line in said) == 1
