"""Face identification and verification by feature matching (the OLTR paper's MS1M-LT benchmark).

Liu et al., "Large-Scale Long-Tailed Recognition in an Open World" (CVPR 2019) train on MS1M-LT, a
long-tailed subset of MS1M-ArcFace (74.5K identities), and test on MegaFace-style identification: a probe
face is matched by cosine similarity against a gallery drowned in up to a million distractor faces, and
rank-1 accuracy is reported by groups of identities with different numbers of training images.

openlt's protocol (pure numpy; features in, numbers out):

* **Enrolment** (:func:`enrol`): one template per identity, the mean of its L2-normalised features,
  L2-normalised again -- from its training images, or from a gallery split given at test time.
* **Matching** (:func:`cosine_topk`, :func:`match`): every probe against every template *and* every
  distractor (one gallery entry per distractor image, identity -1), by cosine similarity. The gallery is
  read in chunks of ``chunk_size`` rows and probes in blocks of ``query_chunk`` rows, keeping a running
  top-k: the largest intermediate is a ``query_chunk x chunk_size`` block of scores, never the
  ``N x M`` matrix, so a million distractors fit (a ``numpy.memmap`` of them is read once, chunk by chunk).
  Scores are summed in float64 and rounded to float32, and equal float32 scores go to the lower gallery index
  (every path: one block's top-k, the running merge, templates before distractors), so the matches do not depend
  on the chunk sizes (float32 sums would: BLAS sums a one-row block in another order than a wide one, and on
  features without spread that rounding decided rank-1).
* **No spread** (:func:`no_spread`, :func:`spread_warning`): when the probes', the gallery's or the pairs' features
  are the same up to float rounding (e.g. a network trained for one epoch), every cosine score is ~1 and the
  matches reflect float rounding, not the data; ``openlt identify`` then records one warning, as ``openlt eval``
  does for open-set scores without spread.
* **Rank-1 by band** (:func:`rank1_by_band`): a *mated* probe (its identity is enrolled) is right when its
  best match is its own template. The bands are by training images per identity (:class:`IdentityBands`:
  many > ``many_above``, few 2..many_above, one-shot 1, zero-shot 0 = enrolled only at test time);
  each band's rank-1 is the fraction of its mated probes that are right (MegaFace counts probes).
* **Open set** (:func:`open_set_identification`): a *non-mated* probe (identity -1, or one not enrolled)
  should be rejected. As NIST FRVT / MegaFace open-set report: at a threshold t chosen so that the
  false-positive identification rate FPIR (non-mated probes whose best score is above t) is at most a
  target, the rejection rate of non-mated probes (1 - FPIR) and the true-positive identification rate
  TPIR (mated probes whose best match is their own identity *and* scores above t).
* **Verification** (:func:`tar_at_far`): 1:1 pairs (same / different identity); the true accept rate at
  the threshold where at most a fraction FAR of the impostor pairs is accepted (FAR = 1e-3, 1e-4).

Probes must be held out from the images the templates are built from (training images, gallery split): a
probe that is one of them matches (part of) itself and inflates rank-1. These functions get features and
cannot tell; ``openlt identify`` refuses such probe lists (files compared by device and inode).

Scores are cosine similarities in [-1, 1], higher = more alike; a score must be *strictly above* a
threshold to be accepted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ._checks import binary_vector, finite_vector, same_length
from .closed import _as_counts, _as_int_vector, _to_numpy
from .openset import RANK_TOLERANCE

__all__ = [
    "IDENTITY_BANDS",
    "IdentityBands",
    "cosine_topk",
    "enrol",
    "l2_normalize",
    "match",
    "no_spread",
    "open_set_identification",
    "pair_scores",
    "rank1_by_band",
    "spread_warning",
    "tar_at_far",
    "threshold_at_far",
]

#: The identification bands, from most to least training data.
IDENTITY_BANDS: tuple[str, str, str, str] = ("many", "few", "one", "zero")
#: Identity of a distractor gallery entry (and of a probe whose identity is unknown).
DISTRACTOR: int = -1
DEFAULT_CHUNK = 65536  # gallery rows per chunk: 64K x 512 probes x 8 bytes = 256 MiB of float64 scores at most
DEFAULT_QUERY_CHUNK = 512
#: L2-normalised rows whose mean squared distance to their mean is at most this have no spread: their cosine
#: similarities all lie within ~this of 1, a few hundred float32 steps (as ``openlt eval`` calls scores that vary by
#: at most 1e-5 of their size float rounding); real face features spread by ~0.1 - 1.
SPREAD_RTOL = 1e-5
_SPREAD_ROWS = 4096  # rows summed in float64 at once


@dataclass(frozen=True)
class IdentityBands:
    """Bands of identities by their number of training images ``n`` (openlt's boundaries; the OLTR paper
    reports many-shot, few-shot, one-shot and zero-shot identities on MS1M-LT without giving the edges in
    our notes)::

        many : n >  many_above        (n > 20 by default)
        few  : 2 <= n <= many_above
        one  : n == 1
        zero : n == 0                 (enrolled only at test time, from a gallery split)
    """

    many_above: int = 20

    def __post_init__(self) -> None:
        if self.many_above < 1:
            raise ValueError(f"many_above must be >= 1 (few-shot starts at 2 images), got {self.many_above}")

    def band(self, count: int) -> str:
        """The band of an identity with ``count`` training images; ValueError for a negative count."""
        if count < 0:
            raise ValueError(f"a training-image count must be >= 0, got {count}")
        if count == 0:
            return "zero"
        if count == 1:
            return "one"
        return "many" if count > self.many_above else "few"

    def describe(self) -> str:
        """The band edges as text, e.g. ``"many > 20, few 2-20, one 1, zero 0"``; a few band of one count is
        ``few 2``, and an empty one (many_above 1: 2 images are many) ``few none``, as ShotBands says an empty medium
        band (trial 16 D9: was ``few 2-1``)."""
        n = self.many_above
        few = "none" if n < 2 else "2" if n == 2 else f"2-{n}"
        return f"many > {n}, few {few}, one 1, zero 0"


def l2_normalize(x: Any, eps: float = 1e-12) -> np.ndarray:
    """Rows of ``x`` (N, D) scaled to unit L2 norm, as float32 (N, D); an all-zero row stays zero
    (divided by ``eps``). ValueError for a non-2-D input or a nan / inf."""
    arr = np.asarray(_to_numpy(x), dtype=np.float32)
    if arr.ndim != 2:
        raise ValueError(f"features must be 2-D (N, D), got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError("features contain nan or inf")
    norms = np.linalg.norm(arr, axis=1, keepdims=True)
    return arr / np.maximum(norms, eps)


def enrol(features: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    """One template per identity: the mean of its L2-normalised features, L2-normalised.

    ``features`` (N, D) float, ``labels`` (N,) integer identities >= 0. Returns ``(templates, identities)``:
    float32 (K, D) and int64 (K,) with the K distinct identities in increasing order. ValueError for an
    empty input, a negative identity or mismatched lengths."""
    feats = l2_normalize(features)
    ids = _as_int_vector(labels, "labels")
    if ids.size != feats.shape[0]:
        raise ValueError(f"features and labels differ in length: {feats.shape[0]} vs {ids.size}")
    if ids.size == 0:
        raise ValueError("nothing to enrol: no features")
    if ids.min() < 0:
        raise ValueError(f"an enrolled identity must be >= 0, got {int(ids.min())}")
    identities, inverse = np.unique(ids, return_inverse=True)
    sums = np.zeros((identities.size, feats.shape[1]), dtype=np.float64)
    np.add.at(sums, inverse, feats)
    return l2_normalize(sums / np.bincount(inverse)[:, None]), identities.astype(np.int64)


def _merge(scores: np.ndarray, index: np.ndarray, new_scores: np.ndarray, new_index: np.ndarray,
           k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k best of two candidate lists per row (q, k) and (q, k'), best first; ties go to the lower index."""
    s = np.concatenate([scores, new_scores], axis=1)
    i = np.concatenate([index, new_index], axis=1)
    order = np.lexsort((i, -s), axis=1)[:, :k]  # by score descending, then index ascending
    return np.take_along_axis(s, order, axis=1), np.take_along_axis(i, order, axis=1)


