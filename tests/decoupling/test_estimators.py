"""NCM, tau-norm and LWS as scikit-learn estimators: parameters, clone, fit returning self, learnt attributes
ending in `_`, numpy inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError as SklearnNotFitted
from sklearn.utils.validation import check_is_fitted

from openlt.decoupling import LWS, LWSClassifier, NCMClassifier, NotFittedError, TauNormClassifier, train_on_features
from openlt.errors import ConfigError

pytestmark = pytest.mark.usefixtures("single_thread")


def blobs(counts=(30, 12, 5), dim=6, seed=0):
    """Well-separated Gaussian blobs around 3 * e_c: float32 features (N, dim), int64 labels (N,)."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(len(counts)).repeat_interleave(torch.tensor(counts))
    x = 3 * torch.eye(dim)[labels] + 0.3 * torch.randn(len(labels), dim, generator=g)
    return x, labels


def learnt(estimator) -> set[str]:
    """The attributes that are not constructor parameters."""
    return set(vars(estimator)) - set(estimator.get_params(deep=False))


def estimators():
    weight = torch.randn(3, 6, generator=torch.Generator().manual_seed(1))
    return {"ncm": NCMClassifier(metric="euclidean", center=True), "tau": TauNormClassifier(weight, tau=None),
            "lws": LWS(weight, torch.zeros(3), epochs=2, batch_size=16)}


def fit(name, est, x, y):
    return est.fit(x, y, [30, 12, 5]) if name == "tau" else est.fit(x, y)


@pytest.mark.parametrize("name", ["ncm", "tau", "lws"])
def test_estimator_contract(name):
    est = estimators()[name]
    x, y = blobs()
    with pytest.raises(SklearnNotFitted):
        check_is_fitted(est)
    assert learnt(est) == set()  # the constructor stores its parameters and nothing else
    twin = clone(est)
    assert type(twin) is type(est) and twin is not est
    assert all(twin.get_params()[k] is v for k, v in est.get_params().items() if not isinstance(v, torch.Tensor))
    assert fit(name, est, x, y) is est
    check_is_fitted(est)
    assert learnt(est) and all(a.endswith("_") for a in learnt(est)), learnt(est)
    fresh = clone(est)  # a clone of a fitted estimator is unfitted, with the same parameters
    assert learnt(fresh) == set()
    with pytest.raises(NotFittedError):
        fresh.logits(x)
    assert torch.equal(fit(name, fresh, x, y).logits(x), est.logits(x))  # same parameters, same data: same fit
    # numpy in, the same numbers out (as torch tensors)
    from_numpy = fit(name, clone(est), x.numpy(), y.numpy()).logits(x.numpy())
    assert isinstance(from_numpy, torch.Tensor) and torch.allclose(from_numpy, est.logits(x))


def test_set_params_changes_the_fit():
    x, y = blobs()
    ncm = NCMClassifier().fit(x, y)
    other = clone(ncm).set_params(metric="euclidean").fit(x, y)
    assert other.metric == "euclidean" and not torch.allclose(other.logits(x), ncm.logits(x))
    with pytest.raises(ConfigError, match="NCM metric"):
        NCMClassifier().set_params(metric="manhattan").fit(x, y)  # checked where it is used, not only at init
    tau = TauNormClassifier(torch.eye(3, 6), tau=0.0)
    assert tau.chosen_tau == 0.0 and tau.set_params(tau=1.0).chosen_tau == 1.0


def test_lws_estimator_is_lws_classifier_trained_on_features():
    x, y = blobs()
    weight, bias = torch.randn(3, 6, generator=torch.Generator().manual_seed(2)), torch.randn(3)
    est = LWS(weight, bias, epochs=3, batch_size=8, lr=0.1, seed=4).fit(x, y)
    module = train_on_features(LWSClassifier(weight, bias), x, y, epochs=3, batch_size=8, lr=0.1, seed=4)
    assert torch.equal(est.scales_, module.scales.detach()) and est.scales_.shape == (3,)
    assert not torch.equal(est.scales_, torch.ones(3))  # trained
    assert torch.equal(est.predict(x), est.logits(x).argmax(1))
