"""Hostile inputs to the public metric functions: each is one ValueError naming the argument and what it must
hold (never a silent answer), through the one shared check module (openlt.metrics._checks). Empty inputs: each
function's documented behaviour, checked here. docs/robustness.md has the row."""

import math

import numpy as np
import pytest
import torch

from openlt.metrics import (aupr_in, aupr_out, auroc, auroc_per_band, ece_by_band, expected_calibration_error,
                            fpr_at_tpr, open_set_f_measure, open_set_metrics, reject, reliability_bins, tar_at_far,
                            threshold_at_tpr, top1)

BANDS = ["many", "few"]

CASES = [
    # calibration: right / wrong flags, probabilities, lengths, labels, bins
    ("ece-correct-2", lambda: expected_calibration_error([0.9, 0.2], correct=[2, 0]),
     "correct must hold booleans or 0 / 1, got 2 at index 0"),
    ("ece-correct-half", lambda: expected_calibration_error([0.9, 0.2], [1, 0.5]),
     "correct must hold booleans or 0 / 1, got 0.5 at index 1"),
    ("ece-correct-nan", lambda: expected_calibration_error([0.9], [float("nan")]),
     "correct must hold booleans or 0 / 1, got nan"),
    ("ece-correct-text", lambda: expected_calibration_error([0.9], ["yes"]), "correct must hold booleans or 0 / 1"),
    ("ece-confidence-above-1", lambda: expected_calibration_error([0.5, 1.5], [1, 0]),
     "confidences must be probabilities in [0, 1], got 1.5 at index 1"),
    ("ece-confidence-negative", lambda: reliability_bins([-0.1], [True]), "confidences must be probabilities"),
    ("ece-confidence-nan", lambda: expected_calibration_error([float("nan")], [True]), "confidences contains nan"),
    ("ece-confidence-inf", lambda: expected_calibration_error([float("inf")], [True]), "confidences contains nan or inf"),
    ("ece-confidence-text", lambda: expected_calibration_error(["0.5"], [True]), "confidences must hold numbers"),
    ("ece-lengths", lambda: expected_calibration_error([0.5, 0.5], [True]),
     "confidences and correct differ in length: 2 vs 1"),
    ("ece-2d", lambda: expected_calibration_error([[0.5]], [[True]]), "confidences must be 1-D"),
    ("ece-bins-zero", lambda: expected_calibration_error([0.5], [True], n_bins=0), "n_bins must be an integer >= 1"),
    ("ece-bins-fraction", lambda: reliability_bins([0.5], [True], n_bins=2.5), "n_bins must be an integer >= 1"),
    ("ece-band-label-past-classes", lambda: ece_by_band([0.5, 0.5], [1, 0], [0, 2], BANDS),
     "labels must be -1 (open) or class ids in [0, 2), got 0 .. 2"),
    ("ece-band-label-fraction", lambda: ece_by_band([0.5], [1], [0.5], BANDS), "labels must hold integer class ids"),
    ("ece-band-lengths", lambda: ece_by_band([0.5, 0.5], [1, 0], [0], BANDS),
     "confidences, correct and labels differ in length: 2 vs 2 vs 1"),
    # closed-set and open-set ids, scores and thresholds
    ("top1-lengths", lambda: top1([0, 1], labels=[0]), "preds and labels differ in length: 2 vs 1"),
    ("top1-label-fraction", lambda: top1([0], labels=[0.5]), "labels must hold integer class ids, got non-integral"),
    ("top1-label-bool", lambda: top1([0], labels=[True]), "labels must hold integer class ids, got dtype bool"),
    ("f-measure-empty", lambda: open_set_f_measure([], labels=[]), "the open-set F-measure needs at least one sample"),
    ("f-measure-lengths", lambda: open_set_f_measure([0, -1], labels=[0]), "preds and labels differ in length: 2 vs 1"),
    ("f-measure-label-below-open", lambda: open_set_f_measure([0], labels=[-2]), "labels must be class ids or -1"),
    ("auroc-one-class-known-only", lambda: auroc([0.9, 0.8], []), "open_scores is empty"),
    ("auroc-one-class-open-only", lambda: auroc([], [0.1]), "known_scores is empty"),
    ("auroc-nan", lambda: auroc([0.9, float("nan")], [0.1]), "known_scores contains nan or inf"),
    ("auroc-text", lambda: auroc(["a"], [0.1]), "known_scores must hold numbers"),
    ("aupr-in-empty", lambda: aupr_in([], []), "known_scores is empty"),
    ("aupr-out-one-class", lambda: aupr_out([0.5], []), "open_scores is empty"),
    ("fpr-one-class", lambda: fpr_at_tpr([0.5], []), "open_scores is empty"),
    ("fpr-tpr-nan", lambda: fpr_at_tpr([0.5], [0.1], float("nan")), "tpr must be in (0, 1]"),
    ("threshold-at-tpr-empty", lambda: threshold_at_tpr([]), "known_scores is empty"),
    ("open-set-metrics-one-class", lambda: open_set_metrics([0.5, 0.6], []), "open_scores is empty"),
    ("auroc-per-band-label-fraction", lambda: auroc_per_band([0.9], [0.5], [0.1], BANDS),
     "known_labels must hold integer class ids"),
    ("auroc-per-band-label-past-classes", lambda: auroc_per_band([0.9], [2], [0.1], BANDS),
     "known_labels must be in [0, 2)"),
    ("reject-lengths", lambda: reject([0, 1], [0.9], 0.5), "preds and scores differ in length: 2 vs 1"),
    ("reject-threshold-nan", lambda: reject([0], [0.9], float("nan")), "threshold must be a number"),
    ("reject-threshold-text", lambda: reject([0], [0.9], "0.5"), "threshold must be a number"),
    ("reject-preds-fraction", lambda: reject([0.5], [0.9], 0.5), "preds must hold integer class ids"),
    ("reject-scores-text", lambda: reject([0], ["high"], 0.5), "scores must be 1-D numbers"),
    # verification pairs: the same 0 / 1 check as calibration's right / wrong flags
    ("tar-same-2", lambda: tar_at_far([0.1, 0.2], [1, 2]), "same must hold booleans or 0 / 1, got 2 at index 1"),
    ("tar-lengths", lambda: tar_at_far([0.1, 0.2, 0.3], [1, 0]), "scores and same differ in length: 3 vs 2"),
]


