"""preds the metrics cannot read without guessing are refused (trial 10 D1, D14): an (N, 1) column, scores with
fewer / more columns than classes, non-finite scores; a too-short train_counts is named as such."""

import numpy as np
import pytest
import torch

from openlt import metrics as M
from openlt.metrics import (band_confusion, confusion, open_set_f_measure, per_class_accuracy, reject,
                            shot_accuracy, top1)

Y = np.array([0, 0, 1, 1, 2, 2])
COUNTS = [200, 50, 5]

CALLS = {
    "shot_accuracy": lambda p: shot_accuracy(p, labels=Y, train_counts=COUNTS),
    "top1": lambda p: top1(p, labels=Y),
    "open_set_f_measure": lambda p: open_set_f_measure(p, labels=Y),
    "per_class_accuracy": lambda p: per_class_accuracy(p, labels=Y, num_classes=3),
    "confusion": lambda p: confusion(p, labels=Y, num_classes=3),
    "sparse_confusion": lambda p: M.sparse_confusion(p, labels=Y, num_classes=3),
    "band_confusion": lambda p: band_confusion(p, labels=Y, band_of_class=["many", "medium", "few"]),
    "reject": lambda p: reject(p, np.ones(6), 0.5),
}


@pytest.mark.parametrize("name", sorted(CALLS))
@pytest.mark.parametrize("column", [Y[:, None], torch.from_numpy(Y)[:, None], torch.eye(3)[Y].argmax(1, keepdim=True),
                                    Y[:, None].tolist()], ids=["numpy", "tensor", "argmax-keepdim", "list"])
def test_a_column_of_class_ids_is_refused_not_read_as_one_class_scores(name, column):
    with pytest.raises(ValueError, match=r"preds has shape \(6, 1\), which is ambiguous .*accepted: \(N,\) int class "
                                         r"ids \(-1 = rejected\) or \(N, C\) class scores .*pass preds.ravel\(\)"):
        CALLS[name](column)


@pytest.mark.parametrize("name", ["shot_accuracy", "per_class_accuracy", "confusion", "sparse_confusion",
                                  "band_confusion"])
@pytest.mark.parametrize("columns", [2, 4])
def test_scores_need_one_column_per_class(name, columns):
    with pytest.raises(ValueError, match=rf"preds has shape \(6, {columns}\): {columns} score columns for 3 classes"):
        CALLS[name](np.random.default_rng(0).random((6, columns)))


def test_shot_accuracy_names_train_counts_for_the_class_count():
    with pytest.raises(ValueError, match=r"2 score columns for 3 classes \(train_counts has 3 entries\)"):
        shot_accuracy(np.random.rand(6, 2), labels=Y, train_counts=COUNTS)
    with pytest.raises(ValueError, match=r"a prediction 2 is >= 2, the number of classes \(train_counts has 2 "
                                         r"entries\)"):
        shot_accuracy(Y, labels=Y, train_counts=[200, 50])
    with pytest.raises(ValueError, match=r"a label 2 is >= 2, the number of classes \(train_counts"):
        shot_accuracy(np.zeros(6, dtype=int), labels=Y, train_counts=[200, 50])
    with pytest.raises(ValueError, match=r"a prediction 2 is >= num_classes=2$"):
        per_class_accuracy(Y, labels=np.zeros(6, dtype=int), num_classes=2)


def test_labels_beyond_the_score_columns_are_refused_without_num_classes():
    with pytest.raises(ValueError, match=r"a label 2 is >= 2, the number of classes \(preds has 2 score columns\)"):
        top1(np.random.rand(6, 2), labels=Y)


@pytest.mark.parametrize("name", sorted(CALLS))
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_scores_are_refused(name, bad):
    scores = np.eye(3)[Y]
    scores[[1, 4]] = bad
    with pytest.raises(ValueError, match=r"preds \(class scores\) hold nan or inf in 2 of 6 rows \(first: row 1\)"):
        CALLS[name](scores)
    with pytest.raises(ValueError, match="hold nan or inf in 6 of 6 rows"):
        CALLS[name](torch.full((6, 3), float("nan")))


def test_accepted_inputs_keep_their_values():
    scores = np.eye(3)[Y]
    for name in ("shot_accuracy", "top1", "per_class_accuracy", "open_set_f_measure"):
        assert str(CALLS[name](Y)) == str(CALLS[name](scores)) == str(CALLS[name]({"logits": torch.from_numpy(scores)}))
    assert shot_accuracy(Y, labels=Y, train_counts=COUNTS)["overall"] == 1.0
    assert top1(np.eye(3, dtype=np.int64)[Y], labels=Y) == 1.0  # integer scores are scores


def test_other_shapes_say_what_is_accepted():
    with pytest.raises(ValueError, match=r"preds has shape \(6, 3, 1\); accepted: \(N,\) int class ids"):
        top1(np.zeros((6, 3, 1)), labels=Y)
    with pytest.raises(ValueError, match="must hold numbers, got dtype <U1"):
        top1(np.array([["a", "b"]] * 6), labels=Y)
