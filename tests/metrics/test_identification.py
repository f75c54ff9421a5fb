"""Face identification / verification metrics: hand-computed rank-1, bands, chunked = dense matching, bounded
memory with many distractors, TAR at FAR and open-set rejection on constructed scores."""

import tracemalloc

import numpy as np
import pytest

from openlt.metrics.identification import (IdentityBands, cosine_topk, enrol, l2_normalize, match,
                                           open_set_identification, pair_scores, rank1_by_band, tar_at_far,
                                           threshold_at_far)

# three identities on the unit circle: 0 -> +x, 1 -> +y, 2 -> -x
TRAIN = np.array([[2.0, 0.0], [0.5, 0.0], [0.0, 3.0], [-1.0, 0.0]])
TRAIN_IDS = np.array([0, 0, 1, 2])
COUNTS = [30, 5, 1]  # many, few, one-shot
PROBES = np.array([[0.9, 0.1],    # id 0: closest to +x
                   [0.1, 0.9],    # id 1: closest to +y
                   [0.6, 0.8],    # id 0, but closer to +y: wrong
                   [-1.0, 0.2]])  # id 2: closest to -x
PROBE_IDS = np.array([0, 1, 0, 2])


def test_enrol_is_the_normalised_mean_of_normalised_features():
    templates, ids = enrol([[2.0, 0.0], [0.0, 3.0], [0.0, -5.0]], [4, 4, 9])
    assert ids.tolist() == [4, 9] and templates.dtype == np.float32
    np.testing.assert_allclose(templates, [[2 ** -0.5, 2 ** -0.5], [0.0, -1.0]], atol=1e-6)  # scale ignored
    with pytest.raises(ValueError, match="must be >= 0"):
        enrol([[1.0, 0.0]], [-1])
    with pytest.raises(ValueError, match="nan or inf"):
        enrol([[np.nan, 0.0]], [0])


def test_rank1_hand_computed_on_three_identities():
    templates, ids = enrol(TRAIN, TRAIN_IDS)
    scores, found = match(PROBES, templates, ids)
    assert found[:, 0].tolist() == [0, 1, 1, 2]
    np.testing.assert_allclose(scores[:, 0], [0.9 / np.hypot(0.9, 0.1), 0.9 / np.hypot(0.1, 0.9), 0.8,
                                              1.0 / np.hypot(1.0, 0.2)], rtol=1e-6)
    result = rank1_by_band(found, probe_labels=PROBE_IDS, enrolled=ids, train_counts=COUNTS)
    assert result["rank1"] == {"many": 0.5, "few": 1.0, "one": 1.0, "zero": None, "overall": 0.75}
    assert result["n_probes"] == {"many": 2, "few": 1, "one": 1, "zero": 0, "overall": 4}
    assert result["n_identities"] == {"many": 1, "few": 1, "one": 1, "zero": 0}


def test_distractors_take_rank1_from_the_templates():
    templates, ids = enrol(TRAIN, TRAIN_IDS)
    # d1 beats template +y for probe 3 (0.96 > 0.8); d2 sits almost on probe 1 and beats template +x
    distractors = np.array([[0.8, 0.6], [0.9, 0.1 * 1.01]])
    scores, found = match(PROBES, templates, ids, distractors, k=2)
    assert found[:, 0].tolist() == [-1, 1, -1, 2]
    assert found[2].tolist() == [-1, 1]  # d1 (0.96), then template +y (0.8) above d2 (0.69)
    np.testing.assert_allclose(scores[2], [0.96, 0.8], rtol=1e-6)
    assert (np.diff(scores, axis=1) <= 0).all()  # best first
    result = rank1_by_band(found, probe_labels=PROBE_IDS, enrolled=ids, train_counts=COUNTS)
    assert result["rank1"]["many"] == 0.0 and result["rank1"]["overall"] == 0.5


def test_zero_shot_and_unenrolled_probes():
    # identity 3 has no training image: enrolled from a gallery split only (zero-shot)
    templates, ids = enrol(np.vstack([TRAIN, [[0.0, -1.0]]]), np.append(TRAIN_IDS, 3))
    probes = np.vstack([PROBES, [[0.1, -0.9], [0.0, -1.0]]])
    labels = np.append(PROBE_IDS, [3, 7])  # 7: never enrolled -> non-mated, left out of rank-1
    _, found = match(probes, templates, ids)
    result = rank1_by_band(found, probe_labels=labels, enrolled=ids, train_counts=COUNTS)
    assert result["rank1"]["zero"] == 1.0 and result["n_probes"]["zero"] == 1
    assert result["n_probes"]["overall"] == 5 and result["rank1"]["overall"] == 0.8


def test_identity_bands():
    bands = IdentityBands(many_above=20)
    assert [bands.band(n) for n in (0, 1, 2, 20, 21, 500)] == ["zero", "one", "few", "few", "many", "many"]
    assert bands.describe() == "many > 20, few 2-20, one 1, zero 0"
    assert IdentityBands(3).band(4) == "many"
    with pytest.raises(ValueError, match="many_above"):
        IdentityBands(0)
    with pytest.raises(ValueError, match=">= 0"):
        bands.band(-1)


