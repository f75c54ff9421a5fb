"""engine/stage1_record.py: a stage 2 (decoupled, or one that trains from train.init_from) records the stage-1 run
it started from in its checkpoints' state ("stage1": config.yaml, precision, sha256), and `openlt summary` compares
stage-2 runs' stage-1 recipes from that record, so the check holds after the stage-1 run moved (trial 14a D2) and a
repeated stage-2 seed on stage-1 runs of other seeds is averaged (trial 14a S3). Real tiny runs."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from tiny_run import TINY, train_with_cli  # tests/helpers
from openlt.engine.checkpoint import checkpoint_state
from openlt.io import sha256_file

REPORT_FIGURES = "unrasterized"  # tests/conftest.py: report.html figures built, not rendered (none is looked at)

CONFIGS = Path(__file__).parents[2] / "configs" / "fmnist_lt"
STAGE1 = [*(t for t in TINY if not t.startswith("train.epochs=")), "train.device=cpu", "train.amp=none"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, single_thread):
    """Stage-1 runs of seeds 1 and 2 (1 epoch) and of seed 3 (2 epochs), an NCM run (default seed) on each, and an
    evaluated stage 2 that trains (stage2_plain) on the seed-1 run."""
    root = tmp_path_factory.mktemp("stage1_record")
    stage1 = {seed: train_with_cli(root / f"s1-{seed}", [*STAGE1, f"seed={seed}", f"train.epochs={epochs}"])
              for seed, epochs in ((1, 1), (2, 1), (3, 2))}
    ncm = {}
    for seed, source in stage1.items():
        assert cli(None, "train", CONFIGS / "decouple_ncm.yaml", f"train.init_from={source}",
                   f"out_dir={root / f'ncm-{seed}'}", "train.device=cpu", "--quiet")[0] == 0
        ncm[seed] = next((root / f"ncm-{seed}").iterdir())
    source = yaml.safe_load((stage1[1] / "config.yaml").read_text())
    assert cli(None, "train", CONFIGS / "stage2_plain.yaml", f"train.init_from={stage1[1]}",
               f"data.root={source['data']['root']}", f"data.split_dir={stage1[1] / 'splits'}",
               f"out_dir={root / 'trained'}", *(t for t in STAGE1 if not t.startswith("data.split")), "train.epochs=1",
               "train.warmup_epochs=0", "--quiet")[0] == 0
    return root, stage1, ncm, next((root / "trained").iterdir())


def cli(capsys, *args):
    """openlt's main on `args`: (exit status, stdout, stderr); capsys None: the output is not read."""
    from openlt.cli import main

    if capsys is not None:
        capsys.readouterr()
    code = main([str(a) for a in args])
    out, err = capsys.readouterr() if capsys is not None else ("", "")
    return code, out, err


def test_a_stage_two_records_its_stage_one_runs_recipe_and_checkpoint(runs):
    _, stage1, ncm, trained = runs
    for run, source in ((ncm[2], stage1[2]), (trained, stage1[1])):
        for name in ("best", "last"):
            record = checkpoint_state(run / "checkpoints" / f"{name}.safetensors")["stage1"]
            assert record["run"] == str(source.resolve()) and record["checkpoint"] == "best"
            assert record["sha256"] == sha256_file(source / "checkpoints" / "best.safetensors")
            assert record["config"] == yaml.safe_load((source / "config.yaml").read_text())
            assert record["amp"] == "none" and "stage1" not in record


def test_summary_compares_the_recorded_stage_one_recipes_after_the_stage_one_runs_moved(runs, capsys):
    root, stage1, ncm, _ = runs
    code, out, err = cli(capsys, "summary", f"ncm={ncm[1]}", f"ncm={ncm[2]}")  # S3: both stage-2 seed 0
    assert code == 0 and "| ncm ‡ | 2 |" in out and "note: stage-1 recipe unknown" not in out, err
    code, out, err = cli(capsys, "summary", f"ncm={ncm[1]}", f"ncm={ncm[3]}")
    assert code == 2 and "(train.init_from:train.epochs: 1 vs 2; " in err, err
    moved = {seed: root / f"moved-{seed}" for seed in stage1}
    for seed, source in stage1.items():
        shutil.move(source, moved[seed])
    try:
        code, out, err = cli(capsys, "summary", f"ncm={ncm[1]}", f"ncm={ncm[3]}")
        assert code == 2 and "(train.init_from:train.epochs: 1 vs 2; " in err, err
        code, out, err = cli(capsys, "summary", f"ncm={ncm[1]}", f"ncm={ncm[2]}")
        assert code == 0 and "| ncm ‡ | 2 |" in out and "note: stage-1 recipe unknown" not in out, err
    finally:
        for seed, source in stage1.items():
            shutil.move(moved[seed], source)


