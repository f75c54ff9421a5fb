"""Joining the group and the collectives with real processes (trial 8 D7-D9): a bounded join that names the
ranks that did not come; a split smaller than the number of processes; a peer that dies. Real processes: 2 of
them at most, a few seconds each, every wait bounded. The environment's checks: test_dist_env.py; signals while
waiting for peers: test_dist_signals.py."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
import torch.distributed as dist

from openlt.engine import distributed

from dist_env import (ROOT, TRAIN, clean_env as _env, finish, free_port as _free_port, probe_pair,  # tests/helpers
                      run_cli)
import forked_python  # tests/helpers


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
    result = run_cli([*TRAIN, f"out_dir={tmp_path / 'runs'}"],
                  _env(RANK=rank, WORLD_SIZE=2, LOCAL_RANK=0, MASTER_ADDR="127.0.0.1", MASTER_PORT=port,
                       OPENLT_DIST_INIT_TIMEOUT=2), timeout=30)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(expected.format(port=port)), lines
    assert time.monotonic() - started < 30 and not (tmp_path / "runs").exists()


def test_an_empty_shard_is_gathered_with_the_others():
    """D8: a split of 1 image on 2 processes: rank 1's share is empty (was KeyError 'logits' in validation)."""
    results = finish(probe_pair("gather"))
    assert [r[0] for r in results] == [0, 0], results
    want = {"logits": [[[1.0, 2.0, 3.0]], "torch.float32"], "labels": [[2], "torch.int64"]}
    assert [json.loads(r[1].strip().splitlines()[-1]) for r in results] == [want, want]


def test_a_peer_that_dies_is_named_in_one_line():
    """D9: was an internal error with gloo's text ("Connection reset by peer ... GLHF!")."""
    results = finish(probe_pair("die"))
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
    args = [*_tiny_split(tmp_path), "train.epochs=1", "--quiet"]
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                             "-m", "openlt", "train", *args], capture_output=True, text=True, env=_env(), cwd=ROOT,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    run = next((tmp_path / "runs").iterdir())
    metrics = json.loads((run / "metrics.json").read_text())
    single = run_cli(["eval", str(run), "--tag", "single", "--quiet"], _env())
    assert single.returncode == 0, single.stderr
    one = json.loads((run / "metrics-single.json").read_text())
    assert {"val", "closed", "per_class_accuracy"} <= set(metrics)
    for key in set(metrics) & set(one) - {"confusion", "tag", "created", "time_s", "files", "predictions"}:
        assert one[key] == metrics[key], key
    logged = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert logged[-1]["val"] == one["val"]


def _tiny_split(tmp_path):
    """2 classes of 2 images each: a train split of 2 images, 1-image val and test splits."""
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
    return ["fmnist_lt/plain", "data.dataset=split-file", f"data.root={tmp_path / 'img'}", f"data.split_dir={splits}",
            "data.open_split=null", "data.image_size=28", "data.in_chans=1", "train.batch_size=2",
            "train.device=cpu", f"out_dir={tmp_path / 'runs'}", "data.workers=0", "train.warmup_epochs=0"]


def test_rank_0_killed_mid_training_is_named_in_one_line_by_rank_1(tmp_path):
    """Trial 9 D2: rank 0 killed (SIGKILL) while training: rank 1, blocked in DDP's buffer broadcast (forward) or
    gradient all-reduce (backward), printed `internal error: RuntimeError: [...gloo...] Connection reset by peer
    ... GLHF!` (its new-run path had no lost-peer handling; killing rank 1 gave the line). Now the same line as
    for rank 1 killed, exit 2, and the run is kept with its last checkpoint."""
    import threading

    port = _free_port()
    command = [sys.executable, "-m", "openlt", "train", *_tiny_split(tmp_path), "train.epochs=400", "--name", "k0"]
    procs = [forked_python.Popen(command, cwd=ROOT, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 env=_env(RANK=r, WORLD_SIZE=2, LOCAL_RANK=r, MASTER_ADDR="127.0.0.1", MASTER_PORT=port,
                                          OPENLT_DIST_INIT_TIMEOUT=30, OPENLT_DIST_TIMEOUT=60)) for r in (0, 1)]
    guard = threading.Timer(90, lambda: [p.kill() for p in procs])  # never a hang
    guard.start()
    try:
        epochs = 0
        for line in procs[0].stdout:  # rank 0 speaks: kill it once 2 epochs are done (a checkpoint exists)
            epochs += line.startswith("epoch ")
            if epochs == 2:
                break
        procs[0].kill()
        out, err = procs[1].communicate(timeout=60)
    finally:
        guard.cancel()
        for p in procs:
            p.kill()
            p.wait()
    assert epochs == 2, procs[0].stderr.read()[-2000:]
    run = next((tmp_path / "runs").iterdir())
    assert procs[1].returncode == 2, err[-3000:]
    lines = err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("openlt train: error: rank 1 of 2: rank 0 of the job went away ("), lines[0]
    assert f"the run {run} keeps the checkpoint of epoch " in lines[0]
    assert lines[0].endswith(f"continue with `openlt train --resume {run}`") and "GLHF" not in lines[0]
    assert out == ""  # rank 1 says nothing else
    assert (run / "checkpoints" / "last.safetensors").is_file()
