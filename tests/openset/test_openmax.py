"""OpenMax on toy logits where the answer is known: points at a class mean stay known, far points are unknown."""

import numpy as np
import pytest
import torch

from openlt.errors import ConfigError, DataError
from openlt.openset import NotFittedError, OpenMax, build_score, load_score, open_score, save_score
from openlt.openset import openmax
from openlt.openset.openmax import distances, fit_weibull, weibull_cdf

K = 4


def toy_train(n: int = 60, seed: int = 0) -> dict:
    """Logits of K well-separated classes: class c's images near 6 * e_c."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(K).repeat_interleave(n)
    logits = 6 * torch.eye(K)[labels] + 0.5 * torch.randn(K * n, K, generator=g)
    return {"logits": logits, "labels": labels}


@pytest.fixture(scope="module")
def fitted() -> OpenMax:
    return OpenMax(tail_size=20, distance="euclidean").fit(toy_train())


def test_a_point_at_a_class_mean_stays_known_and_a_far_point_goes_unknown(fitted):
    means = fitted.means_
    far = torch.tensor([[60.0, 55.0, 50.0, 45.0]])  # much farther from every MAV than any training image
    probs = fitted.probabilities({"logits": torch.cat([means, far])})
    assert probs.shape == (K + 1, K + 1)
    assert torch.allclose(probs.sum(dim=1), torch.ones(K + 1))
    assert (probs[:K, :K].argmax(dim=1) == torch.arange(K)).all()  # each mean keeps its own class
    assert (probs[:K, -1] < 0.05).all()  # ... and almost no unknown mass
    assert probs[K].argmax() == K and probs[K, -1] > 0.99  # the far point: the unknown class
    scores = fitted.score({"logits": torch.cat([means, far])})
    assert (scores[:K] > 0.9).all() and scores[K] < 0.01  # higher = more known


def test_the_mav_is_the_mean_of_correctly_classified_images_only():
    train = toy_train()
    train["logits"][0] = torch.tensor([0.0, 9.0, 0.0, 0.0])  # a class-0 image classified as 1: left out
    om = OpenMax(tail_size=5).fit(train)
    correct = train["logits"][1:60]
    assert torch.allclose(om.means_[0], correct.mean(dim=0), atol=1e-6)


def test_unknown_activation_is_the_mass_taken_from_the_top_alpha_classes():
    om = OpenMax(tail_size=5, alpha=2, distance="euclidean").fit(toy_train())
    v = torch.tensor([[3.0, 2.0, 1.0, 0.5]])
    d = distances(v.expand(K, K), om.means_, "euclidean")
    cdf = weibull_cdf(d, om.shape_, om.scale_, om.shift_).float()
    omega = torch.tensor([1.0, 0.5, 0.0, 0.0]) * cdf  # ranks 0 and 1 of alpha = 2: weights 2/2 and 1/2
    revised = v[0] * (1 - omega)
    expected = torch.softmax(torch.cat([revised, (v[0] - revised).sum().view(1)]), dim=0)
    assert torch.allclose(om.probabilities({"logits": v})[0], expected, atol=1e-6)


def test_alpha_defaults_to_at_most_ten_classes(fitted):
    assert fitted.summary()["alpha"] == K  # min(10, K)
    assert OpenMax(alpha=3).fit(toy_train()).summary()["alpha"] == 3


def test_every_distance_runs_and_separates_a_far_point():
    for kind in ("eucos", "euclidean", "cosine"):
        om = OpenMax(tail_size=10, distance=kind).fit(toy_train())
        near, far = om.score({"logits": om.means_[:1]}), om.score({"logits": torch.tensor([[-20.0, 30.0, -20.0, 30.0]])})
        assert near.item() > far.item(), kind


def test_the_libmr_style_fit_is_near_zero_below_the_tail_and_near_one_past_it():
    rng = np.random.default_rng(0)
    distances_ = np.sort(np.abs(rng.normal(3.0, 0.5, 500)))
    tail = distances_[-20:]
    shape, scale, shift, degenerate = fit_weibull(tail)
    assert not degenerate and shift == pytest.approx(10000 - tail.min())
    cdf = weibull_cdf(torch.tensor([3.0, tail.min(), tail.max(), tail.max() + 1.0], dtype=torch.float64), torch.tensor(shape),
                      torch.tensor(scale), torch.tensor(shift))
    assert cdf[0] < 0.01 and cdf[1] < 0.5 < cdf[2] and cdf[3] > 1 - 1e-6  # a typical image is inside the class
    assert (cdf.diff() >= 0).all()


def test_a_degenerate_tail_becomes_a_step_at_its_largest_distance():
    shape, scale, shift, degenerate = fit_weibull(np.array([2.0, 2.0, 2.0]))
    assert degenerate and scale == 2.0 and shift == 0.0
    step = weibull_cdf(torch.tensor([1.0, 3.0]), torch.tensor(shape), torch.tensor(scale), torch.tensor(shift))
    assert step[0] < 1e-6 and step[1] > 1 - 1e-6


def test_a_class_with_no_correct_image_falls_back_to_all_its_images():
    train = toy_train(n=5)
    train["logits"][train["labels"] == 3] = torch.tensor([0.0, 0.0, 9.0, 0.0])  # class 3 always read as 2
    om = OpenMax(tail_size=5).fit(train)
    assert om.summary()["classes_without_correct_train_images"] == [3]
    assert torch.isfinite(om.score({"logits": torch.randn(7, K)})).all()


def test_options_are_checked_with_clear_errors():
    with pytest.raises(ConfigError, match="openmax_tail"):
        OpenMax(tail_size=1)
    with pytest.raises(ConfigError, match="openmax_alpha"):
        OpenMax(alpha=0)
    with pytest.raises(ConfigError, match="eucos"):
        OpenMax(distance="manhattan")
    with pytest.raises(ConfigError, match="more than the 4 known classes"):
        OpenMax(alpha=5).fit(toy_train())
    with pytest.raises(DataError, match="class 3 has no training image"):
        OpenMax().fit({"logits": torch.randn(6, K), "labels": torch.tensor([0, 1, 2, 0, 1, 2])})


def test_scoring_before_fitting_is_a_named_error():
    with pytest.raises(NotFittedError):
        OpenMax().score({"logits": torch.randn(2, K)})
    with pytest.raises(NotFittedError, match="fitted"):
        open_score("openmax", {"logits": torch.randn(2, K)})


def test_save_and_load_give_the_same_scores(fitted, tmp_path):
    save_score(tmp_path / "om.safetensors", fitted)
    again = load_score(tmp_path / "om.safetensors")
    x = {"logits": 4 * torch.randn(9, K)}
    assert isinstance(again, OpenMax) and again.options() == fitted.options()
    assert torch.equal(again.score(x), fitted.score(x))


def test_built_from_the_eval_config():
    from openlt.config import build_config

    cfg = build_config(None, ["eval.open_score=openmax", "eval.openmax_tail=7", "eval.openmax_alpha=2",
                              "eval.openmax_distance=cosine"])
    om = build_score(cfg.eval.open_score, cfg.eval)
    assert om.options() == {"tail_size": 7, "alpha": 2, "distance": "cosine"}
    at_a_mean = {"logits": om.fit(toy_train()).means_[:1]}
    assert om.score(at_a_mean).item() > 0.9


def _chunked(train: dict, size: int, calls: list):
    def chunks():
        calls.append(1)
        return zip(train["logits"].split(size), train["labels"].split(size))
    return chunks


@pytest.mark.parametrize("distance", ["eucos", "euclidean", "cosine"])
def test_a_fit_from_chunks_equals_the_fit_on_all_rows_bit_for_bit(distance, monkeypatch):
    train = toy_train(n=50, seed=3)
    train["logits"][:7] = torch.tensor([0.0, 0.0, 0.0, 9.0])  # class 0 loses 7 images: uneven chunks and classes
    whole = OpenMax(tail_size=10, distance=distance).fit(train)
    monkeypatch.setattr(openmax, "_SUM_ROWS", 5)  # and the chunks' rows taken 5 at a time
    calls = []
    parts = OpenMax(tail_size=10, distance=distance).fit_chunks(_chunked(train, 37, calls))
    assert len(calls) == 2  # the means, then the distances: no pass over the rows per class
    for name, value in whole.state_dict().items():
        assert torch.equal(value, parts.state_dict()[name]), name
    probe = {"logits": torch.randn(30, K, generator=torch.Generator().manual_seed(1)) * 4}
    assert torch.equal(whole.score(probe), parts.score(probe))


def test_a_chunked_fit_takes_a_third_pass_only_for_classes_without_a_correct_image():
    train = toy_train(n=20)
    train["logits"][train["labels"] == 2] = torch.tensor([0.0, 9.0, 0.0, 0.0])  # no class-2 image is correct
    calls = []
    om = OpenMax(tail_size=5).fit_chunks(_chunked(train, 16, calls))
    assert len(calls) == 3
    assert om.fallback_.tolist() == [False, False, True, False]
    assert torch.allclose(om.means_[2], torch.tensor([0.0, 9.0, 0.0, 0.0]))
    assert torch.equal(om.means_, OpenMax(tail_size=5).fit(train).means_)


def test_a_bad_chunk_is_named():
    train = toy_train(n=10)
    bad_labels = train["labels"].clone()
    bad_labels[-1] = K  # out of range, in the last chunk of 10 rows
    with pytest.raises(DataError, match=r"chunk 3: training labels must be in \[0, 4\)"):
        OpenMax(tail_size=5).fit_chunks(lambda: zip(train["logits"].split(10), bad_labels.split(10)))
    with pytest.raises(ValueError, match="chunk 1: logits have 3 columns, the chunks before 4"):
        OpenMax(tail_size=5).fit_chunks(lambda: iter([(train["logits"][:5], train["labels"][:5]),
                                                      (train["logits"][5:9, :3], train["labels"][5:9])]))
    with pytest.raises(ValueError, match="no training rows"):
        OpenMax(tail_size=5).fit_chunks(lambda: iter([]))


def test_chunks_that_change_between_passes_are_refused():
    train = toy_train(n=10)
    calls = []

    def shrinking():
        calls.append(1)
        rows = 40 if len(calls) == 1 else 30
        return iter([(train["logits"][:rows], train["labels"][:rows])])

    with pytest.raises(ValueError, match="gave 30 rows, its first pass 40"):
        OpenMax(tail_size=5).fit_chunks(shrinking)
