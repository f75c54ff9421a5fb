"""A stage 2 and the run it starts from (issue 14): never a silent wrong result, each bad input one line (exit 2)
before any work.

- A decoupled stage 2 records the sha256 of the stage-1 checkpoint it was fitted on (its checkpoint state's
  "stage1"); eval, which reads the stage-1 run's feature cache, refuses once that checkpoint changed (another run
  copied in its place): its head would be applied to another representation. A checkpoint without the record is
  accepted. predict / export / openlt.load_run read only the stage-2 checkpoint, which holds the whole network
  (stage-1 body and head): they are not refused, and give what they gave before the change.
- A run's checkpoints record its class list: inference.json and split_manifest.json edited alike (labels swapped
  in both) are refused, naming the file that differs from the checkpoint.
- A stage 2 from a stage-1 run another process is training (train.lock held) is refused, naming that process.
- FSLwF without a many-shot (base) class is refused before the run directory or any feature exists.
"""

import json
import os
import shutil
from pathlib import Path

import pytest
import yaml
from safetensors import safe_open
from safetensors.torch import save_file

from edited_run import run_files  # tests/helpers
from cli_ok import main_ok
from openlt_processes import lock_holder  # tests/helpers
from tiny_run import cli, tiny_overrides  # tests/helpers

REPORT_FIGURES = "unrasterized"  # tests/conftest.py: report.html figures built, not rendered (none is looked at)

CONFIGS = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "fmnist_lt")


@pytest.fixture(scope="module")
def runs(tmp_path_factory, single_thread):
    """{"stage1": a tiny evaluated run, "other": one of another seed, "copy": a copy of stage1 (the start of
    "ncm", an NCM stage 2 on it), "image": a test image}."""
    tmp = tmp_path_factory.mktemp("stage2_integrity")
    (tmp / "tiny.yaml").write_text("name: tiny\n")
    for name, seed in (("stage1", 0), ("other", 1)):
        main_ok(["train", str(tmp / "tiny.yaml"), *tiny_overrides(tmp, "train.device=cpu", f"seed={seed}"),
                 f"out_dir={tmp / name}", "--quiet"])
    stage1, other = (next((tmp / name).iterdir()) for name in ("stage1", "other"))
    copy = tmp / "s1copy"
    shutil.copytree(stage1, copy)
    main_ok(["train", os.path.join(CONFIGS, "decouple_ncm.yaml"), f"train.init_from={copy}",
             f"out_dir={tmp / 's2'}", "train.device=cpu", "--quiet"])
    ncm = next((tmp / "s2").iterdir())
    image = next((tmp / "images" / "ant").iterdir())
    return {"stage1": stage1, "other": other, "copy": copy, "ncm": ncm, "image": image, "tmp": tmp}


def _command(command, run, image, tmp_path):
    return {"eval": ["eval", run, "--tag", "again"], "predict": ["predict", run, image],
            "export": ["export", run, tmp_path / "bundle"]}[command]


