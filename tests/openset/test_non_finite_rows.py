"""One non-finite check (openset.base.non_finite_rows) behind the open-set scores' logits check and the decoupled
classifiers' features, weights and biases, and one class-id check (openset.base.class_ids) behind OpenMax's
training labels and the classifiers' labels: the counts across chunks and every caller's own message."""

from __future__ import annotations

import re

import pytest
import torch

from openlt.decoupling._validate import _bias, _features, _labels, _weight
from openlt.errors import ConfigError, DataError
from openlt.openset.base import FINITE_CHUNK, check_finite_rows, non_finite_rows
from openlt.openset.openmax import training_labels


def test_rows_are_counted_across_chunks_and_the_first_is_named():
    x = torch.zeros(2 * FINITE_CHUNK + 5, 3)
    x[2 * FINITE_CHUNK + 4, 0], x[FINITE_CHUNK + 1, 2], x[7, 1] = float("nan"), float("inf"), -float("inf")
    assert non_finite_rows(x) == (3, 7)
    assert non_finite_rows(x[8:]) == (2, FINITE_CHUNK - 7)
    assert non_finite_rows(torch.zeros(4, 2)) is None
    assert non_finite_rows(torch.tensor(float("nan"))) == (1, 0)  # a 0-d tensor is one row
    assert non_finite_rows(torch.arange(6)) is None and non_finite_rows(torch.zeros(0, 3)) is None
    assert non_finite_rows(torch.tensor([1.0, float("nan"), 2.0], dtype=torch.float16)) == (1, 1)


def test_every_caller_keeps_its_own_message():
    x = torch.zeros(5, 2)
    x[1, 0] = x[3, 1] = float("nan")
    with pytest.raises(DataError, match=re.escape("where: the logits hold NaN or infinite values in 2 of 5 rows "
                                                  "(first: row 1)")):
        check_finite_rows(x, "where: the logits")
    with pytest.raises(DataError, match=r"^val features contain non-finite values$"):
        _features(x, "val features")
    with pytest.raises(ConfigError, match=re.escape("classifier weight holds NaN or infinite values in 2 of 5 rows "
                                                    "(first: row 1)")):
        _weight(x)
    with pytest.raises(ConfigError, match=re.escape("classifier bias holds NaN or infinite values in 2 of 5 classes "
                                                    "(first: class 1)")):
        _bias(x[:, 0] + x[:, 1], 5, torch.float32)


@pytest.mark.parametrize("labels, says", [
    (torch.tensor([0.0, 0.9]), "must be integer class ids, got non-integral values"),
    (torch.tensor([True, False]), "must be integer class ids, got dtype torch.bool"),
    (torch.tensor([0j, 1j]), "must be integer class ids, got dtype torch.complex64"),
])
def test_openmax_and_the_classifiers_refuse_the_same_labels_with_their_names(labels, says):
    with pytest.raises(DataError, match=f"^OpenMax.fit: labels {re.escape(says)}$"):
        training_labels(labels, "OpenMax.fit")
    with pytest.raises(DataError, match=f"^val_labels {re.escape(says)}$"):
        _labels(labels, 2, "val_labels")
    assert training_labels(torch.tensor([1.0, 2.0]), "x").dtype == torch.int64
    assert _labels(torch.tensor([1.0, 2.0]), 2).tolist() == [1, 2]
