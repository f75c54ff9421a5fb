"""`openlt train --resume` of a run that has nothing left to train: a finished, evaluated run keeps its
evaluation (an `openlt eval RUN eval.open_score=energy` is not replaced by the config's msp), a finished run
never evaluated is evaluated, a finished decoupled stage 2 is not fitted again, and a config.yaml edited to fewer
epochs than are trained is refused in one line."""

import json
from pathlib import Path

import pytest
import yaml

from tiny_run import cli, train_tiny_with_cli  # tests/helpers

REPORT_FIGURES = "unrasterized"  # tests/conftest.py: report.html figures built, not rendered (none is looked at)

CONFIGS = Path(__file__).parents[2] / "configs" / "fmnist_lt"


@pytest.fixture(scope="module")
def trained(tmp_path_factory, single_thread):
    return train_tiny_with_cli(tmp_path_factory.mktemp("resume"), "train.epochs=2", "train.device=cpu")


def test_resume_of_a_finished_evaluated_run_keeps_its_evaluation(trained, capsys):
    code, _, err = cli(capsys, "eval", trained, "eval.open_score=energy", "--quiet")
    assert code == 0, err
    before = {name: (trained / name).read_bytes() for name in ("metrics.json", "calibration.json", "predictions.npz")}
    assert json.loads(before["calibration.json"])["score"] == "energy"
    code, out, err = cli(capsys, "train", "--resume", trained, "--quiet")
    assert code == 0 and "training already finished" in out and "had finished training and was evaluated" in out, err
    assert {name: (trained / name).read_bytes() for name in before} == before


def test_resume_of_a_finished_run_never_evaluated_evaluates_it(trained, tmp_path, capsys):
    import shutil

    copy = tmp_path / trained.name
    shutil.copytree(trained, copy)
    (copy / "metrics.json").unlink()
    code, out, err = cli(capsys, "train", "--resume", copy, "--quiet")
    assert code == 0 and "training already finished" in out and (copy / "metrics.json").is_file(), err


def test_resume_with_fewer_epochs_than_trained_is_refused_in_one_line(trained, tmp_path, capsys):
    import shutil

    copy = tmp_path / trained.name
    shutil.copytree(trained, copy)
    saved = yaml.safe_load((copy / "config.yaml").read_text())
    saved["train"]["epochs"] = 1
    (copy / "config.yaml").write_text(yaml.safe_dump(saved, sort_keys=False))
    before = (copy / "metrics.jsonl").read_bytes()
    code, out, err = cli(capsys, "train", "--resume", copy, "--quiet")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "has trained 2 epochs, but train.epochs=1" in err and "after epoch" not in out
    assert (copy / "metrics.jsonl").read_bytes() == before


def test_resume_of_a_finished_decoupled_stage2_fits_nothing_again(trained, tmp_path, capsys):
    out_dir = tmp_path / "s2"
    code, _, err = cli(capsys, "train", CONFIGS / "decouple_crt.yaml", f"train.init_from={trained}",
                       f"out_dir={out_dir}", "train.epochs=1", "train.batch_size=16", "train.device=cpu", "--quiet")
    assert code == 0, err
    stage2 = next(out_dir.iterdir())
    before = {p.name: p.read_bytes() for p in [*(stage2 / "checkpoints").iterdir(), stage2 / "metrics.json"]}
    code, out, err = cli(capsys, "train", "--resume", stage2, "--quiet")
    assert code == 0 and "training already finished" in out, err
    assert {p.name: p.read_bytes() for p in [*(stage2 / "checkpoints").iterdir(), stage2 / "metrics.json"]} == before
