"""Calibration: reliability bins and the expected calibration error (ECE) of a classifier's confidence.

With equal-width bins B_1 .. B_M over [0, 1] of the confidence (e.g. the maximum softmax probability),
``ECE = sum_m |B_m| / n * |acc(B_m) - conf(B_m)|`` (Guo et al., "On Calibration of Modern Neural
Networks", ICML 2017): 0 for a perfectly calibrated model. On long-tailed data the tail classes are the
over-confident ones, so ECE is reported per shot band too.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .closed import BAND_NAMES, _to_numpy

__all__ = ["ece_by_band", "expected_calibration_error", "reliability_bins"]


def _inputs(confidences: Any, correct: Any) -> tuple[np.ndarray, np.ndarray]:
    conf = _to_numpy(confidences).astype(np.float64)
    hit = _to_numpy(correct).astype(bool)
    if conf.ndim != 1 or conf.shape != hit.shape:
        raise ValueError(f"confidences and correct must be 1-D of one length, got {conf.shape} and {hit.shape}")
    if conf.size and (not np.all(np.isfinite(conf)) or conf.min() < 0 or conf.max() > 1):
        raise ValueError("confidences must be probabilities in [0, 1]")
    return conf, hit


def reliability_bins(confidences: Any, correct: Any, n_bins: int = 15) -> dict[str, np.ndarray]:
    """Per equal-width bin: ``edges`` (n_bins + 1), ``count``, mean ``confidence`` and ``accuracy``
    (nan where a bin is empty). A confidence of exactly 1 falls in the last bin."""
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    conf, hit = _inputs(confidences, correct)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, n_bins - 1)
    count = np.bincount(which, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(which, weights=conf, minlength=n_bins) / count
        accuracy = np.bincount(which, weights=hit.astype(np.float64), minlength=n_bins) / count
    return {"edges": edges, "count": count, "confidence": mean_conf, "accuracy": accuracy}


def expected_calibration_error(confidences: Any, correct: Any, n_bins: int = 15) -> float:
    """ECE over equal-width confidence bins; nan when there is no sample."""
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
    (``band_of_class[c]`` is the band of class ``c``); None where a band has no sample."""
    conf, hit = _inputs(confidences, correct)
    y = _to_numpy(labels).astype(np.int64)
    known = y >= 0
    bands = np.asarray(band_of_class)
    sample_band = np.where(known, bands[np.clip(y, 0, len(bands) - 1)], "")
    out: dict[str, float | None] = {}
    for name in (*BAND_NAMES, "overall"):
        keep = known if name == "overall" else sample_band == name
        out[name] = expected_calibration_error(conf[keep], hit[keep], n_bins) if keep.any() else None
    return out
