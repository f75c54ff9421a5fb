"""A finished run's config.yaml edited after training (issue 14): `openlt eval`, `predict`, `export` and
`openlt.load_run` rebuild the run's network from config.yaml, so a key that defines it (model.*, the head's options,
decouple.method, the data's kind / transform / size / channels; train.init_from of a decoupled run, whose
evaluation reads the stage-1 run's feature cache) must still have the value its checkpoint records
(engine/runtime.py `trained_config`): else one line naming config.yaml, the key, both values and the remedy, exit 2,
nothing written. Evaluation settings (eval.*, train.device, data.workers, ...) stay editable; a checkpoint written
before the record existed is taken as it is."""

import json
import os
import shutil

import pytest
from safetensors import safe_open
from safetensors.torch import save_file

from edited_run import edited_copy, run_files  # tests/helpers
from tiny_run import cli  # tests/helpers
from cli_ok import main_ok
from openlt.config import build_config
from openlt.engine.checkpoint import checkpoint_state
from openlt.engine.runtime import config_change, defining_config
from openlt.errors import ConfigError

REPORT_FIGURES = "unrasterized"  # tests/conftest.py: report.html figures built, not rendered (none is looked at)

CONFIGS = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "fmnist_lt")


@pytest.fixture(scope="module")
def runs(tmp_path_factory, shared_run, single_thread):
    """(a tiny evaluated stage-1 run, an evaluated NCM stage-2 run on it, a test image)."""
    tmp = shared_run("cli-cpu", tmp_path_factory.mktemp("edited_config"))  # `openlt train` of tiny.yaml there
    stage1 = next((tmp / "runs").iterdir())
    main_ok(["train", os.path.join(CONFIGS, "decouple_ncm.yaml"), f"train.init_from={stage1}",
             f"out_dir={tmp / 's2'}", "train.device=cpu", "--quiet"])
    stage2 = next((tmp / "s2").iterdir())
    image = next((tmp / "images" / "ant").iterdir())
    return stage1, stage2, image


def _command(command, run, image, tmp_path):
    return {"eval": ["eval", run], "predict": ["predict", run, image],
            "export": ["export", run, tmp_path / "bundle"]}[command]


EDITS = [  # (which run, edits, key, value trained with, value now)
    (0, {"model__classifier": "cosine"}, "model.classifier", "linear", "cosine"),
    (0, {"model__head__scale": 32.0}, "model.head.scale", "16.0", "32.0"),
    (0, {"data__image_size": 12}, "data.image_size", "16", "12"),
    (0, {"data__transform": "imagenet"}, "data.transform", "auto", "imagenet"),
    (1, {"model__head__ncm_metric": "euclidean"}, "model.head.ncm_metric", "cosine", "euclidean"),
]


@pytest.mark.parametrize("command", ["eval", "predict", "export"])
def test_an_edit_that_makes_the_config_invalid_names_config_yaml_and_the_clash(runs, tmp_path, capsys, command):
    # an NCM run's decouple.method edited to crt: its model.classifier=ncm no longer builds (the config check
    # refuses ncm outside decouple.method=ncm), so the config's own error comes first, naming the file
    run = edited_copy(runs[1], tmp_path, decouple__method="crt")
    before = run_files(run)
    code, out, err = cli(capsys, *_command(command, run, runs[2], tmp_path))
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"openlt {command}: error: {run / 'config.yaml'}: "), err
    assert "'model.classifier' is 'ncm'" in err and "decouple.method=crt" in err and "edited by hand" in err, err
    assert run_files(run) == before


@pytest.mark.parametrize("command", ["eval", "predict", "export"])
@pytest.mark.parametrize("which, edits, key, then, now", EDITS)
def test_a_finished_run_whose_defining_key_was_edited_is_refused(runs, tmp_path, capsys, command, which, edits,
                                                                  key, then, now):
    run = edited_copy(runs[which], tmp_path, **edits)
    before = run_files(run)
    code, out, err = cli(capsys, *_command(command, run, runs[2], tmp_path))
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"openlt {command}: error: {run / 'config.yaml'}: {key} is {now} now, "
                          f"but the run was trained with {then} (recorded in {run / 'checkpoints'}"), err
    assert f"`openlt {command}` rebuilds the network" in err and f"set {key} back to {then}, or train a new run" in err
    assert "eval.*" in err and out == ""
    assert run_files(run) == before and not (tmp_path / "bundle").exists()  # nothing evaluated, labelled or written


