"""Run locks and warnings under torchrun (trial 8 D16): only rank 0 takes a run's lock, after the process group is
joined (was: every rank took it before joining, so `torchrun ... openlt eval RUN` always refused itself, "RUN is
being evaluated by process N", N the job's other rank), and the others follow its decision: a refusal is the same
one line on every rank, never a hang. `openlt features` / a decoupled stage 2 with a split smaller than the number
of processes (a rank with an empty share). Config warnings said by rank 0 alone.

Two real processes (RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT, as torchrun sets them) on a run of 2 training
images, every wait bounded."""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
import forked_python  # tests/helpers

ROOT = Path(__file__).parents[2]
PROBE = ROOT / "tests" / "helpers" / "dist_lock_probe.py"
from dist_env import clean_env as _env, free_port as _free_port  # tests/helpers
from cli_ok import main_ok


def _pair(command: list[str], timeout: float = 90) -> list[tuple[int, str, str]]:
    """`command` as rank 0 and rank 1 of a 2-process job: [(exit status, stdout, stderr)] of each."""
    port = _free_port()
    procs = [forked_python.Popen(command, cwd=ROOT, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 env=_env(RANK=r, WORLD_SIZE=2, LOCAL_RANK=r, MASTER_ADDR="127.0.0.1", MASTER_PORT=port,
                                          OPENLT_DIST_INIT_TIMEOUT=30, OPENLT_DIST_TIMEOUT=60)) for r in (0, 1)]
    end = time.monotonic() + timeout
    try:
        outs = [p.communicate(timeout=max(1.0, end - time.monotonic())) for p in procs]
    finally:
        for p in procs:
            p.kill()
    return [(p.returncode, out, err) for p, (out, err) in zip(procs, outs)]


def _openlt(*args: str) -> list[str]:
    return [sys.executable, "-m", "openlt", *map(str, args)]


# ------------------------------------------------------------------------------------------ the helper itself
def test_rank_0_alone_enters_the_hold_and_the_others_follow():
    results = _pair([sys.executable, str(PROBE), "held"], timeout=30)
    assert [r[0] for r in results] == [0, 0], results
    assert [json.loads(r[1].strip().splitlines()[-1]) for r in results] == [{"entered": [0], "inside": True},
                                                                          {"entered": [], "inside": True}]


def test_a_refusal_on_rank_0_is_the_same_line_on_every_rank():
    results = _pair([sys.executable, str(PROBE), "refused"], timeout=30)
    assert [r[0] for r in results] == [0, 0], results
    want = "RunDirError: runs/x is being trained by process 1 on h; evaluate it once training has ended"
    assert [r[1].strip().splitlines()[-1] for r in results] == [want, want]


def test_another_failure_of_rank_0_ends_the_others_naming_it():
    results = _pair([sys.executable, str(PROBE), "failed"], timeout=30)
    assert results[0][1].strip().splitlines() == ["ValueError: a bug", "second line"]
    assert results[1][1].strip().splitlines() == ["PeerLost: rank 0 of 2 stopped: ValueError: a bug"]


# ------------------------------------------------------------------------------------------ a run of 2 images
@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A trained run (one process) whose val and test splits hold 1 image each: rank 1's share is empty."""
    from PIL import Image


    tmp = tmp_path_factory.mktemp("locks")
    for c, v in (("a", 40), ("b", 200)):
        (tmp / "img" / c).mkdir(parents=True)
        for n in range(2):
            Image.fromarray(np.full((28, 28), v + 10 * n, np.uint8)).save(tmp / "img" / c / f"{n}.png")
    splits = tmp / "splits"
    splits.mkdir()
    (splits / "train.txt").write_text("a/0.png 0\nb/0.png 1\n")
    (splits / "val.txt").write_text("a/1.png 0\n")
    (splits / "test.txt").write_text("b/1.png 1\n")
    main_ok(["train", "fmnist_lt/plain", "data.dataset=split-file", f"data.root={tmp / 'img'}",
             f"data.split_dir={splits}", "data.open_split=null", "data.image_size=28", "data.in_chans=1",
             "train.epochs=1", "train.batch_size=2", "train.device=cpu", f"out_dir={tmp / 'runs'}",
             "data.workers=0", "train.warmup_epochs=0", "--name", "r", "--quiet"])
    return next((tmp / "runs").iterdir())


def test_eval_of_two_processes_evaluates_and_writes_the_metrics_of_one(run):
    """D16: `torchrun --nproc-per-node 2 -m openlt eval RUN` (as in docs/scale.md) was refused by one rank."""
    results = _pair(_openlt("eval", run, "--tag", "two", "--quiet"))
    assert [r[0] for r in results] == [0, 0], [r[2] for r in results]
    assert "error" not in results[0][2] + results[1][2]
    assert "metrics:" in results[0][1] and results[1][1] == ""  # rank 0 speaks
    one, two = (json.loads((run / "metrics.json").read_text()), json.loads((run / "metrics-two.json").read_text()))
    for key in ("closed", "val", "per_class_accuracy", "checkpoint_sha256"):
        assert two[key] == one[key], key


HOLD = ("import sys, time\nfrom pathlib import Path\nfrom openlt.engine.run import Run\n"
        "with getattr(Run(Path(sys.argv[1])), sys.argv[2])():\n    print('locked', flush=True)\n    time.sleep(60)\n")


