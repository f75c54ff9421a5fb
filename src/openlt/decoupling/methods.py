"""The decoupled stage-2 methods (Kang et al., ICLR 2020; logit adjustment: Menon et al., ICLR 2021), one small
class each, registered by their ``decouple.method`` name (contract: :mod:`openlt.decoupling.base`):

* ``crt``           a fresh linear classifier (:func:`new_linear`, seeded) trained on the features;
* ``lws``           learnable per-class scales f on the stage-1 classifier, logits = f * (W x + b);
* ``tau_norm``      W / ||W||^tau without bias, tau chosen on the validation features;
* ``logit_adjust``  the stage-1 weights, bias b - tau * log(prior), tau chosen on the validation features;
* ``ncm``           class means of the (centred,) L2-normalised training features (:mod:`openlt.decoupling.ncm`).

cRT and LWS train with :func:`train_on_features` (train.epochs, lr, batch_size, sampler, ...) and keep the last
epoch, or with ``decouple.keep=best`` the epoch of best validation top-1 (ties to the earlier epoch, as in the
public code).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from openlt.config import Config
from openlt.decoupling._registry import register_method
from openlt.decoupling._validate import HALF
from openlt.decoupling.base import FittedHead, Stage2Data, Stage2Hooks, Stage2Method, linear_state
from openlt.decoupling.classifiers import (LWSClassifier, TauNormClassifier, new_linear, search_grid,
                                           train_on_features)
from openlt.decoupling.ncm import NCMClassifier
from openlt.errors import ConfigError
from openlt.losses.rebalance import logit_adjust
from openlt.metrics import ShotBands

__all__ = ["ClassifierRetraining", "LearnableWeightScaling", "LogitAdjustment", "NearestClassMean",
           "TauNormalization", "TrainedOnFeatures", "search_logit_adjust_tau"]


class TrainedOnFeatures(Stage2Method):
    """A head trained epoch by epoch on the features with :func:`train_on_features` (SGD, cosine lr, the
    configured sampler); subclasses give the module to train (``initial_module``) and read the fitted head
    from it (``fitted``)."""

    epochwise = True
    validates_epochs = True

    def __init__(self, *, epochs: int, batch_size: int, lr: float, momentum: float = 0.9,
                 weight_decay: float = 5e-4, sampler: str = "class_balanced", seed: int = 0, keep: str = "last") -> None:
        self.training = dict(epochs=epochs, batch_size=batch_size, lr=lr, momentum=momentum,
                             weight_decay=weight_decay, sampler=sampler, seed=seed)
        self.seed, self.keep = seed, keep

    @staticmethod
    def training_options(cfg: Config) -> dict[str, Any]:
        """The keyword arguments of ``__init__`` from the run's config."""
        t = cfg.train
        return dict(epochs=t.epochs, batch_size=t.batch_size, lr=t.lr, momentum=t.momentum,
                    weight_decay=t.weight_decay, sampler=t.sampler, seed=cfg.seed, keep=cfg.decouple.keep)

    @classmethod
    def from_config(cls, cfg: Config) -> "TrainedOnFeatures":
        """The method with the ``train.*`` options, ``seed`` and ``decouple.keep`` of the run's config."""
        return cls(**cls.training_options(cfg))

    def check(self, has_val: bool) -> None:
        """ConfigError, before any work, for ``decouple.keep=best`` on a run without a validation split (``has_val``
        False).
        """
        if self.keep == "best" and not has_val:
            raise ConfigError("decouple.keep=best chooses the stage-2 epoch on the validation split, and this run "
                              "has none (data.val_split); use decouple.keep=last")

    def initial_module(self, data: Stage2Data) -> nn.Module:
        """The module to train: (B, D) features -> (B, C) logits, its trainable tensors as parameters."""
        raise NotImplementedError

    def fitted(self, module: nn.Module, details: dict[str, Any]) -> FittedHead:
        """The head's state from the trained module (on the CPU), ``details`` completed."""
        raise NotImplementedError

    def fit(self, data: Stage2Data, hooks: Stage2Hooks | None = None) -> FittedHead:
        """Train on the run's device (a GPU fits iNaturalist's 8,142-class head in seconds, a CPU in hours);
        the fitted head comes back on the CPU."""
        hooks = hooks or Stage2Hooks()
        self.check(data.val_x is not None)
        module = self.initial_module(data).to(hooks.device)
        best: dict = {}  # decouple.keep=best: the module's state at the best validation top-1 so far

        def on_epoch(epoch: int, loss: float, lr: float) -> None:
            acc = hooks.validate(module)
            if acc is not None and self.keep == "best" and ("overall" not in best or acc["overall"] > best["overall"]):
                best.update(overall=acc["overall"], epoch=epoch, state=copy.deepcopy(module.state_dict()))
            if hooks.on_epoch is not None:
                hooks.on_epoch(epoch, loss, lr, acc)

        train_on_features(module, data.train_x, data.train_y, **self.training, epoch_features=hooks.epoch_features,
                          on_epoch=on_epoch)
        details: dict[str, Any] = {}
        if best:  # ties go to the earlier epoch, as in the public code (a strict >)
            module.load_state_dict(best["state"])
            details["kept_epoch"] = best["epoch"] + 1
            hooks.log(f"keeping epoch {best['epoch'] + 1} (best validation top-1 {100 * best['overall']:.1f})")
        return self.fitted(module.cpu(), details)


