"""engine/predict.py: `openlt predict` (and `openlt.load_run(...).predict`) computes an image's scores as `openlt eval`
did, on the batch-norm-folded copy of the network (`models.fusion.inference_copy`, what `collect_outputs` runs):
calibration.json's threshold was chosen on those scores. In bf16 autocast (a CPU run's `train.amp: auto`) the
folded and the unfolded network differ by bf16's rounding of the folded weights (an OLTR run's max-softmax by 0.04),
so predicting on the unfolded one applied the threshold to other scores than it was chosen on."""

import json
from pathlib import Path

import numpy as np

from openlt import load_run
from tiny_run import train_tiny_run

REPORT_FIGURES = "unrasterized"  # tests/conftest.py: report.html figures built, not rendered (none is looked at)

CONFIGS = Path(__file__).parents[2] / "configs" / "fmnist_lt"


def test_predict_gives_the_scores_eval_recorded_in_bf16(tmp_path):
    run = train_tiny_run(tmp_path / "a", "train.amp=bf16", "train.epochs=2")
    cfg = run.config()
    items = [line.split()[0] for line in (run.splits_dir / "test.txt").read_text().splitlines() if line.strip()]
    recorded = np.load(run.path / "predictions.npz")
    assert str(recorded["score_name"]) == "msp"
    got = load_run(run.path, device="cpu").predict([str(Path(cfg.data.root) / item) for item in items])
    np.testing.assert_allclose([p["open_score"] for p in got], recorded["test_score"], rtol=0, atol=1e-6)
    classes = json.loads((run.path / "inference.json").read_text())["classes"]
    assert [p["top_class"] for p in got] == [classes[c] for c in recorded["test_preds"].tolist()]


def test_predict_gives_the_scores_eval_recorded_for_a_decoupled_run(tmp_path):
    """A decoupled run (τ-norm on a bf16 stage 1, a float16 feature cache): `openlt eval` applies its head in float32
    to the body's features as the stage-1 cache holds them (`features.head_outputs_on_cache`); predict ran the head
    under bf16 autocast on unrounded features (max-softmax 0.0014 off on the CPU)."""
    from openlt.cli import main

    stage1 = train_tiny_run(tmp_path / "a", "train.amp=bf16", "train.epochs=2")
    out = tmp_path / "s2"
    assert main(["train", str(CONFIGS / "decouple_tau_norm.yaml"), f"train.init_from={stage1.path}", f"out_dir={out}",
                 "train.device=cpu", "decouple.cache_dtype=float16", "--quiet"]) == 0
    run = next(out.iterdir())
    root = stage1.config().data.root
    items = [line.split()[0] for line in (stage1.splits_dir / "test.txt").read_text().splitlines() if line.strip()]
    recorded = np.load(run / "predictions.npz")
    got = load_run(run, device="cpu").predict([str(Path(root) / item) for item in items])
    np.testing.assert_allclose([p["open_score"] for p in got], recorded["test_score"], rtol=0, atol=1e-6)
