"""KNN (Sun et al. 2022) is openlt's own chunked search: equal to pytorch-ood's KNN (scikit-learn's exact nearest
neighbours) on the same inputs however the work is chunked, with memory bounded by the chunk (issue 17: pytorch-ood's
fit held three N x D float32 copies, ~10 GB at iNaturalist size): the caller's features kept by reference and
untouched, normalised a block at a time when searched."""

import numpy as np
import pytest
import torch

pytest.importorskip("pytorch_ood", reason="the comparison runs pytorch-ood (pip install 'openlt[ood]')")
import pytorch_ood.detector as ood  # noqa: E402

from openlt.errors import ConfigError  # noqa: E402
from openlt.openset import KNN, detectors, load_score, save_score  # noqa: E402


def data(n: int = 300, m: int = 70, d: int = 24, seed: int = 0):
    """Clustered training features (with a zero row and two duplicated rows: ties) and queries (a zero one)."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(6, d, generator=g) * 3
    z = centres[torch.arange(n) % 6] + torch.randn(n, d, generator=g)
    z[5] = 0
    z[7] = z[8]
    x = torch.cat([centres[torch.arange(m - 1) % 6] + 1.5 * torch.randn(m - 1, d, generator=g), torch.zeros(1, d)])
    return z, torch.arange(n) % 6, x


def theirs(z, y, x, k) -> torch.Tensor:
    return -ood.KNN(None, k=k).fit_features(z.float(), y).predict_features(x.float()).float()


@pytest.mark.parametrize("k", [1, 7, 50, 300])
def test_knn_equals_pytorch_ood_whole_and_in_tiny_chunks(k, monkeypatch):
    z, y, x = data()
    expected = theirs(z, y, x, k)
    whole = KNN(k=k).fit(z, y).score(x)
    torch.testing.assert_close(whole, expected, rtol=0, atol=1e-6)
    # 5 queries at a time against 17 training rows at a time (k above 17: blocks of k), rows normalised 3 at a time
    monkeypatch.setattr(detectors, "_KNN_ROWS", 3)
    monkeypatch.setattr(detectors, "_KNN_QUERY_ROWS", 5)
    monkeypatch.setattr(detectors, "_KNN_SIMILARITIES", 5 * 17)
    chunked = KNN(k=k).fit(z, y).score(x)
    torch.testing.assert_close(chunked, expected, rtol=0, atol=1e-6)
    assert chunked.dtype == torch.float32 and chunked.shape == (len(x),)


def test_the_similarities_held_at_once_are_bounded_by_the_chunk_not_by_n_times_queries(monkeypatch):
    z, y, x = data(n=400, m=90)
    fitted = KNN(k=9).fit(z, y)
    shapes = []
    addmm = torch.addmm

    def spy(*args, **kwargs):
        out = addmm(*args, **kwargs)
        shapes.append(tuple(out.shape))
        return out

    monkeypatch.setattr(detectors, "_KNN_QUERY_ROWS", 32)
    monkeypatch.setattr(detectors, "_KNN_SIMILARITIES", 32 * 50)
    monkeypatch.setattr(torch, "addmm", spy)
    got = fitted.score(x)
    assert shapes and max(a * b for a, b in shapes) <= 32 * 50, shapes  # never 90 x 400
    assert len(shapes) == 3 * 8  # 3 query chunks (32, 32, 26) x 8 training chunks of 50
    torch.testing.assert_close(got, theirs(z, y, x, 9), rtol=0, atol=1e-6)


def test_fit_keeps_the_callers_features_without_a_copy_and_leaves_them_alone():
    z, y, x = data()
    before = z.clone()
    fitted = KNN(k=5).fit(z, y)
    assert torch.equal(z, before)  # not normalised in place
    assert fitted.train_features_.data_ptr() == z.data_ptr()  # kept by reference: no N x D copy
    norms = fitted.train_norms_
    assert norms.dtype == torch.float32 and norms[5] == 1e-12  # the zero row: clamped as pytorch-ood divides
    torch.testing.assert_close(norms[torch.arange(len(z)) != 5], z.norm(dim=1)[torch.arange(len(z)) != 5])
    half = KNN(k=5).fit(z.half(), y.numpy())  # the float16 cache: kept float16, converted a chunk at a time
    assert half.train_features_.dtype == torch.float16
    torch.testing.assert_close(half.score(x), theirs(z.half(), y, x, 5), rtol=0, atol=1e-6)
    arr = z.numpy().copy()
    KNN(k=5).fit(arr, y).score(x)
    assert np.array_equal(arr, before.numpy())


def test_scoring_copies_one_block_of_training_rows_at_a_time_not_the_whole_set(monkeypatch):
    """The float32 conversion / normalisation happens per block of the search (at most 2^24 / queries rows)."""
    z, y, x = data(n=400, m=90)
    fitted = KNN(k=9).fit(z.half(), y)
    rows = []
    normalise = detectors.normalised_rows

    def spy(feats, norms=None):
        rows.append(len(feats))
        return normalise(feats, norms)

    monkeypatch.setattr(detectors, "_KNN_QUERY_ROWS", 32)
    monkeypatch.setattr(detectors, "_KNN_SIMILARITIES", 32 * 50)
    monkeypatch.setattr(detectors, "normalised_rows", spy)
    got = fitted.score(x)
    assert max(rows) <= 50, rows  # queries (32) and training blocks (50) and the k-th rows (<= 32): never 400
    torch.testing.assert_close(got, theirs(z.half(), y, x, 9), rtol=0, atol=1e-6)


def test_saved_scores_of_raw_or_normalised_features_score_alike_and_a_new_one_is_kept_exactly(tmp_path):
    z, y, x = data()
    fitted = KNN(k=4).fit(z, y)
    for saved in (z.clone(), z / z.norm(dim=1, keepdim=True).clamp(min=1e-12)):  # raw, and what older openlt saved
        older = KNN(k=4).load_state_dict({"train_features": saved})
        torch.testing.assert_close(older.score(x), fitted.score(x), rtol=0, atol=1e-6)
    path = tmp_path / "knn.safetensors"
    save_score(path, fitted)
    again = load_score(path)
    assert torch.equal(again.train_features_, fitted.train_features_)
    assert torch.equal(again.score(x), fitted.score(x))
    with pytest.raises(ConfigError, match="eval.knn_k=400 is more than the 300 training images"):
        KNN(k=400).load_state_dict(fitted.state_dict()).score(x)
    assert KNN(k=4).fit(z, y).score(x[:0]).shape == (0,)
