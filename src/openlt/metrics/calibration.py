"""Calibration: reliability bins and the expected calibration error (ECE) of a classifier's confidence.

With equal-width bins B_1 .. B_M over [0, 1] of the confidence (e.g. the maximum softmax probability),
``ECE = sum_m |B_m| / n * |acc(B_m) - conf(B_m)|`` (Guo et al., "On Calibration of Modern Neural
Networks", ICML 2017): 0 for a perfectly calibrated model. On long-tailed data the tail classes are the
over-confident ones, so ECE is reported per shot band too.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ._checks import binary_vector, int_vector, probability_vector, same_length
from .closed import BAND_NAMES

__all__ = ["ece_by_band", "expected_calibration_error", "reliability_bins"]


def _inputs(confidences: Any, correct: Any) -> tuple[np.ndarray, np.ndarray]:
    """(N,) probabilities in [0, 1] and (N,) right / wrong flags (booleans or 0 / 1); ValueError otherwise."""
    conf = probability_vector(confidences, "confidences")
    hit = binary_vector(correct, "correct")
    same_length(confidences=conf, correct=hit)
    return conf, hit


def reliability_bins(confidences: Any, correct: Any, n_bins: int = 15) -> dict[str, np.ndarray]:
    """Per equal-width bin: ``edges`` (n_bins + 1), ``count``, mean ``confidence`` and ``accuracy``
    (nan where a bin is empty). A confidence of exactly 1 falls in the last bin.

    ``confidences`` (N,) probabilities in [0, 1] (finite), ``correct`` (N,) booleans or 0 / 1, of one length;
    ``n_bins`` an integer >= 1. ValueError otherwise (``correct=[2, 0]`` is refused, not read as right / wrong).
    An empty input gives every bin a count of 0."""
    _check_bins(n_bins)
    conf, hit = _inputs(confidences, correct)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, n_bins - 1)
    count = np.bincount(which, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(which, weights=conf, minlength=n_bins) / count
        accuracy = np.bincount(which, weights=hit.astype(np.float64), minlength=n_bins) / count
    return {"edges": edges, "count": count, "confidence": mean_conf, "accuracy": accuracy}


def _check_bins(n_bins: Any) -> None:
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise ValueError(f"n_bins must be an integer >= 1, got {n_bins!r}")


def expected_calibration_error(confidences: Any, correct: Any, n_bins: int = 15) -> float:
    """ECE over equal-width confidence bins. Inputs as :func:`reliability_bins` (ValueError for probabilities
    outside [0, 1], nan / inf, ``correct`` not booleans or 0 / 1, different lengths). An empty input (no sample)
    gives nan: the ECE of no prediction is undefined, not 0 (:func:`ece_by_band` gives None for such a band)."""
    bins = reliability_bins(confidences, correct, n_bins)
    n = bins["count"].sum()
    if n == 0:
        return float("nan")
    used = bins["count"] > 0
    gap = np.abs(bins["accuracy"][used] - bins["confidence"][used])
    return float(np.sum(bins["count"][used] * gap) / n)


def ece_by_band(confidences: Any, correct: Any, labels: Any, band_of_class: Sequence[str],
                n_bins: int = 15) -> dict[str, float | None]:
    """ECE of all known samples (``"overall"``) and of the samples whose true class is in each shot band
    (``band_of_class[c]`` is the band of class ``c``); None where a band has no sample.

    ``labels`` (N,) class ids in ``[0, len(band_of_class))`` or -1 (an open sample, left out); ValueError for a
    label out of range or not a whole number, and for the inputs :func:`reliability_bins` refuses."""
    _check_bins(n_bins)
    conf, hit = _inputs(confidences, correct)
    y = int_vector(labels, "labels")
    same_length(confidences=conf, correct=hit, labels=y)
    bands = np.asarray(band_of_class)
    if y.size and (y.min() < -1 or y.max() >= bands.size):
        raise ValueError(f"labels must be -1 (open) or class ids in [0, {bands.size}), got {int(y.min())} .. "
                         f"{int(y.max())}")
    known = y >= 0
    sample_band = np.where(known, bands[np.clip(y, 0, len(bands) - 1)], "")
    out: dict[str, float | None] = {}
    for name in (*BAND_NAMES, "overall"):
        keep = known if name == "overall" else sample_band == name
        out[name] = expected_calibration_error(conf[keep], hit[keep], n_bins) if keep.any() else None
    return out
