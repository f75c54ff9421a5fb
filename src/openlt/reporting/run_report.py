"""The reports of one evaluated run: the result table as the field prints it, report(-TAG).md, and the
self-contained report(-TAG).html, drawn from metrics(-TAG).json and the per-sample predictions(-TAG).npz.

The run is anything with the paths of :class:`RunFiles` (the engine's ``Run`` has them), so that reporting
never imports the engine; a report is rebuilt from those files alone (no model, no images).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from openlt.errors import RunDirError, WriteError
from openlt.io import unmakeable_folder, write_text
from openlt.metrics import BAND_COLUMNS, BAND_NAMES, BAND_ROWS, ShotBands
from openlt.reporting.convergence import convergence_findings
from openlt.reporting.describe import checkpoint_epoch, environment_lines, open_set_text, threshold_text
from openlt.reporting.samples import load_samples
from openlt.reporting.summary import CONSISTENCY_TOLERANCE, load_metrics, missing_metrics, tagged_metrics


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



@dataclass
class FolderFiles:
    """A :class:`RunFiles` for a plain folder (no run directory, no epoch log, no config): reports drawn from
    metrics and samples alone, as the scale benchmark and tests do."""

    path: Path

    def metrics_path(self, tag: str | None = None) -> Path:
        """metrics.json in the folder (tags are not used)."""
        return self.path / "metrics.json"

    def report_path(self, tag: str | None = None) -> Path:
        """report.md in the folder."""
        return self.path / "report.md"

    def report_html_path(self, tag: str | None = None) -> Path:
        """report.html in the folder."""
        return self.path / "report.html"

    def predictions_path(self, tag: str | None = None) -> Path:
        """predictions.npz in the folder."""
        return self.path / "predictions.npz"

    def epochs_logged(self) -> list[dict]:
        """No epoch log: always empty."""
        return []

def _fmt(value: float | None) -> str:
    """A fraction as a 5-wide percentage, or a dash for a band without classes."""
    return "  –  " if value is None else f"{100 * value:5.1f}"


def _band_row(label: str, accuracies: dict) -> str:
    return label + "  ".join(_fmt(accuracies[b]) for b in BAND_NAMES) + f"   {_fmt(accuracies['overall'])}"


def _band_classes(closed: dict, band: str) -> str:
    """`few 3`, or `few 3 (2 with test images)` when the test split has no image of some of the band's classes
    (own split files): the band's top-1 is then the mean over its tested classes only."""
    n = closed["n_classes"][band]
    tested = closed.get("n_classes_tested", {}).get(band, n)  # (absent from an older openlt's metrics.json)
    return f"{band} {n}" if tested == n else f"{band} {n} ({tested} with test images)"


def format_table(metrics: dict) -> str:
    """The result table as the field reports it, from a metrics dict (metrics.json): top-1 in % per shot band
    and overall, closed-set and (with an open split) with rejection, then F-measure, AUROC and FPR@95 in [0, 1]."""
    closed = metrics["closed"]
    lines = [f"shot bands: {metrics['bands']['rule']}  (classes: "
             + ", ".join(_band_classes(closed, b) for b in BAND_NAMES) + ")",
             "                      many  medium    few  overall",
             _band_row("closed-set top-1    ", closed)]
    if "open" in metrics:
        op = metrics["open"]
        lines.append(_band_row("open-set top-1      ", op["bands_with_rejection"]))
        lines.append(f"open-set F-measure {op['f_measure']:.3f}   AUROC {op['auroc']:.3f}   FPR@95 {op['fpr95']:.3f}   "
                     f"({metrics['calibration']['score']} < {threshold_text(op['threshold'])} -> unknown; "
                     f"{metrics['calibration']['source']})")
        if op.get("warning"):  # e.g. a score fitted on features without spread: the AUROC is float rounding
            lines.append(f"warning: {op['warning']}")
    return "\n".join(lines)


# what Markdown (CommonMark; GitHub's tables, strikethrough and math) or HTML would read in a class name as markup
MARKDOWN_SPECIAL = frozenset("\\`*_[]<>&|~$")