def test_a_decoupled_runs_stage1_run_is_fixed_for_its_evaluation(runs, tmp_path, capsys):
    """A decoupled run's evaluation reads train.init_from's feature cache: another stage-1 run (other weights) is
    refused; a copy with the same checkpoint is the same stage-1 run (tests/engine/test_run_dir_handling.py)."""
    from safetensors.torch import load_file, save_file

    other = tmp_path / "other-stage1"
    shutil.copytree(runs[0], other)
    for name in ("best", "last"):
        tensors = load_file(other / "checkpoints" / f"{name}.safetensors")
        first = next(iter(tensors))
        tensors[first] = tensors[first] + 1
        save_file(tensors, str(other / "checkpoints" / f"{name}.safetensors"),
                  metadata={"format": "openlt-checkpoint/1"})
    run = edited_copy(runs[1], tmp_path, train__init_from=str(other))
    code, _, err = cli(capsys, "eval", run)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert f"train.init_from is {other} now, but the run was trained with {runs[0]}" in err


def test_evaluation_settings_stay_editable(runs, tmp_path, capsys):
    run = edited_copy(runs[0], tmp_path, eval__batch_size=32, eval__open_score="energy", data__workers=0,
                  train__device="cpu", train__amp="none", train__epochs=5, train__lr=0.5)
    code, _, err = cli(capsys, "eval", run, "--quiet")
    assert code == 0, err
    assert json.loads((run / "metrics.json").read_text())["open_score"]["name"] == "energy"
    code, out, err = cli(capsys, "predict", run, runs[2], "--json")
    assert code == 0 and len(json.loads(out)) == 1, err


def test_predict_says_when_config_yaml_names_another_score_than_the_runs_decision(runs, tmp_path, capsys):
    """(Session 27: `eval.open_score: energy` written into config.yaml after the run's evaluation: predict used
    calibration.json's msp without a word, and `--threshold 4.1` was refused as outside msp's range.)"""
    run = edited_copy(runs[0], tmp_path, eval__open_score="energy")
    code, out, err = cli(capsys, "predict", run, runs[2], "--json")
    assert code == 0 and len(json.loads(out)) == 1, err
    assert err == (f"openlt: warning: {run / 'config.yaml'}: eval.open_score is energy, but the run's own decision "
                   f"({run / 'calibration.json'}) scores msp: msp is used; `openlt eval {run}` makes energy the "
                   f"run's own\n")


def test_load_run_refuses_it_too(runs, tmp_path):
    import openlt

    run = edited_copy(runs[0], tmp_path, model__head__scale=8.0)
    with pytest.raises(ConfigError, match=r"model.head.scale is 8.0 now, but the run was trained with 16.0 .*; "
                                          r"loading the run rebuilds the network the run trained"):
        openlt.load_run(run, device="cpu")


def _without_recorded_config(path):
    """Rewrite checkpoint `path` as an older openlt wrote it: no "config" in its state."""
    with safe_open(str(path), framework="pt") as fh:
        meta = fh.metadata()
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    openlt_meta = json.loads(meta["openlt"])
    openlt_meta["state"].pop("config")
    save_file(tensors, str(path), metadata={**meta, "openlt": json.dumps(openlt_meta)})


def test_checkpoints_without_the_record_are_taken_as_they_are(runs, tmp_path, capsys):
    run = edited_copy(runs[0], tmp_path, model__head__scale=32.0)  # no effect on a linear head's weights
    for name in ("best", "last"):
        _without_recorded_config(run / "checkpoints" / f"{name}.safetensors")
        assert "config" not in checkpoint_state(run / "checkpoints" / f"{name}.safetensors")
    code, out, err = cli(capsys, "eval", run, "--quiet")  # (the rewritten checkpoints need a new calibration)
    assert code == 0 and err == "", err
    code, out, err = cli(capsys, "predict", run, runs[2], "--json")
    assert code == 0 and err == "" and len(json.loads(out)) == 1, err


