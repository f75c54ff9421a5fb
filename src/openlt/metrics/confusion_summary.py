"""Confusion summaries that grow linearly with the number of classes K, not with K².

A dense K × K confusion matrix is 66 M cells at iNaturalist 2018's 8,142 classes: too large for a metrics file
or a figure. What is kept instead:

* :func:`sparse_confusion`: the whole matrix as a scipy.sparse CSR matrix (at most one stored cell per test
  image; an evaluation saves it on its own, ``confusion.npz``);
* :func:`top_confusions`: the N most frequent off-diagonal (true, predicted) pairs with their counts;
* :func:`band_confusion`: shot band × shot band counts (rows: the true class's band, or "open" for an unknown
  image; columns: the predicted class's band, or "rejected").

Conventions as in :mod:`openlt.metrics.closed`: label -1 is an open (unknown) image, prediction -1 a rejected
one. Every function here is O(N log N) in the number of images N and O(K) in the classes.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import scipy.sparse

from .closed import BAND_NAMES, _check_preds_labels

__all__ = ["BAND_ROWS", "BAND_COLUMNS", "band_confusion", "sparse_confusion", "top_confusions"]

#: Rows of :func:`band_confusion`: the true class's shot band, then the unknown images.
BAND_ROWS: tuple[str, ...] = (*BAND_NAMES, "open")
#: Columns of :func:`band_confusion`: the predicted class's shot band, then the rejected images.
BAND_COLUMNS: tuple[str, ...] = (*BAND_NAMES, "rejected")


def sparse_confusion(preds: Any, *, labels: Any, num_classes: int) -> scipy.sparse.csr_matrix:
    """The confusion matrix ``C[true, pred]`` (``num_classes`` × ``num_classes``, int64) as a CSR matrix.

    Same counts as :func:`openlt.metrics.confusion` (open images and rejected predictions are left out), with
    at most one stored cell per known, non-rejected image: memory O(N + K). ``sparse_confusion(preds, labels=y,
    num_classes=K)``: ``preds`` (N,) int predicted ids first, every other argument by keyword; ``labels`` (N,) int
    true ids.
    ValueError for ids out of range or arrays of different lengths."""
    p, y = _check_preds_labels(preds, labels, num_classes)
    keep = (y >= 0) & (p >= 0)
    ones = np.ones(int(keep.sum()), dtype=np.int64)
    matrix = scipy.sparse.coo_matrix((ones, (y[keep], p[keep])), shape=(num_classes, num_classes), dtype=np.int64)
    matrix = matrix.tocsr()  # sums the duplicates: one cell per (true, pred) pair
    matrix.sort_indices()
    return matrix


def top_confusions(preds: Any, *, labels: Any, num_classes: int, n: int = 50) -> list[dict[str, int]]:
    """The ``n`` most frequent confusions: off-diagonal (true, predicted) pairs of known, non-rejected images,
    as ``[{"true": c, "pred": c', "count": m}, ...]``, by count (descending), ties by true then predicted id.

    ``top_confusions(preds, labels=y, num_classes=K, n=50)``: ``preds`` (N,) int predicted ids first, every other
    argument by keyword; ``labels`` (N,) int true ids (-1 rejected / open, left out). ValueError for ``n < 0`` or
    bad ids."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    p, y = _check_preds_labels(preds, labels, num_classes)
    wrong = (y >= 0) & (p >= 0) & (p != y)
    pairs, counts = np.unique(y[wrong] * num_classes + p[wrong], return_counts=True)  # sorted by pair code
    order = np.argsort(-counts, kind="stable")[:n]  # stable: equal counts stay in (true, pred) order
    return [{"true": int(pairs[i] // num_classes), "pred": int(pairs[i] % num_classes), "count": int(counts[i])}
            for i in order]


def band_confusion(preds: Any, *, labels: Any, band_of_class: Sequence[str]) -> dict[str, Any]:
    """Shot band × shot band counts of the decisions ``preds`` on the images ``labels``.

    ``band_confusion(preds, labels=y, band_of_class=bands)``: ``preds`` first, every other argument by keyword.
    ``band_of_class[c]``: the band ("many" / "medium" / "few") of class c (K entries); ``labels`` (N,) int: class
    ids, -1 for an unknown (open) image; ``preds`` (N,) int: class ids, -1 for a rejected image. Returns::

        {"rows": ["many", "medium", "few", "open"],            # the true class's band; unknown images
         "columns": ["many", "medium", "few", "rejected"],     # the predicted class's band; rejected
         "counts": 4 x 4 int lists,                            # counts[r][c]: images of row r decided as column c
         "correct": {"many": n, "medium": n, "few": n}}        # images of the band given their own class

    ValueError for an unknown band name, ids out of range or arrays of different lengths."""
    position = {name: i for i, name in enumerate(BAND_NAMES)}
    unknown = sorted(set(band_of_class) - set(BAND_NAMES))
    if unknown:
        raise ValueError(f"band_of_class holds {unknown[0]!r}; bands are {', '.join(BAND_NAMES)}")
    band_index = np.array([position[b] for b in band_of_class], dtype=np.int64)
    p, y = _check_preds_labels(preds, labels, len(band_index))
    other = len(BAND_NAMES)  # the "open" row / "rejected" column
    row = np.where(y >= 0, band_index[np.clip(y, 0, None)], other)
    col = np.where(p >= 0, band_index[np.clip(p, 0, None)], other)
    counts = np.bincount(row * (other + 1) + col, minlength=(other + 1) ** 2).reshape(other + 1, other + 1)
    hit = (y >= 0) & (p == y)
    correct = np.bincount(row[hit], minlength=other + 1)
    return {"rows": list(BAND_ROWS), "columns": list(BAND_COLUMNS), "counts": counts.tolist(),
            "correct": {name: int(correct[i]) for i, name in enumerate(BAND_NAMES)}}

