"""Open-set metrics: rejection, the OLTR open-set F-measure, AUROC, AUPR-IN/OUT and FPR@TPR.

Conventions:

* ``labels``: class id in ``[0, C)`` for a known sample, ``-1`` for an open (unknown) sample.
* ``preds``: class id, or ``-1`` for a sample the model rejected as unknown.
* ``scores``: "higher = more known", e.g. the maximum softmax probability. For the
  threshold-free metrics the *known* samples are the positive class unless said otherwise.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

from ._checks import finite_vector, int_vector, same_length, to_numpy
from .closed import BAND_NAMES, REJECTED, _as_predictions, _check_preds_labels

__all__ = [
    "aupr_in",
    "aupr_out",
    "auroc",
    "auroc_per_band",
    "fpr_at_tpr",
    "open_set_f_measure",
    "open_set_metrics",
    "reject",
    "threshold_at_tpr",
]


def _as_score_vector(x: Any, name: str) -> np.ndarray:
    """Convert ``x`` to a 1-D float64 array of finite scores (:func:`._checks.finite_vector`)."""
    return finite_vector(x, name)


def _known_open(known_scores: Any, open_scores: Any) -> tuple[np.ndarray, np.ndarray]:
    """Both score sets, finite and 1-D; ValueError when either is empty (AUROC, AUPR and FPR compare the two
    kinds of sample: with one kind only they are undefined, and sklearn would only warn and return nan); TypeError
    for 0 / 1 whole numbers beside as many scores, a call in scikit-learn's (y_true, y_score) order."""
    k = _as_score_vector(known_scores, "known_scores")
    o = _as_score_vector(open_scores, "open_scores")
    if to_numpy(known_scores).dtype.kind in "iu" and k.size == o.size and np.isin(k, (0, 1)).all() \
            and not np.isin(o, (0, 1)).all():  # scikit-learn's (y_true, y_score): a number, silently wrong
        raise TypeError("known_scores holds whole numbers 0 / 1 only and open_scores as many scores: scikit-learn's "
                        "order (y_true, y_score)? openlt's open-set metrics take the scores of the known samples and "
                        "those of the open samples, e.g. auroc(scores[y == 1], scores[y == 0])")
    if k.size == 0:
        raise ValueError("known_scores is empty: open-set metrics need at least one known sample")
    if o.size == 0:
        raise ValueError("open_scores is empty: open-set metrics need at least one open sample")
    return k, o


# A rate times a count that should be a whole number of samples comes out a hair off it in floating point (0.28 *
# 25 = 7.000000000000001, 0.29 * 100 = 28.999999999999996): ranks are rounded past this much first.
RANK_TOLERANCE = 1e-9


def _fraction(value: float) -> float:
    """An area in [0, 1] as a float, clipped to it: scikit-learn's average precision sums the recall steps times
    the precisions, and 21 steps of 1/21 at precision 1 (known scores all above the open ones) add up to
    1.0000000000000004, a metrics.json that openlt's own checks then refused (summary, bench)."""
    return float(min(max(value, 0.0), 1.0))


# --------------------------------------------------------------------------- thresholded


def reject(preds: Any, scores: Any, threshold: float) -> np.ndarray:
    """Replace by ``-1`` (rejected) every prediction whose score is below ``threshold``.

    ``out_i = -1 if score_i < threshold else preds_i``: a score exactly at the threshold is
    kept, matching :func:`threshold_at_tpr`, whose threshold keeps the known scores ``>= t``.
    Returns an int64 array (a new one; the input is not modified). ``preds`` may also be (N, K) class
    scores or an outputs dict (their argmax, as in :mod:`openlt.metrics.closed`). Here a nan score is rejected
    (it is not ``>= threshold``), but openlt's decision never gets one: :meth:`openlt.openset.Rejector.decide`
    (what eval and predict decide with) refuses nan scores before calling this function, a DataError
    naming how many (a nan score says nothing about the image; "unknown" would hide a broken score).
    A nan threshold, scores that are not numbers, or preds and scores of different lengths are a ValueError. An
    empty input gives an empty array.
    """
    p = _as_predictions(preds)
    s = to_numpy(scores)
    if s.ndim != 1 or (s.size and (s.dtype.kind == "b" or s.dtype.kind not in "iuf")):
        raise ValueError(f"scores must be 1-D numbers, got shape {s.shape} and dtype {s.dtype}")
    s = s.astype(np.float64)
    same_length(preds=p, scores=s)
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.integer, np.floating)) \
            or math.isnan(threshold):
        raise ValueError(f"threshold must be a number (inf: reject everything), got {threshold!r}")
    out = p.astype(np.int64, copy=True)
    out[~(s >= threshold)] = REJECTED  # a nan score is rejected too
    return out


