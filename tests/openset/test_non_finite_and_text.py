"""Open-set scores refuse NaN / inf logits at fit and score, and arrays of text, with a DataError naming the
argument (trial 10 D8, D9): were NaN scores, a NaN fit, NaN decided as "unknown", or torch's raw TypeError."""

import numpy as np
import pytest
import torch

from openlt import openset as O
from openlt.errors import ConfigError, DataError

RNG = np.random.default_rng(0)
Y = np.repeat(np.arange(3), 20)
L = RNG.normal(size=(60, 3)).astype(np.float32) * 3
L[np.arange(60), Y] += 4
BAD = L.copy()
BAD[[3, 7, 40]] = [[np.nan, 0, 0], [np.inf, 1, 1], [0, -np.inf, np.nan]]
ROWS = r"hold NaN or infinite values in 3 of 60 rows \(first: row 3\)"
TEXT = np.array(["a", "b", "c"] * 20)


@pytest.mark.parametrize("bad", [BAD, torch.from_numpy(BAD), {"logits": BAD}])
def test_openmax_fit_refuses_non_finite_training_logits(bad):
    with pytest.raises(DataError, match=rf"^OpenMax.fit: the logits {ROWS}$"):
        O.OpenMax(tail_size=5).fit(bad, Y)


def test_openmax_fit_chunks_and_score_refuse_non_finite_logits():
    with pytest.raises(DataError, match=rf"^OpenMax.fit, chunk 1: the logits hold NaN or infinite values in 1 of 30"):
        O.OpenMax(tail_size=5).fit_chunks(lambda: iter([(L[:30], Y[:30]), (BAD[30:], Y[30:])]))
    fitted = O.OpenMax(tail_size=5).fit(L, Y)
    with pytest.raises(DataError, match=rf"^OpenMax.score: the logits {ROWS}$"):
        fitted.score(BAD)
    assert torch.isfinite(fitted.score(L)).all()


@pytest.mark.parametrize("score,name", [(O.MaxSoftmax(), "msp"), (O.MaxLogit(), "max_logit"), (O.Energy(), "energy")])
def test_stateless_scores_refuse_non_finite_logits(score, name):
    with pytest.raises(DataError, match=rf"^{name}: the logits {ROWS}$"):
        score.score(BAD)
    with pytest.raises(DataError, match=rf"^{name}: the logits hold NaN or infinite values in 2 of 2 rows"):
        score.score(torch.full((2, 3), float("nan")))
    assert torch.isfinite(score.score(L)).all()


def test_rejector_refuses_nan_scores_instead_of_calling_them_unknown():
    rejector = O.Rejector("msp", 0.5, "manual")
    with pytest.raises(DataError, match=r"^Rejector.decide: scores hold NaN in 1 of 2 rows \(first: row 0\)"):
        rejector.decide(np.array([0, 1]), np.array([np.nan, 0.9]))
    with pytest.raises(DataError, match="scores hold NaN in 2 of 2 rows"):
        rejector.decide(torch.tensor([0, 1]), torch.tensor([float("nan")] * 2))
    assert rejector.decide(np.array([0, 1, 2]), np.array([-np.inf, np.inf, 0.5])).tolist() == [-1, 1, 2]


@pytest.mark.parametrize("fit", [
    lambda: O.OpenMax(tail_size=2).fit(L, TEXT),
    lambda: O.OpenMax(tail_size=2).fit({"logits": L, "labels": TEXT}),
    lambda: O.KNN().fit(RNG.random((60, 4)), TEXT),
    lambda: O.Mahalanobis().fit(RNG.random((60, 4)), TEXT),
], ids=["openmax", "openmax-dict", "knn", "mahalanobis"])
def test_text_labels_are_a_data_error_naming_the_labels(fit):
    with pytest.raises(DataError, match=r"^labels must hold integer class ids \(map class names to ids first\), "
                                        r"got a numpy array of dtype <U1$"):
        fit()


def test_text_logits_and_features_are_a_data_error():
    with pytest.raises(DataError, match=r"^logits must hold numbers \(int or float\), got a numpy array of dtype <U"):
        O.MaxSoftmax().score(np.array([["1.0", "2.0"]]))
    with pytest.raises(DataError, match=r"^features must hold numbers \(int or float\), got a numpy array of dtype object$"):
        O.KNN().fit(np.array([["a", 1.0]], dtype=object), [0])


def test_fractional_openmax_labels_are_refused_not_truncated():
    with pytest.raises(DataError, match="labels must be integer class ids, got non-integral values"):
        O.OpenMax(tail_size=5).fit(L, Y + 0.5)


def test_numpy_integer_options_are_accepted_as_python_ones(tmp_path):
    from openlt.openset.base import load_score, save_score
    feats = RNG.random((60, 4)).astype(np.float32)
    for a, b in ((O.OpenMax(tail_size=np.int64(5), alpha=np.int64(2)), O.OpenMax(tail_size=5, alpha=2)),):
        torch.testing.assert_close(a.fit(L, Y).score(L), b.fit(L, Y).score(L))
        save_score(tmp_path / "s.safetensors", a)
        assert load_score(tmp_path / "s.safetensors").options() == {"tail_size": 5, "alpha": 2, "distance": "eucos"}
    torch.testing.assert_close(O.KNN(k=np.int64(3)).fit(feats, Y).score(feats), O.KNN(k=3).fit(feats, Y).score(feats))
    assert O.Energy(temperature=np.float32(2.0)).score(L).shape == (60,)
    for build, says in ((lambda: O.OpenMax(tail_size=True), r"eval.openmax_tail \(OpenMax's tail_size\) must be an "
                                                             r"integer >= 2"),
                        (lambda: O.KNN(k=np.float64(3.0)), r"eval.knn_k \(KNN's k\) must be an integer >= 1"),
                        (lambda: O.Energy(temperature="1"), "energy temperature must be > 0")):
        with pytest.raises(ConfigError, match=says):
            build()


@pytest.mark.parametrize("temperature", [1e-39, 1e-30, 1e-8])
def test_energy_of_a_tiny_temperature_is_finite_and_tends_to_the_max_logit(temperature):
    # T * logsumexp(logits / T) overflowed to inf (then NaN) for T = 1e-39, a value the temperature check accepts;
    # the same value computed from the largest logit stays finite and tends to max-logit as T -> 0
    scores = O.Energy(temperature=temperature).score(L)
    assert torch.isfinite(scores).all()
    torch.testing.assert_close(scores, torch.from_numpy(L).max(dim=1).values, rtol=0, atol=1e-6)


def test_energy_at_the_usual_temperatures_is_t_logsumexp_of_logits_over_t():
    logits = torch.from_numpy(L)
    for temperature in (1.0, 2.0, 1000.0):
        torch.testing.assert_close(O.Energy(temperature=temperature).score(L),
                                   temperature * torch.logsumexp(logits / temperature, dim=1))
