"""A `--resume` that changes training keys part-way (train.epochs 1 -> 2: the learning-rate curve restarts from the
step the run had reached) makes the run a recipe of its own (trial 19 D7): the checkpoints record what it trained
with ("recipe") and what each resume changed ("resumed"), the resume says so in a note, and `openlt summary` does not
average it with a run trained with the new settings from the start (was: config.yaml said 2 epochs and the two
were one recipe). The recorded recipe, not config.yaml, names the run: a config.yaml edited after training does
not change what a run trained with."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml

from cli_ok import main_ok  # tests/helpers
from tiny_run import cli, tiny_overrides
from openlt.config import build_config
from openlt.engine.checkpoint import checkpoint_state
from openlt.engine.stage1_record import stage1_record
from openlt.engine.run import open_run
from openlt.engine.train import resumed_changes, trained_recipe
from openlt.reporting.summary import RESUMED_KEY, load_metrics, run_recipe

REPORT_FIGURES = "unrasterized"  # tests/conftest.py: report.html figures built, not rendered (none is looked at)


def _train(tmp, *extra):
    main_ok(["train", tmp / "tiny.yaml", *tiny_overrides(tmp, "train.device=cpu", *extra), "--quiet"])
    return next((tmp / "runs").iterdir())


@pytest.fixture(scope="module")
def runs(tmp_path_factory, single_thread):
    """extended: 1 epoch (seed 0), then resumed with train.epochs=2; straight: 2 epochs from the start (seed 1)."""
    root = tmp_path_factory.mktemp("resume_recipe")
    made = {}
    for name, extra in (("extended", ("train.epochs=1", "seed=0")), ("straight", ("train.epochs=2", "seed=1"))):
        (root / name).mkdir()
        (root / name / "tiny.yaml").write_text("name: tiny\n")
        made[name] = _train(root / name, *extra)
    run = made["extended"]
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["train"]["epochs"] = 2
    (run / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    made["resume_out"] = main_ok(["train", "--resume", run])
    return made


def test_the_checkpoints_record_the_resume_and_the_recipe(runs):
    last = checkpoint_state(runs["extended"] / "checkpoints" / "last.safetensors")
    assert last["resumed"] == [{"after_epoch": 1, "changes": {"train.epochs": [1, 2]}}]
    assert last["recipe"]["train.epochs"] == 2 and last["recipe"]["train.lr"] == 0.05
    assert not any(key.startswith("eval.") for key in last["recipe"]) and "seed" not in last["recipe"]
    straight = checkpoint_state(runs["straight"] / "checkpoints" / "last.safetensors")
    assert "resumed" not in straight and straight["recipe"]["train.epochs"] == 2
    assert "note: resumed after epoch 1 with train.epochs 1 -> 2" in runs["resume_out"]


def test_summary_refuses_to_average_an_extended_run_with_a_straight_one(runs, capsys):
    code, out, err = cli(capsys, "summary", runs["extended"], runs["straight"])
    assert code == 2 and "Traceback" not in err, err
    assert f"{RESUMED_KEY}: after epoch 1: train.epochs 1 -> 2 vs none" in err


def test_a_resume_without_a_change_records_none(runs):
    cfg = build_config(runs["straight"] / "config.yaml", [])
    state = checkpoint_state(runs["straight"] / "checkpoints" / "last.safetensors")
    notes = []
    assert resumed_changes(cfg, state, 2, notes.append) == [] and notes == []
    assert resumed_changes(cfg, {**state, "resumed": [{"after_epoch": 1, "changes": {}}]}, 2, notes.append) == [
        {"after_epoch": 1, "changes": {}}]  # the record of an earlier resume is kept
    assert resumed_changes(cfg, {k: v for k, v in state.items() if k != "recipe"}, 2, notes.append) == []  # older run
    assert trained_recipe(cfg) == state["recipe"]


def test_a_config_yaml_edited_after_training_does_not_change_the_recipe(runs, tmp_path):
    copy = tmp_path / runs["straight"].name
    shutil.copytree(runs["straight"], copy)
    config = yaml.safe_load((copy / "config.yaml").read_text())
    config["train"]["epochs"], config["train"]["min_lr"] = 48, 0.01
    (copy / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    recipe = run_recipe(load_metrics(copy / "metrics.json"))
    assert recipe["train.epochs"] == 2 and recipe["train.min_lr"] == 0.0 and recipe[RESUMED_KEY] == "none"


def test_a_stage2_records_its_stage1_runs_resume(runs):
    record = stage1_record(open_run(runs["extended"]), "best")
    assert record["resumed"] == [{"after_epoch": 1, "changes": {"train.epochs": [1, 2]}}]
    assert json.loads(json.dumps(record)) == record  # checkpoint metadata is JSON


def test_summary_compares_the_stage1_runs_resumes(runs, tmp_path, capsys):
    stage2 = []
    for name in ("extended", "straight"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "s2.yaml").write_text("name: ncm\n")
        main_ok(["train", tmp_path / name / "s2.yaml", "decouple.method=ncm", f"train.init_from={runs[name]}",
                 f"out_dir={tmp_path / name / 'runs'}", "train.device=cpu", "--quiet"])
        stage2.append(next((tmp_path / name / "runs").iterdir()))
    # the stage-1 run's recipe as its last checkpoint records it (the run as it trained to the end), whichever
    # epoch's weights its best checkpoint holds
    recipe = run_recipe(load_metrics(stage2[0] / "metrics.json"))
    assert recipe[f"train.init_from:{RESUMED_KEY}"] == "after epoch 1: train.epochs 1 -> 2"
    code, out, err = cli(capsys, "summary", *stage2)
    assert code == 2 and "Traceback" not in err, err
    assert f"train.init_from:{RESUMED_KEY}: after epoch 1: train.epochs 1 -> 2 vs none" in err


def test_a_key_the_checkpoint_does_not_record_is_no_change(runs):
    """A run checkpointed by an openlt before a config key was added (or after one was removed): the key is no
    change a resume made (was: "train.eval_every null -> 1" recorded, and summary refused the run beside fresh ones)."""
    cfg = build_config(runs["straight"] / "config.yaml", [])
    state = checkpoint_state(runs["straight"] / "checkpoints" / "last.safetensors")
    older = {**state, "recipe": {k: v for k, v in state["recipe"].items() if k != "train.eval_every"}}
    notes = []
    assert resumed_changes(cfg, older, 2, notes.append) == [] and notes == []
    older["recipe"]["train.gone_key"] = 3  # a key this openlt no longer has
    assert resumed_changes(cfg, older, 2, notes.append) == [] and notes == []


def test_a_loss_args_entry_added_on_resume_is_a_change(runs):
    """train.loss_args is compared whole (summary.fold_free_mappings): an entry added on resume is a change, though
    flattened it is a key the checkpoint's recipe lacks."""
    cfg = build_config(runs["straight"] / "config.yaml", ["train.loss=focal", "train.loss_args.gamma=0.5"])
    state = checkpoint_state(runs["straight"] / "checkpoints" / "last.safetensors")
    state = {**state, "recipe": {**state["recipe"], "train.loss": "focal"}}  # (the loss itself is refused earlier)
    notes = []
    assert resumed_changes(cfg, state, 2, notes.append) == [
        {"after_epoch": 2, "changes": {"train.loss_args": [{}, {"gamma": 0.5}]}}]
    assert "train.loss_args {} -> {'gamma': 0.5}" in notes[0]


def test_a_changed_open_split_is_no_training_change(runs):
    """The open split is read by evaluation only: a `--resume` with data.open_split=null (or another file) records no
    change, so summary still averages the run with its seeds (was: "data.open_split open.txt -> None", the run a
    recipe of its own)."""
    cfg = build_config(runs["straight"] / "config.yaml", ["data.open_split=null"])
    state = checkpoint_state(runs["straight"] / "checkpoints" / "last.safetensors")
    notes = []
    assert resumed_changes(cfg, state, 2, notes.append) == [] and notes == []
    assert "data.open_split" not in state["recipe"] and "data.val_split" in state["recipe"]