def _md_name(name: str) -> str:
    """A class name as text in report.md, wherever it is written (a table cell, the open-set line): each character
    of MARKDOWN_SPECIAL backslash-escaped (CommonMark escapes any ASCII punctuation), so that `*star*` is no
    emphasis, `[x](e.com)` no link, `<script>` no tag, `&lt` no entity and `a|b` no second cell (trial 16 item 10;
    report.html escapes for HTML)."""
    return "".join("\\" + c if c in MARKDOWN_SPECIAL else c for c in name)


def _confusion_markdown(metrics: dict, shown: int = 20) -> str:
    """The shot band confusion table and the most frequent confusions, when metrics.json has them ("")."""
    summary = metrics.get("confusion")
    if not summary or "by_band" not in summary:
        return ""
    by_band, names = summary["by_band"], metrics["class_names"]
    lines = ["## Decisions per shot band", "", f"{by_band.get('decisions', '')}; rows: the true class's band, "
             "columns: the predicted class's band or rejected", "",
             "| true band | " + " | ".join(by_band["columns"]) + " | images | right |",
             "|---|" + "---:|" * (len(by_band["columns"]) + 2)]
    for row, counts in zip(by_band["rows"], by_band["counts"]):
        lines.append(f"| {row} | " + " | ".join(map(str, counts)) + f" | {sum(counts)} | "
                     f"{by_band.get('correct', {}).get(row, '–')} |")
    lines += ["", "## Most frequent confusions", "", "closed-set predictions of the test images; the whole matrix: "
              f"{summary.get('file', 'confusion.npz')}", "", "| true class | predicted class | images |", "|---|---|---:|"]
    lines += [f"| {_md_name(names[c['true']])} | {_md_name(names[c['pred']])} | {c['count']} |"
              for c in summary.get("top", [])[:shown]]
    return "\n".join(lines) + "\n\n"


def readable_log(run: RunFiles) -> list[dict]:
    """The run's epoch log (metrics.jsonl) for a report's training time and curves, or [] when a line of it cannot
    be read (hand-edited): the report is still written, without them; metrics.json's ``convergence.unchecked`` says
    why (stage1_record.run_convergence)."""
    try:
        return run.epochs_logged()
    except RunDirError:
        return []


def report_markdown(run: RunFiles, metrics: dict, tag: str | None = None) -> str:
    """report(-TAG).md: the result table, the decisions per shot band and the most frequent confusions, and the
    per-class table (training images, band, test top-1 in %)."""
    rows = ["| class | train images | band | test top-1 (%) |", "|---|---:|---|---:|"]
    for name, n, band, acc in zip(metrics["class_names"], metrics["train_counts"], metrics["bands"]["per_class"],
                                  metrics["per_class_accuracy"]):
        rows.append(f"| {_md_name(name)} | {n} | {band} | {'–' if acc is None else f'{100 * acc:.1f}'} |")
    elsewhere = evaluated_elsewhere(run, metrics)
    about = [f"run: {run.path.resolve()} (evaluated at {elsewhere}: metrics.json \"run\")" if elsewhere else "",
             f"checkpoint: {metrics['checkpoint']} ({checkpoint_epoch(metrics)}); figures, calibration and score "
             f"histograms: {run.report_html_path(tag).name}", open_set_text(metrics, _md_name),
             *environment_lines(metrics, readable_log(run)),
             *(f"**Warning:** {text}." if kind == "warning" else f"Note: {text}."
               for kind, text in convergence_findings(metrics))]
    return (f"# openlt report: {run.path.name}\n\n" + "".join(f"{line}\n\n" for line in about if line)
            + f"```\n{format_table(metrics)}\n```\n\n{_confusion_markdown(metrics)}## Per class\n\n" + "\n".join(rows) + "\n")


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
    write_text(run.report_html_path(tag), run_report(metrics, samples, bands, readable_log(run), title,
                                                     _config_text(run), str(run.path.resolve()),
                                                     evaluated_elsewhere(run, metrics)))


