"""Open-set scores as scikit-learn estimators (parameters, clone, fit returning self, learnt attributes ending in
`_`) that take numpy arrays or torch tensors of logits as well as output dicts."""

import numpy as np
import pytest
import torch
from sklearn.base import clone

from openlt.openset import (SCORES, Energy, OpenMax, build_score, max_logit, max_softmax, negative_energy,
                           open_score, reachability)
from openlt.openset.base import as_outputs, logits_of
from openlt.errors import ConfigError

K = 4


def toy(n: int = 40, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % K
    return {"logits": 5 * torch.eye(K)[labels] + torch.randn(n, K, generator=g), "labels": labels}


@pytest.mark.parametrize("name", SCORES.names())
def test_every_score_clones_with_its_parameters(name):
    scorer = build_score(name)
    twin = clone(scorer)
    assert type(twin) is type(scorer) and twin.get_params() == scorer.get_params()
    assert scorer.options() == {k: (float(v) if k == "temperature" else v) for k, v in scorer.get_params().items()}


def test_openmax_parameters_fit_and_learnt_attributes():
    om = OpenMax(tail_size=5, alpha=2, distance="cosine")
    assert om.get_params() == {"tail_size": 5, "alpha": 2, "distance": "cosine"}
    assert not [a for a in vars(om) if a.endswith("_")]  # nothing learnt before fit
    assert om.fit(toy()) is om
    learnt = set(vars(om)) - set(om.get_params())
    assert learnt == {"means_", "shape_", "scale_", "shift_", "fallback_", "degenerate_", "warning_",
                     "fitted_params_"}  # the values of the parameters the fit used (trial 15 item 9)
    fresh = clone(om).set_params(tail_size=8)
    assert fresh.tail_size == 8 and not hasattr(fresh, "means_")
    assert Energy(2).set_params(temperature=3).options() == {"temperature": 3.0}


def test_scores_take_numpy_and_tensor_logits():
    out = toy()
    logits_np = out["logits"].numpy()
    for fn in (max_softmax, max_logit, negative_energy):
        expected = fn(out)
        assert torch.equal(fn(logits_np), expected) and torch.equal(fn(out["logits"]), expected)
        assert torch.equal(fn({"logits": logits_np}), expected)  # a dict of numpy arrays too
    assert torch.equal(open_score("msp", logits_np), max_softmax(out))
    assert torch.equal(build_score("energy")(logits_np.astype(np.float64)), negative_energy(out))
    with pytest.raises(ConfigError, match="meta-embedding"):
        reachability(logits_np)  # bare logits carry no reachability
    with pytest.raises(TypeError, match="outputs dict or an"):
        logits_of([[1.0, 2.0]])
    assert set(as_outputs(logits_np, out["labels"].numpy())) == {"logits", "labels"}


def test_openmax_on_numpy_equals_openmax_on_dicts():
    train, test = toy(), toy(12, seed=1)
    by_dict = OpenMax(tail_size=10).fit(train)
    by_arrays = OpenMax(tail_size=10).fit(train["logits"].numpy(), train["labels"].numpy())
    for key, value in by_dict.state_dict().items():
        assert torch.equal(by_arrays.state_dict()[key], value), key
    assert torch.equal(by_arrays.score(test["logits"].numpy()), by_dict.score(test))
    assert by_arrays.probabilities(test["logits"].numpy()).shape == (12, K + 1)
