"""A dict, set, text or iterator where a metric expects a vector (issue 14): numpy would read it as one object
(shape ()), and `shot_accuracy(..., train_counts={0: 5, 1: 3})` said only "must be 1-D, got shape ()". Refused by
the shared check (metrics/_checks.py) with a TypeError naming the argument and what to pass instead."""

import pytest
import torch

from openlt.metrics import shot_accuracy
from openlt.metrics._checks import refuse_unordered
from openlt.metrics.closed import per_class_accuracy, top1

PREDS, LABELS = [0, 1, 1], [0, 1, 0]


def test_a_dict_of_train_counts_is_refused_naming_it():
    with pytest.raises(TypeError) as info:
        shot_accuracy(PREDS, labels=LABELS, train_counts={0: 50, 1: 3})
    assert str(info.value) == ("train_counts must be a list, a numpy array or a tensor, got a dict of 2 keys (a "
                               "mapping has no positions: a missing key would shift every class after it); for a "
                               "{class id: value} dict d pass [d[c] for c in range(num_classes)]")


def test_the_list_the_message_asks_for_is_accepted():
    counts = {1: 3, 0: 50}  # keys in any order
    result = shot_accuracy(PREDS, labels=LABELS, train_counts=[counts[c] for c in range(2)])
    assert result["overall"] == pytest.approx(2 / 3) and result["n_classes"] == {"many": 0, "medium": 1, "few": 1}


@pytest.mark.parametrize("value,kind", [({50, 3}, "a set"), ("50,3", "a str"), (b"\x32\x03", "a bytes")])
def test_other_non_vectors_are_refused(value, kind):
    with pytest.raises(TypeError, match=rf"^train_counts must be a list, a numpy array or a tensor, got {kind}$"):
        shot_accuracy(PREDS, labels=LABELS, train_counts=value)


def test_an_iterator_is_refused_with_the_fix():
    with pytest.raises(TypeError, match=r"^labels must be a list, a numpy array or a tensor, got a list_iterator; "
                                        r"pass list\(labels\)$"):
        top1(PREDS, labels=iter(LABELS))
    with pytest.raises(TypeError, match=r"^labels must be .* got a dict of 3 keys"):
        per_class_accuracy(PREDS, labels=dict(enumerate(LABELS)), num_classes=2)


@pytest.mark.parametrize("value", [[1, 2], (1, 2), torch.tensor([1, 2]), __import__("numpy").array([1, 2])])
def test_vectors_pass(value):
    assert refuse_unordered(value, "x") is None