def evaluated_elsewhere(run: RunFiles, metrics: dict) -> str | None:
    """The run directory metrics.json names ("run": where `openlt eval` ran on it) when it is not `run`'s, or None
    (trial 14a S2): a copied or moved run's report is of the folder it is made for, and says where it was
    evaluated. A relative path (an older openlt: relative to where eval ran) is not compared."""
    recorded = metrics.get("run")
    if not isinstance(recorded, str) or not recorded or not Path(recorded).is_absolute():
        return None
    return None if Path(recorded).resolve() == run.path.resolve() else recorded


def _config_text(run: RunFiles) -> str | None:
    """The run's config.yaml as written (None when the run-like object has none)."""
    path = getattr(run, "config_file", None)
    try:
        return Path(path).read_text(encoding="utf-8") if path is not None and Path(path).is_file() else None
    except (OSError, UnicodeDecodeError):
        return None


def rebuild_reports(run: RunFiles, tag: str | None = None) -> Path:
    """Redraw a run's reports from metrics(-TAG).json and predictions(-TAG).npz alone (no model, no images);
    returns the HTML report's path. RunDirError when the metrics file is missing, not JSON, or lacks what the
    report draws."""
    path = run.metrics_path(tag)
    if not path.is_file() and tag is None and tagged_metrics(path.parent):  # named, with how to give one
        raise RunDirError(missing_metrics(path, "report"))
    if not path.is_file():
        raise RunDirError(f"{path} not found: evaluate the run first ({_eval_hint(run, tag)})")
    metrics = load_metrics(path)  # checked: one RunDirError line for a torn or hand-edited file
    problem = _report_problem(metrics)
    if problem:
        raise RunDirError(f"{path} is not a metrics file of `openlt eval` ({problem}); evaluate the run again")
    samples = load_samples(run.predictions_path(tag))
    check_samples_origin(run.predictions_path(tag), samples, path, metrics)
    check_samples_accuracy(run.predictions_path(tag), samples, path, metrics)
    if unmakeable_folder(run.path) is not None:  # the reports are written into the run's folder
        raise WriteError(f"cannot write the reports into {run.path} (permission denied or a read-only "
                         f"filesystem): copy the run somewhere writable (cp -r) and redraw the copy's")
    write_reports(run, metrics, samples, tag)
    return run.report_html_path(tag)


ORIGIN_KEYS = ("score_name", "checkpoint_sha256")  # predictions.npz: the evaluation it comes from


def samples_origin(metrics: dict) -> dict[str, np.ndarray]:
    """The fields predictions.npz records beside its arrays about the evaluation that wrote it (the metrics dict
    written with it): the open-set score's name and the evaluated checkpoint's sha256 (:func:`check_samples_origin`
    compares them with metrics.json's when a report is redrawn)."""
    score = metrics.get("open_score")
    return {"score_name": np.array(score.get("name", "") if isinstance(score, dict) else ""),
            "checkpoint_sha256": np.array(str(metrics.get("checkpoint_sha256") or ""))}


def check_samples_origin(samples_path: Path, samples: dict, metrics_path: Path, metrics: dict) -> None:
    """RunDirError, one line naming both files, when predictions(-TAG).npz was written by another evaluation than
    metrics(-TAG).json (another open-set score, or another checkpoint: another run's, or the run's best vs last);
    the origin fields are taken out of `samples`. A file of an older openlt, without the fields, is accepted."""
    found = {key: str(samples.pop(key)) for key in ORIGIN_KEYS if key in samples}
    expected = {key: str(value) for key, value in samples_origin(metrics).items()}
    differ = [key for key, value in found.items() if value and expected[key] and value != expected[key]]
    if differ:
        name = {"score_name": "open-set score", "checkpoint_sha256": "checkpoint sha256"}
        shown = {key: {"score_name": repr, "checkpoint_sha256": lambda h: h[:12] + "..."}[key] for key in differ}
        what = "; ".join(f"its {name[key]} is {shown[key](found[key])}, {metrics_path.name}'s "
                         f"{shown[key](expected[key])}" for key in differ)
        raise RunDirError(f"{samples_path} is not from the evaluation that wrote {metrics_path}: {what}; evaluate "
                          f"the run again to write both together")