@pytest.mark.parametrize("how,line", [
    ("lock", "openlt eval: error: {run} is being trained by process {pid} on {host}; evaluate it once training has "
             "ended (wait for it, or stop it and `openlt train --resume {run}` later)"),
    ("eval_lock", "openlt eval: error: {run} is being evaluated by process {pid} on {host} (`openlt eval` or the "
                  "final evaluation of `openlt train`); evaluate it once it has ended"),
])
def test_eval_of_two_processes_refused_by_rank_0_is_one_line_from_rank_0(run, how, line):
    """Another process trains (or evaluates) the run: rank 0 is refused and says so, rank 1 follows silently
    (trial 9 D7: rank 0 alone prints an error every rank meets alike), exit 2 both,
    at once (not after a timeout, and not a rank refusing the other)."""
    before = {p.name: p.stat().st_mtime_ns for p in run.iterdir()}
    holder = forked_python.Popen([sys.executable, "-c", HOLD, str(run), how], stdout=subprocess.PIPE, text=True,
                                 env=_env())
    try:
        assert holder.stdout.readline().strip() == "locked"
        started = time.monotonic()
        results = _pair(_openlt("eval", run, "--tag", "refused", "--quiet"))
        took = time.monotonic() - started
    finally:
        holder.kill()
        holder.wait()
    want = line.format(run=run, pid=holder.pid, host=socket.gethostname())
    assert [(r[0], r[2].strip().splitlines()) for r in results] == [(2, [want]), (2, [])]  # rank 0 says it
    assert took < 40  # (process starts on a loaded machine; a hang waits for OPENLT_DIST_TIMEOUT=60)
    assert not (run / "metrics-refused.json").exists()
    assert {p.name: p.stat().st_mtime_ns for p in run.iterdir() if p.name != "train.lock"} == \
           {k: v for k, v in before.items() if k != "train.lock"}


def test_features_of_two_processes_with_a_split_smaller_than_them(run):
    """`openlt features` on 2 processes where val and test hold 1 image (rank 1's
    share empty: was `torch.cat(): expected a non-empty list of Tensors`): the cache equals one process's."""
    from openlt.cli import main

    results = _pair(_openlt("features", run, "--force", "--quiet"))
    assert [r[0] for r in results] == [0, 0], [r[2][-2000:] for r in results]
    two = {s: load_file(run / "features" / f"{s}.safetensors") for s in ("train", "val", "test")}
    assert main(["features", str(run), "--force", "--quiet"]) == 0
    for split, cached in two.items():
        one = load_file(run / "features" / f"{split}.safetensors")
        assert len(one["labels"]) == (2 if split == "train" else 1)
        assert torch.equal(one["labels"], cached["labels"]), split
        assert torch.allclose(one["features"], cached["features"], rtol=0, atol=1e-5), split


def test_stage_2_of_two_processes_with_a_split_smaller_than_them(run, tmp_path):
    """A decoupled stage 2 (cRT, its own lock taken by rank 0) extracting the stage-1 features on 2 processes."""
    (run / "features" / "val.safetensors").unlink(missing_ok=True)  # extracted again, rank 1's share empty
    results = _pair(_openlt("train", "fmnist_lt/decouple_crt", f"train.init_from={run}", "train.epochs=1",
                            "train.batch_size=2", "train.device=cpu", "data.workers=0", f"out_dir={tmp_path}",
                            "--quiet"))
    assert [r[0] for r in results] == [0, 0], [r[2][-2000:] for r in results]
    stage2 = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert len(stage2) == 1 and (stage2[0] / "decouple.json").is_file() and (stage2[0] / "metrics.json").is_file()


# ------------------------------------------------------------------------------------------ warnings: rank 0 alone
WARMUP = ["train.epochs=1", "train.warmup_epochs=2"]  # valid, warned: the whole run is the warm-up


@pytest.mark.parametrize("rank,count", [(None, 1), ("0", 1), ("1", 0)])
def test_a_config_warning_is_rank_0s_alone(monkeypatch, rank, count):
    from openlt.config import ConfigWarning, build_config

    monkeypatch.delenv("RANK", raising=False)
    if rank is not None:
        monkeypatch.setenv("RANK", rank)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        build_config("fmnist_lt/plain", WARMUP)
    said = [w for w in caught if issubclass(w.category, ConfigWarning)]
    assert len(said) == count and all("train.warmup_epochs=2 >= train.epochs=1" in str(w.message) for w in said)


@pytest.mark.parametrize("rank,every_rank,shown", [(None, False, True), ("1", False, False), ("1", True, True)])
def test_a_logged_warning_is_rank_0s_alone_unless_it_is_every_ranks(monkeypatch, capsys, rank, every_rank, shown):
    from openlt.cli import console_logging

    monkeypatch.delenv("RANK", raising=False)
    if rank is not None:
        monkeypatch.setenv("RANK", rank)
    with console_logging():
        logging.getLogger("openlt.test").warning("same data", extra={"every_rank": True} if every_rank else None)
        logging.getLogger("openlt.test").error("an error")
    err = capsys.readouterr().err
    assert ("openlt: warning: same data" in err) is shown and "an error" in err
