"""The per-sample results of an evaluation, saved beside metrics.json as predictions.npz (tagged:
predictions-TAG.npz), so that reports can be rebuilt and re-plotted without the model or the images; and the
sparse confusion matrix, confusion.npz.

Arrays, one row per image of the split (`open_*` only when the run has an open split):
  test_labels, test_preds, test_score, test_max_prob, test_top_classes, test_top_probs,
  open_preds, open_score, open_max_prob, open_top_classes, open_top_probs
  test_logits, open_logits: only with ``eval.save_logits: true``
`*_preds` are the closed-set predictions (argmax of the logits, before rejection), `*_score` the open-set
score the evaluation used (higher = more known), `*_max_prob` the maximum softmax probability (the
confidence of the reliability diagram), `*_top_classes` / `*_top_probs` (N, k) the k = 5 most probable classes
(int64, most probable first) and their softmax probabilities (float32). All logits (N, K) are kept only when
asked: at 24,426 images and 8,142 classes they are 0.8 GB; the rest is O(N), whatever K.

Evaluation reduces each split's outputs to these arrays (:func:`summarize_outputs`) as soon as it has them,
so that no more than one split's logits are held at a time.
"""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path
from typing import Mapping

import numpy as np
import scipy.sparse
import torch

from openlt.errors import RunDirError
from openlt.io import atomic_path

FORMAT = "openlt-predictions/1"
SPLITS = ("test", "open")
TOP_K = 5  # classes kept per image
_CHUNK = 4096  # rows of logits turned into probabilities at once: bounds the softmax's temporary memory
RECORD_KEYS = ("preds", "score", "max_prob", "top_classes", "top_probs")


def rank_classes(logits: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The `k` most probable classes of each row of `logits` (N, K) float: ``(probs, classes)``, both (N, k), best
    first, ``probs`` the softmax probabilities of ``classes``. The one ranking of every per-image record (evaluation's
    predictions.npz, `openlt predict`, ``LoadedRun.predict``): its first column is the label, so a record never
    names one class as its label and another first in its top-k. Equal logits (common in bf16) rank by class index,
    lower first (a stable sort), so the first column is ``logits.argmax(dim=1)``, the prediction the metrics take."""
    order = torch.sort(logits, dim=1, descending=True, stable=True).indices[:, :k]
    probs = torch.softmax(logits, dim=1).gather(1, order)
    return probs, order


def summarize_outputs(outputs: Mapping[str, torch.Tensor], score: torch.Tensor | np.ndarray, top_k: int = TOP_K,
                      keep_logits: bool = False) -> dict[str, np.ndarray]:
    """One split's outputs reduced to per-image arrays: ``preds`` (N,) int64 argmax of ``outputs["logits"]``
    (N, K), ``score`` (N,) float32 (the open-set `score` given), ``max_prob`` (N,) float32 maximum softmax
    probability, ``top_classes`` (N, min(top_k, K)) int64 and ``top_probs`` float32, ``labels`` (N,) int64 when the
    outputs have them, and ``logits`` (N, K) float32 with `keep_logits`. The softmax runs over row chunks, so its
    memory is bounded whatever N; each row's numbers are those of a softmax over all rows.

    ValueError for logits that are not (N, K) with K >= 1 or a score of another length."""
    logits = outputs["logits"]
    if logits.ndim != 2 or logits.shape[1] < 1:
        raise ValueError(f"logits must be (N, K) with K >= 1, got shape {tuple(logits.shape)}")
    score = torch.as_tensor(score).float().numpy()
    if score.shape != (logits.shape[0],):
        raise ValueError(f"score must be ({logits.shape[0]},) to match the logits, got {score.shape}")
    k = min(top_k, logits.shape[1])
    preds, max_prob, classes, probs = [], [], [], []
    for chunk in logits.split(_CHUNK):
        chunk = chunk.float()
        top_probs, top_classes = rank_classes(chunk, k)
        max_prob.append(top_probs[:, 0])
        classes.append(top_classes)
        probs.append(top_probs)
        preds.append(top_classes[:, 0])  # the argmax of the logits (first of equal ones), as the metrics take it
    record = {"preds": torch.cat(preds).numpy().astype(np.int64), "score": score,  # split() gives >= 1 chunk
              "max_prob": torch.cat(max_prob).numpy().astype(np.float32),
              "top_classes": torch.cat(classes).numpy().astype(np.int64),
              "top_probs": torch.cat(probs).numpy().astype(np.float32)}
    if "labels" in outputs:
        record["labels"] = torch.as_tensor(outputs["labels"]).numpy().astype(np.int64)
    if keep_logits:
        record["logits"] = logits.float().numpy()
    return record


def is_record(split_outputs: Mapping) -> bool:
    """True when a split's outputs are already the per-image arrays of :func:`summarize_outputs` (no logits
    needed), False for a model's outputs dict ("logits" (N, K), ...)."""
    return all(key in split_outputs for key in RECORD_KEYS)


