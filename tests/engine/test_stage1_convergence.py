"""A stage 2 on a stage-1 run that carries the under-training warning carries it too (engine/stage1_record.py
`stage1_convergence`, metrics.json "convergence" -> "stage1"): cRT, NCM or OLTR on an unfinished body compares heads
on a body that is not done (issue 18), and its summary row and report say so. Real tiny runs: a 2-epoch stage 1
whose validation curve says it was still rising (its log's overall top-1 set to 20 % then 60 %) and a finished
(1-epoch) one. (A stage 1 stopped before its train.epochs is refused as a stage 2's start: init_from's
check_stage1_finished.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tiny_run import TINY, cli, train_with_cli  # tests/helpers
from openlt.cli import main
from openlt.reporting.convergence import NOT_CHECKED, convergence_unchecked, convergence_warning
from openlt.reporting.summary import UNCHECKED_MARK, UNDER_TRAINED_MARK

REPORT_FIGURES = "unrasterized"  # tests/conftest.py: report.html figures built, not rendered (none is looked at)

CONFIGS = Path(__file__).parents[2] / "configs" / "fmnist_lt"
STAGE1 = [*(t for t in TINY if not t.startswith("train.epochs=")), "train.device=cpu", "train.amp=none",
          "train.warmup_epochs=0"]
EPOCHS = {"rising": 2, "finished": 1}  # one evaluation: no warning (not judged); two, the second 40 points up: still rising
RISING = (0.2, 0.6)


@pytest.fixture(scope="module")
def stage2s(tmp_path_factory, single_thread):
    """{"rising": the NCM run on the still rising stage 1, "finished": the NCM run on the finished one}."""
    root = tmp_path_factory.mktemp("stage1_convergence")
    made = {}
    for name in ("rising", "finished"):
        source = train_with_cli(root / f"s1-{name}", [*STAGE1, f"train.epochs={EPOCHS[name]}"])
        if name == "rising":
            log = source / "metrics.jsonl"
            records = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]
            for record, overall in zip(records, RISING):
                record["val"]["overall"] = overall
            log.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
        assert main([str(a) for a in ("train", CONFIGS / "decouple_ncm.yaml", f"train.init_from={source}",
                                      f"out_dir={root / name}", "train.device=cpu", "--quiet")]) == 0
        made[name] = next((root / name).iterdir())
    return made


def _metrics(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text(encoding="utf-8"))


def test_a_stage2_on_a_rising_stage1_is_warned(stage2s):
    metrics = _metrics(stage2s["rising"])
    assert metrics["convergence"]["warning"] is None  # its own fit is finished
    assert "best validation epoch is 2 of 2" in metrics["convergence"]["stage1"]["warning"]
    warning = convergence_warning(metrics)
    assert warning.startswith("the stage-1 run it starts from (") and "may be under-trained" in warning
    assert "best validation epoch is 2 of 2" in warning
    assert "under-trained" in (stage2s["rising"] / "report.md").read_text(encoding="utf-8")


def test_a_stage2_on_a_finished_stage1_is_not(stage2s):
    """No warning; its stage 1's one evaluation could not be judged, and the stage 2's report says so (was: nothing,
    as if checked; helper trial, session 22); NCM's own one-record fit is not judged at all (was: "the check was not
    made: 1 evaluation ... in 1 epoch", on every NCM run)."""
    metrics = _metrics(stage2s["finished"])
    assert convergence_warning(metrics) is None and "warning" not in metrics["convergence"]["stage1"]
    assert metrics["convergence"]["unchecked"] is None
    assert "1 evaluation of validation top-1 in 1 epoch" in metrics["convergence"]["stage1"]["unchecked"]
    note = convergence_unchecked(metrics)
    assert note.startswith(f"{NOT_CHECKED}on the stage-1 run it starts from (") and "1 evaluation" in note
    assert note in (stage2s["finished"] / "report.md").read_text(encoding="utf-8")


def test_summary_marks_the_row(stage2s, capsys):
    code, out, err = cli(capsys, "summary", f"rising={stage2s['rising']}", f"finished={stage2s['finished']}")
    assert code == 0, err
    assert f"| rising {UNDER_TRAINED_MARK} |" in out and f"| finished {UNCHECKED_MARK} |" in out  # its 1-epoch stage 1
    assert "stage-1 run" in out


