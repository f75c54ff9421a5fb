"""Metrics for open long-tailed recognition.

* :mod:`openlt.metrics.closed`: per-class, many/medium/few-shot and top-1 accuracy, confusion.
* :mod:`openlt.metrics.confusion_summary`: confusion summaries linear in the classes (sparse matrix, top confusions,
  shot band x shot band counts with rejected and open images).
* :mod:`openlt.metrics.openset`: rejection, the OLTR open-set F-measure, AUROC (also per shot band),
  AUPR-IN/OUT, FPR@TPR.
* :mod:`openlt.metrics.curves`: accuracy and F-measure as functions of the rejection threshold.
* :mod:`openlt.metrics.calibration`: reliability bins and expected calibration error (ECE), per band.
* :mod:`openlt.metrics.identification`: face identification by feature matching (enrolment, chunked
  cosine top-k against templates + distractors, rank-1 per identity band, open-set TPIR / rejection at
  FPIR) and 1:1 verification (TAR at FAR).

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
from .confusion_summary import BAND_COLUMNS, BAND_ROWS, band_confusion, sparse_confusion, top_confusions
from .curves import rejection_curves, threshold_grid
from .identification import (
    IDENTITY_BANDS,
    IdentityBands,
    cosine_topk,
    enrol,
    match,
    open_set_identification,
    rank1_by_band,
    tar_at_far,
)
from .openset import (
    aupr_in,
    aupr_out,
    auroc,
    auroc_per_band,
    fpr_at_tpr,
    open_set_f_measure,
    open_set_metrics,
    reject,
    threshold_at_tpr,
)

__all__ = [
    "BAND_COLUMNS",
    "BAND_NAMES",
    "BAND_ROWS",
    "IDENTITY_BANDS",
    "IdentityBands",
    "OPEN_LABEL",
    "REJECTED",
    "ShotBands",
    "aupr_in",
    "aupr_out",
    "auroc",
    "auroc_per_band",
    "band_confusion",
    "confusion",
    "cosine_topk",
    "ece_by_band",
    "enrol",
    "expected_calibration_error",
    "fpr_at_tpr",
    "match",
    "open_set_f_measure",
    "open_set_identification",
    "open_set_metrics",
    "per_class_accuracy",
    "rank1_by_band",
    "reject",
    "rejection_curves",
    "reliability_bins",
    "shot_accuracy",
    "sparse_confusion",
    "tar_at_far",
    "threshold_at_tpr",
    "threshold_grid",
    "top1",
    "top_confusions",
]