def _sha(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def swapped_stage1(runs):
    """The NCM run's stage-1 folder with the other run's best checkpoint in place of its own, restored after."""
    best = runs["copy"] / "checkpoints" / "best.safetensors"
    kept = best.read_bytes()
    shutil.copyfile(runs["other"] / "checkpoints" / "best.safetensors", best)
    yield _sha(runs["stage1"] / "checkpoints" / "best.safetensors"), _sha(best)
    best.write_bytes(kept)


def test_a_decoupled_run_records_its_stage1_checkpoint_and_class_list(runs):
    with safe_open(str(runs["ncm"] / "checkpoints" / "best.safetensors"), "pt") as fh:
        state = json.loads(fh.metadata()["openlt"])["state"]
    recorded = {key: state["stage1"][key] for key in ("run", "checkpoint", "sha256")}
    assert recorded == {"run": str(runs["copy"].resolve()), "checkpoint": "best",
                        "sha256": _sha(runs["stage1"] / "checkpoints" / "best.safetensors")}
    assert state["stage1"]["config"]["name"] == yaml.safe_load((runs["copy"] / "config.yaml").read_text())["name"]
    manifest = json.loads((runs["ncm"] / "split_manifest.json").read_text())
    assert state["config"]["classes"] == manifest["class_names"] == ["ant", "bee", "cat", "dog"]
    with safe_open(str(runs["stage1"] / "checkpoints" / "last.safetensors"), "pt") as fh:
        assert json.loads(fh.metadata()["openlt"])["state"]["config"]["classes"] == ["ant", "bee", "cat", "dog"]


def test_a_decoupled_run_whose_stage1_checkpoint_changed_is_refused_by_eval(runs, swapped_stage1, tmp_path, capsys):
    then, now = swapped_stage1
    command = "eval"
    before, stage1_before = run_files(runs["ncm"]), run_files(runs["copy"])
    code, out, err = cli(capsys, *_command(command, runs["ncm"], runs["image"], tmp_path))
    assert code == 2 and len(err.strip().splitlines()) == 1 and out == "", err
    assert err.startswith(f"openlt {command}: error: {runs['ncm']} is a decoupled stage 2 (decouple.method=ncm) "
                          f"fitted on the stage-1 run {runs['copy']}'s checkpoints/best.safetensors (sha256 "
                          f"{then[:12]}, recorded in {runs['ncm'] / 'checkpoints' / 'best.safetensors'}), but that "
                          f"checkpoint is now sha256 {now[:12]}"), err
    assert "put the stage-1 run's checkpoint back, or train the stage 2 again" in err
    assert f"train.init_from={runs['copy']}`)" in err
    assert run_files(runs["ncm"]) == before and not (tmp_path / "bundle").exists()
    assert run_files(runs["copy"]) == stage1_before  # no stage-1 feature extracted either


def _predict_json(capsys, run, image):
    code, out, err = cli(capsys, "predict", run, image, "--json")
    assert code == 0 and "error" not in err, err
    return out


def test_predict_export_and_load_run_of_a_stage2_read_its_own_whole_checkpoint(runs, tmp_path, capsys):
    """The stage-2 checkpoint holds the stage-1 body it was fitted on and the head: a stage-1 checkpoint changed
    since does not change what predict, export and openlt.load_run compute (they were refused: issue 14)."""
    import openlt
    import torch

    with safe_open(str(runs["ncm"] / "checkpoints" / "best.safetensors"), "pt") as fh:
        keys = set(fh.keys())
    assert any(k.startswith("model.backbone.") for k in keys) and any(k.startswith("model.classifier.") for k in keys)
    said = _predict_json(capsys, runs["ncm"], runs["image"])
    loaded = openlt.load_run(runs["ncm"], device="cpu")
    labels, features = loaded.predict([runs["image"]]), loaded.features([runs["image"]])
    best = runs["copy"] / "checkpoints" / "best.safetensors"
    kept = best.read_bytes()
    shutil.copyfile(runs["other"] / "checkpoints" / "best.safetensors", best)
    try:
        before = run_files(runs["ncm"])
        assert _predict_json(capsys, runs["ncm"], runs["image"]) == said  # the same labels and scores
        loaded = openlt.load_run(runs["ncm"], device="cpu")
        assert loaded.predict([runs["image"]]) == labels
        assert torch.equal(loaded.features([runs["image"]]), features)
        code, _, err = cli(capsys, "export", runs["ncm"], tmp_path / "bundle")
        assert code == 0 and (tmp_path / "bundle").is_dir(), err
        code, _, err = cli(capsys, "eval", runs["ncm"], "--tag", "again")  # eval reads the stage-1 feature cache
        assert code == 2 and "but that checkpoint is now sha256" in err, err
        assert run_files(runs["ncm"]) == before
    finally:
        best.write_bytes(kept)


def test_the_same_stage1_checkpoint_and_an_old_run_without_the_record_are_accepted(runs, tmp_path, capsys):
    code, _, err = cli(capsys, "predict", runs["ncm"], runs["image"])
    assert code == 0, err  # the stage-1 checkpoint unchanged
    old = tmp_path / runs["ncm"].name  # a stage 2 of an older openlt: no "stage1" record
    shutil.copytree(runs["ncm"], old)
    for name in ("best", "last"):
        path = old / "checkpoints" / f"{name}.safetensors"
        with safe_open(str(path), "pt") as fh:
            meta = json.loads(fh.metadata()["openlt"])
            tensors = {key: fh.get_tensor(key) for key in fh.keys()}
        del meta["state"]["stage1"]
        save_file(tensors, str(path), metadata={"openlt": json.dumps(meta)})
    stage1 = runs["copy"] / "checkpoints" / "best.safetensors"
    kept = stage1.read_bytes()
    shutil.copyfile(runs["other"] / "checkpoints" / "best.safetensors", stage1)
    try:
        code, _, err = cli(capsys, "eval", old, "--tag", "old")  # (predict: the calibration is of its old bytes)
    finally:
        stage1.write_bytes(kept)
    assert code == 0, err


def _swap_labels(run: Path, *files: str) -> None:
    for file in files:
        key = {"inference.json": "classes", "split_manifest.json": "class_names"}[file]
        saved = json.loads((run / file).read_text())
        saved[key][0], saved[key][1] = saved[key][1], saved[key][0]
        (run / file).write_text(json.dumps(saved))


@pytest.mark.parametrize("command", ["eval", "predict", "export"])
def test_class_lists_edited_alike_are_refused_against_the_checkpoint(runs, tmp_path, capsys, command):
    run = tmp_path / runs["stage1"].name
    shutil.copytree(runs["stage1"], run)
    _swap_labels(run, "inference.json", "split_manifest.json")
    before = run_files(run)
    code, out, err = cli(capsys, *_command(command, run, runs["image"], tmp_path))
    assert code == 2 and len(err.strip().splitlines()) == 1 and out == "", err
    assert err.startswith(f"openlt {command}: error: {run / 'inference.json'}: classes (label 0 is 'bee' there, "
                          f"'ant' in the checkpoint) and {run / 'split_manifest.json'}: class_names (label 0 is "
                          f"'bee' there, 'ant' in the checkpoint) differ from the class list the run was trained "
                          f"with, recorded in {run / 'checkpoints'}"), err
    assert "restore inference.json and split_manifest.json (the checkpoint's list, in label order: ant, bee, cat, " \
           "dog)" in err
    assert run_files(run) == before and not (tmp_path / "bundle").exists()


def test_a_manifest_edited_alone_is_named(runs, tmp_path, capsys):
    run = tmp_path / runs["stage1"].name
    shutil.copytree(runs["stage1"], run)
    _swap_labels(run, "split_manifest.json")
    code, _, err = cli(capsys, "eval", run)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"openlt eval: error: {run / 'split_manifest.json'}: class_names (label 0 is 'bee' there, "
                          f"'ant' in the checkpoint) differs from the class list"), err


