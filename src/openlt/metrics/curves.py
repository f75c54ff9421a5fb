"""Open-set metrics as functions of the rejection threshold, for the report's threshold plot.

For a threshold t, a test image is kept when its score >= t (as :func:`openlt.metrics.reject`). Over the
known test images, ``known_accuracy(t)`` is the fraction both kept and right (= the open-set F-measure's
precision); ``recall(t) = TP / (TP + open images kept)``; ``f_measure(t)`` is the OLTR open-set F-measure
at t, equal to :func:`openlt.metrics.open_set_f_measure` on the rejected predictions.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .closed import _check_preds_labels
from .openset import _as_score_vector

__all__ = ["rejection_curves", "threshold_grid"]


def threshold_grid(*scores: Any, n: int = 200) -> np.ndarray:
    """``n`` thresholds at evenly spaced quantiles of all the scores given (dense where the scores are)."""
    pooled = np.concatenate([_as_score_vector(s, "scores") for s in scores if len(s)])
    if pooled.size == 0:
        raise ValueError("no scores to place thresholds on")
    return np.unique(np.quantile(pooled, np.linspace(0.0, 1.0, n)))


def _kept(sorted_scores: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """How many scores are >= each threshold."""
    return sorted_scores.size - np.searchsorted(sorted_scores, thresholds, side="left")


def rejection_curves(known_scores: Any, *, known_preds: Any, known_labels: Any, open_scores: Any | None,
                     thresholds: Any) -> dict[str, np.ndarray]:
    """``known_accuracy``, ``known_kept`` and, with open images, ``open_rejected``, ``recall`` and
    ``f_measure`` at each threshold (arrays aligned with ``thresholds``).

    ``known_scores`` (N,) float (higher = more known), ``known_preds`` / ``known_labels`` (N,) int class ids of the
    known images (by keyword, so that predictions and labels cannot be swapped), ``open_scores`` (M,) float or None,
    ``thresholds`` (T,) float."""
    s = _as_score_vector(known_scores, "known_scores")
    p, y = _check_preds_labels(known_preds, known_labels)
    if not (s.shape == p.shape) or (y < 0).any():
        raise ValueError("known_scores, known_preds and known_labels must be aligned and hold known images only")
    t = np.asarray(thresholds, dtype=np.float64)
    n = max(s.size, 1)
    tp = _kept(np.sort(s[p == y]), t).astype(np.float64)
    out = {"thresholds": t, "known_accuracy": tp / n, "known_kept": _kept(np.sort(s), t) / n}
    if open_scores is not None and len(open_scores):
        o = np.sort(_as_score_vector(open_scores, "open_scores"))
        fn = _kept(o, t)
        precision = tp / n
        with np.errstate(invalid="ignore", divide="ignore"):
            recall = np.where(tp + fn > 0, tp / (tp + fn), 0.0)
            f = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
        out.update({"open_rejected": 1.0 - fn / o.size, "recall": recall, "f_measure": f})
    return out