def open_set_f_measure(preds: Any, *, labels: Any) -> dict[str, float | int]:
    """Open-set F-measure of OLTR (Liu et al., CVPR 2019), as fixed by the authors in January 2020.

    ``open_set_f_measure(preds, labels=y)``: predictions first, every other argument by keyword
    (the reverse of scikit-learn's ``(y_true, y_pred)``:
    keywords make a swap impossible). ``preds`` (N,) int class ids (-1 = rejected), or (N, C) class scores / an
    outputs dict with ``"logits"`` (their argmax), C = the number of classes; ``labels`` (N,) int true class ids
    (-1 = open); numpy arrays, torch tensors or lists. ValueError for any other shape (an (N, 1) column is
    ambiguous: pass ``preds.ravel()``), for scores with another number of columns, and for nan / inf scores.

    Counting over all test samples:

    * TP: known sample (``label >= 0``) predicted as its own class;
    * FP: known sample predicted wrongly, *including* a known sample rejected (``pred == -1``);
    * FN: open sample (``label == -1``) predicted as any known class;
    * an open sample rejected is a true negative and is not counted.

    Then ``P = TP / (TP + FP)``, ``R = TP / (TP + FN)``, ``F = 2PR / (P + R)``, each defined as 0
    when its denominator is 0. Note that ``TP + FP`` is the number of known samples, so ``P`` is
    the closed-set accuracy with rejections counted wrong, and ``R`` penalises open samples
    accepted as known.

    Returns ``{"f_measure", "precision", "recall", "tp", "fp", "fn"}``. ValueError for an empty input (no
    sample: there is nothing to measure, and a silent F = 0 would read as a model that got everything wrong),
    for preds / labels that are not class ids (or -1), and for different lengths. Open samples only (no known
    sample) give TP = FP = 0, so P = R = F = 0 by the conventions above.
    """
    p, y = _check_preds_labels(preds, labels)
    if y.size == 0:
        raise ValueError("preds and labels are empty: the open-set F-measure needs at least one sample")
    known = y >= 0
    tp = int(np.sum(known & (p == y)))
    fp = int(np.sum(known & (p != y)))
    fn = int(np.sum(~known & (p >= 0)))
    precision = tp / (tp + fp) if tp + fp > 0 else 0.0
    recall = tp / (tp + fn) if tp + fn > 0 else 0.0
    f = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return {
        "f_measure": float(f),
        "precision": float(precision),
        "recall": float(recall),
        "tp": tp,
        "fp": fp,
        "fn": fn,
    }


# --------------------------------------------------------------------------- threshold-free


def auroc(known_scores: Any, open_scores: Any) -> float:
    """Area under the ROC curve for telling known (positive) from open (negative) samples.

    Equals ``P(s_known > s_open) + 0.5 P(s_known = s_open)`` for a random pair: 1 for perfect
    separation, 0.5 for chance. Symmetric in which class is called positive (once the scores are
    negated), so there is no IN/OUT variant. Uses :func:`sklearn.metrics.roc_auc_score`.

    Both score sets must be 1-D, finite and non-empty: ValueError for no known or no open sample (AUROC of one
    class is undefined; sklearn would warn and give nan). TypeError for ``auroc(y, scores)``, roc_auc_score's order
    (0 / 1 whole numbers beside as many scores): pass ``auroc(scores[y == 1], scores[y == 0])``.
    """
    k, o = _known_open(known_scores, open_scores)
    y = np.concatenate([np.ones(k.size), np.zeros(o.size)])
    return float(roc_auc_score(y, np.concatenate([k, o])))