def test_a_few_band_of_one_count_or_none_is_described_as_such():
    """(Trial 16 D9: `--many-above 1` printed `few 2-1`.) As ShotBands says an empty medium band: `none`."""
    assert IdentityBands(1).describe() == "many > 1, few none, one 1, zero 0"
    assert [IdentityBands(1).band(n) for n in (1, 2)] == ["one", "many"]
    assert IdentityBands(2).describe() == "many > 2, few 2, one 1, zero 0"
    assert IdentityBands(3).describe() == "many > 3, few 2-3, one 1, zero 0"


@pytest.mark.parametrize("k", [1, 4])
@pytest.mark.parametrize("chunk_size,query_chunk", [(1, 5), (7, 3), (64, 1000), (500, 2)])
def test_chunked_topk_equals_the_dense_computation(k, chunk_size, query_chunk):
    rng = np.random.default_rng(k * 100 + chunk_size)
    queries, gallery = rng.normal(size=(37, 8)), rng.normal(size=(211, 8)) * 3
    dense = l2_normalize(queries) @ l2_normalize(gallery).T  # (37, 211): fine on small data
    want = np.argsort(-dense, axis=1, kind="stable")[:, :k]
    scores, index = cosine_topk(queries, gallery, k, chunk_size=chunk_size, query_chunk=query_chunk)
    assert index.tolist() == want.tolist()
    np.testing.assert_allclose(scores, np.take_along_axis(dense, want, axis=1), rtol=1e-5, atol=1e-6)


def test_match_equals_dense_over_templates_and_distractors():
    rng = np.random.default_rng(3)
    templates, distractors, probes = rng.normal(size=(9, 6)), rng.normal(size=(300, 6)), rng.normal(size=(20, 6))
    ids = np.arange(10, 19)
    everything = np.vstack([templates, distractors])
    dense = l2_normalize(probes) @ l2_normalize(everything).T
    want = np.argsort(-dense, axis=1, kind="stable")[:, :3]
    want_ids = np.where(want < 9, ids[np.minimum(want, 8)], -1)
    scores, found = match(probes, templates, ids, distractors, k=3, chunk_size=16, query_chunk=7)
    assert found.tolist() == want_ids.tolist()
    np.testing.assert_allclose(scores, np.take_along_axis(dense, want, axis=1), rtol=1e-5, atol=1e-6)


def test_ties_go_to_the_lower_index_and_to_templates():
    scores, index = cosine_topk([[1.0, 0.0]], [[0.0, 1.0], [2.0, 0.0], [1.0, 0.0]], k=2, chunk_size=1)
    assert index.tolist() == [[1, 2]]
    _, found = match([[1.0, 0.0]], [[1.0, 0.0]], [5], distractors=[[3.0, 0.0]])
    assert found.tolist() == [[5]]


def test_bad_matching_arguments():
    with pytest.raises(ValueError, match="k=3 is more than the 2"):
        cosine_topk([[1.0, 0.0]], [[1.0, 0.0], [0.0, 1.0]], k=3)
    with pytest.raises(ValueError, match=r"gallery must be \(M, 2\)"):
        cosine_topk([[1.0, 0.0]], [[1.0, 0.0, 0.0]])
    with pytest.raises(ValueError, match="chunk_size must be a positive integer"):
        cosine_topk([[1.0, 0.0]], [[1.0, 0.0]], chunk_size=0)


@pytest.mark.parametrize("k,factor", [(1, 3), (5, 6)])
def test_memory_is_bounded_by_the_chunk_with_many_distractors(tmp_path, k, factor):
    """200,000 distractors on disk (a memmap, as a million would be): the dense 128 x 200,000 score matrix
    would take 102 MB; the chunked matching stays within a few float64 score blocks of 128 x 4,096."""
    n, m, d, chunk, qchunk = 128, 200_000, 16, 4096, 128
    rng = np.random.default_rng(0)
    probes = rng.normal(size=(n, d)).astype(np.float32)
    distractors = np.lib.format.open_memmap(tmp_path / "d.npy", mode="w+", dtype=np.float32, shape=(m, d))
    for start in range(0, m, 50_000):
        distractors[start:start + 50_000] = rng.normal(size=(50_000, d))
    planted = rng.choice(m, size=n, replace=False)  # each probe's own copy (scaled) among the distractors
    distractors[planted] = probes * 2.5
    distractors.flush()
    gallery = np.load(tmp_path / "d.npy", mmap_mode="r")
    tracemalloc.start()
    try:
        scores, index = cosine_topk(probes, gallery, k=k, chunk_size=chunk, query_chunk=qchunk)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    block = qchunk * chunk * 8  # float64 scores (rounded to float32 after: chunk-independent, trial 8 D5)
    assert peak < factor * block, f"peak {peak / 2**20:.1f} MiB, block {block / 2**20:.1f} MiB"
    assert peak < n * m * 4 / 10  # a tenth of the dense matrix
    assert index[:, 0].tolist() == planted.tolist()
    np.testing.assert_allclose(scores[:, 0], 1.0, rtol=1e-5)


