"""The report's figures, each a function of plain arrays returning a matplotlib Figure, so that a run's
report and a benchmark's report draw the same pictures. Figures are built without pyplot (no global state,
no display backend) with constrained layout; `to_png` renders one to PNG bytes with Agg.
"""

from __future__ import annotations

import io
import warnings
from functools import lru_cache
from typing import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, PercentFormatter
from sklearn.metrics import auc, roc_curve

from openlt.metrics import BAND_NAMES, ShotBands, reliability_bins
from openlt.reporting.convergence import convergence
from openlt.reporting.describe import threshold_text

BAND_COLORS = {"many": "#1f77b4", "medium": "#ff7f0e", "few": "#d62728"}
KNOWN_COLOR, OPEN_COLOR = "#2ca02c", "#9467bd"
MAX_LABELLED_CLASSES = 40  # class names on the axes up to this many classes; ids only beyond
MAX_ANNOTATED_CELLS = 12  # numbers written in the confusion matrix's cells up to this many classes
# up to this many classes a report draws every class (a scatter of per-class accuracy, the K x K confusion matrix);
# beyond it, per-class accuracy ranked by training images with a moving mean and a box per band, and the shot-band
# confusion summary alone (an 8,142 x 8,142 image would show nothing)
MAX_CLASSES_DRAWN = 50
# text properties for names from the data (class names): drawn as written, never parsed as mathtext ("$x$", a lone
# "$", "\\" would otherwise be typeset or fail to draw) nor passed to TeX
AS_WRITTEN = {"parse_math": False, "usetex": False}


MAX_LABEL_CHARS = 40  # a class name on a figure is cut to this many characters (ending in "…")
# matplotlib's warnings at draw time that a report cannot act on: a glyph the font lacks (labels are escaped first,
# `label`), a layout that does not fit (long labels are cut first); they reached the user's stderr raw
DRAW_WARNINGS = (r"Glyph .* missing from", r"constrained_layout not applied", r"Tight layout not applied")


def to_png(fig: Figure, dpi: int = 110) -> bytes:
    """The figure as PNG bytes (rendered with Agg, whatever matplotlib's configured backend); matplotlib's
    draw-time warnings (`DRAW_WARNINGS`) are not passed on."""
    buf = io.BytesIO()
    with warnings.catch_warnings():
        for message in DRAW_WARNINGS:
            warnings.filterwarnings("ignore", message=message, category=UserWarning)
        fig.savefig(buf, format="png", dpi=dpi)  # the figures use constrained layout: no second, "tight" pass
    return buf.getvalue()


def save_png(fig: Figure, path, dpi: int = 110) -> None:
    """Write the figure as a PNG file at `path` (:func:`to_png`: the same renderer and warning filter as every
    report figure), atomically (WriteError when it cannot be written, the previous file kept)."""
    from openlt.io import atomic_path

    data = to_png(fig, dpi)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


@lru_cache(maxsize=1)
def _drawable() -> frozenset[int] | None:
    """The code points the fonts of matplotlib's font.family have a glyph for (None: no font could be read, so
    nothing is escaped)."""
    from matplotlib import font_manager, ft2font, rcParams

    points: set[int] = set()
    for family in rcParams["font.family"]:
        try:
            path = font_manager.findfont(font_manager.FontProperties(family=[family]))
            points |= set(ft2font.FT2Font(path).get_charmap())
        except (OSError, RuntimeError, ValueError):  # a font that cannot be read
            continue
    return frozenset(points) or None


def label(name: object) -> str:
    """A class name as a figure shows it: characters the font cannot draw written as escapes (`\\u732b`, not an
    empty box and a warning), then cut to MAX_LABEL_CHARS (a 200-character name collapsed the layout)."""
    drawable = _drawable()
    text = "".join(c if drawable is None or ord(c) in drawable or c == " " else
                   c.encode("unicode_escape").decode("ascii") for c in str(name))
    return text if len(text) <= MAX_LABEL_CHARS else text[:MAX_LABEL_CHARS - 1] + "…"


def _band_spans(bands: ShotBands, lo: float, hi: float) -> dict[str, tuple[float, float]]:
    """x-ranges (in training images) of the bands on a log axis from lo to hi; a band edge at n images is drawn
    half an image off n so that a class exactly at the edge sits inside its own band."""
    few_edge = bands.few_below + (0.5 if bands.inclusive else -0.5)
    many_edge = bands.many_above + (-0.5 if bands.inclusive else 0.5)
    return {"few": (lo, max(few_edge, lo)), "medium": (max(few_edge, lo), min(many_edge, hi)),
            "many": (min(many_edge, hi), hi)}


