"""Closed-set metrics against small hand-computed cases."""

import math

import numpy as np
import pytest
import torch

from openlt.metrics import (
    BAND_NAMES,
    ShotBands,
    confusion,
    per_class_accuracy,
    shot_accuracy,
    top1,
)

# Five classes with train counts [500, 150, 60, 25, 5]; default (exclusive) bands:
#   many = {0, 1} (>100), medium = {2, 3} (20..100), few = {4} (<20).
TRAIN_COUNTS = [500, 150, 60, 25, 5]
#            class 0 (4 samples) | class 1 | class 2 | class 3  | cl.4 | open
LABELS = [0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 3, 4, -1, -1]
PREDS = [0, 0, 0, 1, 1, -1, 2, 2, 3, 0, 0, 3, 0, -1]
# per-class: c0 = 3/4, c1 = 1/2 (the rejected -1 is wrong), c2 = 2/2, c3 = 1/3, c4 = 0/1
#   many   = (3/4 + 1/2) / 2 = 0.625
#   medium = (1 + 1/3) / 2   = 2/3
#   few    = 0
#   overall = 7 correct / 12 known = 7/12   (open samples ignored; the per-class mean
#             would be (0.75 + 0.5 + 1 + 1/3 + 0) / 5 = 31/60, which is different)


def test_per_class_accuracy_hand_case():
    acc = per_class_accuracy(PREDS, labels=LABELS, num_classes=5)
    assert acc.dtype == np.float64
    np.testing.assert_allclose(acc, [0.75, 0.5, 1.0, 1 / 3, 0.0])


def test_per_class_accuracy_nan_for_class_without_test_sample():
    acc = per_class_accuracy([0, 1, 2, 0], labels=[0, 0, 2, -1], num_classes=3)
    assert acc[0] == 0.5
    assert math.isnan(acc[1])
    assert acc[2] == 1.0


def test_shot_accuracy_hand_case():
    res = shot_accuracy(PREDS, labels=LABELS, train_counts=TRAIN_COUNTS)
    assert res["many"] == pytest.approx(0.625)
    assert res["medium"] == pytest.approx(2 / 3)
    assert res["few"] == pytest.approx(0.0)
    assert res["overall"] == pytest.approx(7 / 12)
    assert res["n_classes"] == {"many": 2, "medium": 2, "few": 1}
    assert res["n_classes_tested"] == {"many": 2, "medium": 2, "few": 1}


def test_shot_accuracy_accepts_tensors_and_arrays():
    res = shot_accuracy(torch.tensor(PREDS), labels=np.array(LABELS), train_counts=torch.tensor(TRAIN_COUNTS))
    assert res["overall"] == pytest.approx(7 / 12)
    assert res["medium"] == pytest.approx(2 / 3)


def test_shot_accuracy_band_without_tested_class_is_none():
    # class 2 (few) has no test sample; the few band is None, not 0 or nan.
    res = shot_accuracy([0, 1, 1], labels=[0, 1, 1], train_counts=[200, 50, 5])
    assert res["many"] == 1.0 and res["medium"] == 1.0
    assert res["few"] is None
    assert res["n_classes"]["few"] == 1
    assert res["n_classes_tested"]["few"] == 0


def test_shot_accuracy_only_open_samples_overall_none():
    res = shot_accuracy([0, -1], labels=[-1, -1], train_counts=[200, 50, 5])
    assert res["overall"] is None
    assert all(res[b] is None for b in BAND_NAMES)


def test_band_edges_exclusive_vs_inclusive():
    counts = [100, 20, 101, 19, 50, 21, 99]
    exclusive = ShotBands()
    inclusive = ShotBands(inclusive=True)
    assert exclusive.bands_of(counts) == ["medium", "medium", "many", "few", "medium", "medium", "medium"]
    assert inclusive.bands_of(counts) == ["many", "few", "many", "few", "medium", "medium", "medium"]
    assert exclusive.band(100) == "medium" and inclusive.band(100) == "many"
    assert exclusive.band(20) == "medium" and inclusive.band(20) == "few"


