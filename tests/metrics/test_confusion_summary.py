"""metrics.confusion_summary: the sparse matrix, the top confusions and the band summary agree with the dense
matrix, counted by hand."""

import numpy as np
import pytest

from openlt.metrics import BAND_COLUMNS, BAND_ROWS, band_confusion, confusion, sparse_confusion, top_confusions


def random_decisions(seed: int, n: int = 500, k: int = 7):
    rng = np.random.default_rng(seed)
    labels = rng.integers(-1, k, n)  # -1: open images
    preds = np.where(rng.random(n) < 0.5, labels, rng.integers(-1, k, n))  # -1: rejected
    return preds, labels, k


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sparse_confusion_is_the_dense_matrix(seed):
    preds, labels, k = random_decisions(seed)
    matrix = sparse_confusion(preds, labels=labels, num_classes=k)
    assert matrix.shape == (k, k) and matrix.dtype == np.int64
    np.testing.assert_array_equal(matrix.toarray(), confusion(preds, labels=labels, num_classes=k))
    assert matrix.nnz <= k * k and matrix.sum() == np.sum((labels >= 0) & (preds >= 0))


def test_top_confusions_by_hand():
    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, -1, 2])
    preds = np.array([1, 1, 2, 0, 1, 0, 0, 1, 2, 0, -1])
    # off-diagonal known, non-rejected pairs: (0,1) x2, (0,2), (1,0), (2,0) x2, (2,1); ties by true then pred id
    assert top_confusions(preds, labels=labels, num_classes=3) == [
        {"true": 0, "pred": 1, "count": 2}, {"true": 2, "pred": 0, "count": 2}, {"true": 0, "pred": 2, "count": 1},
        {"true": 1, "pred": 0, "count": 1}, {"true": 2, "pred": 1, "count": 1}]
    assert top_confusions(preds, labels=labels, num_classes=3, n=2) == top_confusions(preds, labels=labels, num_classes=3)[:2]
    assert top_confusions(labels.clip(0), labels=labels.clip(0), num_classes=3) == []  # all right: nothing confused
    with pytest.raises(ValueError, match="n must be >= 0"):
        top_confusions(preds, labels=labels, num_classes=3, n=-1)


@pytest.mark.parametrize("seed", [0, 1])
def test_top_confusions_are_the_largest_off_diagonal_cells(seed):
    preds, labels, k = random_decisions(seed, n=2000, k=12)
    dense = confusion(preds, labels=labels, num_classes=k)
    np.fill_diagonal(dense, 0)
    top = top_confusions(preds, labels=labels, num_classes=k, n=10)
    assert [c["count"] for c in top] == sorted(dense.ravel(), reverse=True)[:10]
    assert all(dense[c["true"], c["pred"]] == c["count"] for c in top)


def test_band_confusion_by_hand():
    bands = ["many", "medium", "few"]  # class 0 many, 1 medium, 2 few
    labels = np.array([0, 0, 1, 2, 2, -1, -1, -1])
    preds = np.array([0, 1, -1, 0, 2, -1, 2, 0])
    out = band_confusion(preds, labels=labels, band_of_class=bands)
    assert out["rows"] == list(BAND_ROWS) == ["many", "medium", "few", "open"]
    assert out["columns"] == list(BAND_COLUMNS) == ["many", "medium", "few", "rejected"]
    assert out["counts"] == [[1, 1, 0, 0],   # many: right, given a medium class
                             [0, 0, 0, 1],   # medium: rejected
                             [1, 0, 1, 0],   # few: given a many class, right
                             [1, 0, 1, 1]]   # open: given many, given few, rejected
    assert out["correct"] == {"many": 1, "medium": 0, "few": 1}


@pytest.mark.parametrize("seed", [0, 3])
def test_band_confusion_sums_the_dense_matrix_by_band(seed):
    preds, labels, k = random_decisions(seed, k=9)
    bands = ["many"] * 3 + ["medium"] * 4 + ["few"] * 2
    out = np.array(band_confusion(preds, labels=labels, band_of_class=bands)["counts"])
    assert out.sum() == len(labels)
    dense = confusion(preds, labels=labels, num_classes=k)
    groups = [np.arange(3), np.arange(3, 7), np.arange(7, 9)]
    for r, rows in enumerate(groups):
        for c, cols in enumerate(groups):
            assert out[r, c] == dense[np.ix_(rows, cols)].sum()
        assert out[r, 3] == np.sum(np.isin(labels, rows) & (preds == -1))
    assert out[3].sum() == np.sum(labels == -1)


def test_band_confusion_refuses_an_unknown_band_and_bad_ids():
    with pytest.raises(ValueError, match="'huge'"):
        band_confusion([0], labels=[0], band_of_class=["huge"])
    with pytest.raises(ValueError, match="num_classes"):
        band_confusion([3], labels=[0], band_of_class=["many", "few"])
