"""Metrics for open long-tailed recognition.

* :mod:`openlt.metrics.closed`: per-class, many/medium/few-shot and top-1 accuracy, confusion.
* :mod:`openlt.metrics.openset`: rejection, the OLTR open-set F-measure, AUROC, AUPR-IN/OUT,
  FPR@TPR.

Label ``-1`` marks an open (unknown) sample, prediction ``-1`` a rejected one; open-set scores
are "higher = more known".
"""

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
    "fpr_at_tpr",
    "open_set_f_measure",
    "open_set_metrics",
    "per_class_accuracy",
    "reject",
    "shot_accuracy",
    "threshold_at_tpr",
    "top1",
]