def test_band_edges_change_shot_accuracy():
    # class 0 has exactly 100 train images, class 1 exactly 20, class 2 has 500, class 3 has 5.
    counts = [100, 20, 500, 5]
    labels = [0, 1, 2, 3]
    preds = [0, 1, 0, 0]  # classes 0 and 1 right, 2 and 3 wrong
    exc = shot_accuracy(preds, labels=labels, train_counts=counts)  # many={2}, medium={0,1}, few={3}
    assert (exc["many"], exc["medium"], exc["few"]) == (0.0, 1.0, 0.0)
    inc = shot_accuracy(preds, labels=labels, train_counts=counts, bands=ShotBands(inclusive=True))  # many={0,2}, few={1,3}
    assert (inc["many"], inc["medium"], inc["few"]) == (0.5, None, 0.5)
    assert inc["n_classes"] == {"many": 2, "medium": 0, "few": 2}


def test_describe():
    assert ShotBands().describe() == "many > 100, medium 20-100, few < 20"
    assert ShotBands(inclusive=True).describe() == "many >= 100, medium 21-99, few <= 20"
    # an empty or one-count medium band (trial 11: "medium 44-43")
    assert ShotBands(44, 43, inclusive=True).describe() == "many >= 44, medium none, few <= 43"
    assert ShotBands(44, 42, inclusive=True).describe() == "many >= 44, medium 43, few <= 42"
    assert ShotBands(20, 20).describe() == "many > 20, medium 20, few < 20"


def test_shot_bands_is_frozen_and_validated():
    with pytest.raises(Exception):
        ShotBands().many_above = 5  # type: ignore[misc]
    with pytest.raises(ValueError):
        ShotBands(many_above=10, few_below=20)


def test_confusion_rows_true_cols_pred():
    labels = [0, 0, 1, 2, 2, -1]
    preds = [0, 1, -1, 2, 0, 0]  # the rejected known and the open sample are dropped
    cm = confusion(preds, labels=labels, num_classes=4)
    expected = np.zeros((4, 4), dtype=np.int64)
    expected[0, 0] = 1
    expected[0, 1] = 1
    expected[2, 2] = 1
    expected[2, 0] = 1
    np.testing.assert_array_equal(cm, expected)
    assert cm.shape == (4, 4)


def test_top1():
    assert top1(PREDS, labels=LABELS) == pytest.approx(7 / 12)
    assert top1(torch.tensor([1, 2, -1]), labels=torch.tensor([1, 0, 2])) == pytest.approx(1 / 3)
    assert math.isnan(top1([0], labels=[-1]))


def test_input_validation():
    with pytest.raises(ValueError, match="num_classes"):
        per_class_accuracy([0, 1], labels=[0, 5], num_classes=3)
    with pytest.raises(ValueError, match="length"):
        top1([0, 1, 2], labels=[0, 1])
    with pytest.raises(ValueError):
        top1([0, -2], labels=[0, 1])


@pytest.mark.parametrize("counts, says", [([100, -3, 5], "got -3 for class 1"), ([-1], "got -1 for class 0"),
                                          ([5, 2.5], "non-integral")])
def test_training_counts_must_be_whole_numbers_at_least_zero(counts, says):
    """A negative count would silently put its class in the few-shot band; it is refused, naming the class."""
    from openlt.metrics import ShotBands, shot_accuracy
    from openlt.metrics.identification import rank1_by_band

    labels = np.arange(len(counts))
    with pytest.raises(ValueError, match=says):
        shot_accuracy(labels, labels=labels, train_counts=counts)
    with pytest.raises(ValueError, match=says):
        ShotBands().bands_of(counts)
    with pytest.raises(ValueError, match=says):
        rank1_by_band(labels, probe_labels=labels, enrolled=labels, train_counts=counts)