def test_the_warning_is_recorded_when_the_stage2_starts(stage2s, capsys):
    """The stage-1 warning is the one the stage 2's checkpoint records when it started from the run (stage1_record
    "convergence_warning"), not read again at each evaluation: evaluated again after its stage-1 run moved, or had
    its log deleted, the stage 2 still carries it, naming the run (was: silently dropped, "nothing when that run has
    moved or its log cannot be read"); the finished stage 1's stage 2 stays unwarned after its log is cut."""
    rising, finished = stage2s["rising"], stage2s["finished"]
    source = Path(_metrics(rising)["convergence"]["stage1"]["run"])
    moved = source.with_name(source.name + "-moved")
    source.rename(moved)
    try:
        code, _, err = cli(capsys, "eval", rising, f"data.split_dir={moved / 'splits'}", "--quiet")
        assert code == 0, err
        stage1 = _metrics(rising)["convergence"]["stage1"]
        assert stage1["run"] == str(source) and "best validation epoch is 2 of 2" in stage1["warning"]
    finally:
        moved.rename(source)
    log = source / "metrics.jsonl"
    kept = log.read_bytes()
    log.unlink()
    try:
        assert cli(capsys, "eval", rising, "--quiet")[0] == 0
        assert "best validation epoch is 2 of 2" in _metrics(rising)["convergence"]["stage1"]["warning"]
    finally:
        log.write_bytes(kept)
    source = Path(yaml.safe_load((finished / "config.yaml").read_text(encoding="utf-8"))["train"]["init_from"])
    config = source / "config.yaml"
    kept = config.read_bytes()
    config.write_text(kept.decode().replace("epochs: 1\n", "epochs: 3\n"), encoding="utf-8")  # now "stopped"
    try:
        assert cli(capsys, "eval", finished, "--quiet")[0] == 0
        assert "warning" not in _metrics(finished)["convergence"]["stage1"]
    finally:
        config.write_bytes(kept)


def test_a_finished_stage1_with_a_cut_log_is_not_called_stopped(stage2s, capsys, tmp_path):
    """A stage 1 that trained its 2 epochs (its last checkpoint says so) whose metrics.jsonl was cut to its first
    line afterwards: no "stopped after epoch 1 of its 2 ... finish it with `openlt train --resume`" (was: warned so,
    and --resume then found nothing to train), in its own metrics.json nor in what a stage 2 records of it."""
    import shutil

    source = Path(_metrics(stage2s["rising"])["convergence"]["stage1"]["run"])
    copy = tmp_path / source.name
    shutil.copytree(source, copy)
    log = copy / "metrics.jsonl"
    log.write_text(log.read_text(encoding="utf-8").splitlines(keepends=True)[0], encoding="utf-8")
    assert cli(capsys, "eval", copy, "--quiet")[0] == 0
    assert _metrics(copy)["convergence"]["warning"] is None
    assert "stops at epoch 1, its last checkpoint records 2 trained" in _metrics(copy)["convergence"]["unchecked"]
    from openlt.engine.run import open_run
    from openlt.engine.stage1_record import stage1_warning

    recorded = stage1_warning(open_run(copy), {})
    assert recorded["convergence_warning"] is None
    assert "stops at epoch 1, its last checkpoint records 2 trained" in recorded["convergence_unchecked"]


def test_a_stage2_says_it_when_it_starts_and_a_fit_when_it_ends(stage2s, capsys, tmp_path):
    """`openlt train` of a stage 2 prints its stage-1 run's warning when it starts (was: only its report said it,
    after training), a decoupled fit trained epoch by epoch (cRT) its own curve's note when it ends (was: only a
    stage 1's training printed it), and a run whose metrics.jsonl has a bad line is still evaluated and reported,
    its curve not judged (was: `openlt eval` and `openlt report` refused it; helper trial, session 22)."""
    import shutil

    source = Path(_metrics(stage2s["rising"])["convergence"]["stage1"]["run"])
    code, out, err = cli(capsys, "train", CONFIGS / "decouple_crt.yaml", f"train.init_from={source}",
                         f"out_dir={tmp_path / 'crt'}", "train.epochs=2", "train.device=cpu", "--quiet")
    assert code == 0, err
    said = out + err
    assert "note: the stage-1 run it starts from (" in said and "best validation epoch is 2 of 2" in said
    crt = next((tmp_path / "crt").iterdir())
    own = _metrics(crt)["convergence"]
    if own["warning"] or own["unchecked"]:
        assert f"note: {own['warning'] or NOT_CHECKED + own['unchecked']}" in said
    copy = tmp_path / source.name
    shutil.copytree(source, copy)
    (copy / "metrics.jsonl").write_text('{"epoch": 1}\n{garbage\n{"epoch": 2}\n', encoding="utf-8")  # a torn last line is dropped
    code, out, err = cli(capsys, "eval", copy, "--quiet")
    assert code == 0, err
    assert _metrics(copy)["convergence"]["unchecked"].startswith("its epoch log cannot be read (")
    assert "note: the under-training check was not made: its epoch log cannot be read" in out  # was: silent
    assert "the under-training check was not made: its epoch log cannot be read" in (copy / "report.md").read_text(
        encoding="utf-8")
