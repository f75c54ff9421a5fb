"""The distributed environment at its boundary (trial 8 D6-D9): the torchrun variables checked once with one
line naming the variable; a bounded join that names the ranks that did not come; SIGTERM / Ctrl-C while a
process waits for its peers (in Python, and blocked in gloo's C++ code); a split smaller than the number of
processes; a peer that dies. Real processes: 2 of them at most, a few seconds each, every wait bounded."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from openlt.engine import distributed
from openlt.errors import ConfigError

ROOT = Path(__file__).parents[2]
PROBE = ROOT / "tests" / "helpers" / "dist_probe.py"
from dist_env import VARS, clean_env as _env, free_port as _free_port  # tests/helpers


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
    ({distributed.INIT_TIMEOUT_ENV: "0"}, "environment variable OPENLT_DIST_INIT_TIMEOUT must be a number of "
                                          "seconds > 0, got '0' (default 600)"),
    ({distributed.TIMEOUT_ENV: "soon"}, "environment variable OPENLT_DIST_TIMEOUT must be a number of seconds > 0, "
                                        "got 'soon' (default 1800)"),
])
def test_a_bad_distributed_environment_is_one_line_naming_the_variable(monkeypatch, values, message):
    for key in VARS:
        monkeypatch.delenv(key, raising=False)
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ConfigError) as info:
        distributed.check_env()
    assert message in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(ConfigError):  # and through setup, before any process group
        distributed.setup(torch.device("cpu"))
    assert not dist.is_initialized()


def test_a_good_environment_and_its_defaults(monkeypatch):
    for key in VARS:
        monkeypatch.delenv(key, raising=False)
    assert distributed.check_env() == (0, 1, 0, None, None, 600.0, 1800.0)
    for key, value in {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "MASTER_ADDR": "node0",
                       "MASTER_PORT": "29500", distributed.INIT_TIMEOUT_ENV: "2.5"}.items():
        monkeypatch.setenv(key, value)
    assert distributed.check_env() == (1, 2, 1, "node0", 29500, 2.5, 1800.0)
    assert distributed.env_world() == (1, 2, 1)


def _cli(args, env, timeout=60):
    return subprocess.run([sys.executable, "-m", "openlt", *args], capture_output=True, text=True, env=env,
                          timeout=timeout, cwd=ROOT)


TRAIN = ["train", "fmnist_lt/plain", "train.epochs=1", "train.warmup_epochs=0", "train.device=cpu", "data.workers=0"]


def test_train_without_master_addr_is_one_line_exit_2(tmp_path):
    """D6: was `internal error: ValueError: Error initializing torch.distributed using env:// rendezvous`."""
    result = _cli([*TRAIN, f"out_dir={tmp_path / 'runs'}"], _env(RANK=0, WORLD_SIZE=2, LOCAL_RANK=0))
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        "openlt train: error: RANK / WORLD_SIZE are set (RANK=0, WORLD_SIZE=2) but environment variable MASTER_ADDR "
        "is not: launch with torchrun, or set MASTER_ADDR and MASTER_PORT (rank 0's address and a free port) in "
        "every process"]
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("rank,expected", [
    (0, "openlt train: error: rank 0 of 2: rank 1 did not join within 2 s (OPENLT_DIST_INIT_TIMEOUT) at "
        "MASTER_ADDR:MASTER_PORT=127.0.0.1:{port}: a process that failed to start"),
    (1, "openlt train: error: rank 1 of 2: nothing answered at MASTER_ADDR:MASTER_PORT=127.0.0.1:{port} within 2 s "
        "(OPENLT_DIST_INIT_TIMEOUT): rank 0 did not start"),
])
def test_a_rank_whose_peers_never_come_stops_after_the_join_timeout(tmp_path, rank, expected):
    """D7: was a hang of 30 minutes (torch's default), silent."""
    port = _free_port()
    started = time.monotonic()
    result = _cli([*TRAIN, f"out_dir={tmp_path / 'runs'}"],
                  _env(RANK=rank, WORLD_SIZE=2, LOCAL_RANK=0, MASTER_ADDR="127.0.0.1", MASTER_PORT=port,
                       OPENLT_DIST_INIT_TIMEOUT=2), timeout=30)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(expected.format(port=port)), lines
    assert time.monotonic() - started < 30 and not (tmp_path / "runs").exists()


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
    proc = subprocess.Popen([sys.executable, "-m", "openlt", *TRAIN, f"out_dir={tmp_path / 'runs'}"], cwd=ROOT,
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


def _pair(scenario: str, timeout: float = 25, **extra) -> list[subprocess.Popen]:
    port = _free_port()
    return [subprocess.Popen([sys.executable, str(PROBE), scenario], cwd=ROOT, text=True, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE,
                             env=_env(RANK=r, WORLD_SIZE=2, LOCAL_RANK=r, MASTER_ADDR="127.0.0.1", MASTER_PORT=port,
                                      OPENLT_DIST_INIT_TIMEOUT=20, **extra)) for r in (0, 1)]


def _finish(procs, timeout: float = 25) -> list[tuple[int, str, str]]:
    try:
        outs = [p.communicate(timeout=timeout) for p in procs]
    finally:
        for p in procs:
            p.kill()
    return [(p.returncode, out, err) for p, (out, err) in zip(procs, outs)]


@pytest.mark.parametrize("signum,code,how", [(signal.SIGTERM, 143, "SIGTERM"), (signal.SIGINT, 130, "Ctrl-C")])
def test_a_signal_during_a_collective_blocked_in_cpp_ends_the_process(signum, code, how):
    """Rank 1 blocked in gloo's barrier (C++: Python's handler cannot run) while rank 0 never comes to it: the
    watchdog ends it with the usual line within about a second (was: signal ignored until the 30-min timeout)."""
    procs = _pair("stuck")
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


def test_an_empty_shard_is_gathered_with_the_others():
    """D8: a split of 1 image on 2 processes: rank 1's share is empty (was KeyError 'logits' in validation)."""
    results = _finish(_pair("gather"))
    assert [r[0] for r in results] == [0, 0], results
    want = {"logits": [[[1.0, 2.0, 3.0]], "torch.float32"], "labels": [[2], "torch.int64"]}
    assert [json.loads(r[1].strip().splitlines()[-1]) for r in results] == [want, want]


def test_a_peer_that_dies_is_named_in_one_line():
    """D9: was an internal error with gloo's text ("Connection reset by peer ... GLHF!")."""
    results = _finish(_pair("die"))
    assert results[1][0] == 9
    assert results[0][0] == 0, results[0]
    line = results[0][1].strip().splitlines()[-1]
    assert line.startswith("PeerLost: rank 0 of 2: rank 1 of the job went away (") and "GLHF" not in line, line


def test_a_lost_peer_in_training_keeps_the_run_and_names_resume(tmp_path):
    """D9 in train: DDP's raw gloo error inside a run becomes one line with the run's --resume command, and the
    run is kept (as after an interrupt), also before its first checkpoint."""
    from openlt.engine import train as train_mod
    from openlt.engine.run import Run

    run = Run(tmp_path / "r1")
    (run.path / "checkpoints").mkdir(parents=True)
    store = dist.HashStore()
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    try:
        with pytest.raises(distributed.PeerLost) as info:
            with train_mod._interrupt_note(run):
                raise RuntimeError("[../third_party/gloo/gloo/transport/tcp/pair.cc:545] Read error "
                                   "[127.0.0.1]:47775: Connection reset by peer. ... GLHF!")
        with pytest.raises(RuntimeError, match="an ordinary bug"):  # other errors pass unchanged
            with train_mod._interrupt_note(run):
                raise RuntimeError("an ordinary bug")
    finally:
        dist.destroy_process_group()
    text = str(info.value)
    assert text.startswith("rank 0 of 1: another process of the job went away (connection reset by peer)")
    assert text.endswith(f"the run {run.path} has no finished epoch yet (it starts again from epoch 1); continue "
                         f"with `openlt train --resume {run.path}`")
    assert "GLHF" not in text
    train_mod._remove_unfinished(run, info.value, staged=False)
    assert run.path.is_dir()  # kept: resumable from epoch 1


def test_torchrun_with_splits_smaller_than_the_processes_gives_the_metrics_of_one(tmp_path):
    """D8 end to end: `torchrun --nproc-per-node 2 -m openlt train` with a 1-image val and test split (rank 1's
    shares empty) trains and evaluates (was: KeyError 'logits', run removed); one process evaluating the same
    checkpoint gives the same numbers."""
    from PIL import Image

    import numpy as np

    for c, v in (("a", 40), ("b", 200)):
        (tmp_path / "img" / c).mkdir(parents=True)
        for n in range(2):
            Image.fromarray(np.full((28, 28), v + n, np.uint8)).save(tmp_path / "img" / c / f"{n}.png")
    splits = tmp_path / "splits"
    splits.mkdir()
    (splits / "train.txt").write_text("a/0.png 0\nb/0.png 1\n")
    (splits / "val.txt").write_text("a/1.png 0\n")
    (splits / "test.txt").write_text("b/1.png 1\n")
    args = ["fmnist_lt/plain", "data.dataset=split-file", f"data.root={tmp_path / 'img'}", f"data.split_dir={splits}",
            "data.open_split=null", "data.image_size=28", "data.in_chans=1", "train.epochs=1", "train.batch_size=2",
            "train.device=cpu", f"out_dir={tmp_path / 'runs'}", "data.workers=0", "train.warmup_epochs=0", "--quiet"]
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                             "-m", "openlt", "train", *args], capture_output=True, text=True, env=_env(), cwd=ROOT,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    run = next((tmp_path / "runs").iterdir())
    metrics = json.loads((run / "metrics.json").read_text())
    single = _cli(["eval", str(run), "--tag", "single", "--quiet"], _env())
    assert single.returncode == 0, single.stderr
    one = json.loads((run / "metrics-single.json").read_text())
    assert {"val", "closed", "per_class_accuracy"} <= set(metrics)
    for key in set(metrics) & set(one) - {"confusion", "tag", "created", "time_s", "files", "predictions"}:
        assert one[key] == metrics[key], key
    logged = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert logged[-1]["val"] == one["val"]