@register_method
class ClassifierRetraining(TrainedOnFeatures):
    """cRT: a freshly initialised linear classifier (PyTorch's default init, drawn from ``seed`` alone)
    trained on the features, usually with class-balanced sampling."""

    name = "crt"

    def initial_module(self, data: Stage2Data) -> nn.Module:
        """A fresh ``nn.Linear(D, C)`` drawn from ``seed`` alone (:func:`new_linear`)."""
        return new_linear(data.train_x.shape[1], data.num_classes, seed=self.seed)

    def fitted(self, module: nn.Module, details: dict[str, Any]) -> FittedHead:
        """The trained Linear's (C, D) weight and (C,) bias as the linear head's state."""
        return FittedHead(linear_state(module.weight, module.bias), details)


@register_method
class LearnableWeightScaling(TrainedOnFeatures):
    """LWS: per-class scales f (initialised to 1) on the frozen stage-1 classifier, logits = f * (W x + b)
    (``use_bias=False``: f * W x); decouple.json records the scales, the head gets diag(f) W and f * b."""

    name = "lws"
    reuses_stage1_head = True

    def __init__(self, *, use_bias: bool = True, **training: Any) -> None:
        super().__init__(**training)
        self.use_bias = bool(use_bias)

    @classmethod
    def from_config(cls, cfg: Config) -> "LearnableWeightScaling":
        """As :meth:`TrainedOnFeatures.from_config`, plus ``decouple.lws_bias`` (scale the stage-1 bias or drop it)."""
        return cls(use_bias=cfg.decouple.lws_bias, **cls.training_options(cfg))

    def initial_module(self, data: Stage2Data) -> nn.Module:
        """An :class:`LWSClassifier` on the stage-1 weight (C, D) and bias (C,) (None with ``use_bias=False``).

        Raises ConfigError when no stage-1 classifier was given.
        """
        weight, bias = self.stage1_linear(data)
        return LWSClassifier(weight, bias if self.use_bias else None)

    def fitted(self, module: nn.Module, details: dict[str, Any]) -> FittedHead:
        """The scales folded into a linear head (diag(f) W, f * b; a zero bias without one); ``details["scales"]``
        the C learnt scales.
        """
        fc = module.to_linear()
        bias = fc.bias if fc.bias is not None else torch.zeros(fc.out_features, dtype=fc.weight.dtype)
        details["scales"] = module.scales.detach().tolist()
        return FittedHead(linear_state(fc.weight, bias), details)


class _TauSearch(Stage2Method):
    """A post-hoc adjustment of the stage-1 classifier whose tau is chosen on the validation features from the
    grid ``taus`` (decouple.taus), ties to the smaller tau."""

    needs_val = True
    reuses_stage1_head = True

    def __init__(self, taus: Sequence[float]) -> None:
        self.taus = list(taus)

    @classmethod
    def from_config(cls, cfg: Config) -> "_TauSearch":
        """The method with the tau grid ``decouple.taus``."""
        return cls(cfg.decouple.taus)

    def check(self, has_val: bool) -> None:
        """ConfigError, before any work, for a grid of several taus on a run without a validation split; a grid of
        one value (``decouple.taus=[1.0]``, e.g. iNaturalist) needs none: that tau is used as it is (the error
        says so)."""
        if len(self.taus) != 1 and not has_val:
            raise ConfigError(f"decouple.method={self.name} chooses tau on the validation split among decouple.taus "
                              f"({len(self.taus)} values), and this run has none (data.val_split); tau is never "
                              f"chosen on test: give a validation split (data.val_split=FILE), or fix tau with one "
                              f"value, decouple.taus=[T] (e.g. [1.0]), which needs none")

    def fixed_tau(self, data: Stage2Data) -> float | None:
        """The one tau of a one-value grid on a run without validation features, else None (tau is searched)."""
        self.check(data.val_x is not None)
        return float(self.taus[0]) if data.val_x is None else None


