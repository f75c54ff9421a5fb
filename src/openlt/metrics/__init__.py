"""Metrics for open long-tailed recognition.

* :mod:`openlt.metrics.closed`: per-class, many/medium/few-shot and top-1 accuracy, confusion.
* :mod:`openlt.metrics.openset`: rejection, the OLTR open-set F-measure, AUROC, AUPR-IN/OUT,
  FPR@TPR.
* :mod:`openlt.metrics.curves`: accuracy and F-measure as functions of the rejection threshold.
* :mod:`openlt.metrics.calibration`: reliability bins and expected calibration error (ECE), per band.

Label ``-1`` marks an open (unknown) sample, prediction ``-1`` a rejected one; open-set scores
are "higher = more known".
"""

from .calibration import ece_by_band, expected_calibration_error, reliability_bins
from .closed import (
    BAND_NAMES,
    OPEN_LABEL,
    REJECTED,
    ShotBands,
    confusion,
    per_class_accuracy,
    shot_accuracy,
    top1,
)
from .curves import rejection_curves, threshold_grid
from .openset import (
    aupr_in,
    aupr_out,
    auroc,
    fpr_at_tpr,
    open_set_f_measure,
    open_set_metrics,
    reject,
    threshold_at_tpr,
)

__all__ = [
    "BAND_NAMES",
    "OPEN_LABEL",
    "REJECTED",
    "ShotBands",
    "aupr_in",
    "aupr_out",
    "auroc",
    "confusion",
    "ece_by_band",
    "expected_calibration_error",
    "fpr_at_tpr",
    "open_set_f_measure",
    "open_set_metrics",
    "per_class_accuracy",
    "reject",
    "rejection_curves",
    "reliability_bins",
    "shot_accuracy",
    "threshold_at_tpr",
    "threshold_grid",
    "top1",
]
