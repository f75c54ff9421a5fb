"""The reports of one evaluated run: the result table as the field prints it, report(-TAG).md, and the
self-contained report(-TAG).html, drawn from metrics(-TAG).json and the per-sample predictions(-TAG).npz.

The run is anything with the paths of :class:`RunFiles` (the engine's ``Run`` has them), so that reporting
never imports the engine; a report is rebuilt from those files alone (no model, no images).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from openlt.errors import RunDirError
from openlt.io import write_text
from openlt.metrics import BAND_NAMES, ShotBands
from openlt.reporting.samples import load_samples
from openlt.reporting.summary import load_metrics


class RunFiles(Protocol):
    """What the reports need of a run directory: its files' paths, its epoch log and (for metrics files older
    than the band rule in metrics.json) its config."""

    path: Path

    def metrics_path(self, tag: str | None = None) -> Path:
        """metrics.json (metrics-TAG.json with a tag): the evaluation's numbers."""

    def report_path(self, tag: str | None = None) -> Path:
        """report.md (report-TAG.md)."""

    def report_html_path(self, tag: str | None = None) -> Path:
        """report.html (report-TAG.html)."""

    def predictions_path(self, tag: str | None = None) -> Path:
        """predictions.npz (predictions-TAG.npz): the per-sample results (:mod:`openlt.reporting.samples`)."""

    def epochs_logged(self) -> list[dict]:
        """The records of the per-epoch log (metrics.jsonl), in order; empty when there is none."""

    def config(self) -> Any:
        """The run's resolved config (its ``eval`` section gives the band rule of older metrics files)."""


def _fmt(value: float | None) -> str:
    """A fraction as a 5-wide percentage, or a dash for a band without classes."""
    return "  –  " if value is None else f"{100 * value:5.1f}"


def _band_row(label: str, accuracies: dict) -> str:
    return label + "  ".join(_fmt(accuracies[b]) for b in BAND_NAMES) + f"   {_fmt(accuracies['overall'])}"


def format_table(metrics: dict) -> str:
    """The result table as the field reports it, from a metrics dict (metrics.json): top-1 in % per shot band
    and overall, closed-set and (with an open split) with rejection, then F-measure, AUROC and FPR@95 in [0, 1]."""
    closed = metrics["closed"]
    lines = [f"shot bands: {metrics['bands']['rule']}  (classes: "
             + ", ".join(f"{b} {closed['n_classes'][b]}" for b in BAND_NAMES) + ")",
             "                      many  medium    few  overall",
             _band_row("closed-set top-1    ", closed)]
    if "open" in metrics:
        op = metrics["open"]
        lines.append(_band_row("open-set top-1      ", op["bands_with_rejection"]))
        lines.append(f"open-set F-measure {op['f_measure']:.3f}   AUROC {op['auroc']:.3f}   FPR@95 {op['fpr95']:.3f}   "
                     f"({metrics['calibration']['score']} < {op['threshold']:.3f} -> unknown; {metrics['calibration']['source']})")
    return "\n".join(lines)


def report_markdown(run: RunFiles, metrics: dict, tag: str | None = None) -> str:
    """report(-TAG).md: the result table and the per-class table (training images, band, test top-1 in %)."""
    rows = ["| class | train images | band | test top-1 (%) |", "|---|---:|---|---:|"]
    for name, n, band, acc in zip(metrics["class_names"], metrics["train_counts"], metrics["bands"]["per_class"],
                                  metrics["per_class_accuracy"]):
        name = name.replace("\\", "\\\\").replace("|", "\\|")  # a class name cannot end or split its table cell
        rows.append(f"| {name} | {n} | {band} | {'–' if acc is None else f'{100 * acc:.1f}'} |")
    return (f"# openlt report: {run.path.name}\n\ncheckpoint: {metrics['checkpoint']} (epoch {metrics['epoch']}); "
            f"figures, calibration and score histograms: {run.report_html_path(tag).name}\n\n"
            f"```\n{format_table(metrics)}\n```\n\n## Per class\n\n" + "\n".join(rows) + "\n")


def write_reports(run: RunFiles, metrics: dict, samples: dict, tag: str | None = None,
                  bands: ShotBands | None = None) -> None:
    """Write report(-TAG).md and the self-contained report(-TAG).html from a metrics dict and the per-sample
    arrays of `reporting.samples`; `bands` defaults to the rule recorded in the metrics (else the run's config)."""
    from openlt.reporting.html import run_report  # matplotlib is imported only to draw a report

    info = metrics["bands"]
    if bands is None:
        bands = (ShotBands(info["many_above"], info["few_below"], info["inclusive"]) if "many_above" in info
                 else ShotBands.from_config(run.config().eval))
    write_text(run.report_path(tag), report_markdown(run, metrics, tag))
    title = f"openlt report: {run.path.name}" + ("" if tag is None else f" ({tag})")
    write_text(run.report_html_path(tag), run_report(metrics, samples, bands, run.epochs_logged(), title))


def rebuild_reports(run: RunFiles, tag: str | None = None) -> Path:
    """Redraw a run's reports from metrics(-TAG).json and predictions(-TAG).npz alone (no model, no images);
    returns the HTML report's path. RunDirError when the metrics file is missing, not JSON, or lacks what the
    report draws."""
    path = run.metrics_path(tag)
    if not path.is_file():
        raise RunDirError(f"{path} not found: evaluate the run first (`openlt eval {run.path}`)")
    metrics = load_metrics(path)  # checked: one RunDirError line for a torn or hand-edited file
    problem = _report_problem(metrics)
    if problem:
        raise RunDirError(f"{path} is not a metrics file of `openlt eval` ({problem}); evaluate the run again")
    write_reports(run, metrics, load_samples(run.predictions_path(tag)), tag)
    return run.report_html_path(tag)


def _report_problem(metrics: dict) -> str | None:
    """What a report needs of a (shape-checked) metrics dict beyond `summary.metrics_problem`, or None: the
    per-class lists (one entry per class), the band of each class and a K x K confusion matrix."""
    k = len(metrics["class_names"])
    if not isinstance(metrics.get("train_counts"), list):
        return '"train_counts" is missing'
    if not isinstance(metrics["bands"].get("per_class"), list) or len(metrics["bands"]["per_class"]) != k:
        return '"bands.per_class" must name the band of each class'
    accuracy = metrics.get("per_class_accuracy")
    if not isinstance(accuracy, list) or len(accuracy) != k or not all(a is None or _fraction(a) for a in accuracy):
        return '"per_class_accuracy" must hold one fraction (or null) per class'
    matrix = metrics.get("confusion_matrix")
    if not isinstance(matrix, list) or len(matrix) != k or not all(
            isinstance(row, list) and len(row) == k and all(type(c) is int for c in row) for row in matrix):
        return f'"confusion_matrix" must be {k} x {k} counts'
    return None


def _fraction(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0.0 <= value <= 1.0