def auroc_per_band(known_scores: Any, known_labels: Any, open_scores: Any,
                   band_of_class: Sequence[str]) -> dict[str, float | None]:
    """AUROC of the known images of each shot band against all the open images (how well the open set is told
    apart from the head classes and from the tail classes): ``{"many", "medium", "few", "overall"}``, each :func:`auroc` of the known scores
    whose true class is in that band (``band_of_class[c]``, the band of class ``c``) against ``open_scores``;
    ``"overall"`` uses every known score. None where a band has no known image.

    ``known_scores`` (N,) and ``known_labels`` (N,) class ids in ``[0, len(band_of_class))``; ValueError for
    mismatched lengths, a label out of range, or no open image."""
    k, o = _known_open(known_scores, open_scores)
    y = int_vector(known_labels, "known_labels")
    if y.shape != k.shape:
        raise ValueError(f"known_labels must match known_scores: {y.shape} vs {k.shape}")
    bands = np.asarray(band_of_class)
    if y.size and (y.min() < 0 or y.max() >= bands.size):
        raise ValueError(f"known_labels must be in [0, {bands.size}), got {int(y.min())} .. {int(y.max())}")
    sample_band = bands[y]
    out: dict[str, float | None] = {}
    for name in (*BAND_NAMES, "overall"):
        keep = np.ones(k.size, dtype=bool) if name == "overall" else sample_band == name
        out[name] = auroc(k[keep], o) if keep.any() else None
    return out


def aupr_in(known_scores: Any, open_scores: Any) -> float:
    """Area under the precision-recall curve with *known* samples as the positive class.

    Average precision ``AP = sum_n (R_n - R_{n-1}) P_n`` over thresholds on the scores
    (:func:`sklearn.metrics.average_precision_score`). Unlike AUROC it depends on the class
    ratio: its chance level is the fraction of known samples. ValueError for no known or no open sample.
    """
    k, o = _known_open(known_scores, open_scores)
    y = np.concatenate([np.ones(k.size), np.zeros(o.size)])
    return _fraction(average_precision_score(y, np.concatenate([k, o])))


def aupr_out(known_scores: Any, open_scores: Any) -> float:
    """Area under the precision-recall curve with *open* samples as the positive class.

    The scores are negated (``-s``, "higher = more open") before computing the average
    precision. Its chance level is the fraction of open samples. ValueError for no known or no open sample.
    """
    k, o = _known_open(known_scores, open_scores)
    y = np.concatenate([np.zeros(k.size), np.ones(o.size)])
    return _fraction(average_precision_score(y, -np.concatenate([k, o])))


def threshold_at_tpr(known_scores: Any, tpr: float = 0.95) -> float:
    """Largest threshold ``t`` with ``#{known scores >= t} / n >= tpr``.

    Used to pick a rejection threshold from the known *validation* images alone (no open data
    is needed): keeping samples with ``score >= t`` then accepts at least a fraction ``tpr`` of
    known samples. With the scores sorted in decreasing order ``s_(1) >= ... >= s_(n)``, the
    answer is ``s_(k)`` with ``k = ceil(tpr * n)`` (any larger ``t`` keeps at most ``k - 1``).
    E.g. scores 0.1, 0.2, ..., 1.0 and ``tpr = 0.9`` give ``k = 9`` and ``t = 0.2``. ValueError for no known
    score, a nan / inf score, or ``tpr`` outside (0, 1] (nan included).
    """
    if not 0.0 < tpr <= 1.0:
        raise ValueError(f"tpr must be in (0, 1], got {tpr}")
    k = _as_score_vector(known_scores, "known_scores")
    if k.size == 0:
        raise ValueError("known_scores is empty: cannot choose a threshold")
    n = k.size
    rank = min(max(math.ceil(tpr * n - RANK_TOLERANCE), 1), n)  # 0.28 * 25 is rank 7, not 8
    return float(np.sort(k)[::-1][rank - 1])


def fpr_at_tpr(known_scores: Any, open_scores: Any, tpr: float = 0.95) -> float:
    """False-positive rate at a given true-positive rate (FPR@95TPR for ``tpr = 0.95``).

    ``t = threshold_at_tpr(known_scores, tpr)``; returns ``#{open scores >= t} / #open``, the
    fraction of open samples still accepted as known when a fraction ``tpr`` of known samples
    is accepted. Lower is better. ValueError for no known or no open sample.
    """
    k, o = _known_open(known_scores, open_scores)
    t = threshold_at_tpr(k, tpr)
    return float(np.mean(o >= t))


def open_set_metrics(known_scores: Any, open_scores: Any) -> dict[str, float]:
    """The threshold-free open-set metrics at once: ``{"auroc", "aupr_in", "aupr_out", "fpr95"}``.

    ``fpr95`` is :func:`fpr_at_tpr` at ``tpr = 0.95``. ValueError for no known or no open sample.
    """
    k, o = _known_open(known_scores, open_scores)
    return {
        "auroc": auroc(k, o),
        "aupr_in": aupr_in(k, o),
        "aupr_out": aupr_out(k, o),
        "fpr95": fpr_at_tpr(k, o, 0.95),
    }
