"""KNN (Sun et al. 2022) is openlt's own chunked search: equal to pytorch-ood's KNN (scikit-learn's exact nearest
neighbours) on the same inputs however the work is chunked, with memory bounded by the chunk (issue 17: pytorch-ood's
fit held three N x D float32 copies, ~10 GB at iNaturalist size), one float32 buffer of the normalised training
features, the caller's features untouched."""

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


def test_fit_keeps_one_normalised_float32_copy_and_leaves_the_callers_features_alone():
    z, y, x = data()
    before = z.clone()
    fitted = KNN(k=5).fit(z, y)
    assert torch.equal(z, before)  # not normalised in place
    kept = fitted.train_features_
    assert kept.dtype == torch.float32 and kept.data_ptr() != z.data_ptr()
    norms = kept.norm(dim=1)
    assert norms[5] == 0 and torch.allclose(norms[torch.arange(len(z)) != 5], torch.ones(len(z) - 1), atol=1e-6)
    half = KNN(k=5).fit(z.half(), y.numpy())  # the float16 cache: converted chunk by chunk, scored alike
    torch.testing.assert_close(half.score(x), theirs(z.half(), y, x, 5), rtol=0, atol=1e-6)
    arr = z.numpy().copy()
    KNN(k=5).fit(arr, y)
    assert np.array_equal(arr, before.numpy())


def test_an_older_saved_score_of_raw_features_is_normalised_and_a_new_one_kept_exactly(tmp_path):
    z, y, x = data()
    fitted = KNN(k=4).fit(z, y)
    older = KNN(k=4).load_state_dict({"train_features": z.clone()})  # what openlt saved before: not normalised
    torch.testing.assert_close(older.score(x), fitted.score(x), rtol=0, atol=1e-6)
    path = tmp_path / "knn.safetensors"
    save_score(path, fitted)
    again = load_score(path)
    assert torch.equal(again.train_features_, fitted.train_features_)
    assert torch.equal(again.score(x), fitted.score(x))
    with pytest.raises(ConfigError, match="eval.knn_k=400 is more than the 300 training images"):
        KNN(k=400).load_state_dict(fitted.state_dict()).score(x)
    assert KNN(k=4).fit(z, y).score(x[:0]).shape == (0,)