@pytest.mark.parametrize("config", ["decouple_ncm", "decouple_crt", "oltr_stage2"])
def test_a_stage2_from_a_run_being_trained_is_refused_before_any_work(runs, tmp_path, capsys, config):
    stage1 = runs["stage1"]
    with lock_holder(stage1) as holder:
        code, out, err = cli(capsys, "train", os.path.join(CONFIGS, f"{config}.yaml"), f"train.init_from={stage1}",
                             f"out_dir={tmp_path / 'runs'}", "train.device=cpu", "--quiet")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"openlt train: error: train.init_from={stage1}: {stage1} is being trained by process "
                          f"{holder.pid} on "), err
    assert "; start a stage 2 from it once training has ended" in err and "interrupted" not in err
    assert not (tmp_path / "runs").exists() and not (stage1 / "features").exists()


@pytest.mark.parametrize("overrides, message", [
    (["eval.many_above=1000"], "decouple.method=fslwf needs many-shot (base) classes: none of the 4 classes has "
                               "more than eval.many_above=1000 training images"),
    (["eval.many_above=5", "eval.few_below=2", "decouple.fslwf_novel_classes=4"],
     "decouple.fslwf_novel_classes=4 needs more base (many-shot) classes than that; this run has 4"),
])
def test_fslwf_without_enough_base_classes_is_refused_before_the_run_or_features(runs, tmp_path, capsys, overrides,
                                                                                 message):
    stage1 = runs["stage1"]
    code, out, err = cli(capsys, "train", os.path.join(CONFIGS, "decouple_fslwf.yaml"), f"train.init_from={stage1}",
                         f"out_dir={tmp_path / 'runs'}", "train.device=cpu", "decouple.fslwf_epochs=1",
                         "decouple.fslwf_steps=2", *overrides, "--quiet")
    assert code == 2 and len(err.strip().splitlines()) == 1 and err.startswith(f"openlt train: error: {message}"), err
    assert not (tmp_path / "runs").exists() and not (stage1 / "features").exists()


def test_load_run_of_class_lists_edited_alike_is_refused(runs, tmp_path):
    import openlt
    from openlt.errors import RunDirError

    run = tmp_path / runs["stage1"].name
    shutil.copytree(runs["stage1"], run)
    _swap_labels(run, "inference.json", "split_manifest.json")
    with pytest.raises(RunDirError) as caught:
        openlt.load_run(run, device="cpu")
    assert str(caught.value).startswith(f"{run / 'inference.json'}: classes (label 0 is 'bee' there, 'ant' in the "
                                        f"checkpoint) and {run / 'split_manifest.json'}: class_names")