@register_method
class TauNormalization(_TauSearch):
    """tau-normalisation: the head's rows are w_i / ||w_i||^tau and its bias 0 (:class:`TauNormClassifier`);
    decouple.json records tau and the per-band validation curve."""

    name = "tau_norm"
    plots_tau_curve = True

    @torch.no_grad()
    def fit(self, data: Stage2Data, hooks: Stage2Hooks | None = None) -> FittedHead:
        """Choose tau on the validation features and return the head ``w_i / ||w_i||^tau`` (C, D) with a zero bias;
        ``details``: ``tau`` and ``tau_curve`` (one {"tau", "many", "medium", "few", "overall"} per grid value;
        empty for a one-value grid without validation features, whose tau is used as it is).

        Raises ConfigError without a validation split (and more than one tau) or a stage-1 classifier, DataError
        when the validation split has no known sample.
        """
        tau = self.fixed_tau(data)
        weight, _ = self.stage1_linear(data)
        tau_norm = TauNormClassifier(weight, tau=tau)
        if tau is None:  # Stage2Data's open-set validation samples (-1) are ignored; TauNormClassifier refuses them
            known = data.val_y >= 0
            tau_norm.fit(data.val_x[known], data.val_y[known], data.train_counts, self.taus, data.bands)
        return FittedHead(linear_state(tau_norm.normalized_weight, torch.zeros(weight.shape[0])),
                          {"tau": tau_norm.chosen_tau, "tau_curve": getattr(tau_norm, "curve_", None) or []})


@register_method
class LogitAdjustment(_TauSearch):
    """Post-hoc logit adjustment (Menon et al., ICLR 2021): the stage-1 weights kept, bias b - tau * log(prior)
    (a missing bias counts as 0); decouple.json records tau and the per-band validation curve."""

    name = "logit_adjust"

    @torch.no_grad()
    def fit(self, data: Stage2Data, hooks: Stage2Hooks | None = None) -> FittedHead:
        """Choose tau on the validation features and return the stage-1 weight (C, D) with the bias
        ``b - tau * log(n_c / N)`` (C,); ``details``: ``tau`` and ``tau_curve`` (empty for a one-value grid without
        validation features, whose tau is used as it is).

        Raises ConfigError without a validation split (and more than one tau) or a stage-1 classifier, DataError
        when the validation split has no known sample.
        """
        hooks = hooks or Stage2Hooks()
        tau, curve = self.fixed_tau(data), []
        weight, bias = self.stage1_linear(data)
        bias = torch.zeros(weight.shape[0]) if bias is None else bias.float()
        if tau is None:
            tau, curve = search_logit_adjust_tau(weight, bias, data.val_x, data.val_y, data.train_counts, self.taus,
                                                 data.bands)
        hooks.log(f"logit adjustment tau = {tau:g} " + (f"(best validation top-1 over {len(curve)} values)" if curve
                                                        else "(fixed: one value, no validation split)"))
        return FittedHead(linear_state(weight, logit_adjust(bias.unsqueeze(0), data.train_counts, tau)[0]),
                          {"tau": tau, "tau_curve": curve})


def search_logit_adjust_tau(weight: Tensor, bias: Tensor, val_x: Tensor, val_y: Tensor, train_counts: Sequence[int],
                            taus: Sequence[float], bands: ShotBands) -> tuple[float, list[dict]]:
    """tau of post-hoc logit adjustment by validation top-1 (ties to the smaller tau), with the per-band curve:
    weight (C, D), bias (C,), val_x (M, D) float32 (float16 cached features: converted), val_y (M,) (label -1
    ignored)."""
    if val_x.dtype in HALF:
        val_x = val_x.float()
    base = val_x @ weight.t() + bias
    return search_grid(lambda tau: logit_adjust(base, train_counts, tau), val_y, train_counts, taus, bands,
                       "decouple.method=logit_adjust")


@register_method
class NearestClassMean(Stage2Method):
    """NCM: the head's ``means`` are the class means of the (centred with ``center``,) L2-normalised training
    features; logits by ``metric`` (cosine | euclidean) in :class:`openlt.models.classifier.NCMHead`."""

    name = "ncm"
    head = "ncm"

    def __init__(self, metric: str = "cosine", center: bool = False) -> None:
        self.metric, self.center = metric, bool(center)  # checked by the head and by NCMClassifier

    @classmethod
    def from_config(cls, cfg: Config) -> "NearestClassMean":
        """The method with ``model.head.ncm_metric`` and ``model.head.ncm_center``."""
        return cls(cfg.model.head.ncm_metric, cfg.model.head.ncm_center)

    @torch.no_grad()
    def fit(self, data: Stage2Data, hooks: Stage2Hooks | None = None) -> FittedHead:
        """Class means of the training features as the NCM head's state: ``means`` (C, D) and, with ``center``,
        ``feature_mean`` (D,), in the features' dtype (float32 for cached features); no details.

        Raises ConfigError for an unknown metric, DataError for a class without a training feature.
        """
        ncm = NCMClassifier(metric=self.metric, center=self.center).fit(data.train_x, data.train_y, data.num_classes)
        return FittedHead(ncm.head_state())