def sample_table(outputs: Mapping[str, Mapping], scores: Mapping[str, torch.Tensor] | None = None) -> dict[str, np.ndarray]:
    """The arrays of predictions.npz (names and meaning in the module docstring) for the test and open splits.

    ``outputs[split]``: either the per-image record of :func:`summarize_outputs`, or a model's outputs dict
    (``"logits"`` (N, K) float and, for test, ``"labels"`` (N,) int64) with ``scores[split]`` its (N,) open-set
    scores; a record's ``logits`` (``eval.save_logits``) are kept."""
    table: dict[str, np.ndarray] = {}
    for split in SPLITS:
        if split not in outputs:
            continue
        record = outputs[split]
        if not is_record(record):
            record = summarize_outputs(record, scores[split])
        if split == "test":
            table["test_labels"] = np.asarray(record["labels"], dtype=np.int64)
        for key in (*RECORD_KEYS, "logits"):
            if key in record:
                table[f"{split}_{key}"] = np.asarray(record[key])
    return table


def save_samples(path: str | Path, table: Mapping[str, np.ndarray]) -> None:
    """Write the table as a compressed .npz (atomic: a temporary file, then a rename)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:  # a file object: savez would append ".npz" to a name
        np.savez_compressed(fh, format=np.array(FORMAT), **table)


def load_samples(path: str | Path) -> dict[str, np.ndarray]:
    """The per-sample arrays saved by :func:`save_samples` (see the module docstring), by name; files written
    before the top-k arrays existed load too (without them).

    Raises RunDirError for a missing or unreadable file, or one that is not an openlt predictions file.
    """
    path = Path(path)
    if not path.is_file():
        raise RunDirError(f"{path} not found: re-evaluate the run (`openlt eval RUN`) to save the per-sample results")
    try:
        data = np.load(path, allow_pickle=False)
        if not isinstance(data, np.lib.npyio.NpzFile):  # a lone .npy array under the name
            raise ValueError("a single .npy array, not an .npz archive")
        with data:
            table = {key: data[key] for key in data.files}
    except _READ_ERRORS as exc:
        raise _damaged(path, "predictions file", exc) from None
    if str(table.pop("format", "")) != FORMAT or "test_labels" not in table:
        raise RunDirError(f"{path} is not an openlt predictions file ({FORMAT})")
    return table


def save_confusion(path: str | Path, matrix: scipy.sparse.spmatrix) -> None:
    """Write a sparse confusion matrix (K × K counts, :func:`openlt.metrics.sparse_confusion`) as scipy's
    compressed .npz (:func:`scipy.sparse.save_npz`), atomically. Read it back with :func:`load_confusion`."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:  # a file object: save_npz would append ".npz"
        scipy.sparse.save_npz(fh, scipy.sparse.csr_matrix(matrix), compressed=True)


def load_confusion(path: str | Path) -> scipy.sparse.csr_matrix:
    """The confusion matrix of :func:`save_confusion` as a CSR int64 matrix (rows: true class, columns:
    predicted). RunDirError naming the file when it is missing or not a sparse matrix file."""
    path = Path(path)
    if not path.is_file():
        raise RunDirError(f"{path} not found: re-evaluate the run (`openlt eval RUN`) to save the confusion matrix")
    try:
        return scipy.sparse.csr_matrix(scipy.sparse.load_npz(path), dtype=np.int64)
    except _READ_ERRORS as exc:
        raise _damaged(path, "sparse confusion matrix", exc) from None


# what numpy / scipy raise for a damaged .npz: a cut or altered zip, an empty file, a lone .npy, pickled objects
_READ_ERRORS = (OSError, ValueError, KeyError, EOFError, TypeError, zipfile.BadZipFile, zlib.error)


def _damaged(path: Path, what: str, exc: BaseException) -> RunDirError:
    """The one-line error for an unreadable .npz. numpy's own text for pickled data advises allow_pickle=True
    ("if you trust the file"): openlt never writes Python objects, so such a file is damaged or foreign and is
    never unpickled; its message says that instead."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if "pickle" in text.lower():
        text = "not an archive of plain arrays: numpy takes it for pickled Python objects, which openlt never writes nor loads"
    return RunDirError(f"{path} is damaged or not a {what} written by openlt ({text}); evaluate the run again "
                       f"(`openlt eval RUN`) to rewrite it")
