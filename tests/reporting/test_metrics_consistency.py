"""A metrics.json that contradicts itself or its run is refused where it is read, by `openlt report` and
`openlt summary` (one line naming the file and the first inconsistency; trial 10 D5: a hand-edited overall of 99.9
was shown beside per-class accuracies averaging 15, reversed class names drawn on the wrong classes, training
counts of 500 beside stale shot bands). Files openlt writes pass, also rounded, and older ones without the parts."""

import json
from pathlib import Path

import pytest
import torch

from openlt.config import build_config
from openlt.engine.evaluate import compute_metrics
from openlt.cli import main
from openlt.openset import build_score
from openlt.reporting import sample_table, save_samples
from openlt.reporting.summary import load_metrics
from summary_files import edit_at, edited_file_refusal, rounded  # tests/helpers

NAMES = ["ant", "bee", "cat", "dog"]
COUNTS = [150, 60, 30, 5]


def _written(tmp_path: Path, seed: int = 0) -> tuple[Path, dict]:
    """metrics.json as `openlt eval` computes it (an unbalanced test split: overall is not the per-class mean),
    beside a split_manifest.json with the run's class list."""
    g = torch.Generator().manual_seed(seed)
    labels = {"val": torch.arange(16) % 4, "test": torch.tensor([0] * 9 + [1] * 5 + [2] * 3 + [3] * 2),
              "open": torch.full((6,), -1)}
    outputs = {s: {"logits": torch.randn(len(y), 4, generator=g) + 2 * torch.eye(4)[y.clamp_min(0)] * (y >= 0)[:, None],
                   "labels": y} for s, y in labels.items()}
    metrics = compute_metrics(build_config(None, ["eval.many_above=100", "eval.few_below=20"]), outputs, COUNTS, NAMES)
    run = tmp_path / f"run{seed}"
    run.mkdir()
    (run / "config.yaml").write_text("name: run\n")  # an openlt run directory for `openlt report`
    (run / "split_manifest.json").write_text(json.dumps({"class_names": NAMES, "train_counts": COUNTS}))
    path = run / "metrics.json"
    path.write_text(json.dumps({"run": str(run), "checkpoint": "best", "epoch": 1, **metrics}))
    scorer = build_score("msp")
    save_samples(run / "predictions.npz", sample_table(outputs, {s: scorer.score(outputs[s]) for s in ("test", "open")}))
    return path, json.loads(path.read_text())


def test_files_openlt_writes_pass_also_rounded_and_without_the_checked_parts(tmp_path):
    path, metrics = _written(tmp_path)
    assert metrics["closed"]["overall"] != pytest.approx(sum(metrics["per_class_accuracy"]) / 4)  # per image
    assert load_metrics(path)["class_names"] == NAMES
    path.write_text(json.dumps(rounded(metrics)))
    load_metrics(path)
    older = dict(metrics, bands={"rule": metrics["bands"]["rule"], "per_class": metrics["bands"]["per_class"]})
    del older["per_class_accuracy"]
    path.write_text(json.dumps(older))
    load_metrics(path)
    (path.parent / "split_manifest.json").unlink()
    path.write_text(json.dumps(dict(metrics, class_names=NAMES[::-1])))
    load_metrics(path)  # no manifest: the class list is not compared


EDITS = [
    (edit_at(("closed", "overall"), 0.3), "contradicts itself: closed.overall is 0.3, outside the per-class accuracies it "
                                     "averages (0.5 to 1, per_class_accuracy)"),
    (edit_at(("closed", "medium"), 0.98), "contradicts itself: closed.medium is 0.98, but that band averages"),
    (edit_at(("closed", "many"), 0.0), "contradicts itself: closed.many is 0, but that band averages"),
    (edit_at(("train_counts",), [500] * 4), "contradicts itself: bands.per_class[1] is 'medium', but train_counts[1] = "
                                         "500 is 'many' under its rule (many > 100, medium 20-100, few < 20)"),
    (edit_at(("bands", "per_class"), ["many", "medium", "few", "few"]), "contradicts itself: bands.per_class[2] is 'few', but train_counts[2]"),
    (edit_at(("closed", "n_classes", "few"), 3), "contradicts itself: closed.n_classes.few is 3, bands.per_class names 1 few-shot classes"),
    (edit_at(("class_names",), NAMES[::-1]), "contradicts the run's split_manifest.json: its class_names (label 0: "
                                          "'dog' vs 'ant')"),
]


@pytest.mark.parametrize("edit, message", EDITS)
def test_an_edited_metrics_file_is_one_line_in_summary_and_report(edit, message, tmp_path, capsys):
    path, metrics = _written(tmp_path)
    err = edited_file_refusal(path, metrics, edit, message, capsys)
    assert "evaluate the run again" in str(err)
    capsys.readouterr()
    assert main(["report", str(path.parent)]) == 2
    assert message in capsys.readouterr().err and not (path.parent / "report.html").exists()


def test_report_compares_overall_with_the_predictions_written_with_it(tmp_path, capsys):
    """An overall edited inside the range of the per-class accuracies: metrics.json alone cannot tell, the
    per-image predictions of predictions.npz can (`openlt report`)."""
    path, metrics = _written(tmp_path)
    assert main(["report", str(path.parent)]) == 0 and (path.parent / "report.html").is_file()
    (path.parent / "report.html").unlink()
    metrics["closed"]["overall"] = 0.8
    path.write_text(json.dumps(metrics))
    load_metrics(path)  # within 0.5 .. 1: consistent with itself
    capsys.readouterr()
    assert main(["report", str(path.parent)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"openlt report: error: {path} contradicts predictions.npz written with it: closed.overall is 0.8, "
                   f"its per-image predictions give 0.7368 (edited by hand?); evaluate the run again to write both "
                   f"together"), err
    assert not (path.parent / "report.html").exists()
