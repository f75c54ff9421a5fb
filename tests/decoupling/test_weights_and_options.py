"""The decoupled classifiers refuse non-finite weights and biases at construction, a tau outside the config's rule,
text arrays of labels / features, and accept numpy integers for their counts (trial 10 D9, D14, D15)."""

import numpy as np
import pytest
import torch

from openlt import decoupling as D
from openlt.errors import ConfigError, DataError

X = np.random.default_rng(0).random((6, 8)).astype("f4")
Y = np.array([0, 1, 2, 0, 1, 2])
W = torch.randn(3, 8)


def bad_weight(value):
    w = W.clone()
    w[1, 2] = value
    return w


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("build", [lambda w: D.TauNormClassifier(w, tau=1.0), lambda w: D.TauNormClassifier(w, tau=None),
                                   lambda w: D.LWS(w, epochs=1), lambda w: D.LWSClassifier(w),
                                   lambda w: D.tau_normalize(w, None, 1.0)],
                         ids=["taunorm", "taunorm-search", "lws", "lws-module", "tau_normalize"])
def test_non_finite_weights_are_refused_at_construction(build, value):
    with pytest.raises(ConfigError, match=r"^classifier weight holds NaN or infinite values in 1 of 3 rows "
                                          r"\(first: row 1\)$"):
        build(bad_weight(value))


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_bias_is_refused_at_construction(value):
    bias = torch.zeros(3)
    bias[2] = value
    for build in (lambda: D.LWS(W, bias, epochs=1), lambda: D.LWSClassifier(W, bias)):
        with pytest.raises(ConfigError, match=r"^classifier bias holds NaN or infinite values in 1 of 3 classes "
                                              r"\(first: class 2\)$"):
            build()


def test_finite_weights_still_fit_and_predict():
    assert D.TauNormClassifier(W, tau=1.0).predict(X).shape == (6,)
    lws = D.LWS(W, torch.zeros(3), epochs=1, batch_size=4).fit(X, Y)
    assert lws.predict(X).shape == (6,)


@pytest.mark.parametrize("tau", [-1.0, -1e-9, 10.5, float("nan"), float("inf"), "1", True, None, [1.0]])
def test_tau_follows_the_config_rule(tau):
    if tau is None:  # None: chosen by fit
        D.TauNormClassifier(W, tau=None)
        return
    with pytest.raises(ConfigError, match=r"^tau must be a number >= 0 and <= 10 \(w / \|\|w\|\|\^tau\), got "):
        D.TauNormClassifier(W, tau=tau)
    with pytest.raises(ConfigError, match=r"^tau must be a number >= 0 and <= 10"):
        D.tau_normalize(W, None, tau)


@pytest.mark.parametrize("tau", [0, 0.0, 1, 2.0, 10, np.float32(0.5), np.int64(1)])
def test_taus_in_the_rule_are_accepted(tau):
    expected = W / W.norm(dim=1, keepdim=True).pow(float(tau))
    torch.testing.assert_close(D.TauNormClassifier(W, tau=tau).normalized_weight, expected)


def test_numpy_integer_options_are_accepted_bools_refused():
    a = D.LWS(W, epochs=np.int64(2), batch_size=np.int64(4), seed=0).fit(X, Y)
    b = D.LWS(W, epochs=2, batch_size=4, seed=0).fit(X, Y)
    torch.testing.assert_close(a.logits(X), b.logits(X))
    for key, value in (("epochs", True), ("batch_size", False), ("epochs", 1.5), ("batch_size", 0), ("epochs", "2")):
        high = 100000 if key == "epochs" else 1048576  # the config's bounds (train.epochs / train.batch_size)
        with pytest.raises(ConfigError, match=rf"^{key} \(train\.{key}\) must be an integer >= 1 and <= {high}, "
                                              rf"got {value!r}$"):
            D.LWS(W, **{key: value}).fit(X, Y)
    with pytest.raises(ConfigError, match=r"^lr \(train\.lr\) must be a finite number > 0 and <= 100, got '0.1'$"):
        D.LWS(W, lr="0.1").fit(X, Y)


@pytest.mark.parametrize("fit", [lambda y: D.NCMClassifier().fit(X, y), lambda y: D.LWS(W, epochs=1).fit(X, y),
                                 lambda y: D.TauNormClassifier(W, tau=None).fit(X, y, [10, 5, 1])],
                         ids=["ncm", "lws", "taunorm"])
def test_text_labels_are_a_data_error(fit):
    with pytest.raises(DataError, match=r"labels must hold integer class ids \(map class names to ids first\), "
                                        r"got a numpy array of dtype <U1$"):
        fit(np.array(["a", "b", "c", "a", "b", "c"]))


def test_text_features_and_weights_are_named():
    with pytest.raises(DataError, match=r"^features must hold numbers \(int or float\), got a numpy array of dtype <U3$"):
        D.NCMClassifier().fit(np.array([["0.1"] * 8] * 6), Y)
    with pytest.raises(ConfigError, match=r"^weight must hold numbers \(int or float\), got a numpy array of dtype <U1$"):
        D.TauNormClassifier(np.array([["a"] * 8] * 3))
