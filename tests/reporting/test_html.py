"""The run report: one self-contained HTML page with every figure, from metrics and per-sample results."""

import re

import numpy as np
import torch

from openlt.config import build_config
from openlt.engine.evaluate import compute_metrics
from openlt.metrics import ShotBands
from openlt.reporting import load_samples, sample_table, save_samples
from openlt.reporting.html import run_report

NAMES = ["ant", "bee", "cat<&>", "dog"]  # a name that needs escaping
COUNTS = [150, 60, 12, 5]


def fake_outputs(seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)

    def split(n, known=True):
        labels = torch.arange(n) % 4 if known else torch.full((n,), -1)
        logits = torch.randn(n, 4, generator=g) + (3 * torch.eye(4)[labels.clamp_min(0)] if known else 0)
        return {"logits": logits, "labels": labels}

    return {"val": split(40), "test": split(80), "open": split(30, known=False)}


def test_the_report_has_every_figure_and_table_and_needs_nothing_else(tmp_path):
    cfg = build_config(None, ["eval.many_above=100", "eval.few_below=20"])
    outputs = fake_outputs()
    metrics = compute_metrics(cfg, outputs, COUNTS, NAMES)
    assert set(metrics["ece"]) == {"many", "medium", "few", "overall"}
    samples = sample_table(outputs, {s: outputs[s]["logits"].softmax(1).max(1).values for s in ("test", "open")})
    save_samples(tmp_path / "predictions.npz", samples)
    samples = load_samples(tmp_path / "predictions.npz")
    assert set(samples) == {f"{split}_{key}" for split in ("test", "open")
                            for key in ("preds", "score", "max_prob", "top_classes", "top_probs")} | {"test_labels"}
    assert samples["test_top_classes"].shape == (80, 4)  # top 5 of 4 classes: all 4, most probable first
    np.testing.assert_array_equal(samples["test_top_classes"][:, 0], samples["test_preds"])
    history = [{"epoch": 1, "train_loss": 1.0, "train_acc": 0.4, "lr": 0.1, "val": metrics["val"]}]
    page = run_report({"run": "runs/x", "checkpoint": "best", "epoch": 0, **metrics}, samples, ShotBands(), history)
    images = re.findall(r'<img alt="([^"]+)" src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert [alt for alt, _ in images] == ["per-class accuracy against training images", "open-set score histograms",
                                          "accuracy and F-measure against the threshold", "reliability diagram",
                                          "training loss", "validation accuracy", "shot band confusion",
                                          "confusion matrix"]
    assert all(len(data) > 1000 for _, data in images)
    assert "cat&lt;&amp;&gt;" in page and "cat<&>" not in page
    assert "http" not in page.replace("http-equiv", "")  # self-contained: nothing to fetch
    assert "open-set F-measure" in page and "with rejection" in page


def test_a_run_without_open_images_still_gets_its_report():
    cfg = build_config(None, [])
    outputs = fake_outputs()
    del outputs["open"]
    metrics = compute_metrics(cfg, outputs, COUNTS, NAMES)
    samples = sample_table(outputs, {"test": outputs["test"]["logits"].max(1).values})
    page = run_report({"run": "r", **metrics}, samples, ShotBands())
    assert page.count("<img") == 6 and "AUROC" not in page


def test_samples_file_is_checked(tmp_path):
    import pytest

    from openlt.errors import RunDirError

    with pytest.raises(RunDirError, match="re-evaluate"):
        load_samples(tmp_path / "missing.npz")
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(RunDirError, match="not an openlt predictions file"):
        load_samples(tmp_path / "other.npz")


def test_the_confusion_matrix_is_ordered_by_training_images_with_a_rejected_column_and_an_open_row():
    from openlt.reporting.html import decision_matrix

    metrics = {"class_names": ["few", "many", "mid"], "train_counts": [3, 50, 10], "calibration": {"threshold": 0.5},
               "open_class_names": ["eel"]}
    samples = {"test_labels": np.array([0, 1, 1, 2]), "test_preds": np.array([1, 1, 2, 2]),
               "test_score": np.array([0.9, 0.9, 0.9, 0.1]),  # the last known image rejected
               "open_preds": np.array([0, 1]), "open_score": np.array([0.2, 0.8])}  # one open image accepted as many
    matrix, rows, cols = decision_matrix(metrics, samples)
    assert rows == ["many (50)", "mid (10)", "few (3)", "open: eel"] and cols == ["many (50)", "mid (10)", "few (3)", "rejected"]
    np.testing.assert_array_equal(matrix, [[1, 1, 0, 0], [0, 0, 0, 1], [1, 0, 0, 0], [1, 0, 0, 1]])
    closed, _, cols = decision_matrix({**metrics, "calibration": {}}, {k: v for k, v in samples.items() if "open" not in k})
    assert closed.shape == (3, 3) and "rejected" not in cols  # no threshold, no open split: the K x K matrix


