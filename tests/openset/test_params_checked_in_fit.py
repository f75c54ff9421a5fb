"""Every public estimator's parameters are checked in fit and score / predict too, not only by the constructor
(scikit-learn validates in fit): `set_params` (GridSearchCV's `clone(est).set_params(...)`) and an assigned
attribute got past the constructor's checks (trial 14b D3: OpenMax().set_params(tail_size=-5) fitted and scored,
Energy().set_params(temperature=0).score gave NaN, KNN k=0 an IndexError, OpenMax alpha=0 a ZeroDivisionError).
Each bad value is refused with the constructor's ConfigError, word for word, naming the parameter."""

import math

import numpy as np
import pytest
import torch
from sklearn.base import clone

from openlt.decoupling import LWS, NCMClassifier, TauNormClassifier
from openlt.errors import ConfigError
from openlt.openset import SCORES

pytest.importorskip("pytorch_ood", reason="the detectors wrap pytorch-ood (pip install 'openlt[ood]')")

N, D, K = 60, 8, 3
RNG = np.random.default_rng(0)
FEATS = RNG.normal(size=(N, D)).astype(np.float32)
LOGITS = RNG.normal(size=(N, K)).astype(np.float32)
LABELS = np.arange(N) % K
W = RNG.normal(size=(K, D)).astype(np.float32)
HEAD = (torch.from_numpy(W), torch.zeros(K))
COUNTS = np.array([20, 20, 20])
NAN = float("nan")
INF = float("inf")


def image_logits(images: torch.Tensor) -> torch.Tensor:
    return images.flatten(1)[:, :K] * 3


IMAGES = torch.rand(2, 1, 2, 2)

# how each estimator is built (its valid parameters), fitted, and used after the fit (each way)
ESTIMATORS = {
    "openmax": (lambda **kw: SCORES.get("openmax")(**{"tail_size": 5, **kw}), lambda e: e.fit(LOGITS, LABELS),
                [lambda e: e.score(LOGITS), lambda e: e.probabilities(LOGITS), lambda e: e.unknown_probability(LOGITS),
                 lambda e: e.check_setting({"num_classes": K})]),
    "energy": (lambda **kw: SCORES.get("energy")(**kw), lambda e: e.fit(LOGITS), [lambda e: e.score(LOGITS)]),
    "knn": (lambda **kw: SCORES.get("knn")(**{"k": 3, **kw}), lambda e: e.fit(FEATS, LABELS),
            [lambda e: e.score(FEATS), lambda e: e.check_setting({"num_train": N})]),
    "vim": (lambda **kw: SCORES.get("vim")(**{"dim": 2, **kw}), lambda e: e.fit(FEATS, LABELS, head=HEAD),
            [lambda e: e.score(FEATS), lambda e: e.check_setting({"feature_dim": D, "num_train": N})]),
    "react": (lambda **kw: SCORES.get("react")(**kw), lambda e: e.fit(FEATS, LABELS, head=HEAD),
              [lambda e: e.score(FEATS), lambda e: e.check_setting({"head": "linear"})]),
    "odin": (lambda **kw: SCORES.get("odin")(**kw), lambda e: e.fit(LOGITS),
             [lambda e: e.score_images(image_logits, IMAGES), lambda e: e.score({"model_score": torch.zeros(2)})]),
    "taunorm": (lambda **kw: TauNormClassifier(**{"weight": W, **kw}), lambda e: e.fit(FEATS, LABELS, COUNTS),
                [lambda e: e.predict(FEATS), lambda e: e.logits(FEATS), lambda e: e.normalized_weight]),
    "lws": (lambda **kw: LWS(**{"weight": W, "epochs": 1, "batch_size": 16, **kw}), lambda e: e.fit(FEATS, LABELS),
            [lambda e: e.predict(FEATS), lambda e: e.logits(FEATS)]),
    "ncm": (lambda **kw: NCMClassifier(**kw), lambda e: e.fit(FEATS, LABELS),
            [lambda e: e.predict(FEATS), lambda e: e.logits(FEATS)]),
}
CLASSES = {name: type(make()) for name, (make, _, _) in ESTIMATORS.items()}

