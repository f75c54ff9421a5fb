"""`openlt train --resume` and what it finds (trial 15, items 2-4): a decoupled stage 2 without a checkpoint yet is
fitted again from epoch 1 with metrics.jsonl started afresh (no earlier try's records), on the stage-1 run it was
started from only (a train.init_from edited since is refused, judged by the best checkpoint's sha256 its
split_manifest.json recorded at creation; a moved stage-1 run set in config.yaml is accepted); a stage-1 run gone
is one line naming train.init_from, RUN/config.yaml and what to do; a finished run's resume removes only dead
writers' temporaries (a real live writer's is kept and its write succeeds), and a temporary removed under a writer
is reported as such, never as a folder to make writable."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cli_ok import main_ok
from openlt_processes import ENV  # tests/helpers
from tiny_run import cli  # tests/helpers
import forked_python  # tests/helpers

REPORT_FIGURES = "unrasterized"  # tests/conftest.py: report.html figures built, not rendered (none is looked at)

CONFIGS = Path(__file__).parents[2] / "configs" / "fmnist_lt"


@pytest.fixture(scope="module")
def runs(tmp_path_factory, shared_run, single_thread):
    """(a finished tiny stage-1 run, a finished cRT stage 2 of it with train.epochs=2, not evaluated: no test reads
    its evaluation, and its interrupted copies are as a run killed before its first checkpoint, with none)."""

    tmp = shared_run("cli-cpu", tmp_path_factory.mktemp("stage2src"))  # train_tiny_with_cli(tmp, "train.device=cpu")
    stage1 = next((tmp / "runs").iterdir())
    main_ok(["train", str(CONFIGS / "decouple_crt.yaml"), f"train.init_from={stage1}", f"out_dir={tmp / 's2'}",
             "train.epochs=2", "train.batch_size=16", "train.device=cpu", "--quiet", "--no-eval"])
    return stage1, next((tmp / "s2").iterdir())


def interrupted(stage2: Path, where: Path) -> Path:
    """A copy of `stage2` as a SIGKILL before its first checkpoint leaves it: no decouple.json, no checkpoint,
    metrics.jsonl with an earlier try's records (epochs 1-5)."""
    copy = where / stage2.name
    shutil.copytree(stage2, copy)
    (copy / "decouple.json").unlink()
    for ckpt in (copy / "checkpoints").iterdir():
        ckpt.unlink()
    (copy / "metrics.jsonl").write_text("".join(json.dumps({"epoch": e, "loss": 9.0}) + "\n" for e in range(1, 6)))
    return copy


def set_init_from(run: Path, value: Path) -> None:
    saved = yaml.safe_load((run / "config.yaml").read_text())
    saved["train"]["init_from"] = str(value)
    (run / "config.yaml").write_text(yaml.safe_dump(saved, sort_keys=False))


def test_a_stage2_records_its_stage1_run_at_creation(runs):
    stage1, stage2 = runs
    recorded = json.loads((stage2 / "split_manifest.json").read_text())["stage1_run"]
    from openlt.io import sha256_file

    assert recorded == {"run": str(stage1.resolve()), "sha256": sha256_file(stage1 / "checkpoints" / "best.safetensors")}


def test_resume_of_an_interrupted_stage2_fits_again_with_metrics_started_afresh(runs, tmp_path, capsys):
    _, stage2 = runs
    run = interrupted(stage2, tmp_path)
    code, out, err = cli(capsys, "train", "--resume", run, "--quiet")
    assert code == 0, err
    epochs = [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2]  # this fit's two epochs alone: not the earlier try's 1-5 before them
    assert (run / "decouple.json").is_file() and (run / "checkpoints" / "last.safetensors").is_file()