@pytest.mark.parametrize("call, needle", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_hostile_metric_input_is_one_value_error_naming_it(call, needle):
    with pytest.raises(ValueError) as info:
        call()
    assert needle in str(info.value), str(info.value)


@pytest.mark.parametrize("correct", [[True, False], [1, 0], [1.0, 0.0], np.array([1, 0], dtype=np.uint8),
                                     torch.tensor([True, False])], ids=["bool", "int", "float", "uint8", "tensor"])
def test_right_wrong_flags_may_be_booleans_or_0_1(correct):
    assert expected_calibration_error([0.75, 0.25], correct, n_bins=2) == pytest.approx(0.25)


def test_empty_inputs_do_what_each_docstring_says():
    """ECE of no sample is nan (undefined, not 0); reliability bins all count 0; top-1 of no known sample is nan;
    reject of nothing is nothing; the F-measure of nothing is refused (above); open samples only: F = 0."""
    assert math.isnan(expected_calibration_error([], []))
    assert reliability_bins([], [], n_bins=3)["count"].tolist() == [0, 0, 0]
    assert math.isnan(top1([], labels=[]))
    assert reject([], [], 0.5).tolist() == []
    assert open_set_f_measure([-1, 0], labels=[-1, -1]) == {"f_measure": 0.0, "precision": 0.0, "recall": 0.0,
                                                      "tp": 0, "fp": 0, "fn": 1}
    assert ece_by_band([], [], [], BANDS) == {"many": None, "medium": None, "few": None, "overall": None}


def test_an_infinite_threshold_rejects_everything_and_a_nan_score_is_rejected():
    assert reject([0, 1], [0.9, 0.2], float("inf")).tolist() == [-1, -1]
    assert reject([0, 1], [0.9, float("nan")], 0.5).tolist() == [0, -1]