def accuracy_vs_train_count(train_counts: Sequence[int], accuracy: Sequence[float | None], bands: ShotBands,
                            class_names: Sequence[str] | None = None,
                            accuracy_with_rejection: Sequence[float | None] | None = None) -> Figure:
    """Per-class test accuracy against training images (log x), the many / medium / few bands shaded."""
    counts = np.asarray(train_counts, dtype=np.float64)
    acc = np.array([np.nan if a is None else a for a in accuracy], dtype=np.float64)
    band_of = bands.bands_of(counts.astype(np.int64))
    fig = Figure(figsize=(7.5, 4.2), layout="constrained")
    ax = fig.add_subplot()
    lo, hi = max(counts.min() / 1.6, 0.5), counts.max() * 1.6
    for band, (a, b) in _band_spans(bands, lo, hi).items():
        if b > a:
            ax.axvspan(a, b, color=BAND_COLORS[band], alpha=0.08, lw=0)
            ax.text(np.sqrt(a * b), 1.02, band, ha="center", va="bottom", color=BAND_COLORS[band],
                    transform=ax.get_xaxis_transform(), fontsize=9)
    colors = [BAND_COLORS[b] for b in band_of]
    ax.scatter(counts, acc, c=colors, s=28, zorder=3)
    if accuracy_with_rejection is not None:
        rej = np.array([np.nan if a is None else a for a in accuracy_with_rejection], dtype=np.float64)
        ax.scatter(counts, rej, facecolors="none", edgecolors=colors, s=34, zorder=3)
        # legend entries in grey: the colours stand for the bands, the fill for the setting
        ax.scatter([], [], c="#666", s=28, label="closed set")
        ax.scatter([], [], facecolors="none", edgecolors="#666", s=34, label="with rejection")
        ax.legend(loc="lower right", fontsize=8)
    for band in BAND_NAMES:  # the band's mean of per-class accuracies, the number the tables report
        members = np.array([b == band for b in band_of]) & ~np.isnan(acc)
        if members.any():
            ax.hlines(acc[members].mean(), counts[members].min() / 1.15, counts[members].max() * 1.15,
                      colors=BAND_COLORS[band], linestyles="--", lw=1, zorder=2)
    if class_names is not None and len(class_names) <= 20:
        for x, y, name in zip(counts, acc, class_names):
            if not np.isnan(y):
                ax.annotate(label(name), (x, y), xytext=(4, 3), textcoords="offset points", fontsize=7, color="#444",
                            **AS_WRITTEN)
    ax.set_xscale("log")
    ax.set_xlim(lo, hi)
    ax.set_ylim(-0.03, 1.03)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_xlabel("training images of the class (log scale)")
    ax.set_ylabel("test top-1 accuracy")
    ax.grid(alpha=0.3, which="both", lw=0.5)
    return fig


