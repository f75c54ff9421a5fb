"""Chunked matching does not depend on the chunk sizes (float64 sums rounded to float32, ties to the lower gallery
index in every path), and features without spread are recognised (trial 8 D5)."""

from __future__ import annotations

import numpy as np
import pytest

from openlt.metrics.identification import (SPREAD_RTOL, cosine_topk, match, no_spread, spread_warning)

CHUNKS = [(1, 1), (2, 3), (3, 1024), (7, 5), (65536, 1), (65536, 1024)]  # (chunk_size, query_chunk)


def flat(n: int, d: int = 512, noise: float = 1e-7, seed: int = 0) -> np.ndarray:
    """n float32 rows that are one feature up to float rounding (relative noise `noise`), as a network barely
    trained gives for any image."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=d).astype(np.float32)
    return (base * (1 + noise * rng.normal(size=(n, d)))).astype(np.float32)


@pytest.mark.parametrize("k", [1, 3])
def test_cosine_topk_on_features_without_spread_is_independent_of_the_chunks(k):
    queries, gallery = flat(17, seed=1), flat(40, seed=1)
    want_s, want_i = cosine_topk(queries, gallery, k=k, chunk_size=40, query_chunk=17)
    for chunk_size, query_chunk in CHUNKS:
        s, i = cosine_topk(queries, gallery, k=k, chunk_size=chunk_size, query_chunk=query_chunk)
        assert np.array_equal(i, want_i), (chunk_size, query_chunk)
        assert np.array_equal(s, want_s), (chunk_size, query_chunk)
    assert want_s.dtype == np.float32


def test_scores_are_the_float64_sums_rounded_to_float32():
    rng = np.random.default_rng(3)
    queries, gallery = rng.normal(size=(9, 64)).astype(np.float32), rng.normal(size=(30, 64)).astype(np.float32)
    s, i = cosine_topk(queries, gallery, k=30, chunk_size=4, query_chunk=2)
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    g = gallery / np.linalg.norm(gallery, axis=1, keepdims=True)
    want = (q.astype(np.float64) @ g.astype(np.float64).T).astype(np.float32)
    assert np.array_equal(s, np.take_along_axis(want, i, axis=1))
    assert np.array_equal(i[:, 0], want.argmax(axis=1))


@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_exact_ties_go_to_the_lower_gallery_index_for_every_chunk(k):
    gallery = np.tile(np.array([[1.0, 2.0, 3.0]], np.float32), (12, 1))  # 12 identical rows: all tied
    queries = np.array([[3.0, 2.0, 1.0], [1.0, 2.0, 3.0]], np.float32)
    for chunk_size, query_chunk in CHUNKS:
        _, i = cosine_topk(queries, gallery, k=k, chunk_size=chunk_size, query_chunk=query_chunk)
        assert i.tolist() == [list(range(k))] * 2, (chunk_size, query_chunk)


def test_a_tie_at_the_kth_place_inside_one_block_keeps_the_lower_indices():
    # row 5 is best; rows 0-4 and 6-11 tie for the next places: argpartition alone may pick any of them
    gallery = np.tile(np.array([[1.0, 0.0]], np.float32), (12, 1))
    gallery[5] = [0.0, 1.0]
    query = np.array([[0.1, 1.0]], np.float32)
    for chunk_size in (12, 5, 1):
        _, i = cosine_topk(query, gallery, k=4, chunk_size=chunk_size)
        assert i.tolist() == [[5, 0, 1, 2]], chunk_size


def test_match_breaks_a_template_distractor_tie_for_the_template_at_every_chunk():
    templates = np.array([[0.0, 1.0], [1.0, 0.0]], np.float32)
    distractors = np.tile(np.array([[1.0, 0.0]], np.float32), (5, 1))  # = template 1
    probes = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
    for chunk_size, query_chunk in CHUNKS:
        scores, ids = match(probes, templates, [4, 9], distractors, k=3, chunk_size=chunk_size,
                            query_chunk=query_chunk)
        assert ids.tolist() == [[9, -1, -1], [4, 9, -1]], (chunk_size, query_chunk)


def test_match_on_flat_features_is_independent_of_the_chunks():
    probes, templates, distractors = flat(11, seed=5), flat(6, seed=5), flat(25, seed=5)
    ids = np.arange(6) * 10
    want = match(probes, templates, ids, distractors, k=2, chunk_size=1000)
    for chunk_size, query_chunk in CHUNKS:
        got = match(probes, templates, ids, distractors, k=2, chunk_size=chunk_size, query_chunk=query_chunk)
        assert np.array_equal(got[1], want[1]) and np.array_equal(got[0], want[0]), (chunk_size, query_chunk)


def test_no_spread():
    assert no_spread(flat(30))
    assert no_spread(flat(30) * np.linspace(0.5, 3, 30, dtype=np.float32)[:, None])  # the norm does not count
    assert no_spread(flat(30, noise=1e-4))  # cosine 1 - ~1e-5: still the same up to float32 steps
    assert not no_spread(flat(30, noise=1e-2))
    assert not no_spread(np.random.default_rng(0).normal(size=(30, 16)))
    assert not no_spread(flat(1))  # one row: nothing to compare
    a, b = flat(10, seed=2), np.random.default_rng(1).normal(size=(3, 512)).astype(np.float32)
    assert no_spread([a]) and not no_spread([a, b]) and no_spread([a, a])  # parts taken together
    with pytest.raises(ValueError, match="2-D"):
        no_spread(np.zeros(5))
    assert SPREAD_RTOL == 1e-5


def test_spread_warning_names_the_features_without_spread():
    spread = np.random.default_rng(0).normal(size=(20, 8))
    assert spread_warning({"probe": spread, "gallery": [spread, spread]}) is None
    one = spread_warning({"probe": flat(20), "gallery (templates and distractors)": [spread]})
    assert one.startswith("the probe features have no spread (every image gives the same feature up to float "
                          "rounding")
    assert "rank-1, TPIR and TAR reflect float rounding and the tie rule (the lower gallery index)" in one
    both = spread_warning({"probe": flat(20), "gallery (templates and distractors)": [flat(4), flat(9)],
                           "verification pairs'": spread})
    assert both.startswith("the probe and the gallery (templates and distractors) features have no spread")


def test_a_tie_that_argpartition_alone_would_break_for_a_higher_index():
    # this pattern of three score levels makes numpy's argpartition return columns 7, 12, 13 of the 13 tied at the
    # top: the best 3 are 7, 9, 12 (the lowest indices), in any chunking
    levels = [1, 0, 0, 0, 0, 0, 0, 2, 1, 2, 1, 1, 2, 2, 1, 1, 1, 2, 0, 2, 2, 0, 1, 2, 1, 0, 2, 2, 2, 0, 0, 2, 0, 1]
    angle = {2: 0.0, 1: 0.5, 0: 1.0}  # same level, same row: cosine with the query (1, 0) = cos(angle)
    gallery = np.array([[np.cos(angle[v]), np.sin(angle[v])] for v in levels], np.float32)
    for chunk_size in (34, 20, 3, 1):
        _, i = cosine_topk(np.array([[1.0, 0.0]], np.float32), gallery, k=3, chunk_size=chunk_size)
        assert i.tolist() == [[7, 9, 12]], chunk_size
