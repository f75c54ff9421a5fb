"""Self-contained HTML reports: tables and matplotlib figures embedded as base64 PNG, so a report is one
file that opens anywhere (no network, no side files). `page`, `table` and `figure` are the reusable pieces;
`run_report` lays out the report of one evaluated run.
"""

from __future__ import annotations

import base64
import html
from typing import Iterable, Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from openlt.metrics import (BAND_NAMES, ShotBands, band_confusion, ece_by_band, per_class_accuracy, reject,
                            rejection_curves, threshold_grid, top_confusions)
from openlt.reporting import figures
from openlt.reporting.convergence import convergence_findings
from openlt.reporting.describe import checkpoint_epoch, environment_lines, open_set_text, threshold_text

CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #222; margin: 0; background: #fafafa; }
main { max-width: 1180px; margin: 0 auto; padding: 24px 28px 48px; background: #fff; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 17px; margin: 28px 0 8px; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
.meta { color: #555; font-size: 13px; } .meta code { background: #f2f2f2; padding: 0 3px; border-radius: 3px; }
table { border-collapse: collapse; margin: 8px 0; font-size: 13px; }
th, td { padding: 4px 10px; border-bottom: 1px solid #e5e5e5; text-align: left; } th { background: #f4f4f4; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; } td.num { white-space: nowrap; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(520px, 1fr)); gap: 18px; align-items: start; }
figure { margin: 0; } figure img { width: 100%; height: auto; border: 1px solid #eee; }
figure.wide { grid-column: 1 / -1; justify-self: center; max-width: 720px; }
figcaption { color: #555; font-size: 12.5px; margin-top: 4px; }
tr.band-many td:nth-child(3) { color: #1f77b4; } tr.band-medium td:nth-child(3) { color: #ff7f0e; }
tr.band-few td:nth-child(3) { color: #d62728; }
.warning { background: #fff4e0; border-left: 4px solid #e8a33d; padding: 6px 12px; margin: 10px 0; font-size: 13.5px; }
details { margin: 8px 0; font-size: 13px; } summary { cursor: pointer; color: #333; }
pre { background: #f6f6f6; padding: 8px 12px; overflow-x: auto; font-size: 12px; line-height: 1.35; }
"""


def esc(value: object) -> str:
    """``str(value)`` escaped for HTML text and attribute values (``&``, ``<``, ``>``, quotes)."""
    return html.escape(str(value), quote=True)


def figure(fig: Figure, caption: str, alt: str | None = None, dpi: int = 110, wide: bool = False) -> str:
    """A <figure> with the matplotlib figure inlined as a base64 PNG; `wide` takes a grid row of its own."""
    data = base64.b64encode(figures.to_png(fig, dpi)).decode("ascii")
    cls = ' class="wide"' if wide else ""
    return (f'<figure{cls}><img alt="{esc(alt or caption)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{caption}</figcaption></figure>")


def table(header: Sequence[str], rows: Iterable[Sequence[object]], numeric: Sequence[bool] | None = None,
          row_class: Sequence[str] | None = None) -> str:
    """An HTML table; cells are escaped; `numeric[i]` right-aligns column i."""
    numeric = numeric or [False] * len(header)
    cls = lambda i: ' class="num"' if numeric[i] else ""  # noqa: E731
    head = "".join(f"<th{cls(i)}>{esc(h)}</th>" for i, h in enumerate(header))
    body = []
    for r, row in enumerate(rows):
        tr = f' class="{esc(row_class[r])}"' if row_class else ""
        body.append(f"<tr{tr}>" + "".join(f"<td{cls(i)}>{esc(c)}</td>" for i, c in enumerate(row)) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def page(title: str, body: str) -> str:
    """A complete HTML document titled ``title`` (escaped) with the report's CSS; ``body`` is inserted as is (HTML)."""
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><meta name="viewport" '
            f'content="width=device-width, initial-scale=1"><title>{esc(title)}</title><style>{CSS}</style></head>'
            f"<body><main>{body}</main></body></html>\n")


def pct(value: float | None) -> str:
    """A fraction as a percentage with one decimal (``0.523`` -> ``"52.3"``); ``"–"`` for None or NaN."""
    return "–" if value is None or (isinstance(value, float) and np.isnan(value)) else f"{100 * value:.1f}"


def num(value: float | None, digits: int = 3) -> str:
    """A number with ``digits`` decimals; ``"–"`` for None."""
    return "–" if value is None else f"{value:.{digits}f}"


def _results_table(metrics: Mapping, ece: Mapping[str, float | None]) -> str:
    closed = metrics["closed"]
    rows = [["closed-set top-1 (%)", *(pct(closed.get(b)) for b in (*BAND_NAMES, "overall"))]]
    if "open" in metrics:
        rej = metrics["open"]["bands_with_rejection"]
        rows.append(["open-set top-1, with rejection (%)", *(pct(rej.get(b)) for b in (*BAND_NAMES, "overall"))])
        per_band = metrics["open"].get("auroc_per_band")  # known images of the band against the open set
        if per_band:
            rows.append(["AUROC, band vs open", *(num(per_band.get(b)) for b in (*BAND_NAMES, "overall"))])
    rows.append(["ECE, max softmax (%)", *(pct(ece.get(b)) for b in (*BAND_NAMES, "overall"))])
    n = closed.get("n_classes", {})
    header = ["", *(f"{b} ({n.get(b, '?')} classes)" for b in BAND_NAMES), "overall"]
    out = table(header, rows, [False, True, True, True, True])
    if "open" in metrics:
        op = metrics["open"]
        out += table(["open-set F-measure", "precision", "recall", "AUROC", "AUPR-IN", "AUPR-OUT", "FPR@95",
                      "open rejected", "known rejected"],
                     [[num(op.get("f_measure")), num(op.get("precision")), num(op.get("recall")), num(op.get("auroc")),
                       num(op.get("aupr_in")), num(op.get("aupr_out")), num(op.get("fpr95")),
                       f"{pct(op.get('open_rejected'))}%", f"{pct(op.get('known_rejected'))}%"]], [True] * 9)
    return out


def _meta(metrics: Mapping, history: Sequence[Mapping] | None = None, run_dir: str | None = None,
          evaluated_at: str | None = None) -> str:
    """The page's header lines: the run (`run_dir`, the folder the report is made for, else metrics.json's "run"),
    where it was evaluated when that was another folder (`evaluated_at`: a copied or moved run), the checkpoint, the
    band rule, the open-set decision and the environment."""
    shown = metrics.get("run", "") if run_dir is None else run_dir
    cal = metrics.get("calibration", {})
    score = metrics.get("open_score", {"name": cal.get("score", "?")})
    options = ", ".join(f"{k} {v}" for k, v in score.items() if k != "name" and not isinstance(v, (list, dict)))
    threshold = "–" if cal.get("threshold") is None else threshold_text(cal["threshold"])  # never a rounded one
    decision = (f"an image is unknown when its score &lt; {threshold} ({esc(cal.get('source', ''))})"
                if cal else "closed-set evaluation without a validation split: no rejection threshold")
    lines = [f"run <code>{esc(shown)}</code>" + (f" (evaluated at <code>{esc(evaluated_at)}</code>)" if evaluated_at else "")
             + f", checkpoint {esc(metrics.get('checkpoint', '?'))} "
             f"({esc(checkpoint_epoch(metrics))})",
             f"shot bands by training images: {esc(metrics['bands']['rule'])}",
             f"open-set score <b>{esc(score.get('name'))}</b>{f' ({esc(options)})' if options else ''}; {decision}"]
    open_set = open_set_text(metrics)
    if open_set:
        lines.append(esc(open_set))
    lines += [esc(line) for line in environment_lines(metrics, history)]
    return "".join(f'<p class="meta">{line}</p>' for line in lines)


def _warnings(metrics: Mapping) -> str:
    """The warnings of metrics.json as highlighted paragraphs ("" when there is none): the convergence warning and
    the open-set score's (``open.warning``, e.g. a score fitted on training features without spread, or scores
    without spread: the AUROC is float rounding), the line report.md's table and the console print."""
    paragraphs = [f'<p class="warning"><b>Warning:</b> {esc(text)}.</p>' if kind == "warning" else
                  f'<p class="meta">Note: {esc(text)}.</p>' for kind, text in convergence_findings(metrics)]
    open_set = metrics.get("open")
    score_warning = open_set.get("warning") if isinstance(open_set, Mapping) else None
    if score_warning:
        paragraphs.append(f'<p class="warning"><b>Warning:</b> {esc(score_warning)}</p>')
    return "\n".join(paragraphs)


def _config_block(config_text: str | None) -> str:
    """config.yaml as a collapsed block ("" when the run has none)."""
    if not config_text:
        return ""
    return ('<details><summary>config.yaml of the run (the evaluation\'s own overrides are in the open-set score '
            f"line above)</summary><pre>{esc(config_text)}</pre></details>")


def run_report(metrics: Mapping, samples: Mapping[str, np.ndarray], bands: ShotBands,
               history: Sequence[Mapping] | None = None, title: str | None = None,
               config_text: str | None = None, run_dir: str | None = None,
               evaluated_at: str | None = None) -> str:
    """The HTML report of one evaluated run, from its metrics, its per-sample results (predictions.npz) and,
    when given, its training log (metrics.jsonl) and its config.yaml (`config_text`, shown collapsed); the header
    names `run_dir` (the folder the report is made for; default metrics.json's "run") and `evaluated_at` (where
    metrics.json says it was evaluated, when another folder: a copied run). Every
    class is drawn up to
    :data:`~openlt.reporting.figures.MAX_CLASSES_DRAWN` classes (per-class scatter, confusion matrix ordered by
    training images with a rejected column and an open row: :func:`decision_matrix`);
    beyond, per-class accuracy ranked by training images with a box per band, and the shot-band confusion
    summary, so the page's figures and time stay O(N + K) (iNaturalist's 8,142 classes)."""
    names = list(metrics["class_names"])
    band_of = metrics["bands"]["per_class"]
    y, pred, score, conf = samples["test_labels"], samples["test_preds"], samples["test_score"], samples["test_max_prob"]
    threshold = metrics.get("calibration", {}).get("threshold")
    ece = metrics.get("ece") or ece_by_band(conf, pred == y, y, band_of)
    with_rejection = None
    if threshold is not None and "open" in metrics:
        with_rejection = per_class_accuracy(reject(pred, score, threshold), labels=y, num_classes=len(names))
    title = title or f"openlt report: {metrics.get('run', '').rstrip('/').split('/')[-1]}"
    body = [f"<h1>{esc(title)}</h1>", _meta(metrics, history, run_dir, evaluated_at), _warnings(metrics), _config_block(config_text),
            "<h2>Results</h2>", _results_table(metrics, ece),
            "<h2>Figures</h2>", f'<div class="grid">{"".join(_figures(metrics, samples, bands, ece, with_rejection, history))}</div>',
            "<h2>Most frequent confusions</h2>", _confusions_table(metrics, samples),
            "<h2>Per class</h2>", _class_table(metrics, samples, with_rejection),
            '<p class="meta">Rebuild this page from the run directory with <code>openlt report RUN</code> '
            "(it reads metrics.json and predictions.npz; no model needed).</p>"]
    return page(title, "\n".join(body))


def _figures(metrics: Mapping, samples: Mapping[str, np.ndarray], bands: ShotBands, ece: Mapping,
             with_rejection: np.ndarray | None, history: Sequence[Mapping] | None) -> list[str]:
    """The report's figures as <figure> elements (see :func:`run_report`)."""
    names, counts, band_of = list(metrics["class_names"]), list(metrics["train_counts"]), metrics["bands"]["per_class"]
    y, pred, score, conf = samples["test_labels"], samples["test_preds"], samples["test_score"], samples["test_max_prob"]
    open_score = samples.get("open_score")
    threshold = metrics.get("calibration", {}).get("threshold")
    score_name = metrics.get("calibration", {}).get("score", "score")
    rejected = None if with_rejection is None else with_rejection.tolist()
    small = len(names) <= figures.MAX_CLASSES_DRAWN
    if small:
        plots = [figure(figures.accuracy_vs_train_count(counts, metrics["per_class_accuracy"], bands, names, rejected),
                        "Per-class test accuracy against training images; dashed lines: each band's mean (the table's "
                        "number); hollow: with open-set rejection.", "per-class accuracy against training images")]
    else:
        plots = [figure(figures.ranked_class_accuracy(counts, metrics["per_class_accuracy"], bands, rejected),
                        f"Per-class test accuracy of the {len(names)} classes ranked by training images (dots: classes, "
                        "line: moving mean) and per band (boxes; diamond: the band's mean, the table's number).",
                        "per-class accuracy ranked by training images")]
    grid = threshold_grid(score) if open_score is None else threshold_grid(score, open_score)
    curves = rejection_curves(score, known_preds=pred, known_labels=y, open_scores=open_score, thresholds=grid)
    plots.append(figure(figures.score_histograms(score, open_score, threshold, score_name),
                        "Open-set score of the known test images and of the unknown (open) images; images left of "
                        "the dashed threshold are rejected as unknown. Right: the ROC curve of the score (known "
                        "images kept against unknown images kept as the threshold moves; circle: the threshold)."
                        if open_score is not None else "Open-set score of the known test images; images left of the "
                        "dashed threshold are rejected as unknown.", "open-set score histograms"))
    plots.append(figure(figures.threshold_curves(curves, threshold, score_name),
                        "Known accuracy with rejection (= the F-measure's precision) and the open-set F-measure as "
                        "the rejection threshold moves.", "accuracy and F-measure against the threshold"))
    plots.append(figure(figures.reliability_diagram(conf, pred == y, np.asarray(band_of)[y], ece),
                        "Reliability of the max-softmax confidence on the known test images, per shot band "
                        "(closed-set predictions).", "reliability diagram"))
    if history:
        plots.append(figure(figures.training_loss(history), "Training loss and learning rate per epoch.", "training loss"))
        plots.append(figure(figures.validation_accuracy(history), "Validation accuracy per band (mean of per-class "
                            "accuracies) per epoch.", "validation accuracy"))
    plots.append(figure(figures.band_confusion(_band_summary(metrics, samples)),
                        "Decisions per shot band: rows the true class's band (and the unknown images), columns the "
                        "predicted class's band or rejected; " + ("after rejection." if threshold is not None else
                                                                   "closed-set predictions."), "shot band confusion"))
    if small:
        plots.append(_decision_figure(metrics, samples))
    return plots


def decision_matrix(metrics: Mapping, samples: Mapping[str, np.ndarray]) -> tuple[np.ndarray, list[str], list[str]]:
    """The decisions on the test images as a matrix ordered by training images (most first): rows the true
    classes and, with an open split, an "open" row; columns the predicted classes and, with a threshold, a
    "rejected" column (after rejection). Returns (counts (R, C), row names, column names); names carry the
    class's training images."""
    names, counts = list(metrics["class_names"]), np.asarray(metrics["train_counts"])
    k = len(names)
    order = np.argsort(-counts, kind="stable")
    rank = np.empty(k, dtype=np.int64)
    rank[order] = np.arange(k)
    y, pred, score = samples["test_labels"], samples["test_preds"], samples["test_score"]
    has_open = "open_preds" in samples
    if has_open:
        y = np.concatenate([y, -np.ones(len(samples["open_preds"]), dtype=np.int64)])
        pred, score = np.concatenate([pred, samples["open_preds"]]), np.concatenate([score, samples["open_score"]])
    threshold = metrics.get("calibration", {}).get("threshold")
    decided = pred if threshold is None else reject(pred, score, threshold)
    rows = np.where(y >= 0, rank[np.clip(y, 0, None)], k)
    cols = np.where(decided >= 0, rank[np.clip(decided, 0, None)], k)
    matrix = np.zeros((k + has_open, k + (threshold is not None)), dtype=np.int64)
    np.add.at(matrix, (rows, cols), 1)
    labels = [f"{names[c]} ({counts[c]})" for c in order]
    held_out = metrics.get("open_class_names") or []
    open_label = f"open: {', '.join(map(str, held_out))}" if 0 < len(held_out) <= 3 else "open"
    return matrix, labels + [open_label] * has_open, labels + ["rejected"] * (threshold is not None)


def _decision_figure(metrics: Mapping, samples: Mapping[str, np.ndarray]) -> str:
    """The <figure> of :func:`decision_matrix`."""
    matrix, rows, cols = decision_matrix(metrics, samples)
    k = len(metrics["class_names"])
    rejection = len(cols) > k
    what = ("after rejection: the last column holds the images rejected as unknown" if rejection else
            "closed-set predictions (no rejection threshold)")
    open_row = "; the last row: the open images (unknown classes)" if len(rows) > k else ""
    return figure(figures.confusion_matrix(matrix, rows, column_names=cols, known=k),
                  f"Confusion matrix of the test images, classes ordered by training images (in brackets), most "
                  f"first; rows normalised to the row's images; {what}{open_row}.", "confusion matrix", wide=True)


def _band_summary(metrics: Mapping, samples: Mapping[str, np.ndarray]) -> Mapping:
    """metrics["confusion"]["by_band"], or (a metrics file of an older openlt) the same from the samples."""
    summary = metrics.get("confusion", {}).get("by_band")
    if summary is not None:
        return summary
    pred, y, score = samples["test_preds"], samples["test_labels"], samples["test_score"]
    if "open_preds" in samples:
        pred, score = np.concatenate([pred, samples["open_preds"]]), np.concatenate([score, samples["open_score"]])
        y = np.concatenate([y, -np.ones(len(samples["open_preds"]), dtype=np.int64)])
    threshold = metrics.get("calibration", {}).get("threshold")
    return band_confusion(pred if threshold is None else reject(pred, score, threshold), labels=y,
                          band_of_class=metrics["bands"]["per_class"])


def _confusions_table(metrics: Mapping, samples: Mapping[str, np.ndarray], shown: int = 20) -> str:
    """The `shown` most frequent (true, predicted) pairs of the test images, with names and shares."""
    names = list(metrics["class_names"])
    y, pred = samples["test_labels"], samples["test_preds"]
    top = metrics.get("confusion", {}).get("top")
    if top is None:
        top = top_confusions(pred, labels=y, num_classes=len(names), n=shown)
    per_class = np.bincount(y[y >= 0], minlength=len(names))
    rows = [[names[c["true"]], names[c["pred"]], c["count"], pct(c["count"] / max(per_class[c["true"]], 1))]
            for c in top[:shown]]
    if not rows:
        return '<p class="meta">No test image was given another known class.</p>'
    return ('<p class="meta">Closed-set predictions of the known test images, before rejection; the whole matrix '
            "is confusion.npz (scipy.sparse.load_npz).</p>"
            + table(["true class", "predicted class", "images", "% of the true class"], rows, [False, False, True, True]))


def _class_table(metrics: Mapping, samples: Mapping[str, np.ndarray], with_rejection: np.ndarray | None) -> str:
    """The per-class table: training and test images, band, top-1 (and with rejection); O(N + K)."""
    names, counts, band_of = list(metrics["class_names"]), list(metrics["train_counts"]), metrics["bands"]["per_class"]
    y = samples["test_labels"]
    tested = np.bincount(y[y >= 0], minlength=len(names))
    rows = []
    for c, name in enumerate(names):
        row = [name, counts[c], band_of[c], int(tested[c]), pct(metrics["per_class_accuracy"][c])]
        if with_rejection is not None:
            row.append(pct(float(with_rejection[c])))
        rows.append(row)
    header = ["class", "train images", "band", "test images", "top-1 (%)"]
    if with_rejection is not None:
        header.append("with rejection (%)")
    return table(header, rows, [False, True, False, True, True, True], [f"band-{b}" for b in band_of])