def test_resume_of_a_stage2_whose_init_from_was_edited_to_another_run_is_refused(runs, tmp_path, capsys):
    stage1, stage2 = runs
    other = tmp_path / "other"
    shutil.copytree(stage1, other)
    with open(other / "checkpoints" / "best.safetensors", "ab") as f:  # another stage-1 checkpoint
        f.write(b"\0")
    run = interrupted(stage2, tmp_path)
    set_init_from(run, other)
    before = (run / "metrics.jsonl").read_bytes()
    code, out, err = cli(capsys, "train", "--resume", run, "--quiet")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert (f"{run / 'config.yaml'}: train.init_from {other} is not the stage-1 run this stage 2 was started from "
            f"({stage1.resolve()}, best checkpoint sha256 ") in err
    assert "set train.init_from in" in err and "back to that run" in err
    assert (run / "metrics.jsonl").read_bytes() == before and not (run / "decouple.json").exists()


def test_resume_of_a_stage2_whose_stage1_run_is_gone_names_init_from_and_what_to_do(runs, tmp_path, capsys):
    stage1, stage2 = runs
    moved = tmp_path / "stage1"
    shutil.copytree(stage1, moved)
    run = interrupted(stage2, tmp_path)
    set_init_from(run, tmp_path / "gone")
    code, out, err = cli(capsys, "train", "--resume", run, "--quiet")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert (f"{run / 'config.yaml'}: train.init_from {tmp_path / 'gone'} is not a folder (it was started from "
            f"{stage1.resolve()}); `openlt train --resume` fits this stage 2 on that stage-1 run: if it moved, set "
            f"train.init_from in {run / 'config.yaml'} to its new folder") in err
    assert f"then `openlt train --resume {run}` again" in err and "run directory not found" not in err
    set_init_from(run, moved)  # the same stage-1 run (same best checkpoint), moved: accepted
    code, out, err = cli(capsys, "train", "--resume", run, "--quiet")
    assert code == 0, err
    assert [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines()] == [1, 2]


WRITER = """
import sys
from openlt.io import atomic_path
try:
    with atomic_path(sys.argv[1]) as tmp:
        tmp.write_text("whole")
        print(tmp, flush=True)
        sys.stdin.readline()
except Exception as exc:
    print(type(exc).__name__, exc, flush=True)
    sys.exit(3)
"""


def writer(path: Path) -> tuple[subprocess.Popen, Path]:
    """A real process in the middle of an atomic write of `path`, finishing it on a line on its stdin."""
    proc = forked_python.Popen([sys.executable, "-c", WRITER, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               text=True, env=ENV)
    return proc, Path(proc.stdout.readline().strip())


def test_resume_of_a_finished_run_removes_only_dead_writers_temporaries(runs, tmp_path, capsys):
    stage1, _ = runs
    run = tmp_path / stage1.name
    shutil.copytree(stage1, run)
    live, live_tmp = writer(run / "features" / "live.safetensors")
    dead, dead_tmp = writer(run / "features" / "dead.safetensors")
    try:
        os.kill(dead.pid, signal.SIGKILL)
        dead.wait()
        assert live_tmp.is_file() and dead_tmp.is_file()
        code, out, err = cli(capsys, "train", "--resume", run, "--quiet")
        assert code == 0 and "training already finished" in out, err
        assert live_tmp.is_file() and not dead_tmp.exists()
        out, _ = live.communicate("go\n", timeout=60)
        assert live.returncode == 0, out
        assert (run / "features" / "live.safetensors").read_text() == "whole"
    finally:
        live.kill()


def test_a_temporary_removed_under_its_writer_is_reported_as_removed_not_as_unwritable(tmp_path):
    proc, tmp = writer(tmp_path / "cache.safetensors")
    try:
        tmp.unlink()  # another process (a cleanup) removes it while the writer still writes
        out, _ = proc.communicate("go\n", timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 3
    assert out.strip() == (f"TempRemovedError cannot write {tmp_path / 'cache.safetensors'}: its temporary file "
                           f"{tmp.name} was removed by another process while it was written (the folder is writable; "
                           f"the previous version, if any, is kept); write it again")
    assert "writable" not in out.replace("the folder is writable", "") and os.listdir(tmp_path) == []