COUNT = [0, -3, 2.5, NAN, INF, True, "3", [3]]  # an integer parameter's bad values (None where it is not allowed)
POSITIVE = [0, -1, -1e-9, NAN, INF, -INF, True, "1", None, [1.0]]
NON_NEGATIVE = [-0.1, NAN, INF, True, np.bool_(True), "0.1", None]
BAD_WEIGHTS = [np.full((K, D), NAN, np.float32), np.zeros(D, np.float32), "x", None, True, np.array([["a"] * D] * K)]

# (estimator, parameter, bad values, what the message starts with: the parameter named)
TABLE = [
    ("openmax", "tail_size", [*COUNT, 1, None, np.int64(1)], r"eval\.openmax_tail \(OpenMax's tail_size\) must be "),
    ("openmax", "alpha", COUNT, r"eval\.openmax_alpha \(OpenMax's alpha\) must be "),
    ("openmax", "distance", ["bogus", "", None, 3, True, ["eucos"], np.array(["eucos", "cosine"])],
     r"eval\.openmax_distance \(OpenMax's distance\) must be one of eucos, euclidean, cosine, got "),
    ("energy", "temperature", [*POSITIVE, 1e300, 2e6], r"energy temperature must be > 0 and <= 1e\+06 \(a finite number\)"),
    ("knn", "k", [*COUNT, None], r"eval\.knn_k \(KNN's k\) must be an integer >= 1"),
    ("vim", "dim", COUNT, r"eval\.vim_dim \(ViM's dim\) must be an integer >= 1"),
    ("react", "percentile", [*POSITIVE, 1.5, np.float32(1.01)], r"eval\.react_percentile \(ReAct's percentile\) must be "),
    ("odin", "temperature", [*POSITIVE, 1e7], r"eval\.odin_temperature \(ODIN's temperature\) must be a finite number > 0 and "
     r"<= 1e\+06, got "),
    ("odin", "eps", NON_NEGATIVE, r"eval\.odin_eps \(ODIN's eps\) must be a finite number >= 0, got "),
    ("taunorm", "weight", BAD_WEIGHTS, r"(classifier )?weight "),
    ("taunorm", "tau", [-1, -1e-9, 10.5, NAN, INF, True, np.bool_(False), "1", [1.0]],
     r"tau must be a number >= 0 and <= 10 \(w / \|\|w\|\|\^tau\), got "),
    ("lws", "weight", BAD_WEIGHTS, r"(classifier )?weight "),
    ("lws", "bias", [np.full(K, NAN, np.float32), np.zeros(K + 1, np.float32), "x", True, np.array(["a"] * K)],
     r"(classifier )?bias "),
    # the config's bounds of train.epochs / batch_size / lr / momentum / weight_decay (trial 15 item 9: momentum 5
    # diverged to -2e10, lr 1e39 a raw overflow error)
    ("lws", "epochs", [*COUNT, None, 100001], r"epochs \(train\.epochs\) must be an integer >= 1 and <= 100000, got "),
    ("lws", "batch_size", [*COUNT, None, 2 ** 20 + 1],
     r"batch_size \(train\.batch_size\) must be an integer >= 1 and <= 1048576, got "),
    ("lws", "lr", [*NON_NEGATIVE, 0, 100.5, 1e39], r"lr \(train\.lr\) must be a finite number > 0 and <= 100, got "),
    ("lws", "momentum", [*NON_NEGATIVE, 1.0, 5.0], r"momentum \(train\.momentum\) must be a finite number >= 0 and < 1, "
     r"got "),
    ("lws", "weight_decay", [*NON_NEGATIVE, 1.5],
     r"weight_decay \(train\.weight_decay\) must be a finite number >= 0 and <= 1, got "),
    ("lws", "sampler", ["bogus", "", None, 3, True, ["instance"]], r"sampler must be one of class_aware, "),
    ("lws", "seed", [-1, 2 ** 32, 1.5, NAN, True, "0", None], r"seed must be an integer >= 0 and < 2\*\*32, got "),
    ("ncm", "metric", ["manhattan", "", None, 3, True, ["cosine"], np.array(["cosine", "euclidean"])],
     r"NCM metric must be 'cosine' or 'euclidean', got "),
    ("ncm", "normalize", ["yes", 1, 0, None, NAN], r"NCM normalize must be True or False, got "),
    ("ncm", "center", ["no", 1, 0, None, NAN], r"NCM center must be True or False, got "),
]
CASES = [pytest.param(name, param, bad, says, id=f"{name}-{param}-{i}")
         for name, param, bads, says in TABLE for i, bad in enumerate(bads)]


