"""No artifact of an evaluation grows with K²: metrics.json, report.md / .html, predictions.npz and confusion.npz
of the same test images at K = 200 and K = 400 classes, built from synthetic outputs through compute_metrics and
write_reports (no training). Doubling K at most doubles a file (plus a constant); the dense K x K matrix that
metrics.json used to hold would have quadrupled it, and this test says so too."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from openlt.config import build_config
from openlt.engine.evaluate import compute_metrics, split_record
from openlt.io import write_json
from openlt.metrics import confusion, sparse_confusion
from openlt.openset import build_score
from openlt.reporting import sample_table, save_confusion, save_samples
from openlt.reporting.run_report import FolderFiles, write_reports

N_TEST, N_VAL, N_OPEN = 2000, 1000, 500


def outputs_for(k: int, seed: int = 0) -> tuple[dict, list[int]]:
    """Long-tailed training counts (Pareto) and val / test / open outputs of K classes, 60 % of them right."""
    g = torch.Generator().manual_seed(seed)
    counts = sorted((np.random.default_rng(seed).pareto(6.0, k) * 400 + 2).astype(int).tolist(), reverse=True)

    def split(n: int, known: bool = True) -> dict:
        labels = torch.randint(0, k, (n,), generator=g) if known else torch.full((n,), -1)
        logits = torch.randn(n, k, generator=g)
        hit = (torch.rand(n, generator=g) < 0.6) & (labels >= 0)
        logits[hit, labels[hit]] += 6.0
        return {"logits": logits, "labels": labels}

    return {"val": split(N_VAL), "test": split(N_TEST), "open": split(N_OPEN, known=False)}, counts


def evaluated(tmp_path: Path, k: int, keep_logits: bool = False) -> tuple[FolderFiles, dict, dict]:
    """The files of an evaluation of K classes, written as evaluate_run writes them."""
    outputs, counts = outputs_for(k)
    scorer = build_score("msp")
    records = {s: split_record(o, scorer, keep_logits) for s, o in outputs.items()}
    metrics = compute_metrics(build_config(None, []), records, counts, [f"class {i:05d}" for i in range(k)], scorer)
    metrics = {"run": str(tmp_path), "checkpoint": "best", "epoch": 1, **metrics}
    files = FolderFiles(tmp_path)
    write_json(files.metrics_path(), metrics)
    save_confusion(tmp_path / "confusion.npz", sparse_confusion(records["test"]["preds"], labels=records["test"]["labels"], num_classes=k))
    samples = sample_table(records)
    save_samples(files.predictions_path(), samples)
    write_reports(files, metrics, samples)
    return files, metrics, records


def sizes(files: FolderFiles) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in files.path.iterdir()}


def test_no_artifact_grows_with_the_square_of_the_classes(tmp_path):
    (tmp_path / "k200").mkdir()
    (tmp_path / "k400").mkdir()
    small, small_metrics, _ = evaluated(tmp_path / "k200", 200)
    large, large_metrics, records = evaluated(tmp_path / "k400", 400)
    a, b = sizes(small), sizes(large)
    assert set(a) == set(b) == {"metrics.json", "report.md", "report.html", "predictions.npz", "confusion.npz"}
    for name in a:
        assert b[name] / a[name] < 2.5, (name, a[name], b[name])  # linear: 2 plus what does not grow at all
    assert b["predictions.npz"] / a["predictions.npz"] < 1.3  # top-5 per image, whatever K
    assert b["metrics.json"] < 250 * 400  # bytes per class, everything included
    assert "confusion_matrix" not in large_metrics and len(large_metrics["confusion"]["top"]) == 50
    # the dense matrix that metrics.json used to hold would have made it grow ~4x: the check above can fail
    dense = lambda m, k, r: len(json.dumps({**m, "confusion_matrix": confusion(r["test"]["preds"], labels=r["test"]["labels"],  # noqa: E731
                                                                             num_classes=k).tolist()}, indent=2))
    _, _, small_records = evaluated(tmp_path / "k200", 200)
    assert dense(large_metrics, 400, records) / dense(small_metrics, 200, small_records) > 3.0


def test_a_large_class_set_gets_the_band_summary_instead_of_a_k_by_k_image(tmp_path):
    files, _, _ = evaluated(tmp_path, 400)
    page = files.report_html_path().read_text()
    assert 'alt="per-class accuracy ranked by training images"' in page and 'alt="shot band confusion"' in page
    assert 'alt="confusion matrix"' not in page and 'alt="per-class accuracy against training images"' not in page
    assert page.count('<tr class="band-') == 400  # the per-class table keeps every class
    markdown = files.report_path().read_text()
    assert "## Decisions per shot band" in markdown and "## Most frequent confusions" in markdown


@pytest.mark.parametrize("keep_logits", [False, True])
def test_predictions_keep_all_logits_only_when_asked(tmp_path, keep_logits):
    files, _, records = evaluated(tmp_path, 200, keep_logits)
    with np.load(files.predictions_path()) as saved:
        assert ("test_logits" in saved.files) == keep_logits == ("open_logits" in saved.files)
        assert saved["test_top_classes"].shape == saved["test_top_probs"].shape == (N_TEST, 5)
        if keep_logits:
            assert saved["test_logits"].shape == (N_TEST, 200)
            np.testing.assert_array_equal(saved["test_logits"].argmax(1), saved["test_preds"])
