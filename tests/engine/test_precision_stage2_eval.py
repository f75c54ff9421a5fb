"""Issue 14, trial 9 D1 / D5 / D6: one truth about precision.

* D1: a decoupled stage 2 runs in the precision its (stage-1) features were extracted in: recorded in its
  checkpoints, used by eval / predict, and an explicit train.amp that contradicts it refused (train and eval);
* D5: `--resume` in another precision than the run's checkpoints record is refused;
* D6: the evaluation's precision is recorded (metrics.json, calibration.json, identification.json, the export's
  openlt.json, the report); predict applies a threshold in the precision it was chosen in; `summary` does not
  average evaluations of different precisions; eval / identify refuse train.amp=fp16 on a CPU as train does.
Older files without the records keep working as before."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
from safetensors.torch import save_file

from openlt.cli import main
from openlt.config import build_config
from openlt.engine import precision
from openlt.engine import train as training
from openlt.engine.checkpoint import checkpoint_state, read_checkpoint
from openlt.engine.evaluate import evaluate_run
from openlt.engine.export import export_run
from openlt.engine.identify import identify_run
from openlt.engine.predict import Predictor
from openlt.engine.run import Run, open_run
from openlt.errors import ConfigError, RunDirError
from openlt.reporting.summary import check_comparable

REPORT_FIGURES = "unrasterized"  # tests/conftest.py: report.html figures built, not rendered (none is looked at)

CONFIGS = Path(__file__).parents[2] / "configs" / "fmnist_lt"
TINY = ["data.dataset=image-folder", "data.image_size=16", "model.backbone=resnet20", "train.epochs=2",
        "train.batch_size=32", "train.lr=0.05", "eval.batch_size=64", "eval.many_above=30", "eval.few_below=15",
        "data.split.n_max=40", "data.split.n_min=8", "data.split.open_classes=[eel]", "data.split.val_per_class=4",
        "data.split.test_per_class=6", "data.split.order=label", "train.device=cpu"]


def forget_amp(path: Path) -> None:
    """Rewrite a checkpoint as openlt wrote it before it recorded the precision: no state.amp."""
    tensors, meta = read_checkpoint(path)
    meta["state"].pop("amp", None)
    save_file(tensors, str(path), metadata={"openlt": json.dumps(meta)})


@pytest.fixture
def bf16_cpu(monkeypatch):
    monkeypatch.setattr(precision, "_cpu_has_bf16", lambda: True)  # auto = bf16 here, whatever this CPU is


def train_stage1(image_folder: Path, out: Path, *extra: str) -> Run:
    cfg = build_config(None, [f"data.root={image_folder}", f"out_dir={out}", *TINY, *extra])
    return training.train(cfg, name="s1", quiet=True, log=lambda line: None)


def stage2(stage1: Run, out: Path, *extra: str) -> Run:
    cfg = build_config(str(CONFIGS / "decouple_ncm.yaml"), [f"train.init_from={stage1.path}", f"out_dir={out}",
                                                          "train.device=cpu", *extra])
    return training.train(cfg, name="s2", quiet=True, log=lambda line: None)


# ------------------------------------------------------------------------------------------------------------ D5


def test_resume_in_another_precision_is_refused_and_an_old_checkpoint_resumes_as_before(image_folder, tmp_path,
                                                                                         bf16_cpu):
    def stop_after_epoch_1(line: str) -> None:
        if line.startswith("epoch   1/2"):
            raise KeyboardInterrupt

    cfg = build_config(None, [f"data.root={image_folder}", f"out_dir={tmp_path / 'runs'}", *TINY])
    with pytest.raises(KeyboardInterrupt):
        training.train(cfg, name="rs", quiet=True, log=stop_after_epoch_1)
    run = open_run(next((tmp_path / "runs").glob("rs-*")))
    assert checkpoint_state(run.checkpoint("last"))["amp"] == "bf16"
    text = run.config_file.read_text()
    run.config_file.write_text(text.replace("  amp: auto\n", "  amp: none\n"))
    with pytest.raises(ConfigError) as err:
        training.train(run.config(), run=run, resume=True, quiet=True, log=lambda line: None)
    assert str(err.value) == (
        f"train.amp=none ({run.config_file} or an override) asks --resume to continue in float32, but the run "
        f"trained in bf16 autocast (its checkpoints record it): a run keeps its precision; set train.amp back to auto "
        f"or bf16, or train a new run in float32 from its weights (train.init_from={run.path})")
    assert checkpoint_state(run.checkpoint("last"))["epoch"] == 0  # nothing trained
    assert main(["train", "--resume", str(run.path), "--quiet"]) == 2  # the CLI: one line, exit 2
    # a checkpoint from before the record: resumed as it was (the edited float32), not refused
    forget_amp(run.checkpoint("last"))
    forget_amp(run.checkpoint("best"))
    training.train(run.config(), run=run, resume=True, quiet=True, log=lambda line: None)
    assert checkpoint_state(run.checkpoint("last"))["amp"] == "none"


# ------------------------------------------------------------------------------------------------ D1 and D6


@pytest.fixture
def bf16_runs(image_folder, tmp_path, bf16_cpu):
    stage1 = train_stage1(image_folder, tmp_path / "runs")
    evaluate_run(stage1, quiet=True)
    return stage1


def test_a_stage2_records_and_runs_in_its_features_precision(bf16_runs, tmp_path, capsys):
    stage1 = bf16_runs
    s2 = stage2(stage1, tmp_path / "s2")
    assert checkpoint_state(s2.checkpoint("best"))["amp"] == checkpoint_state(s2.checkpoint("last"))["amp"] == "bf16"
    metrics = evaluate_run(s2, quiet=True)
    assert metrics["amp"] == "bf16"
    assert json.loads(s2.calibration_file.read_text())["fitted_on"]["amp"] == "bf16"
    assert Predictor.load(s2, device="cpu").amp == "bf16"  # predict as eval: the threshold's precision
    # an eval override that contradicts the features it reads: refused, not ignored
    with pytest.raises(ConfigError) as err:
        evaluate_run(s2, quiet=True, overrides=["train.amp=none"], tag="fp32")
    assert str(err.value) == (
        f"override 'train.amp=none': {s2.path} is a decoupled stage 2 whose classifier was fitted on the features "
        f"of its stage-1 run {stage1.path}, extracted in bf16 autocast, and its evaluation reads them, so it "
        f"evaluates in bf16 autocast; drop train.amp")
    assert not s2.metrics_path("fp32").exists()
    assert evaluate_run(s2, quiet=True, overrides=["train.amp=bf16"], write=False)["amp"] == "bf16"  # agrees: fine
    assert main(["eval", str(s2.path), "--tag", "x", "train.amp=none", "--quiet"]) == 2
    assert "is a decoupled stage 2" in capsys.readouterr().err
    # a stage 2 whose own train.amp contradicts its stage-1 run's features: refused before any run exists
    with pytest.raises(ConfigError) as err:
        stage2(stage1, tmp_path / "s2none", "train.amp=none")
    assert str(err.value) == (
        f"override 'train.amp=none': train.amp=none, but a decoupled stage 2 fits on the features of its stage-1 "
        f"run {stage1.path}, extracted in bf16 autocast (the precision that run trained in), so it runs in bf16 "
        f"autocast; drop train.amp (or set auto), or start from a stage-1 run trained in float32")
    assert not (tmp_path / "s2none").exists() or not any((tmp_path / "s2none").iterdir())
    explicit = stage2(stage1, tmp_path / "s2bf", "train.amp=bf16")  # agrees with the features: trained
    assert checkpoint_state(explicit.checkpoint("best"))["amp"] == "bf16"


def test_an_old_stage2_without_the_record_keeps_todays_behaviour(bf16_runs, tmp_path):
    s2 = stage2(bf16_runs, tmp_path / "s2")
    for name in ("best", "last"):
        forget_amp(s2.checkpoint(name))
    assert evaluate_run(s2, quiet=True)["amp"] == "bf16"  # evaluated on the stage-1 cache, as before
    assert Predictor.load(s2, threshold=0.5, device="cpu").amp == "none"  # no calibration amp: as before


def test_the_evaluation_precision_is_recorded_and_predict_applies_the_threshold_in_it(bf16_runs, tmp_path, caplog):
    run = bf16_runs
    metrics = json.loads(run.metrics_file.read_text())
    assert metrics["amp"] == "bf16"
    assert json.loads(run.calibration_file.read_text())["fitted_on"]["amp"] == "bf16"
    assert "precision: evaluated in bf16 autocast (train.amp bf16)" in run.path.joinpath("report.md").read_text()
    assert Predictor.load(run, device="cpu").amp == "bf16"
    # the untagged evaluation again in float32: its threshold is float32's, and predict applies it in float32
    evaluate_run(run, quiet=True, overrides=["train.amp=none"])
    assert json.loads(run.metrics_file.read_text())["amp"] == "none"
    assert json.loads(run.calibration_file.read_text())["fitted_on"]["amp"] == "none"
    assert "precision: evaluated in float32 (train.amp none)" in run.path.joinpath("report.md").read_text()
    with caplog.at_level(logging.WARNING, logger="openlt.engine.predict"):
        assert Predictor.load(run, device="cpu").amp == "none"
    assert ("note: predicting in float32, the precision of the evaluation that chose calibration.json's "
            "threshold (the run itself evaluates in bf16 autocast") in caplog.text
    assert Predictor.load(run, threshold=0.5, device="cpu").amp == "bf16"  # a fixed threshold: the run's
    # a threshold chosen in a precision this device cannot run (fp16 on a GPU): refused, one line
    calibration = json.loads(run.calibration_file.read_text())
    calibration["fitted_on"]["amp"] = "fp16"
    run.calibration_file.write_text(json.dumps(calibration))
    with pytest.raises(RunDirError) as err:
        Predictor.load(run, device="cpu")
    assert str(err.value) == (
        f"{run.calibration_file}: its threshold was chosen on scores computed in fp16 autocast, which cpu cannot "
        f"run; choose one in bf16 autocast with `openlt eval {run.path} train.device=cpu`, or give a fixed one "
        f"(--threshold T)")
    # an older calibration.json (no amp): applied in the run's precision, no note
    del calibration["fitted_on"]["amp"]
    run.calibration_file.write_text(json.dumps(calibration))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="openlt.engine.predict"):
        assert Predictor.load(run, device="cpu").amp == "bf16"
    assert "predicting in" not in caplog.text
    calibration["fitted_on"]["amp"] = "fp8"  # a malformed record: the calibration file is refused
    run.calibration_file.write_text(json.dumps(calibration))
    with pytest.raises(RunDirError, match="is not a calibration file .*fitted_on must be"):
        Predictor.load(run, device="cpu")


def test_the_export_bundle_records_the_precisions(bf16_runs, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="openlt.engine.export"):
        description = export_run(bf16_runs, tmp_path / "bundle")
    assert description["amp"] == {"network": "none", "trained": "bf16", "threshold": "bf16"}
    assert json.loads((tmp_path / "bundle" / "openlt.json").read_text())["amp"] == description["amp"]
    assert "the bundle's network computes in float32, and calibration.json's threshold was chosen on scores " \
           "computed in bf16" in caplog.text
    fixed = export_run(bf16_runs, tmp_path / "fixed", threshold=0.5)
    assert fixed["amp"] == {"network": "none", "trained": "bf16", "threshold": None}


def test_eval_and_identify_refuse_fp16_on_the_cpu_as_train_does(bf16_runs, image_folder, capsys):
    run = bf16_runs
    message = ("train.amp=fp16 needs a CUDA device (float16 autocast with loss scaling), and this run is on cpu; "
               "use train.amp=bf16 on the CPU, or train.amp=none")
    with pytest.raises(ConfigError) as err:
        evaluate_run(run, quiet=True, overrides=["train.amp=fp16"], tag="half")
    assert str(err.value) == message and not run.metrics_path("half").exists()
    assert main(["eval", str(run.path), "--tag", "half", "train.amp=fp16", "--quiet"]) == 2
    assert capsys.readouterr().err.strip() == f"openlt eval: error: {message}"
    probe = run.splits_dir / "test.txt"
    with pytest.raises(ConfigError) as err:
        identify_run(run, str(probe), root=str(image_folder), many_above=30, quiet=True, overrides=["train.amp=fp16"])
    assert str(err.value) == message and not run.identification_path().exists()
    result = identify_run(run, str(probe), root=str(image_folder), many_above=30, quiet=True)
    assert result["amp"] == "bf16" and json.loads(run.identification_path().read_text())["amp"] == "bf16"
    none = identify_run(run, str(probe), root=str(image_folder), many_above=30, quiet=True, tag="f32",
                        overrides=["train.amp=none"])
    assert none["amp"] == "none"


def test_summary_does_not_average_evaluations_in_different_precisions():
    a = {"run": "/runs/a", "checkpoint_sha256": "a" * 64, "amp": "bf16"}
    b = {"run": "/runs/b", "checkpoint_sha256": "b" * 64, "amp": "none"}
    with pytest.raises(RunDirError) as err:
        check_comparable("plain", [a, b])
    assert str(err.value) == (
        "cannot average a and b into one row 'plain': they were evaluated under different precisions (train.amp of "
        "the evaluation) ('bf16' vs 'none'); give them different labels (LABEL=RUN) or evaluate them alike")
    old = {"run": "/runs/c", "checkpoint_sha256": "c" * 64}  # an older metrics.json: not compared
    check_comparable("plain", [a, old])
    check_comparable("plain", [a, {**b, "amp": "bf16"}])