def test_the_report_names_the_open_classes_and_shows_config_versions_device_time_and_the_warning():
    cfg = build_config(None, ["eval.many_above=100", "eval.few_below=20"])
    outputs = fake_outputs()
    metrics = compute_metrics(cfg, outputs, COUNTS, NAMES)
    samples = sample_table(outputs, {s: outputs[s]["logits"].softmax(1).max(1).values for s in ("test", "open")})
    extra = {"open_class_names": ["eel", "fox"],
             "environment": {"versions": {"openlt": "0.1.0", "torch": "2.14.1"}, "device": "cuda:0 (H200)"},
             "convergence": {"best_epoch": 12, "epochs": 12, "still_rising": True, "warning": "may be <under>-trained"}}
    history = [{"epoch": e, "train_loss": 1.0, "lr": 0.1, "time_s": 6.275} for e in range(1, 13)]
    page = run_report({"run": "r", "checkpoint": "best", "epoch": 11, **metrics, **extra}, samples, ShotBands(),
                      history, config_text="train:\n  epochs: 12  # <b>\n")
    assert "open set: 30 images of the 2 held-out classes eel, fox" in page
    assert "versions: openlt 0.1.0, torch 2.14.1; evaluated on cuda:0 (H200)" in page
    assert "training: 12 epochs in 1 min 15 s" in page and "(epoch 12 of 12)" in page
    assert '<p class="warning"><b>Warning:</b> may be &lt;under&gt;-trained.</p>' in page
    assert "<details><summary>config.yaml" in page and "epochs: 12  # &lt;b&gt;" in page
    assert "Right: the ROC curve" in page


def test_the_report_shows_the_no_spread_warning_that_report_md_and_the_console_show():
    from openlt.reporting.run_report import format_table

    cfg = build_config(None, ["eval.open_score=energy", "eval.open_threshold=0.0"])
    same = torch.tensor([[2.0, 1.0, 0.5, 0.2]]) * (1 + 1e-7 * torch.randn(40, 4, generator=torch.Generator().manual_seed(3)))
    outputs = {"test": {"logits": same[:30], "labels": torch.arange(30) % 4},
               "open": {"logits": same[30:], "labels": torch.full((10,), -1)}}
    metrics = compute_metrics(cfg, outputs, COUNTS, NAMES)
    said = ("eval.open_score=energy: the scores of the test and open images have no spread (every image gets the same "
            "score): the AUROC reflects float rounding, not the data")
    assert metrics["open"]["warning"] == said and format_table(metrics).splitlines()[-1] == f"warning: {said}"
    samples = sample_table(outputs, {s: -outputs[s]["logits"].logsumexp(1) for s in ("test", "open")})
    page = run_report({"run": "r", **metrics}, samples, ShotBands())
    assert page.count('<p class="warning">') == 1  # (report.html showed no warning at all)
    assert f'<p class="warning"><b>Warning:</b> {said}</p>' in page
    spread = {split: {**out, "logits": torch.randn(len(out["labels"]), 4)} for split, out in outputs.items()}
    metrics = compute_metrics(cfg, spread, COUNTS, NAMES)
    assert "warning" not in metrics["open"]
    assert 'class="warning"' not in run_report({"run": "r", **metrics}, sample_table(spread, {
        s: -spread[s]["logits"].logsumexp(1) for s in ("test", "open")}), ShotBands())


def test_the_page_prints_the_threshold_that_gives_the_decisions_not_a_rounded_one(tmp_path):
    """report.html's header printed the threshold with 4 decimals (`score < 1.0000` for the float32 0.99999475, which
    would reject every image; 2.7436 for an energy threshold of 2.7435875) and its figures with 3 digits
    (`threshold 1`): now as report.md's table, the fewest digits that read back as the same threshold."""
    cfg = build_config(None, ["eval.many_above=100", "eval.few_below=20"])
    outputs = fake_outputs()
    metrics = compute_metrics(cfg, outputs, COUNTS, NAMES)
    metrics["calibration"]["threshold"] = float(np.float32(0.99999475))
    samples = sample_table(outputs, {s: outputs[s]["logits"].softmax(1).max(1).values for s in ("test", "open")})
    html = run_report(metrics, samples, ShotBands(100, 20))
    assert "an image is unknown when its score &lt; 0.99999475 (" in html
    assert "score &lt; 1.0000" not in html
    from openlt.reporting import figures

    for fig in (figures.score_histograms(np.array([0.5, 0.9]), np.array([0.2]), 0.99999475, "msp"),
                figures.threshold_curves({"thresholds": np.array([0.1, 0.9]), "known_accuracy": np.array([1.0, 0.5]),
                                          "known_kept": np.array([1.0, 0.5])}, 2.7435874938964844, "energy")):
        labels = [t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()]
        assert any(label in ("threshold 0.99999475", "threshold 2.7435875") for label in labels), labels