def refusal(action) -> str:
    with pytest.raises(ConfigError) as caught:
        action()
    return str(caught.value)


@pytest.mark.parametrize("name, param, bad, says", CASES)
def test_a_bad_parameter_is_refused_by_the_constructor_fit_and_score_alike(name, param, bad, says):
    make, fit, uses = ESTIMATORS[name]
    message = refusal(lambda: make(**{param: bad}))
    assert "\n" not in message and __import__("re").match(says, message), message
    if not isinstance(bad, np.ndarray) and param not in ("weight", "bias"):  # an array's repr spans lines
        assert message.endswith(f", got {bad!r}"), message
    assert refusal(lambda: fit(make().set_params(**{param: bad}))) == message  # GridSearchCV: clone().set_params()
    assert refusal(lambda: fit(clone(make()).set_params(**{param: bad}))) == message
    for use in uses:
        fitted = fit(make())
        assert refusal(lambda: use(fitted.set_params(**{param: bad}))) == message  # changed after the fit
    assigned = make()
    setattr(assigned, param, bad)  # a direct assignment gets past set_params too
    assert refusal(lambda: fit(assigned)) == message


def test_every_estimator_and_every_parameter_is_in_the_table():
    for cls in [*(SCORES.get(name) for name in SCORES.names()), TauNormClassifier, LWS, NCMClassifier]:
        params = set(cls._get_param_names())  # scikit-learn's: the constructor's named parameters
        assert set(cls.param_checks) == params, cls.__name__  # one declaration covers every parameter
        name = next((n for n, c in CLASSES.items() if c is cls), None)
        if params:
            assert name is not None, f"{cls.__name__} has parameters but no row"
            assert {p for n, p, _, _ in TABLE if n == name} == params, cls.__name__


@pytest.mark.parametrize("name", ESTIMATORS)
def test_valid_parameters_still_fit_score_and_clone(name):
    make, fit, uses = ESTIMATORS[name]
    est = make()
    twin = clone(est)
    assert twin.get_params().keys() == est.get_params().keys()
    out = uses[0](fit(twin))
    assert len(out) in (2, N) and torch.isfinite(torch.as_tensor(out).float()).all()


def test_numpy_numbers_and_numpy_bools_where_they_are_valid():
    assert NCMClassifier(normalize=np.bool_(False), center=np.bool_(True)).fit(FEATS, LABELS).predict(FEATS).shape == (N,)
    assert SCORES.get("openmax")(tail_size=np.int64(5), alpha=np.int64(2)).fit(LOGITS, LABELS).score(LOGITS).shape == (N,)
    assert LWS(W, epochs=np.int64(1), seed=np.int64(3), lr=np.float32(0.1)).fit(FEATS, LABELS).predict(FEATS).shape == (N,)
    assert math.isfinite(float(SCORES.get("energy")(temperature=np.float32(2.0)).score(LOGITS)[0]))