def confusion_matrix(matrix: Sequence[Sequence[int]], class_names: Sequence[str], normalize: bool = True,
                     column_names: Sequence[str] | None = None, known: int | None = None) -> Figure:
    """The confusion matrix, rows = true class, normalised per row (the fraction of each row's images). Rows are
    named by `class_names`, columns by `column_names` (default: the same names): an (R, C) matrix may add an
    "open" row and a "rejected" column to the K known classes, set apart by lines after the first `known`."""
    m = np.asarray(matrix, dtype=np.float64)
    rows, cols = m.shape
    column_names = [label(n) for n in (class_names if column_names is None else column_names)]
    class_names = [label(n) for n in class_names]
    if normalize:
        with np.errstate(invalid="ignore", divide="ignore"):
            m = np.nan_to_num(m / m.sum(axis=1, keepdims=True))
    side = float(np.clip(3 + 0.35 * max(rows, cols), 5.5, 10))
    # wider for long row names: constrained layout does not move an equal-aspect image right to make room for them
    longest = max((len(str(n)) for n in class_names), default=0) if min(rows, cols) <= MAX_LABELLED_CLASSES else 0
    fig = Figure(figsize=(side + 1.2 + 0.07 * max(0, longest - 8), side), layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(m, cmap="Blues", vmin=0, vmax=1 if normalize else None, interpolation="nearest")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of the row's images" if normalize else "images")
    if min(rows, cols) <= MAX_LABELLED_CLASSES:  # the known classes: an open row or rejected column adds one
        ax.set_xticks(range(cols), labels=column_names, rotation=60, ha="right", rotation_mode="anchor", fontsize=8,
                      **AS_WRITTEN)
        ax.set_yticks(range(rows), labels=class_names, fontsize=8, **AS_WRITTEN)
    if min(rows, cols) <= MAX_ANNOTATED_CELLS:
        for i in range(rows):
            for j in range(cols):
                if m[i, j] > 0.005:
                    ax.text(j, i, f"{m[i, j]:.2f}" if normalize else f"{int(m[i, j])}", ha="center", va="center",
                            fontsize=7, color="white" if m[i, j] > 0.6 * (m.max() or 1) else "black")
    if known is not None:  # the known block apart from the open row and the rejected column
        if rows > known:
            ax.axhline(known - 0.5, color="#444", lw=1)
        if cols > known:
            ax.axvline(known - 0.5, color="#444", lw=1)
    ax.set_xlabel("predicted class" + (" or rejected" if known is not None and cols > known else ""))
    ax.set_ylabel("true class" + (" or open" if known is not None and rows > known else ""))
    return fig


def _moving_mean(values: np.ndarray, window: int) -> np.ndarray:
    """Centred mean of the non-NaN values over `window` neighbours (NaN where the window has none): O(K)."""
    ok = ~np.isnan(values)
    sums = np.concatenate([[0.0], np.cumsum(np.where(ok, values, 0.0))])
    counts = np.concatenate([[0], np.cumsum(ok)])
    start = np.arange(values.size) - window // 2
    lo, hi = np.clip(start, 0, values.size), np.clip(start + window, 0, values.size)  # cut at the ends
    with np.errstate(invalid="ignore", divide="ignore"):
        return (sums[hi] - sums[lo]) / (counts[hi] - counts[lo])


def ranked_class_accuracy(train_counts: Sequence[int], accuracy: Sequence[float | None], bands: ShotBands,
                          accuracy_with_rejection: Sequence[float | None] | None = None) -> Figure:
    """Per-class accuracy for many classes (any K; the report uses it beyond :data:`MAX_CLASSES_DRAWN`): left, the
    classes ranked by training images (most first), each class a faint dot, a moving mean over ~2 % of the
    classes, the training images on a log axis; right, a box per band of its classes' accuracies (white diamond:
    the band's mean, the table's number), with rejection beside it when given. O(K) to draw."""
    counts = np.asarray(train_counts, dtype=np.float64)
    acc = np.array([np.nan if a is None else a for a in accuracy], dtype=np.float64)
    order = np.argsort(-counts, kind="stable")
    band_of = np.asarray(bands.bands_of(counts.astype(np.int64)))
    fig = Figure(figsize=(9.5, 4.2), layout="constrained")
    ax, box = fig.subplots(1, 2, width_ratios=[2.6, 1])
    x = np.arange(counts.size)
    for band in BAND_NAMES:
        ranks = x[band_of[order] == band]
        if ranks.size:
            ax.axvspan(ranks.min() - 0.5, ranks.max() + 0.5, color=BAND_COLORS[band], alpha=0.08, lw=0)
            ax.scatter(ranks, acc[order][ranks], s=4, color=BAND_COLORS[band], alpha=0.3, lw=0, label=band)
    ax.plot(x, _moving_mean(acc[order], max(3, counts.size // 50)), color="black", lw=1.5, label="moving mean")
    ax.set_xlim(-0.5, counts.size - 0.5)
    ax.set_ylim(-0.03, 1.03)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_xlabel(f"class rank by training images ({counts.size} classes, most first)")
    ax.set_ylabel("test top-1 accuracy")
    ax.legend(fontsize=8, loc="upper right", markerscale=3)
    twin = ax.twinx()
    twin.plot(x, counts[order], color="#888", lw=1, ls=":")
    twin.set_yscale("log")
    twin.set_ylabel("training images (dotted, log)", color="#666")
    _band_boxes(box, acc, band_of, accuracy_with_rejection)
    return fig


def _band_boxes(ax, acc: np.ndarray, band_of: np.ndarray, with_rejection: Sequence[float | None] | None) -> None:
    """A box per band of per-class accuracies (NaN left out), hollow boxes with rejection beside them."""
    sets = [("closed set", acc, 0.0)]
    if with_rejection is not None:
        rej = np.array([np.nan if a is None else a for a in with_rejection], dtype=np.float64)
        sets = [("closed set", acc, -0.2), ("with rejection", rej, 0.2)]
    for label, values, shift in sets:
        for i, band in enumerate(BAND_NAMES):
            v = values[(band_of == band) & ~np.isnan(values)]
            if v.size:
                filled = label == "closed set"
                ax.boxplot([v], positions=[i + shift], widths=0.35 if len(sets) > 1 else 0.6, patch_artist=True,
                           showfliers=False, boxprops={"facecolor": BAND_COLORS[band] if filled else "white",
                                                       "edgecolor": BAND_COLORS[band], "alpha": 0.7},
                           medianprops={"color": "black"})
                ax.scatter([i + shift], [v.mean()], marker="D", s=18, color="white", edgecolor="black", zorder=3)
    ax.set_xticks(range(len(BAND_NAMES)), BAND_NAMES)
    ax.set_ylim(-0.03, 1.03)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_title("per band" + (" (hollow: with rejection)" if len(sets) > 1 else ""), fontsize=9)


def band_confusion(summary: Mapping) -> Figure:
    """The shot band x shot band confusion summary (:func:`openlt.metrics.band_confusion`: rows many / medium /
    few / open, columns many / medium / few / rejected), each row normalised to its images, counts in the
    cells; a row without images is left blank. Its size does not depend on the number of classes."""
    counts = np.asarray(summary["counts"], dtype=np.float64)
    rows, cols = list(summary["rows"]), list(summary["columns"])
    totals = counts.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.where(totals > 0, counts / totals, np.nan)
    fig = Figure(figsize=(6.2, 4.0), layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(np.nan_to_num(frac), cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of the row's images")
    correct = summary.get("correct", {})
    for i in range(len(rows)):
        for j in range(len(cols)):
            if totals[i, 0] > 0:
                ax.text(j, i, f"{frac[i, j]:.1%}\n{int(counts[i, j])}", ha="center", va="center", fontsize=8,
                        color="white" if frac[i, j] > 0.6 else "black")
    labels = [f"{r} ({int(totals[i, 0])}" + (f", {correct[r]} right)" if r in correct else ")")
              for i, r in enumerate(rows)]
    ax.set_xticks(range(len(cols)), labels=cols)
    ax.set_yticks(range(len(rows)), labels=labels)
    ax.set_xlabel("decision: band of the predicted class, or rejected")
    ax.set_ylabel("true band (images)")
    return fig


def score_histograms(known_scores: Sequence[float], open_scores: Sequence[float] | None, threshold: float | None,
                     score_name: str) -> Figure:
    """Outlined histograms of the open-set score of known and unknown test images with the rejection threshold
    and, with unknown images, their ROC curve beside it (known = positive; the threshold's point marked)."""
    known = np.asarray(known_scores, dtype=np.float64)
    unknown = np.asarray(open_scores, dtype=np.float64) if open_scores is not None else np.zeros(0)
    pooled = np.concatenate([known, unknown])
    lo, hi = (pooled.min(), pooled.max()) if pooled.size else (0.0, 1.0)
    edges = np.linspace(lo, hi if hi > lo else lo + 1.0, 41)
    fig = Figure(figsize=(9.0 if unknown.size else 7.5, 4.0), layout="constrained")
    ax, roc = fig.subplots(1, 2, width_ratios=[1.7, 1]) if unknown.size else (fig.add_subplot(), None)
    ax.hist(known, bins=edges, density=True, histtype="step", lw=1.8, color=KNOWN_COLOR,
            label=f"known test ({known.size})")
    if unknown.size:
        ax.hist(unknown, bins=edges, density=True, histtype="step", lw=1.8, color=OPEN_COLOR,
                label=f"unknown / open ({unknown.size})")
    if threshold is not None:
        ax.axvline(threshold, color="black", ls="--", lw=1.2, label=f"threshold {threshold_text(threshold)}")
    ax.set_xlabel(f"open-set score: {score_name} (higher = more known)", **AS_WRITTEN)
    ax.set_ylabel("density")
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(alpha=0.3, lw=0.5)
    if roc is not None:
        _roc_panel(roc, known, unknown, threshold)
    return fig


def _roc_panel(ax, known: np.ndarray, unknown: np.ndarray, threshold: float | None) -> None:
    """The ROC curve of the score separating known (positive) from unknown images, with its AUROC, and the
    operating point of `threshold` (an image is kept as known when its score is at least the threshold)."""
    truth = np.concatenate([np.ones(known.size), np.zeros(unknown.size)])
    fpr, tpr, _ = roc_curve(truth, np.concatenate([known, unknown]))
    ax.plot(fpr, tpr, color="black", lw=1.8, label=f"ROC (AUROC {auc(fpr, tpr):.3f})")
    ax.plot([0, 1], [0, 1], color="#888", ls=":", lw=1, label="chance")
    if threshold is not None:
        ax.plot([np.mean(unknown >= threshold)], [np.mean(known >= threshold)], "o", color="black", mfc="white",
                ms=6, label="at the threshold")
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_aspect("equal")
    ax.set_xlabel("unknown images kept (FPR)")
    ax.set_ylabel("known images kept (TPR)")
    ax.legend(fontsize=7.5, loc="lower right")
    ax.grid(alpha=0.3, lw=0.5)


def threshold_curves(curves: Mapping[str, np.ndarray], threshold: float | None, score_name: str) -> Figure:
    """Known accuracy with rejection, F-measure, kept known and rejected open images against the threshold
    (the arrays of :func:`openlt.metrics.rejection_curves`)."""
    t = curves["thresholds"]
    fig = Figure(figsize=(7.5, 4.0), layout="constrained")
    ax = fig.add_subplot()
    ax.plot(t, curves["known_accuracy"], color=KNOWN_COLOR, lw=2, label="known accuracy with rejection")
    ax.plot(t, curves["known_kept"], color=KNOWN_COLOR, lw=1, ls=":", label="known images kept")
    if "f_measure" in curves:
        ax.plot(t, curves["f_measure"], color="black", lw=2, label="open-set F-measure")
        ax.plot(t, curves["open_rejected"], color=OPEN_COLOR, lw=1, ls=":", label="open images rejected")
    if threshold is not None:
        ax.axvline(threshold, color="black", ls="--", lw=1, alpha=0.7, label=f"threshold {threshold_text(threshold)}")
    ax.set_ylim(-0.02, 1.02)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_xlabel(f"rejection threshold on {score_name} (reject when the score is below it)", **AS_WRITTEN)
    ax.legend(fontsize=8, loc="lower left")
    ax.grid(alpha=0.3, lw=0.5)
    return fig


def reliability_diagram(confidences: Sequence[float], correct: Sequence[bool], sample_bands: Sequence[str],
                        ece: Mapping[str, float | None], n_bins: int = 15) -> Figure:
    """Accuracy against confidence (max softmax) in equal-width bins: all known test images as bars, each
    shot band as a line; the expected calibration error (ECE) of each in the legend; below, the images in each
    bin (a bin of few images says little)."""
    conf, hit, band_of = np.asarray(confidences), np.asarray(correct, dtype=bool), np.asarray(sample_bands)
    fig = Figure(figsize=(7.5, 5.4), layout="constrained")
    ax, counts = fig.subplots(2, 1, sharex=True, height_ratios=[3.2, 1])
    ax.plot([0, 1], [0, 1], color="#888", ls="--", lw=1, label="perfect calibration")
    bins = reliability_bins(conf, hit, n_bins)
    centers, width = (bins["edges"][:-1] + bins["edges"][1:]) / 2, 1.0 / n_bins
    used = bins["count"] > 0
    ece_text = lambda name: "–" if ece.get(name) is None else f"{100 * ece[name]:.1f}%"  # noqa: E731
    ax.bar(centers[used], bins["accuracy"][used], width=width * 0.92, color="#bbb", edgecolor="#888",
           label=f"all known (ECE {ece_text('overall')})")
    for band in BAND_NAMES:
        keep = band_of == band
        if keep.any():
            b = reliability_bins(conf[keep], hit[keep], n_bins)
            ok = b["count"] > 0
            ax.plot(b["confidence"][ok], b["accuracy"][ok], marker="o", ms=4, lw=1.3, color=BAND_COLORS[band],
                    label=f"{band} (ECE {ece_text(band)})")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("accuracy")
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(alpha=0.3, lw=0.5)
    _bin_counts(counts, centers[used], bins["count"][used], width)
    return fig


def _bin_counts(ax, centers: np.ndarray, counts: np.ndarray, width: float) -> None:
    """The images of each non-empty reliability bin as bars, the count written above each."""
    ax.bar(centers, counts, width=width * 0.92, color="#bbb", edgecolor="#888")
    for x, n in zip(centers, counts):
        ax.annotate(f"{int(n)}", (x, n), xytext=(0, 1), textcoords="offset points", ha="center", va="bottom",
                    fontsize=7, color="#444")
    ax.set_ylim(0, max(1, counts.max(initial=0)) * 1.35)
    ax.yaxis.set_major_locator(MaxNLocator(3, integer=True))
    ax.set_xlabel("confidence (max softmax probability)")
    ax.set_ylabel("images")
    ax.grid(alpha=0.3, lw=0.5, axis="y")


def _epoch_axis(ax) -> None:
    """Epochs numbered as the console numbers them (1-based, as metrics.jsonl records them): whole numbers only."""
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")


def training_loss(history: Sequence[Mapping]) -> Figure:
    """Training loss and learning rate per epoch (from metrics.jsonl; epochs 1-based, as the console numbers them)."""
    epochs = [r["epoch"] for r in history]
    fig = Figure(figsize=(7.5, 4.0), layout="constrained")
    ax = fig.add_subplot()
    ax.plot(epochs, [r.get("train_loss") for r in history], color="black", marker=".", label="train loss")
    _epoch_axis(ax)
    ax.set_ylabel("train loss")
    ax.grid(alpha=0.3, lw=0.5)
    lr_ax = ax.twinx()
    lr_ax.plot(epochs, [r.get("lr") for r in history], color="#888", ls=":", label="learning rate")
    lr_ax.set_ylabel("learning rate (dotted)", color="#666")
    return fig


def validation_accuracy(history: Sequence[Mapping]) -> Figure:
    """Validation accuracy per shot band and overall, and the running training accuracy, per epoch (1-based, as
    the console numbers them); a dotted line marks the best validation epoch (the ``best`` checkpoint)."""
    fig = Figure(figsize=(7.5, 4.0), layout="constrained")
    ax = fig.add_subplot()
    ax.plot([r["epoch"] for r in history], [r.get("train_acc") for r in history], color="#888", ls=":",
            label="train (running)")
    with_val = [r for r in history if isinstance(r.get("val"), Mapping)]
    for key, color in (*BAND_COLORS.items(), ("overall", "black")):
        values = [r["val"].get(key) for r in with_val]
        if any(v is not None for v in values):
            ax.plot([r["epoch"] for r in with_val], [np.nan if v is None else v for v in values], marker=".",
                    color=color, lw=2 if key == "overall" else 1.2, label=f"val {key}")
    check = convergence(history)
    if check["best_epoch"] is not None:
        ax.axvline(check["best_epoch"], color="black", ls=":", lw=1,
                   label=f"best epoch {check['best_epoch']}" + (" (may be under-trained)" if check["warning"] else ""))
    _epoch_axis(ax)
    ax.set_ylabel("accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))  # outside: never over the curves
    ax.grid(alpha=0.3, lw=0.5)
    return fig


def tau_curve(curve: Sequence[Mapping], tau: float) -> Figure:
    """Validation top-1 per shot band and overall against tau (tau-normalisation / logit adjustment of a decoupled
    stage 2, the paper's Fig. 3-style trade-off), the chosen tau dashed. `curve`: one mapping a tau with its
    ``tau`` and the fractions ``many`` / ``medium`` / ``few`` / ``overall`` (None: no class in that band)."""
    fig = Figure(figsize=(5, 3.5), layout="constrained")
    ax = fig.add_subplot()
    taus = [p["tau"] for p in curve]
    for band, style in (("many", "-o"), ("medium", "-s"), ("few", "-^"), ("overall", "-k")):
        values = [None if p[band] is None else 100 * p[band] for p in curve]
        if any(v is not None for v in values):
            ax.plot(taus, [float("nan") if v is None else v for v in values], style, label=band, markersize=3)
    ax.axvline(tau, color="grey", linestyle="--", linewidth=1, label=f"chosen tau = {tau:g}")
    ax.set_xlabel("tau")
    ax.set_ylabel("validation top-1 (%)")
    ax.set_title("tau-normalisation: accuracy per shot band")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig
