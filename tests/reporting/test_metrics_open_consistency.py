"""metrics.json's open-set block is checked where it is read, as the closed-set numbers are (issue 14): by `openlt
report`, `openlt summary` and a bench's table (summary.load_metrics): AUROC, F-measure, precision, recall and the
rejection rates finite and in [0, 1], counts integers, the threshold finite and calibration's, auroc_per_band's keys
the bands, and the numbers against each other. One line naming the file and the key; files openlt writes pass."""

import json
import math
from pathlib import Path

import pytest
import torch

from openlt.cli import main
from openlt.config import build_config
from openlt.engine.evaluate import compute_metrics
from openlt.reporting.summary import load_metrics, metrics_inconsistency, metrics_problem
from summary_files import edit_at, edited_file_refusal, rounded  # tests/helpers

NAMES = ["ant", "bee", "cat", "dog"]
COUNTS = [150, 60, 30, 5]  # many, medium, medium, few: no class of a band is possible with other counts


def _written(tmp_path: Path, counts=COUNTS) -> tuple[Path, dict]:
    """metrics.json as `openlt eval` computes it, with an open split, beside a run's config and manifest."""
    g = torch.Generator().manual_seed(0)
    labels = {"val": torch.arange(16) % 4, "test": torch.tensor([0] * 9 + [1] * 5 + [2] * 3 + [3] * 2),
              "open": torch.full((8,), -1)}
    outputs = {s: {"logits": torch.randn(len(y), 4, generator=g) + 2 * torch.eye(4)[y.clamp_min(0)] * (y >= 0)[:, None],
                   "labels": y} for s, y in labels.items()}
    metrics = compute_metrics(build_config(None, ["eval.many_above=100", "eval.few_below=20"]), outputs, counts, NAMES)
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("name: run\n")
    (run / "split_manifest.json").write_text(json.dumps({"class_names": NAMES, "train_counts": counts}))
    path = run / "metrics.json"
    path.write_text(json.dumps({"run": str(run), "checkpoint": "best", "epoch": 1, **metrics}))
    return path, json.loads(path.read_text())


def test_files_openlt_writes_pass_also_rounded_closed_set_and_older(tmp_path):
    path, metrics = _written(tmp_path)
    op = metrics["open"]
    assert {"auroc", "f_measure", "threshold", "auroc_per_band", "tp"} <= set(op) and op["n_open"] == 8
    assert load_metrics(path)["open"]["auroc"] == op["auroc"]
    path.write_text(json.dumps(rounded(metrics)))
    load_metrics(path)
    older = dict(metrics, open={k: op[k] for k in ("f_measure", "auroc", "fpr95")})
    path.write_text(json.dumps(older))
    load_metrics(path)  # parts a file lacks are not checked
    path.write_text(json.dumps(dict(metrics, open={**op, "auroc": None})))
    load_metrics(path)  # null: not measured (a short cell in a table), as summary.COLUMNS allow
    closed = {k: v for k, v in metrics.items() if k not in ("open", "calibration")}
    assert metrics_problem(closed) is None and metrics_inconsistency(closed) is None


def _drop_band(m):
    del m["open"]["auroc_per_band"]["few"]


def _extra_band(m):
    m["open"]["auroc_per_band"]["rare"] = 0.5


SHAPE = "is not a metrics file of `openlt eval` ("
EDITS = [
    (edit_at(("open", "auroc"), 1.7), SHAPE + "open.auroc must be a finite number in [0, 1] or null, got 1.7)"),
    (edit_at(("open", "auroc"), -0.1), SHAPE + "open.auroc must be a finite number in [0, 1] or null, got -0.1)"),
    (edit_at(("open", "fpr95"), "0.5"), SHAPE + "open.fpr95 must be a finite number in [0, 1] or null, got '0.5')"),
    (edit_at(("open", "precision"), True), SHAPE + "open.precision must be a finite number in [0, 1] or null, got True)"),
    (edit_at(("open", "known_rejected"), 2), SHAPE + "open.known_rejected must be a finite number in [0, 1] or null, got 2)"),
    (edit_at(("open", "tp"), -3), SHAPE + "open.tp must be a count (an integer >= 0), got -3)"),
    (edit_at(("open", "n_open"), 8.0), SHAPE + "open.n_open must be a count (an integer >= 0), got 8.0)"),
    (edit_at(("open", "threshold"), "auto"), SHAPE + "open.threshold must be a finite number or null, got 'auto')"),
    (edit_at(("open", "auroc_per_band"), [0.5]), SHAPE + "open.auroc_per_band must be an object)"),
    (_drop_band, SHAPE + "open.auroc_per_band must have the keys many, medium, few, overall, got many, medium, "
                         "overall)"),
    (_extra_band, SHAPE + "open.auroc_per_band must have the keys many, medium, few, overall, got many, medium, "
                          "few, overall, rare)"),
    (edit_at(("open", "auroc_per_band", "many"), 1.5), SHAPE + "open.auroc_per_band.many must be a finite number in "
                                                          "[0, 1] or null, got 1.5)"),
    (edit_at(("open", "bands_with_rejection", "few"), -1), SHAPE + "open.bands_with_rejection.few must be a finite "
                                                               "number in [0, 1] or null, got -1)"),
    (edit_at(("open", "f_measure"), 0.999), "contradicts itself: open.f_measure is 0.999, but 2PR / (P + R) of them is"),
    (edit_at(("open", "precision"), 0.999), "contradicts itself: open.precision is 0.999, but tp / (tp + fp) is"),
    (edit_at(("open", "fn"), 0), "contradicts itself: open.recall is"),
    (edit_at(("open", "open_rejected"), 0.0), "contradicts itself: open.open_rejected is 0, but"),
    (edit_at(("open", "auroc_per_band", "overall"), 0.0), "contradicts itself: open.auroc_per_band.overall is 0, but "
                                                       "open.auroc is"),
    (edit_at(("open", "bands_with_rejection", "n_classes", "many"), 3), "contradicts itself: "
     "open.bands_with_rejection.n_classes.many is 3, bands.per_class names 1 many-shot classes"),
    (edit_at(("open", "threshold"), 123.0), "contradicts itself: open.threshold is 123.0, but calibration.threshold is"),
]


@pytest.mark.parametrize("edit, message", EDITS)
def test_an_edited_open_set_block_is_one_line_naming_the_file_and_key(edit, message, tmp_path, capsys):
    path, metrics = _written(tmp_path)
    err = edited_file_refusal(path, metrics, edit, message, capsys)
    capsys.readouterr()
    assert main(["report", str(path.parent)]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"openlt report: error: {err}"]
    assert not (path.parent / "report.html").exists()


def test_an_auroc_of_a_band_without_class_is_refused(tmp_path):
    path, metrics = _written(tmp_path)
    assert metrics["open"]["auroc_per_band"]["few"] is not None and math.isfinite(metrics["open"]["auroc"])
    metrics["bands"]["per_class"] = ["many", "medium", "medium", "medium"]  # as if no few-shot class
    metrics["train_counts"] = [150, 60, 30, 25]
    metrics["closed"]["few"] = None
    metrics["closed"]["n_classes"] = {"many": 1, "medium": 3, "few": 0}
    metrics["open"]["bands_with_rejection"]["n_classes"] = {"many": 1, "medium": 3, "few": 0}
    metrics["closed"]["medium"] = sum(metrics["per_class_accuracy"][1:]) / 3
    problem = metrics_inconsistency(metrics)
    assert problem.startswith("itself: open.auroc_per_band.few is ") and "names no few-shot class" in problem, problem
