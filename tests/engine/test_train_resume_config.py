"""`openlt train --resume` after an edit of the run's config.yaml (engine/train.py `check_resume_config`): a key
that defines the data, the network or its input transform (data.image_size, model.*, ...) is refused in one line
naming the key, both values and what may change, nothing written; so are where the weights started
(train.init_from) and what the optimizer state was built with (train.freeze_backbone, train.lr, train.backbone_lr,
train.momentum, ...: issue 14); training-schedule and evaluation keys (train.epochs, train.min_lr, eval.*) may change. The last checkpoint records the defining keys the run started with; a run
without that record (no checkpoint yet, or an older openlt) is checked against its inference.json."""

import json
import shutil

import pytest

from edited_run import edited_copy, run_files  # tests/helpers
from tiny_run import cli, tiny_overrides  # tests/helpers
from cli_ok import main_ok
from openlt.engine.checkpoint import checkpoint_state


@pytest.fixture(scope="module")
def trained(tmp_path_factory, single_thread):
    tmp = tmp_path_factory.mktemp("resume_config")
    (tmp / "tiny.yaml").write_text("name: tiny\n")
    main_ok(["train", str(tmp / "tiny.yaml"), *tiny_overrides(tmp, "train.epochs=1", "train.device=cpu"),
             "--quiet", "--no-eval"])
    return next((tmp / "runs").iterdir())


def test_the_last_checkpoint_records_the_defining_keys(trained):
    recorded = checkpoint_state(trained / "checkpoints" / "last.safetensors")["config"]
    assert recorded["data.image_size"] == 16 and recorded["model.backbone"] == "resnet10"
    assert "model.head.scale" in recorded and "train.epochs" not in recorded and "data.root" not in recorded


@pytest.mark.parametrize("edits, key, then, now", [
    ({"data__image_size": 12, "train__epochs": 2}, "data.image_size", "16", "12"),
    ({"model__classifier": "cosine", "train__epochs": 2}, "model.classifier", "linear", "cosine"),
    ({"model__head__scale": 32.0}, "model.head.scale", "16.0", "32.0"),
    # what the optimizer state was built with (issue 14): its parameter groups (a frozen backbone has none), and
    # hyper-parameters the checkpoint's would silently replace
    ({"train__freeze_backbone": True, "train__epochs": 2}, "train.freeze_backbone", "false", "true"),
    ({"train__backbone_lr": 0.001, "train__epochs": 2}, "train.backbone_lr", "null", "0.001"),
    ({"train__lr": 0.01, "train__epochs": 2}, "train.lr", "0.05", "0.01"),
    ({"train__momentum": 0.5, "train__epochs": 2}, "train.momentum", "0.9", "0.5"),
    # the recipe the finished run's config.yaml would name (was: resumed without a word, a CE / instance-balanced
    # run of seed 0 finished as focal / class-balanced of seed 5, and `openlt summary` took its seed as independent)
    ({"seed": 5, "train__epochs": 2}, "seed", "0", "5"),
    ({"train__loss": "focal", "train__epochs": 2}, "train.loss", "ce", "focal"),
    ({"train__sampler": "class_balanced", "train__epochs": 2}, "train.sampler", "instance", "class_balanced"),
])
def test_resume_refuses_an_edited_defining_key(trained, tmp_path, capsys, edits, key, then, now):
    run = edited_copy(trained, tmp_path, **edits)
    before = run_files(run, skip=("train.lock",))
    code, out, err = cli(capsys, "train", "--resume", run, "--quiet")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert f"{key} is {now} now, but the run started with {then}" in err
    assert "last.safetensors" in err and "train.epochs" in err and "may change on resume" in err
    assert "set it back, or start a new run" in err and err.startswith(f"openlt train: error: {run / 'config.yaml'}: ")
    assert "resuming" not in out and "Traceback" not in err and "optimizer state" not in err
    assert run_files(run, skip=("train.lock",)) == before  # nothing trained, evaluated or rewritten


def test_resume_refuses_another_init_from(trained, tmp_path, capsys):
    """train.init_from is where the weights started (an OLTR stage 2's stage-1 run): fixed on resume."""
    run = edited_copy(trained, tmp_path, train__init_from=str(trained), train__epochs=2)
    before = run_files(run, skip=("train.lock",))
    code, out, err = cli(capsys, "train", "--resume", run, "--quiet")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert f"train.init_from is {trained} now, but the run started with null" in err and "resuming" not in out
    assert run_files(run, skip=("train.lock",)) == before


def test_resume_falls_back_to_inference_json_without_a_recorded_config(trained, tmp_path, capsys):
    """A run killed in epoch 1 (no checkpoint) edited to another size: inference.json names the size it started
    with."""
    run = edited_copy(trained, tmp_path, data__image_size=24)
    shutil.rmtree(run / "checkpoints")
    (run / "metrics.jsonl").unlink()
    code, out, err = cli(capsys, "train", "--resume", run, "--quiet")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "data.image_size resolves to 24 now, but the run started with 16" in err
    assert "inference.json" in err and not (run / "checkpoints").exists()


def test_resume_with_more_epochs_and_other_eval_settings_trains_on(trained, tmp_path, capsys):
    run = edited_copy(trained, tmp_path, train__epochs=2, train__min_lr=0.001, eval__batch_size=32, data__workers=0)
    code, out, err = cli(capsys, "train", "--resume", run, "--quiet", "--no-eval")
    assert code == 0, err
    assert "resuming" in out and "after epoch 1/2" in out
    assert checkpoint_state(run / "checkpoints" / "last.safetensors")["epoch"] == 1
    assert json.loads((run / "inference.json").read_text())["image_size"] == 16
