"""Closed-set metrics: per-class accuracy, many/medium/few-shot accuracy, confusion matrix, top-1.

Conventions shared with :mod:`openlt.metrics.openset`:

* ``labels`` are integer class ids in ``[0, num_classes)``; ``-1`` marks an open-set (unknown)
  test sample. Closed-set metrics ignore open samples entirely.
* ``preds`` are integer class ids in ``[0, num_classes)``; ``-1`` marks a rejected sample (the
  model said "unknown"). For a known sample a rejection is simply a wrong answer.

Inputs may be numpy arrays, torch tensors (CPU or GPU) or plain lists; they are converted with
:func:`numpy.asarray` after moving tensors to the CPU. Wherever ``preds`` are taken, (N, K) class scores
(logits or probabilities) or a model's outputs dict (``{"logits": (N, K), ...}``) stand for their argmax
(ties to the lowest class id); only (N,) class ids can say -1 (rejected). Scores must be finite and have one
column per class (C = ``num_classes``, or ``len(train_counts)``; with neither, every label must be < C); an (N, 1)
column is refused as ambiguous (class ids or one-class scores?): pass ``preds.ravel()``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, Mapping, Sequence

import numpy as np
from sklearn.metrics import confusion_matrix

from ._checks import int_vector as _as_int_vector
from ._checks import refuse_unordered
from ._checks import same_length
from ._checks import to_numpy as _to_numpy

__all__ = [
    "BAND_NAMES",
    "OPEN_LABEL",
    "REJECTED",
    "ShotBands",
    "confusion",
    "per_class_accuracy",
    "shot_accuracy",
    "top1",
]

#: Label of an open-set (unknown) test sample.
OPEN_LABEL: int = -1
#: Prediction of a rejected sample.
REJECTED: int = -1
#: The shot bands, from most to least training data.
BAND_NAMES: tuple[str, str, str] = ("many", "medium", "few")

Band = Literal["many", "medium", "few"]


# --------------------------------------------------------------------------- input helpers


def _as_counts(train_counts: Any) -> np.ndarray:
    """(C,) int64 training images per class: whole numbers >= 0 (ValueError naming the first class below 0)."""
    counts = _as_int_vector(train_counts, "train_counts")
    if counts.size and counts.min() < 0:
        bad = int(np.argmax(counts < 0))
        raise ValueError(f"train_counts must be >= 0 (training images per class), got {int(counts[bad])} for class {bad}")
    return counts


PREDS_SHAPES = "(N,) int class ids (-1 = rejected) or (N, C) class scores with C = the number of classes"


def _as_predictions(preds: Any, num_classes: int | None = None, counted_by: str = "num_classes") -> np.ndarray:
    """(N,) int64 class ids from (N,) ids, (N, C) class scores (their argmax) or an outputs dict's "logits".

    ValueError for a shape that is neither (what is accepted: :data:`PREDS_SHAPES`): (N, 1) is refused as
    ambiguous (a column of class ids would be argmax-ed to class 0: pass ``preds.ravel()``), (N, C) scores need
    C = ``num_classes`` when it is known (``counted_by`` names where it comes from) and C >= 2, and scores must be
    finite (an all-nan row would be argmax-ed to class 0)."""
    if isinstance(preds, Mapping):
        if "logits" not in preds:
            raise ValueError(f"preds as an outputs dict need 'logits'; got keys {sorted(preds)}")
        preds = preds["logits"]
    refuse_unordered(preds, "preds")
    arr = _to_numpy(preds)
    if arr.ndim == 2:
        if arr.size and (arr.dtype.kind == "b" or arr.dtype.kind not in "iuf"):
            raise ValueError(f"preds as (N, C) class scores must hold numbers, got dtype {arr.dtype}")
        if arr.shape[1] == 1:
            raise ValueError(f"preds has shape {arr.shape}, which is ambiguous (a column of class ids, or scores "
                             f"of one class?); accepted: {PREDS_SHAPES}; for a column of class ids pass "
                             f"preds.ravel()")
        if num_classes is not None and arr.shape[1] != num_classes:
            raise ValueError(f"preds has shape {arr.shape}: {arr.shape[1]} score columns for {num_classes} classes "
                             f"({counted_by}); accepted: {PREDS_SHAPES}")
        if arr.shape[1] == 0:
            raise ValueError(f"preds as class scores (N, C) need C >= 2, got shape {arr.shape}")
        if arr.dtype.kind == "f":
            bad = ~np.isfinite(arr).all(axis=1)
            if bad.any():
                raise ValueError(f"preds (class scores) hold nan or inf in {int(bad.sum())} of {arr.shape[0]} rows "
                                 f"(first: row {int(np.argmax(bad))})")
        return arr.argmax(axis=1).astype(np.int64)
    if arr.ndim != 1:
        raise ValueError(f"preds has shape {arr.shape}; accepted: {PREDS_SHAPES}")
    return _as_int_vector(arr, "preds")


def _check_preds_labels(
    preds: Any, labels: Any, num_classes: int | None = None, counted_by: str = "num_classes"
) -> tuple[np.ndarray, np.ndarray]:
    """Validate and convert a (preds, labels) pair; ids must be -1 or in ``[0, num_classes)``. ``preds`` may
    also be (N, C) class scores or an outputs dict (:func:`_as_predictions`; with no ``num_classes``, their C
    bounds the labels). ``counted_by``: where ``num_classes`` comes from, for the messages."""
    p = _as_predictions(preds, num_classes, counted_by)
    y = _as_int_vector(labels, "labels")
    same_length(preds=p, labels=y)
    if p.size and p.min() < REJECTED:
        raise ValueError(f"preds must be class ids or {REJECTED} (rejected), got {int(p.min())}")
    if y.size and y.min() < OPEN_LABEL:
        raise ValueError(f"labels must be class ids or {OPEN_LABEL} (open), got {int(y.min())}")
    columns = _score_columns(preds) if num_classes is None else None
    if columns is not None:
        num_classes, counted_by = columns, f"preds has {columns} score columns"
    if num_classes is not None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        bound = f"num_classes={num_classes}" if counted_by == "num_classes" else \
            f"{num_classes}, the number of classes ({counted_by})"
        if p.size and p.max() >= num_classes:
            raise ValueError(f"a prediction {int(p.max())} is >= {bound}")
        if y.size and y.max() >= num_classes:
            raise ValueError(f"a label {int(y.max())} is >= {bound}")
    return p, y


def _score_columns(preds: Any) -> int | None:
    """C of (N, C) class scores (also an outputs dict's logits), None for class ids."""
    if isinstance(preds, Mapping):
        preds = preds.get("logits")
    shape = getattr(preds, "shape", None)
    if shape is None:
        shape = np.shape(preds) if isinstance(preds, (list, tuple)) else ()
    return int(shape[1]) if len(shape) == 2 else None


# --------------------------------------------------------------------------- shot bands


def _range(lo: int, hi: int) -> str:
    """Training-image counts lo..hi in words: "20-100", "44" for one count, "none" for an empty band."""
    return "none" if lo > hi else str(lo) if lo == hi else f"{lo}-{hi}"


@dataclass(frozen=True)
class ShotBands:
    """Many/medium/few-shot bands, by the number of *training* images of a class.

    Long-tailed benchmarks (ImageNet-LT, Places-LT; Liu et al., "Large-Scale Long-Tailed
    Recognition in an Open World", CVPR 2019) report accuracy separately on frequent and rare
    classes, because overall accuracy is dominated by the head and hides tail performance.

    * ``inclusive=False`` (default, the paper's definition)::

          many   : n >  many_above          (n > 100)
          few    : n <  few_below           (n < 20)
          medium : few_below <= n <= many_above

    * ``inclusive=True`` (the OLTR public code's ``shot_acc``, ``>=`` / ``<=``)::

          many   : n >= many_above          (n >= 100)
          few    : n <= few_below           (n <= 20)
          medium : few_below < n < many_above

    The two only disagree for classes with exactly ``many_above`` or ``few_below`` images.
    """

    many_above: int = 100
    few_below: int = 20
    inclusive: bool = False

    def __post_init__(self) -> None:
        if self.few_below < 0 or self.many_above < 0:
            raise ValueError(f"shot thresholds must be >= 0, got {self.few_below}, {self.many_above}")
        if self.inclusive and self.few_below >= self.many_above:
            raise ValueError(
                f"inclusive bands need few_below < many_above, got {self.few_below} >= {self.many_above}"
            )
        if not self.inclusive and self.few_below > self.many_above:
            raise ValueError(
                f"bands need few_below <= many_above, got {self.few_below} > {self.many_above}"
            )

    @classmethod
    def from_config(cls, eval_cfg: Any) -> "ShotBands":
        """The bands of the `eval` config section, read duck-typed: ``many_above``, ``few_below`` and
        ``inclusive_bands``. ValueError for thresholds the bands cannot have (see ``__post_init__``)."""
        return cls(eval_cfg.many_above, eval_cfg.few_below, eval_cfg.inclusive_bands)

    def band(self, count: int) -> Band:
        """Return the band (``"many"``, ``"medium"`` or ``"few"``) of a class with ``count`` training images."""
        if self.inclusive:
            if count >= self.many_above:
                return "many"
            if count <= self.few_below:
                return "few"
            return "medium"
        if count > self.many_above:
            return "many"
        if count < self.few_below:
            return "few"
        return "medium"

    def bands_of(self, train_counts: Sequence[int] | np.ndarray | Any) -> list[str]:
        """Return the band of every class, given its number of training images (index = class id). ValueError
        for a count that is not a whole number >= 0."""
        counts = _as_counts(train_counts)
        return [self.band(int(c)) for c in counts]

    def describe(self) -> str:
        """Human-readable band edges, e.g. ``"many > 100, medium 20-100, few < 20"``; an empty medium band is
        ``medium none``: also ``many > 0, medium none, few < 0``, whose medium band holds only classes without
        training images, which a run has none of (it read ``medium 0`` before: :func:`band_rule`)."""
        if self.inclusive:
            medium = _range(self.few_below + 1, self.many_above - 1)
            return f"many >= {self.many_above}, medium {medium}, few <= {self.few_below}"
        medium = "none" if self.many_above == 0 else _range(self.few_below, self.many_above)
        return f"many > {self.many_above}, medium {medium}, few < {self.few_below}"


# a band rule in an older metrics file's wording -> the wording of ShotBands.describe now (trial 13 D3)
OLDER_RULES = {"many > 0, medium 0, few < 0": "many > 0, medium none, few < 0"}


def band_rule(rule: Any) -> Any:
    """A metrics file's band rule text (``bands.rule``) in today's wording (:data:`OLDER_RULES`), so that a run
    evaluated before a wording changed compares equal with one evaluated after under the same bands; anything
    else as it is."""
    return OLDER_RULES.get(rule, rule) if isinstance(rule, str) else rule


# --------------------------------------------------------------------------- accuracies


def per_class_accuracy(preds: Any, *, labels: Any, num_classes: int) -> np.ndarray:
    """Accuracy of each class: ``acc[c] = #{i : y_i = c, p_i = c} / #{i : y_i = c}``.

    ``per_class_accuracy(preds, labels=y, num_classes=K)``: predictions first, every other argument by keyword
    (the reverse of scikit-learn's ``(y_true, y_pred)``:
    keywords make a swap impossible). ``preds`` (N,) int class ids (-1 = rejected), or (N, C) class scores / an
    outputs dict with ``"logits"`` (their argmax), C = the number of classes; ``labels`` (N,) int true class ids
    (-1 = open); numpy arrays, torch tensors or lists. ValueError for any other shape (an (N, 1) column is
    ambiguous: pass ``preds.ravel()``), for scores with another number of columns, and for nan / inf scores.

    Open samples (label ``-1``) are ignored; a rejected prediction (``-1``) counts as wrong.
    A class with no test sample gets ``nan`` (its accuracy is undefined, not zero), so that
    callers averaging over classes can skip it with :func:`numpy.nanmean`.

    Returns a float64 array of length ``num_classes``.
    """
    p, y = _check_preds_labels(preds, labels, num_classes)
    known = y >= 0
    p, y = p[known], y[known]
    totals = np.bincount(y, minlength=num_classes).astype(np.float64)
    correct = np.bincount(y[p == y], minlength=num_classes).astype(np.float64)
    acc = np.full(num_classes, np.nan, dtype=np.float64)
    has = totals > 0
    acc[has] = correct[has] / totals[has]
    return acc


def top1(preds: Any, *, labels: Any) -> float:
    """Plain sample accuracy over known samples: ``#{i : y_i >= 0, p_i = y_i} / #{i : y_i >= 0}``.

    ``top1(preds, labels=y)``: predictions first, every other argument by keyword
    (the reverse of scikit-learn's ``(y_true, y_pred)``:
    keywords make a swap impossible). ``preds`` (N,) int class ids (-1 = rejected), or (N, C) class scores / an
    outputs dict with ``"logits"`` (their argmax), C = the number of classes; ``labels`` (N,) int true class ids
    (-1 = open); numpy arrays, torch tensors or lists. ValueError for any other shape (an (N, 1) column is
    ambiguous: pass ``preds.ravel()``), for scores with another number of columns, and for nan / inf scores.

    Rejected known samples count as wrong, open samples are ignored. Returns ``nan`` when there
    is no known sample.
    """
    p, y = _check_preds_labels(preds, labels)
    known = y >= 0
    n = int(known.sum())
    if n == 0:
        return float("nan")
    return float((p[known] == y[known]).sum() / n)


def shot_accuracy(
    preds: Any,
    *,
    labels: Any,
    train_counts: Sequence[int] | np.ndarray | Any,
    bands: ShotBands = ShotBands(),
) -> dict[str, Any]:
    """Many/medium/few-shot and overall accuracy.

    ``shot_accuracy(preds, labels=y, train_counts=counts, bands=ShotBands())``: predictions first, every other
    argument by keyword (the reverse of scikit-learn's ``(y_true, y_pred)``:
    keywords make a swap impossible). ``preds`` (N,) int class ids (-1 = rejected), or (N, C) class scores / an
    outputs dict with ``"logits"`` (their argmax), C = the number of classes; ``labels`` (N,) int true class ids
    (-1 = open); numpy arrays, torch tensors or lists. ValueError for any other shape (an (N, 1) column is
    ambiguous: pass ``preds.ravel()``), for scores with another number of columns, and for nan / inf scores.

    A band's accuracy is the *mean of per-class accuracies* of the band's classes that have
    test samples (the OLTR public code's ``shot_acc`` convention)::

        acc_band = mean_{c in band, n_test(c) > 0} acc[c]

    which weights every class equally whatever its test-set size. ``"overall"`` is instead the
    plain sample accuracy over known samples (:func:`top1`); on a class-balanced test set the two
    kinds of average coincide.

    ``train_counts[c]``: training images of class ``c`` (a whole number >= 0; ValueError otherwise), one per class,
    a list / array / tensor (a ``{class id: count}`` dict is a TypeError: pass ``[d[c] for c in range(K)]``).

    Returns::

        {"many": float | None, "medium": float | None, "few": float | None,
         "overall": float | None,
         "n_classes": {"many": k, "medium": k, "few": k},          # classes in each band
         "n_classes_tested": {"many": k, "medium": k, "few": k}}   # of those, with test samples

    A band (or ``"overall"``) is ``None`` when it has no class with a test sample (no known
    sample).
    """
    counts = _as_counts(train_counts)
    if counts.size == 0:
        raise ValueError("train_counts is empty")
    num_classes = int(counts.size)
    # checked here, once, so that a too-short train_counts is named as such (not as "num_classes")
    preds, labels = _check_preds_labels(preds, labels, num_classes,
                                        f"train_counts has {num_classes} entries")
    acc = per_class_accuracy(preds, labels=labels, num_classes=num_classes)
    out, n_classes, n_tested = _band_means(acc, bands.bands_of(counts))
    overall = top1(preds, labels=labels)
    out["overall"] = None if math.isnan(overall) else overall
    out["n_classes"] = n_classes
    out["n_classes_tested"] = n_tested
    return out


def _band_means(acc: np.ndarray, band_of: Sequence[str]) -> tuple[dict[str, Any], dict[str, int], dict[str, int]]:
    """Per band of BAND_NAMES: the mean of its classes' accuracies `acc` (NaN: no test sample, left out; None
    when none is left), its number of classes and of classes with a test sample. `band_of[c]`: class c's band."""
    out: dict[str, Any] = {}
    n_classes: dict[str, int] = {}
    n_tested: dict[str, int] = {}
    for name in BAND_NAMES:
        members = np.array([b == name for b in band_of], dtype=bool)
        vals = acc[members]
        vals = vals[~np.isnan(vals)]
        n_classes[name] = int(members.sum())
        n_tested[name] = int(vals.size)
        out[name] = float(vals.mean()) if vals.size else None
    return out, n_classes, n_tested


def confusion(preds: Any, *, labels: Any, num_classes: int) -> np.ndarray:
    """Confusion matrix ``C[true, pred]`` (``num_classes x num_classes``, int64) over known samples.

    ``confusion(preds, labels=y, num_classes=K)``: predictions first, every other argument by keyword
    (the reverse of scikit-learn's ``(y_true, y_pred)``:
    keywords make a swap impossible). ``preds`` (N,) int class ids (-1 = rejected), or (N, C) class scores / an
    outputs dict with ``"logits"`` (their argmax), C = the number of classes; ``labels`` (N,) int true class ids
    (-1 = open); numpy arrays, torch tensors or lists. ValueError for any other shape (an (N, 1) column is
    ambiguous: pass ``preds.ravel()``), for scores with another number of columns, and for nan / inf scores.

    Open samples (label ``-1``) and rejected predictions (``-1``) are dropped, so a row sums to
    the number of *non-rejected* test samples of that class. Computed with
    :func:`sklearn.metrics.confusion_matrix` with ``labels=range(num_classes)`` so absent classes
    still get a row and a column.
    """
    p, y = _check_preds_labels(preds, labels, num_classes)
    keep = (y >= 0) & (p >= 0)
    if not keep.any():
        return np.zeros((num_classes, num_classes), dtype=np.int64)
    cm = confusion_matrix(y[keep], p[keep], labels=np.arange(num_classes))
    return cm.astype(np.int64)
