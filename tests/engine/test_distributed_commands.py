"""Commands under torchrun (trial 9 D7): train, eval and features share their work over the job's processes;
every other command runs in one process and is refused under torchrun (WORLD_SIZE > 1) before any work, with
one line from rank 0 and the same exit status, silently, from the others (was: `export` and `split` succeeding
on one rank and failing on the other with "folder not empty" / "already holds a split", `identify` printing
its result twice). An error every rank meets alike before joining the group (a config error such as a batch
that does not split over the processes) and rank 0's refusal passed on by `held_by_main` are printed by rank 0
alone (was: both ranks' lines run together on one line). In-process with RANK / WORLD_SIZE set, and one real
torchrun launch."""

from __future__ import annotations

import subprocess
import sys

import pytest

from openlt.cli import DATA_PARALLEL, Terminated, main

from dist_env import ROOT, TRAIN, clean_env  # tests/helpers

ONE_PROCESS = {
    "split": ["split", "--dataset", "image-folder", "--root", "fm", "--out", "sp"],
    "predict": ["predict", "runs/x", "a.png"],
    "export": ["export", "runs/x", "bundle"],
    "bench": ["bench", "spec.yaml"],
    "summary": ["summary", "runs/x"],
    "config": ["config", "fmnist_lt/plain"],
    "configs": ["configs"],
    "report": ["report", "runs/x"],
    "identify": ["identify", "runs/x", "--probe", "p.txt", "--gallery", "g.txt"],
}


def _torchrun_env(monkeypatch, rank: int, world: int = 2) -> None:
    for key, value in {"RANK": rank, "WORLD_SIZE": world, "LOCAL_RANK": rank, "MASTER_ADDR": "127.0.0.1",
                       "MASTER_PORT": 29999}.items():
        monkeypatch.setenv(key, str(value))


def test_every_command_is_either_data_parallel_or_refused():
    from openlt.cli import build_parser

    commands = set(build_parser()._subparsers._group_actions[0].choices)
    assert commands == set(DATA_PARALLEL) | set(ONE_PROCESS)


@pytest.mark.parametrize("command", sorted(ONE_PROCESS))
@pytest.mark.parametrize("rank", [0, 1])
def test_a_one_process_command_is_refused_under_torchrun_by_rank_0_alone(monkeypatch, capsys, tmp_path, command,
                                                                         rank):
    monkeypatch.chdir(tmp_path)
    _torchrun_env(monkeypatch, rank)
    assert main(ONE_PROCESS[command]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    want = (f"openlt {command}: error: {command} runs in one process (torchrun shares the work of train, eval and "
            f"features only); run it without torchrun (WORLD_SIZE=2 is set)\n")
    assert err == (want if rank == 0 else "")
    assert list(tmp_path.iterdir()) == []  # nothing made


def test_one_process_is_not_refused(monkeypatch, capsys):
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("RANK", "0")
    assert main(["configs"]) == 0
    assert "fmnist_lt/plain" in capsys.readouterr().out


@pytest.mark.parametrize("rank", [0, 1])
def test_a_batch_that_does_not_split_is_said_by_rank_0_alone_before_joining(monkeypatch, capsys, tmp_path, rank):
    """Was printed by both ranks (`...use a multiple of 2openlt train: error: ...` on one line under torchrun);
    refused now before the group is joined (no MASTER_PORT is listening here), nothing made."""
    _torchrun_env(monkeypatch, rank)
    assert main([*TRAIN, "train.batch_size=15", f"out_dir={tmp_path / 'runs'}"]) == 2
    err = capsys.readouterr().err
    want = ("openlt train: error: train.batch_size=15 is the global batch and must split evenly over the 2 processes "
            "(batch_size / WORLD_SIZE images each); use a multiple of 2\n")
    assert err == (want if rank == 0 else "")
    assert not (tmp_path / "runs").exists()


def test_a_config_error_is_said_by_rank_0_alone(monkeypatch, capsys):
    _torchrun_env(monkeypatch, 1)
    assert main(["train", "fmnist_lt/plain", "train.no_such_key=1"]) == 2
    assert capsys.readouterr().err == ""
    _torchrun_env(monkeypatch, 0)
    assert main(["train", "fmnist_lt/plain", "train.no_such_key=1"]) == 2
    assert "train.no_such_key" in capsys.readouterr().err


def test_an_environment_error_of_one_rank_is_printed_by_it(monkeypatch, capsys):
    """RANK=2 of WORLD_SIZE=2 is this process's own problem: printed, though its RANK is not 0."""
    _torchrun_env(monkeypatch, 2)
    assert main([*TRAIN]) == 2
    assert capsys.readouterr().err == ("openlt train: error: environment variable RANK=2 is not a rank of "
                                       "WORLD_SIZE=2 (ranks are 0 .. 1)\n")


def test_a_sigterm_after_the_command_ended_keeps_its_status(monkeypatch, capsys):
    """torchrun stops the job's other processes (SIGTERM) once one failed: one that has printed its line and is
    leaving (was: `openlt.cli.Terminated` with a traceback from `main`) exits with its own status, silently."""
    import contextlib

    import openlt.cli as cli

    @contextlib.contextmanager
    def terminated_on_leaving():
        yield
        raise Terminated()

    monkeypatch.setattr(cli, "console_logging", terminated_on_leaving)
    monkeypatch.setattr(cli, "_run", lambda args: 2)
    assert main(["configs"]) == 2
    assert capsys.readouterr().err == ""


def test_split_under_torchrun_is_one_line_and_makes_nothing(tmp_path):
    """The trial's command, launched by torchrun (2 processes): was "wrote sp_tr" from one rank, then "sp_tr
    already holds a split" from the other, and a failed job."""
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                             "-m", "openlt", "split", "--dataset", "image-folder", "--root", str(tmp_path / "fm"),
                             "--out", str(tmp_path / "sp_tr")], capture_output=True, text=True, env=clean_env(),
                            cwd=ROOT, timeout=120)
    assert result.returncode != 0
    said = [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("openlt split")]
    assert said == ["openlt split: error: split runs in one process (torchrun shares the work of train, eval and "
                    "features only); run it without torchrun (WORLD_SIZE=2 is set)"], result.stderr[-3000:]
    assert not (tmp_path / "sp_tr").exists()


def test_a_batch_that_does_not_split_under_torchrun_is_one_line(tmp_path):
    """The trial's `torchrun ... train ... train.batch_size=15`: was both ranks' lines run together on one line.
    Rank 1 ends silently once torchrun stops it (it waits for that, so rank 0 is not stopped before its line)."""
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                             "-m", "openlt", *TRAIN, "train.batch_size=15", f"out_dir={tmp_path / 'runs'}"],
                            capture_output=True, text=True, env=clean_env(), cwd=ROOT, timeout=120)
    assert result.returncode != 0
    said = [line for line in (result.stdout + result.stderr).splitlines() if "openlt train" in line]
    assert said == ["openlt train: error: train.batch_size=15 is the global batch and must split evenly over the 2 "
                    "processes (batch_size / WORLD_SIZE images each); use a multiple of 2"], result.stderr[-3000:]
    assert not (tmp_path / "runs").exists()


def test_a_lost_peer_outside_the_engines_handling_is_one_line(monkeypatch, capsys):
    """The CLI's last net: gloo's raw error for a peer gone, raised by a collective no engine code wraps, is the
    lost-peer line, exit 2 (not `internal error: RuntimeError: ... GLHF!`); other errors stay internal errors."""
    import torch.distributed as dist

    import openlt.cli as cli

    def gloo_failure(args):
        raise RuntimeError("[../third_party/gloo/gloo/transport/tcp/pair.cc:561] Connection closed by peer "
                           "[127.0.0.1]:5000 ... GLHF!")

    monkeypatch.setattr(cli, "_configs", gloo_failure)
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        assert main(["configs"]) == 2
    finally:
        dist.destroy_process_group()
    assert capsys.readouterr().err == ("openlt configs: error: rank 0 of 1: another process of the job went away "
                                       "(connection closed by peer) during a collective (a process killed, out of "
                                       "memory or a lost machine: see its own output or torchrun's)\n")
    monkeypatch.setattr(cli, "_configs", lambda args: 1 / 0)
    assert main(["configs"]) == 1
    assert "internal error: ZeroDivisionError" in capsys.readouterr().err
