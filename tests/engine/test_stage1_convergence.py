"""A stage 2 on a stage-1 run that carries the under-training warning carries it too (engine/stage1_record.py
`stage1_convergence`, metrics.json "convergence" -> "stage1"): cRT, NCM or OLTR on an unfinished body compares heads
on a body that is not done (issue 18), and its summary row and report say so. Real tiny runs: a stage 1 whose
epoch log stops after epoch 1 of its 2 (its last line cut, as a run killed during epoch 2 leaves it) and a
finished (1-epoch) one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tiny_run import TINY, cli, train_with_cli  # tests/helpers
from openlt.cli import main
from openlt.reporting.convergence import convergence_warning
from openlt.reporting.summary import UNDER_TRAINED_MARK

CONFIGS = Path(__file__).parents[2] / "configs" / "fmnist_lt"
STAGE1 = [*(t for t in TINY if not t.startswith("train.epochs=")), "train.device=cpu", "train.amp=none",
          "train.warmup_epochs=0"]
EPOCHS = {"stopped": 2, "finished": 1}  # one evaluation: no warning; two, the log cut after the first: stopped


@pytest.fixture(scope="module")
def stage2s(tmp_path_factory, single_thread):
    """{"stopped": the NCM run on the cut stage 1, "finished": the NCM run on the finished one}."""
    root = tmp_path_factory.mktemp("stage1_convergence")
    made = {}
    for name in ("stopped", "finished"):
        source = train_with_cli(root / f"s1-{name}", [*STAGE1, f"train.epochs={EPOCHS[name]}"])
        if name == "stopped":
            log = source / "metrics.jsonl"
            log.write_text(log.read_text(encoding="utf-8").splitlines(keepends=True)[0], encoding="utf-8")
        assert main([str(a) for a in ("train", CONFIGS / "decouple_ncm.yaml", f"train.init_from={source}",
                                      f"out_dir={root / name}", "train.device=cpu", "--quiet")]) == 0
        made[name] = next((root / name).iterdir())
    return made


def _metrics(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text(encoding="utf-8"))


def test_a_stage2_on_a_stopped_stage1_is_warned(stage2s):
    metrics = _metrics(stage2s["stopped"])
    assert metrics["convergence"]["warning"] is None  # its own fit is finished
    assert "stopped after epoch 1 of its 2" in metrics["convergence"]["stage1"]["warning"]
    warning = convergence_warning(metrics)
    assert warning.startswith("the stage-1 run it starts from (") and "may be under-trained" in warning
    assert "stopped after epoch 1 of its 2" in warning
    assert "under-trained" in (stage2s["stopped"] / "report.md").read_text(encoding="utf-8")


def test_a_stage2_on_a_finished_stage1_is_not(stage2s):
    metrics = _metrics(stage2s["finished"])
    assert "stage1" not in metrics["convergence"] and convergence_warning(metrics) is None


def test_summary_marks_the_row(stage2s, capsys):
    code, out, err = cli(capsys, "summary", f"stopped={stage2s['stopped']}", f"finished={stage2s['finished']}")
    assert code == 0, err
    assert f"| stopped {UNDER_TRAINED_MARK} |" in out and "| finished |" in out
    assert "stage-1 run" in out


def test_the_warning_is_recorded_when_the_stage2_starts(stage2s, capsys):
    """The stage-1 warning is the one the stage 2's checkpoint records when it started from the run (stage1_record
    "convergence_warning"), not read again at each evaluation: evaluated again after its stage-1 run moved, or had
    its log deleted, the stage 2 still carries it, naming the run (was: silently dropped, "nothing when that run has
    moved or its log cannot be read"); the finished stage 1's stage 2 stays unwarned after its log is cut."""
    stopped, finished = stage2s["stopped"], stage2s["finished"]
    source = Path(_metrics(stopped)["convergence"]["stage1"]["run"])
    moved = source.with_name(source.name + "-moved")
    source.rename(moved)
    try:
        code, _, err = cli(capsys, "eval", stopped, f"data.split_dir={moved / 'splits'}", "--quiet")
        assert code == 0, err
        stage1 = _metrics(stopped)["convergence"]["stage1"]
        assert stage1["run"] == str(source) and "stopped after epoch 1 of its 2" in stage1["warning"]
    finally:
        moved.rename(source)
    log = source / "metrics.jsonl"
    kept = log.read_bytes()
    log.unlink()
    try:
        assert cli(capsys, "eval", stopped, "--quiet")[0] == 0
        assert "stopped after epoch 1 of its 2" in _metrics(stopped)["convergence"]["stage1"]["warning"]
    finally:
        log.write_bytes(kept)
    source = Path(yaml.safe_load((finished / "config.yaml").read_text(encoding="utf-8"))["train"]["init_from"])
    config = source / "config.yaml"
    kept = config.read_bytes()
    config.write_text(kept.decode().replace("epochs: 1\n", "epochs: 3\n"), encoding="utf-8")  # now "stopped"
    try:
        assert cli(capsys, "eval", finished, "--quiet")[0] == 0
        assert "stage1" not in _metrics(finished)["convergence"]
    finally:
        config.write_bytes(kept)
