"""The stage-2 method registry: every registered method builds from a config, checks what it needs before any
work, and fits on small random features into a state its head loads (the contract of
openlt.decoupling.base)."""

from __future__ import annotations

import pytest
import torch

from stage2_config import stage2_config  # tests/helpers
from openlt.decoupling import STAGE2_METHODS, FittedHead, Stage2Data, Stage2Hooks, build_method
from openlt.decoupling.methods import TrainedOnFeatures
from openlt.errors import ConfigError
from openlt.metrics import ShotBands
from openlt.models.classifier import build_classifier

pytestmark = pytest.mark.usefixtures("single_thread")

C, D = 4, 8
METHODS = ["crt", "lws", "tau_norm", "logit_adjust", "ncm"]


def random_data(with_val: bool = True, seed: int = 0) -> Stage2Data:
    g = torch.Generator().manual_seed(seed)
    train_y = torch.arange(40) % C
    val_y = torch.cat([torch.arange(16) % C, torch.tensor([-1, -1])])  # -1: open-set samples, ignored
    return Stage2Data(train_x=torch.randn(40, D, generator=g), train_y=train_y, num_classes=C,
                      train_counts=[int((train_y == c).sum()) for c in range(C)], bands=ShotBands(12, 5),
                      val_x=torch.randn(len(val_y), D, generator=g) if with_val else None,
                      val_y=val_y if with_val else None,
                      weight=torch.randn(C, D, generator=g), bias=torch.randn(C, generator=g))


def test_the_registry_holds_the_five_methods_and_fslwf():  # fslwf: tests/decoupling/test_fslwf.py
    assert STAGE2_METHODS.names() == sorted(METHODS + ["fslwf"])
    with pytest.raises(ConfigError, match="unknown decouple.method 'bogus'; known: none, crt, fslwf, logit_adjust, lws, "
                                          "ncm, tau_norm"):
        build_method(stage2_config("bogus"))


@pytest.mark.parametrize("name", METHODS)
def test_each_method_fits_random_features_into_its_head(name):
    method = build_method(stage2_config(name))
    assert method.name == name and type(method) is STAGE2_METHODS.get(name)
    epochs = []
    hooks = Stage2Hooks(validate=lambda head: {"overall": 0.5},
                        on_epoch=lambda epoch, loss, lr, acc: epochs.append((epoch, loss, acc)))
    fitted = method.fit(random_data(), hooks)
    assert isinstance(fitted, FittedHead)
    head = build_classifier(method.head, D, C)
    head.load_state_dict(fitted.state)  # strict: exactly the head's tensors
    logits = head(torch.randn(5, D))
    assert logits.shape == (5, C) and torch.isfinite(logits).all()
    assert epochs == [] if not method.epochwise else [e for e, _, _ in epochs] == [0, 1, 2]
    assert all(acc == {"overall": 0.5} for _, _, acc in epochs)
    if method.needs_val:
        assert len(fitted.details["tau_curve"]) == 21 and fitted.details["tau"] in [p["tau"] for p in
                                                                                   fitted.details["tau_curve"]]


def test_method_declarations():
    declared = {n: (m.head, m.needs_val, m.epochwise, m.reuses_stage1_head) for n in METHODS
                for m in [STAGE2_METHODS.get(n)]}
    assert declared == {"crt": ("linear", False, True, False), "lws": ("linear", False, True, True),
                        "tau_norm": ("linear", True, False, True), "logit_adjust": ("linear", True, False, True),
                        "ncm": ("ncm", False, False, False)}


@pytest.mark.parametrize("name", ["tau_norm", "logit_adjust"])
def test_a_tau_search_without_validation_is_refused_before_work(name):
    method = build_method(stage2_config(name))
    message = (f"decouple.method={name} chooses tau on the validation split among decouple.taus (21 values), and "
               "this run has none (data.val_split); tau is never chosen on test: give a validation split "
               "(data.val_split=FILE), or fix tau with one value, decouple.taus=[T] (e.g. [1.0]), which needs none")
    with pytest.raises(ConfigError) as err:
        method.check(has_val=False)
    assert str(err.value) == message
    with pytest.raises(ConfigError, match="chooses tau on the validation split"):
        method.fit(random_data(with_val=False))


def test_keep_best_without_validation_is_refused_before_work():
    method = build_method(stage2_config("crt", keep="best"))
    method.check(has_val=True)
    with pytest.raises(ConfigError, match="decouple.keep=best chooses the stage-2 epoch on the validation split"):
        method.check(has_val=False)
    build_method(stage2_config("crt")).check(has_val=False)  # keep=last needs none


def test_keep_best_keeps_the_first_epoch_with_the_best_validation_score():
    scores, states = iter([0.2, 0.7, 0.7]), []

    def validate(head):  # called with the module being trained, after every epoch
        states.append({k: v.detach().clone() for k, v in head.state_dict().items()})
        return {"overall": next(scores)}

    fitted = build_method(stage2_config("crt", keep="best")).fit(random_data(), Stage2Hooks(validate=validate))
    assert fitted.details == {"kept_epoch": 2}  # ties go to the earlier epoch
    assert torch.equal(fitted.state["fc.weight"], states[1]["weight"])
    assert not torch.equal(fitted.state["fc.weight"], states[2]["weight"])
    last = build_method(stage2_config("crt")).fit(random_data(), Stage2Hooks(validate=lambda head: {"overall": 0.1}))
    assert last.details == {} and torch.equal(last.state["fc.weight"], states[2]["weight"])


def test_crt_is_a_function_of_the_seed_and_leaves_the_global_rng_alone():
    torch.manual_seed(0)
    before = torch.get_rng_state()
    a = build_method(stage2_config("crt")).fit(random_data())
    assert torch.equal(torch.get_rng_state(), before)
    b = build_method(stage2_config("crt")).fit(random_data())
    assert all(torch.equal(a.state[k], b.state[k]) for k in a.state)


def test_lws_scales_and_tau_norm_weights():
    data = random_data()
    lws = build_method(stage2_config("lws", lws_bias=False)).fit(data)
    scales = torch.tensor(lws.details["scales"])
    assert torch.allclose(lws.state["fc.weight"], scales.unsqueeze(1) * data.weight)
    assert torch.equal(lws.state["fc.bias"], torch.zeros(C))
    tau = build_method(stage2_config("tau_norm")).fit(data)
    w = data.weight / data.weight.norm(dim=1, keepdim=True) ** tau.details["tau"]
    assert torch.allclose(tau.state["fc.weight"], w) and torch.equal(tau.state["fc.bias"], torch.zeros(C))


def test_methods_that_reuse_the_stage1_head_need_it():
    data = random_data()
    data.weight = None
    for name in ("lws", "tau_norm", "logit_adjust"):
        with pytest.raises(ConfigError, match="re-uses the stage-1 linear classifier"):
            build_method(stage2_config(name)).fit(data)


def test_trained_methods_share_the_training_options():
    cfg = stage2_config("lws", lws_bias=False)
    cfg.train.sampler = "sqrt"
    method = build_method(cfg)
    assert isinstance(method, TrainedOnFeatures) and method.use_bias is False
    assert method.training == {"epochs": 3, "batch_size": 8, "lr": 0.1, "momentum": cfg.train.momentum,
                               "weight_decay": cfg.train.weight_decay, "sampler": "sqrt", "seed": 3}