def check_samples_accuracy(samples_path: Path, samples: dict, metrics_path: Path, metrics: dict) -> None:
    """RunDirError, one line naming both files, when metrics(-TAG).json's closed.overall is not the top-1 accuracy of
    the per-image predictions of predictions(-TAG).npz written with it (``test_preds`` vs ``test_labels``, known
    images), within summary.CONSISTENCY_TOLERANCE: a hand-edited overall inside the range of the per-class
    accuracies (trial 10 D5; the rest of metrics.json is checked against itself by summary.load_metrics)."""
    overall = metrics["closed"].get("overall")
    preds, labels = samples.get("test_preds"), samples.get("test_labels")
    if not isinstance(overall, (int, float)) or preds is None or labels is None or len(preds) != len(labels):
        return
    known = np.asarray(labels) >= 0
    if not known.any():
        return
    found = float(np.mean(np.asarray(preds)[known] == np.asarray(labels)[known]))
    if abs(found - overall) > CONSISTENCY_TOLERANCE:
        raise RunDirError(f"{metrics_path} contradicts {samples_path.name} written with it: closed.overall is "
                          f"{overall:.4g}, its per-image predictions give {found:.4g} (edited by hand?); evaluate the "
                          f"run again to write both together")


def _eval_hint(run: RunFiles, tag: str | None) -> str:
    """The `openlt eval` command that writes metrics(-TAG).json, in words: with the tag, and for a tag the
    evaluation settings it stands for (the tag names them only in the user's head), with the run's other tagged
    evaluations when it has some."""
    if tag is None:
        return f"`openlt eval {run.path}`"
    others = sorted(p.name for p in run.path.glob("metrics-*.json"))
    return (f"`openlt eval {run.path} --tag {tag}` with the settings this evaluation is for, e.g. "
            f"eval.open_score=energy" + (f"; this run has {', '.join(others)}" if others else ""))


def _report_problem(metrics: dict) -> str | None:
    """What a report needs of a (shape-checked) metrics dict beyond `summary.metrics_problem`, or None: the
    per-class lists (one entry per class), the band of each class and, when given, a well-formed "confusion"
    summary (a file of an older openlt has a dense "confusion_matrix" instead, which the report does not need:
    it draws from predictions.npz)."""
    k = len(metrics["class_names"])
    if not isinstance(metrics.get("train_counts"), list):
        return '"train_counts" is missing'
    if not isinstance(metrics["bands"].get("per_class"), list) or len(metrics["bands"]["per_class"]) != k:
        return '"bands.per_class" must name the band of each class'
    accuracy = metrics.get("per_class_accuracy")
    if not isinstance(accuracy, list) or len(accuracy) != k or not all(a is None or _fraction(a) for a in accuracy):
        return '"per_class_accuracy" must hold one fraction (or null) per class'
    return _confusion_problem(metrics.get("confusion", {}), k)


def _confusion_problem(summary, k: int) -> str | None:
    """What is wrong with metrics["confusion"] ("top": [{"true", "pred", "count"}], "by_band": 4 x 4 counts), or None."""
    if not isinstance(summary, dict):
        return '"confusion" must be an object'
    top = summary.get("top", [])
    if not isinstance(top, list) or not all(
            isinstance(c, dict) and all(_count(c.get(key)) for key in ("true", "pred", "count"))
            and c["true"] < k and c["pred"] < k for c in top):
        return f'"confusion.top" must list {{"true", "pred", "count"}} with class ids below {k}'
    by_band = summary.get("by_band")
    if by_band is not None and not (
            isinstance(by_band, dict) and list(by_band.get("rows", [])) == list(BAND_ROWS)
            and list(by_band.get("columns", [])) == list(BAND_COLUMNS) and isinstance(by_band.get("counts"), list)
            and len(by_band["counts"]) == len(BAND_ROWS) and all(
                isinstance(row, list) and len(row) == len(BAND_COLUMNS) and all(_count(c) for c in row)
                for row in by_band["counts"])):
        return f'"confusion.by_band" must be {len(BAND_ROWS)} x {len(BAND_COLUMNS)} counts (rows {", ".join(BAND_ROWS)})'
    return None


def _count(value) -> bool:
    return type(value) is int and value >= 0


def _fraction(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0.0 <= value <= 1.0