def test_tar_at_far_on_constructed_scores():
    impostor = np.arange(10_000) / 10_000  # 0 .. 0.9999
    genuine = np.array([0.5, 0.99895, 0.99905, 0.9995, 1.0])
    result = tar_at_far(np.concatenate([genuine, impostor]), [1] * 5 + [0] * 10_000)
    assert result["n_genuine"] == 5 and result["n_impostor"] == 10_000
    at3, at4 = result["at_far"]["0.001"], result["at_far"]["0.0001"]
    assert at3["threshold"] == pytest.approx(0.9989) and at3["far"] == pytest.approx(1e-3)
    assert at3["tar"] == pytest.approx(0.8)  # all but 0.5 are above 0.9989
    assert at4["threshold"] == pytest.approx(0.9998) and at4["tar"] == pytest.approx(0.2)  # only 1.0
    assert at3["reliable"] and at4["reliable"]
    assert not tar_at_far([0.9, 0.1], [1, 0], fars=(1e-3,))["at_far"]["0.001"]["reliable"]


def test_far_is_never_exceeded_on_ties():
    assert threshold_at_far([0.5] * 10, 0.1) == 0.5  # nothing above 0.5: achieved FAR 0 <= 0.1
    result = tar_at_far([0.5] * 10 + [0.6], [0] * 10 + [1], fars=(0.1,))
    assert result["at_far"]["0.1"]["far"] == 0.0 and result["at_far"]["0.1"]["tar"] == 1.0
    with pytest.raises(ValueError, match="genuine and impostor"):
        tar_at_far([0.1, 0.2], [1, 1])
    with pytest.raises(ValueError, match="same must hold booleans or 0 / 1, got 2 at index 1"):
        tar_at_far([0.1, 0.2], [1, 2])
    with pytest.raises(ValueError, match=r"in \(0, 1\)"):
        threshold_at_far([0.1], 1.0)


def test_pair_scores_are_cosines():
    np.testing.assert_allclose(pair_scores([[1.0, 0.0], [3.0, 4.0]], [[0.0, 2.0], [6.0, 8.0]]), [0.0, 1.0],
                               atol=1e-6)


def test_open_set_rejection_on_constructed_scores():
    non_mated = np.linspace(0.1, 1.0, 10)  # probes of identities never enrolled (-1, or 9 not enrolled)
    mated = np.array([0.95, 0.85, 0.99])
    scores = np.concatenate([mated, non_mated])
    top_ids = np.array([0, 1, 2] + [0] * 10)
    labels = np.array([0, 1, 0] + [-1] * 9 + [9])  # the third mated probe is matched to the wrong identity
    result = open_set_identification(scores, top_ids, labels, enrolled=[0, 1, 2])
    assert result["n_mated"] == 3 and result["n_non_mated"] == 10
    at = result["at_fpir"]["0.1"]
    assert at["threshold"] == pytest.approx(0.9) and at["fpir"] == pytest.approx(0.1)
    assert at["rejection_rate"] == pytest.approx(0.9)
    assert at["tpir"] == pytest.approx(1 / 3)  # 0.95 right and above; 0.85 below; 0.99 wrong identity
    assert not result["at_fpir"]["0.01"]["reliable"]  # 10 non-mated probes cannot measure 1%


def test_open_set_rejects_an_unenrolled_face_through_matching():
    templates, ids = enrol(TRAIN, TRAIN_IDS)
    probes = np.vstack([PROBES, [[0.7, -0.7], [0.6, -0.8]]])  # two faces of an unknown person, far from all
    labels = np.append(PROBE_IDS, [-1, -1])
    scores, found = match(probes, templates, ids)
    result = open_set_identification(scores, found, labels, ids, fpirs=(0.4, 0.5))
    at = result["at_fpir"]["0.4"]
    assert at["threshold"] == pytest.approx(2 ** -0.5, rel=1e-6)  # the larger non-mated score (floor(0.8) = 0)
    assert at["rejection_rate"] == 1.0  # nothing non-mated is above it
    assert result["at_fpir"]["0.5"]["rejection_rate"] == 0.5  # one of two may pass
    assert at["tpir"] == 0.75  # the three right mated probes all score above ~0.707
    with pytest.raises(ValueError, match="mated and non-mated"):
        open_set_identification(scores[:4], found[:4], PROBE_IDS, ids)


def test_threshold_at_far_reaches_the_rate_float_products_fall_just_short_of():
    """0.29 * 100 is 28.999999999999996 in floats: floor gave the 29th largest impostor score, 28 accepted (FAR 0.28,
    its TAR lower) where 29 of 100 may be; 0.57 of 100 and 0.35 of 700 alike."""
    for far, n in ((0.29, 100), (0.57, 100), (0.35, 700), (0.1, 30), (1e-3, 3000)):
        impostor = np.arange(n, dtype=np.float64)
        t = threshold_at_far(impostor, far)
        assert np.sum(impostor > t) == round(far * n)
    result = tar_at_far(np.r_[np.arange(100.0), np.arange(100.0) + 0.5], np.r_[np.zeros(100), np.ones(100)], (0.29,))
    assert result["at_far"]["0.29"]["far"] == pytest.approx(0.29)