def test_both_checkpoints_record_the_config_stage2_too(runs):
    for run in runs[:2]:
        for name in ("best", "last"):
            recorded = checkpoint_state(run / "checkpoints" / f"{name}.safetensors")["config"]
            assert recorded["model.classifier"] == ("ncm" if run == runs[1] else "linear")
            assert recorded["decouple.method"] == ("ncm" if run == runs[1] else "none")


def test_paths_are_compared_resolved(tmp_path, monkeypatch):
    """train.init_from recorded absolute; the same folder named relatively or through a symlink is no change."""
    (tmp_path / "stage1").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "stage1")
    monkeypatch.chdir(tmp_path)
    recorded = defining_config(build_config(None, ["train.init_from=stage1"]))
    assert recorded["train.init_from"] == str(tmp_path / "stage1")
    for same in ("stage1", str(tmp_path / "stage1"), "link", "./stage1/"):
        assert config_change(recorded, build_config(None, [f"train.init_from={same}"]), False) is None, same
    (tmp_path / "other").mkdir()
    assert config_change(recorded, build_config(None, ["train.init_from=other"]), False) == (
        "train.init_from", str(tmp_path / "stage1"), str(tmp_path / "other"))
    # an older openlt recorded paths as given: a relative one is not compared (its working directory is unknown)
    older = {**recorded, "model.pretrained": "weights/r18.pth"}
    assert config_change(older, build_config(None, ["train.init_from=stage1", f"model.pretrained={tmp_path / 'other'}"]),
                         False) is None
    # a jointly trained run's evaluation does not read train.init_from
    assert config_change(recorded, build_config(None, ["train.init_from=other"]), True) is None


@pytest.mark.parametrize("config", ["decouple_ncm.yaml", "oltr_stage2.yaml"])
def test_a_stage2_from_an_edited_stage1_run_is_refused_before_any_work(runs, tmp_path, capsys, config):
    stage1 = edited_copy(runs[0], tmp_path, model__head__scale=8.0)
    code, out, err = cli(capsys, "train", os.path.join(CONFIGS, config), f"train.init_from={stage1}",
                         f"out_dir={tmp_path / 'out'}", "train.device=cpu", "--quiet")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert f"{stage1 / 'config.yaml'}: model.head.scale is 8.0 now, but the run was trained with 16.0" in err
    assert "loading the run rebuilds the network the run trained" in err
    assert not (tmp_path / "out").exists()


def test_eval_of_a_run_whose_data_moved_names_the_key_and_takes_the_new_folder(runs, tmp_path, capsys):
    """data.root of config.yaml gone (the images moved): one line naming RUN/config.yaml's key and the override to
    pass (was 'data root does not exist or is not a folder: OLD'), a bad override named as such, and
    `openlt eval RUN data.root=NEW` evaluates (override_scope.check_data_folders, shared with identify)."""
    moved = tmp_path / "moved_images"
    shutil.copytree(runs[2].parent.parent, moved)
    run = edited_copy(runs[0], tmp_path, data__root=str(tmp_path / "gone"))
    code, _, err = cli(capsys, "eval", run, "--quiet")
    assert code == 2 and err == (
        f"openlt eval: error: {run / 'config.yaml'}: data.root {tmp_path / 'gone'} is not a folder; `openlt eval` "
        f"reads the run's data there: if the data moved, pass data.root=NEW_FOLDER (`openlt eval {run} "
        "data.root=NEW_FOLDER ...`)\n"), err
    code, _, err = cli(capsys, "eval", run, f"data.root={tmp_path / 'nowhere'}", "--quiet")
    assert code == 2 and err == f"openlt eval: error: data.root={tmp_path / 'nowhere'}: no such folder\n", err
    code, _, err = cli(capsys, "eval", run, f"data.root={moved}", "--quiet")
    assert code == 0, err