def _block_topk(block: np.ndarray, k: int, offset: int) -> tuple[np.ndarray, np.ndarray]:
    """The k best columns of a (q, c) score block: scores (q, k') and gallery indices (q, k'), k' = min(k, c);
    of equal scores the lower columns (argmax's first; argpartition picks any of the scores tied at the k-th
    place, so the rows with such a tie are sorted stably)."""
    if k == 1:
        best = block.argmax(axis=1)[:, None]
    else:
        kk = min(k, block.shape[1])
        best = np.argpartition(-block, kk - 1, axis=1)[:, :kk]
        kth = np.take_along_axis(block, best, axis=1).min(axis=1, keepdims=True)
        tied = np.flatnonzero((block >= kth).sum(axis=1) > kk)  # more than k' columns reach the k-th score
        if tied.size:
            best[tied] = np.argsort(-block[tied], axis=1, kind="stable")[:, :kk]
    return np.take_along_axis(block, best, axis=1), best.astype(np.int64) + offset


def _check_chunks(k: int, chunk_size: int, query_chunk: int) -> None:
    for name, value in (("k", k), ("chunk_size", chunk_size), ("query_chunk", query_chunk)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def cosine_topk(queries: Any, gallery: Any, k: int = 1, chunk_size: int = DEFAULT_CHUNK,
                query_chunk: int = DEFAULT_QUERY_CHUNK) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` gallery rows most cosine-similar to each query, best first.

    ``queries`` (N, D) and ``gallery`` (M, D) are float arrays or tensors (rows need not be normalised;
    the gallery may be a ``numpy.memmap``, read once, ``chunk_size`` rows at a time). Returns ``scores``
    float32 (N, k) and ``indices`` int64 (N, k) into the gallery; equal scores go to the lower index. Each score
    is summed in float64 (the products of float32 entries are exact there) and rounded to float32, so neither
    the result nor its ties depend on ``chunk_size`` / ``query_chunk``.
    Memory: the largest intermediate is one ``min(query_chunk, N) x min(chunk_size, M)`` block of float64
    scores (and its float32 copy, its argpartition when k > 1), plus the running (N, k) result -- never N x M.
    ValueError for k > M, a dimension mismatch, or a non-positive chunk."""
    _check_chunks(k, chunk_size, query_chunk)
    q = l2_normalize(queries)
    if getattr(gallery, "ndim", None) != 2 and not hasattr(gallery, "detach"):
        gallery = np.asarray(gallery)
    m = int(gallery.shape[0])
    if gallery.ndim != 2 or gallery.shape[1] != q.shape[1]:
        raise ValueError(f"gallery must be (M, {q.shape[1]}), got shape {tuple(gallery.shape)}")
    if k > m:
        raise ValueError(f"k={k} is more than the {m} gallery entries")
    scores = np.full((q.shape[0], k), -np.inf, dtype=np.float32)
    index = np.full((q.shape[0], k), m, dtype=np.int64)
    for start in range(0, m, chunk_size):
        chunk = l2_normalize(gallery[start:start + chunk_size]).astype(np.float64)
        for row in range(0, q.shape[0], query_chunk):
            rows = slice(row, row + query_chunk)
            # (query_chunk, chunk_size): the largest intermediate; float64 then float32, so that the order in which
            # BLAS sums (which depends on the block's shape) changes no score
            block = (q[rows].astype(np.float64) @ chunk.T).astype(np.float32)
            new_s, new_i = _block_topk(block, k, start)
            del block
            scores[rows], index[rows] = _merge(scores[rows], index[rows], new_s, new_i, k)
    return scores, index


def match(probes: Any, templates: Any, template_ids: Any, distractors: Any = None, k: int = 1,
          chunk_size: int = DEFAULT_CHUNK, query_chunk: int = DEFAULT_QUERY_CHUNK) -> tuple[np.ndarray, np.ndarray]:
    """Match probes against the enrolled templates plus the distractors, by cosine similarity.

    ``probes`` (N, D); ``templates`` (K, D) with their identities ``template_ids`` (K,) (from :func:`enrol`);
    ``distractors`` (M, D) or None (each one gallery entry of identity -1; may be a ``numpy.memmap``).
    Returns ``scores`` float32 (N, k) and ``identities`` int64 (N, k) of the k best gallery entries, best
    first (-1 = a distractor); on equal scores a template wins over a distractor. Memory as
    :func:`cosine_topk`'s."""
    ids = _as_int_vector(template_ids, "template_ids")
    if ids.size != int(np.shape(templates)[0]):
        raise ValueError(f"templates and template_ids differ in length: {np.shape(templates)[0]} vs {ids.size}")
    k_t = min(k, ids.size)
    s, i = cosine_topk(probes, templates, k_t, chunk_size, query_chunk)
    found = ids[i]
    if distractors is not None and int(np.shape(distractors)[0]) > 0:
        k_d = min(k, int(np.shape(distractors)[0]))
        ds, di = cosine_topk(probes, distractors, k_d, chunk_size, query_chunk)
        # templates first (index 0..k_t-1), distractors after: a tie goes to the template
        s, order = _merge(s, np.broadcast_to(np.arange(k_t), s.shape).copy(), ds,
                          np.broadcast_to(np.arange(k_t, k_t + k_d), ds.shape).copy(), k)
        found = np.take_along_axis(np.concatenate([found, np.full_like(di, DISTRACTOR)], axis=1), order, axis=1)
    if found.shape[1] < k:
        raise ValueError(f"k={k} is more than the {found.shape[1]} gallery entries")
    return s, found


def no_spread(features: Any) -> bool:
    """Whether the rows of ``features`` (N, D) -- or of a list of such arrays taken together (e.g. templates and
    distractors, without copying them into one) --, L2-normalised, are the same up to float rounding: their mean
    squared distance to their mean (float64 moments) at most :data:`SPREAD_RTOL`, so that the cosine scores of any
    row against them all lie within ~1e-5 of each other. False for fewer than 2 rows. ValueError for a non-2-D
    input or a nan / inf (:func:`l2_normalize`)."""
    parts = [np.asarray(_to_numpy(f)) for f in (features if isinstance(features, (list, tuple)) else [features])]
    if any(part.ndim != 2 for part in parts):
        raise ValueError(f"features must be 2-D (N, D), got shape(s) {[part.shape for part in parts]}")
    n = sum(part.shape[0] for part in parts)
    if n < 2:
        return False
    total, squares = np.zeros(parts[0].shape[1], dtype=np.float64), 0.0
    for arr in parts:
        for start in range(0, arr.shape[0], _SPREAD_ROWS):
            part = l2_normalize(arr[start:start + _SPREAD_ROWS]).astype(np.float64)
            total += part.sum(axis=0)
            squares += float(np.square(part).sum())
    return squares / n - float(np.square(total / n).sum()) <= SPREAD_RTOL


def spread_warning(features: dict[str, Any]) -> str | None:
    """The one-line warning of matching `features` ({what: (N, D)}, e.g. ``{"probe": ..., "gallery (templates
    and distractors)": ...}``) of which some have no spread (:func:`no_spread`), naming them; None when all
    spread. Rank-1, the open-set rates and TAR at FAR then reflect float rounding, not the data."""
    flat = [what for what, feats in features.items() if feats is not None and no_spread(feats)]
    if not flat:
        return None
    return (f"the {' and the '.join(flat)} features have no spread (every image gives the same feature up to float "
            f"rounding, e.g. a network barely trained): their cosine scores are the same up to float rounding, so "
            f"rank-1, TPIR and TAR reflect float rounding and the tie rule (the lower gallery index), not the data")


def _best_column(x: Any) -> np.ndarray:
    """The best match of each probe: column 0 of an (N, k) array, or the (N,) array itself."""
    arr = np.asarray(_to_numpy(x))
    return arr[:, 0] if arr.ndim == 2 else arr


def _count_of(identity: int, train_counts: np.ndarray) -> int:
    return int(train_counts[identity]) if 0 <= identity < train_counts.size else 0


def rank1_by_band(top_ids: Any, *, probe_labels: Any, enrolled: Any, train_counts: Any,
                  bands: IdentityBands = IdentityBands()) -> dict[str, Any]:
    """Rank-1 identification accuracy of the mated probes, per band and overall.

    ``rank1_by_band(top_ids, probe_labels=y, enrolled=ids, train_counts=counts)``: the matches first, every
    other argument by keyword (so that matches and labels cannot be swapped).

    ``top_ids`` (N,) or (N, k) int: the identities matched, best first (:func:`match`); ``probe_labels``
    (N,) int (-1 = unknown identity); ``enrolled`` the identities with a template; ``train_counts[i]`` the
    training images of identity i (identities past its end have 0: zero-shot). A probe is mated when its
    identity is enrolled; only mated probes count. Returns ``{"rank1": {band: float | None, ...,
    "overall": ...}, "n_probes": {band: int, ..., "overall": int}, "n_identities": {band: int, ...}}``
    (identities with a mated probe; None where a band has no probe) and ``"bands"`` (the edges)."""
    top = _as_int_vector(_best_column(top_ids), "top_ids")
    labels = _as_int_vector(probe_labels, "probe_labels")
    same_length(top_ids=top, probe_labels=labels)
    counts = _as_counts(train_counts)
    mated = np.isin(labels, _as_int_vector(enrolled, "enrolled")) & (labels >= 0)
    band_of = np.array([bands.band(_count_of(int(y), counts)) if m else "" for y, m in zip(labels, mated)])
    right = top == labels
    rank1: dict[str, float | None] = {}
    n_probes: dict[str, int] = {}
    n_ids: dict[str, int] = {}
    for name in IDENTITY_BANDS:
        members = band_of == name
        n_probes[name] = int(members.sum())
        n_ids[name] = int(np.unique(labels[members]).size)
        rank1[name] = float(right[members].mean()) if members.any() else None
    n_probes["overall"] = int(mated.sum())
    rank1["overall"] = float(right[mated].mean()) if mated.any() else None
    return {"rank1": rank1, "n_probes": n_probes, "n_identities": n_ids, "bands": bands.describe()}


def _as_scores(x: Any, name: str) -> np.ndarray:
    return finite_vector(x, name)


def threshold_at_far(impostor_scores: Any, far: float) -> float:
    """The threshold t at which at most a fraction ``far`` of the impostor scores is accepted (score > t):
    the (floor(far * n) + 1)-th largest impostor score. Ties may make the achieved rate lower, never higher.
    ``impostor_scores`` (n,) float; ``far`` in (0, 1). ValueError for an empty set or a rate out of range."""
    if not 0.0 < far < 1.0:
        raise ValueError(f"a false-accept rate must be in (0, 1), got {far}")
    imp = np.sort(_as_scores(impostor_scores, "impostor_scores"))[::-1]
    if imp.size == 0:
        raise ValueError("no impostor score: a false-accept rate needs at least one")
    # 0.29 of 100 impostors accepts 29, not 28 (0.29 * 100 = 28.999999999999996), as threshold_at_tpr rounds its rank
    return float(imp[min(int(math.floor(far * imp.size + RANK_TOLERANCE)), imp.size - 1)])


def tar_at_far(scores: Any, same: Any, fars: Sequence[float] = (1e-3, 1e-4)) -> dict[str, Any]:
    """1:1 verification: the true accept rate at each false accept rate of ``fars``.

    ``scores`` (P,) float (cosine similarity of each pair), ``same`` (P,) 0 / 1 (1 = same identity).
    Returns ``{"n_genuine", "n_impostor", "at_far": {str(far): {"threshold", "tar", "far" (achieved),
    "reliable"}}}``; ``reliable`` is False when the impostor pairs are fewer than 1 / far (the rate then
    rests on no impostor at all). ValueError when a kind of pair is missing or a label is not 0 / 1."""
    s = _as_scores(scores, "scores")
    y = binary_vector(same, "same")  # 1 / True: the same identity
    same_length(scores=s, same=y)
    genuine, impostor = s[y], s[~y]
    if genuine.size == 0 or impostor.size == 0:
        raise ValueError(f"verification needs genuine and impostor pairs, got {genuine.size} and {impostor.size}")
    at_far = {}
    for far in fars:
        t = threshold_at_far(impostor, far)
        at_far[str(far)] = {"threshold": t, "tar": float((genuine > t).mean()),
                            "far": float((impostor > t).mean()), "reliable": bool(impostor.size * far >= 1)}
    return {"n_genuine": int(genuine.size), "n_impostor": int(impostor.size), "at_far": at_far}


def open_set_identification(top_scores: Any, top_ids: Any, probe_labels: Any, enrolled: Any,
                            fpirs: Sequence[float] = (0.1, 0.01)) -> dict[str, Any]:
    """Open-set identification: reject the probes whose identity is not enrolled.

    ``top_scores`` / ``top_ids`` (N,) or (N, k): the best match of each probe (:func:`match`);
    ``probe_labels`` (N,) (-1 = unknown identity); ``enrolled`` the identities with a template. For each
    target FPIR, t = :func:`threshold_at_far` of the non-mated probes' best scores, and
    ``{"threshold", "fpir"`` (achieved), ``"rejection_rate"`` (1 - fpir: non-mated probes rejected),
    ``"tpir"`` (mated probes whose best match is their identity with a score above t), ``"reliable"}``.
    Returns ``{"n_mated", "n_non_mated", "at_fpir": {str(fpir): {...}}}``; ValueError without a mated or a
    non-mated probe."""
    best = _as_scores(_best_column(top_scores), "top_scores")
    ids = _as_int_vector(_best_column(top_ids), "top_ids")
    labels = _as_int_vector(probe_labels, "probe_labels")
    same_length(top_scores=best, top_ids=ids, probe_labels=labels)
    mated = np.isin(labels, _as_int_vector(enrolled, "enrolled")) & (labels >= 0)
    if not mated.any() or mated.all():
        raise ValueError(f"open-set identification needs mated and non-mated probes, got {int(mated.sum())} "
                         f"and {int((~mated).sum())}")
    right = ids[mated] == labels[mated]
    at_fpir = {}
    for fpir in fpirs:
        t = threshold_at_far(best[~mated], fpir)
        achieved = float((best[~mated] > t).mean())
        at_fpir[str(fpir)] = {"threshold": t, "fpir": achieved, "rejection_rate": 1.0 - achieved,
                              "tpir": float((right & (best[mated] > t)).mean()),
                              "reliable": bool((~mated).sum() * fpir >= 1)}
    return {"n_mated": int(mated.sum()), "n_non_mated": int((~mated).sum()), "at_fpir": at_fpir}


def pair_scores(first: Any, second: Any) -> np.ndarray:
    """Cosine similarity of each pair of rows: ``first`` and ``second`` (P, D) -> float32 (P,)."""
    a, b = l2_normalize(first), l2_normalize(second)
    if a.shape != b.shape:
        raise ValueError(f"the two sides of the pairs differ in shape: {a.shape} vs {b.shape}")
    return np.einsum("pd,pd->p", a, b)