# trial 15 item 9: a parameter the fit uses, changed after it, was reported but not used (OpenMax tail_size 20 ->
# 5: scores of the tail-20 fit, summary() and save_score saying 5; NCM center=True after fit ignored by logits).
# Each use of the fit now refuses it naming the parameter (and its config key), until fit again or set back.
CHANGED = [  # (estimator, parameter, a valid value other than the fitted one, the message's start)
    ("openmax", "tail_size", 7, r"eval\.openmax_tail \(OpenMax's tail_size\) is 7, but the fit used 5: fit again"),
    ("openmax", "distance", "cosine", r"eval\.openmax_distance \(OpenMax's distance\) is 'cosine', but the fit used "),
    ("vim", "dim", 3, r"eval\.vim_dim \(ViM's dim\) is 3, but the fit used 2: fit again, or set dim back"),
    ("react", "percentile", 0.5, r"eval\.react_percentile \(ReAct's percentile\) is 0\.5, but the fit used 0\.9"),
    ("ncm", "center", True, r"model\.head\.ncm_center \(NCM center\) is True, but the fit used False: fit again"),
    ("ncm", "normalize", False, r"NCM normalize is False, but the fit used True: fit again, or set normalize back"),
    ("ncm", "metric", "euclidean", r"model\.head\.ncm_metric \(NCM metric\) is 'euclidean', but the fit used 'cosine'"),
    ("taunorm", "tau", 0.5, r"TauNormClassifier's tau is 0\.5, but the fit used 1\.0: fit again"),
    ("taunorm", "weight", W * 2, r"TauNormClassifier's weight differs from the one the fit used: fit again"),
    ("lws", "lr", 0.1, r"lr \(train\.lr\) is 0\.1, but the fit used 0\.2: fit again, or set lr back"),
    ("lws", "seed", 1, r"seed is 1, but the fit used 0: fit again"),
    ("lws", "weight", W * 2, r"LWS's weight differs from the one the fit used: fit again, or set weight back"),
]


@pytest.mark.parametrize("name, param, value, says", CHANGED, ids=[f"{n}-{p}" for n, p, _, _ in CHANGED])
def test_a_parameter_changed_after_the_fit_is_refused_by_every_use_until_fit_again(name, param, value, says):
    import re

    from openlt.openset.base import save_score

    make, fit, uses = ESTIMATORS[name]
    fitted = fit(make())
    was = fitted.get_params()[param]
    reference = uses[0](fitted)
    fitted.set_params(**{param: value})
    summaries = [fitted.summary] if hasattr(fitted, "summary") else []
    for use in [*uses, *summaries]:
        message = refusal(lambda: use(fitted) if use in uses else use())
        assert "\n" not in message and re.match(says, message), message
    if hasattr(fitted, "summary"):  # save_score would write the new value beside the old fit
        assert re.match(says, refusal(lambda: save_score("/nonexistent/never-written.safetensors", fitted)))
    fitted.set_params(**{param: was})  # set back: the fit's own values again, the same result
    assert torch.equal(torch.as_tensor(uses[0](fitted)), torch.as_tensor(reference))
    fitted.set_params(**{param: value})
    uses[0](fit(fitted))  # fit again: used as it is


def test_parameters_read_when_scoring_may_change_after_the_fit():
    """OpenMax's alpha and KNN's k are read by score itself (not by the fit): changed after it, they are used."""
    om = ESTIMATORS["openmax"][1](ESTIMATORS["openmax"][0]())
    before = om.score(LOGITS)
    om.set_params(alpha=1)
    assert om.summary()["alpha"] == 1 and not torch.equal(om.score(LOGITS), before)
    knn = ESTIMATORS["knn"][1](ESTIMATORS["knn"][0]())
    before = knn.score(FEATS)
    knn.set_params(k=1)
    assert knn.summary()["k"] == 1 and not torch.equal(knn.score(FEATS), before)


def test_a_loaded_score_records_the_values_it_was_fitted_with(tmp_path):
    from openlt.openset.base import load_score, save_score

    om = ESTIMATORS["openmax"][1](ESTIMATORS["openmax"][0]())
    save_score(tmp_path / "om.safetensors", om)
    loaded = load_score(tmp_path / "om.safetensors")
    assert torch.equal(loaded.score(LOGITS), om.score(LOGITS))
    loaded.set_params(tail_size=20)
    assert refusal(lambda: loaded.score(LOGITS)).startswith("eval.openmax_tail (OpenMax's tail_size) is 20, but the "
                                                            "fit used 5")