def test_a_stage2_of_a_stage2_records_its_stage1s_warning(tmp_path):
    """A stage 2 started from a stage 2 (NCM on an OLTR run) whose own log is fine records the warning that run's
    checkpoint records of its own stage-1 run, naming it (stage1_warning); its own unchecked note otherwise. A log
    with an unreadable line is no curve: unchecked, saying why, and the upstream warning still carried."""
    from openlt.config import build_config
    from openlt.engine.run import new_run
    from openlt.engine.stage1_record import stage1_warning

    cfg = build_config(None, [f"out_dir={tmp_path}", "train.epochs=4"])
    run = new_run(cfg, "oltr")
    run.write_config(cfg)
    run.log_file.write_text("".join(f'{{"epoch": {e}, "val": {{"overall": 0.5}}}}\n' for e in range(1, 5)),
                            encoding="utf-8")
    upstream = {"run": "/runs/plain", "convergence_warning": "the model may be under-trained: its best is late"}
    assert stage1_warning(run, {}) == {"convergence_warning": None, "convergence_unchecked": None}
    carried = ("the model may be under-trained: it starts from the stage-1 run /runs/plain, which may be: its best "
               "is late")
    assert stage1_warning(run, {"stage1": upstream}) == {"convergence_warning": carried, "convergence_unchecked": None}
    unjudged = {"run": "/runs/plain", "convergence_warning": None, "convergence_unchecked": "no validation top-1"}
    assert stage1_warning(run, {"stage1": unjudged}) == {  # its stage 1's curve could not be judged: carried too
        "convergence_warning": None, "convergence_unchecked": "it starts from the stage-1 run /runs/plain: no validation top-1"}
    run.log_file.write_text('{"epoch": "x"}\n{"epoch": 1}\n', encoding="utf-8")
    assert stage1_warning(run, {"stage1": upstream}) == {"convergence_warning": carried, "convergence_unchecked": None}
    unreadable = stage1_warning(run, {})
    assert unreadable["convergence_warning"] is None
    assert unreadable["convergence_unchecked"].startswith("its epoch log cannot be read (") and "record 1" in \
        unreadable["convergence_unchecked"]
    run.log_file.write_text('{"epoch": 1, "val": {"overall": 0.5}}\n', encoding="utf-8")  # 1 of 4 epochs, no ckpt
    assert stage1_warning(run, {"stage1": unjudged})["convergence_warning"].startswith("the model may be under")


def test_run_convergence_plans_the_epochs_the_checkpoint_trained_with(tmp_path):
    """A run killed after epoch 2 of 5 whose config.yaml was then edited to 2 epochs is still "stopped after epoch 2
    of its 5" (its last checkpoint's recipe; was: judged as a finished 2-epoch run, helper trial, session 22); a
    log with an unreadable line is not judged, saying why (was: eval and report refused the run); a closed-form
    stage 2 (NCM) has no curve to judge, whatever its one record."""
    from torch import nn

    from openlt.config import build_config
    from openlt.engine.checkpoint import save_checkpoint
    from openlt.engine.run import new_run
    from openlt.engine.stage1_record import run_convergence

    cfg = build_config(None, [f"out_dir={tmp_path}", "train.epochs=2"])  # the edited config
    run = new_run(cfg, "killed")
    run.write_config(cfg)
    run.log_file.write_text("".join(f'{{"epoch": {e}, "val": {{"overall": 0.5}}}}\n' for e in (1, 2)), encoding="utf-8")
    save_checkpoint(run.checkpoint("last"), nn.Linear(2, 2), None, {"epoch": 1, "recipe": {"train.epochs": 5}})
    warning = run_convergence(run, cfg)["warning"]  # the remedy names the edit: --resume alone finds the run done
    assert "stopped after epoch 2 of its 5" in warning and "set train.epochs back to 5 in its config.yaml (it says 2 " \
        "now), then finish it with `openlt train --resume`" in warning
    save_checkpoint(run.checkpoint("last"), nn.Linear(2, 2), None, {"epoch": 1})  # an older openlt: config.yaml's 2
    assert run_convergence(run, cfg)["warning"] is None
    run.log_file.write_text('{"epoch": 1}\n{garbage\n{"epoch": 2}\n', encoding="utf-8")
    check = run_convergence(run, cfg)
    assert check["warning"] is None and check["unchecked"].startswith("its epoch log cannot be read (")
    ncm = build_config(None, [f"out_dir={tmp_path}", "decouple.method=ncm", f"train.init_from={run.path}"])
    run.log_file.write_text('{"epoch": 1, "val": {"overall": 0.5}}\n', encoding="utf-8")
    assert (run_convergence(run, ncm)["warning"], run_convergence(run, ncm)["unchecked"]) == (None, None)
    # FSLwF logs its base classifier's epochs without validation by design: not judged (was: "not made: no
    # validation top-1 ... (no validation split, ...)" on a run that has one; session 23)
    fslwf = build_config(None, [f"out_dir={tmp_path}", "decouple.method=fslwf", f"train.init_from={run.path}"])
    run.log_file.write_text("".join(f'{{"epoch": {e}, "train_loss": 0.1}}\n' for e in range(1, 11)), encoding="utf-8")
    assert (run_convergence(run, fslwf)["warning"], run_convergence(run, fslwf)["unchecked"]) == (None, None)
    # ... and metrics.json says so (trial 24: the empty check read as a check made)
    assert run_convergence(run, fslwf)["not_judged"] == ("decouple.method=fslwf logs no validation curve to judge "
                                                         "(by design)")
    assert "not_judged" not in run_convergence(run, cfg)
    crt = build_config(None, [f"out_dir={tmp_path}", "decouple.method=crt", f"train.init_from={run.path}"])
    assert run_convergence(run, crt)["unchecked"].startswith("no validation top-1")  # cRT's log has it: judged
