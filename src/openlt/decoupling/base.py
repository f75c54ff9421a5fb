"""The one contract of a decoupled stage-2 method (Kang et al., ICLR 2020, "Decoupling Representation and
Classifier for Long-Tailed Recognition"): fit a classifier on the frozen stage-1 representation's cached
features, and the stage-1 linear head where the method starts from it, and return

* ``FittedHead.state``: the fitted tensors as entries of the stage-2 head's state dict (the model's
  ``classifier``, built as the method's ``head``: ``{"fc.weight", "fc.bias"}`` for ``"linear"``,
  ``{"means"[, "feature_mean"]}`` for ``"ncm"``), loaded into the model with ``load_state_dict``;
* ``FittedHead.details``: what the run's decouple.json records (tau, tau_curve, scales, kept_epoch ...).

A method is a small object built from the run's config (``from_config``) and registered under its
``decouple.method`` name (:data:`openlt.decoupling.STAGE2_METHODS`). Its class declares what it needs:
``needs_val`` (it chooses a value on the validation features), ``validates_epochs`` (its epoch log holds validation
top-1, which the under-training check reads), ``epochwise`` (it trains epoch by epoch, so
train.epochs / lr / sampler and decouple.keep / features apply) and ``reuses_stage1_head`` (it starts from the
stage-1 linear classifier W, b). Methods touch no file: the engine owns the run directory and the epoch log,
and lends a method what it needs while fitting through :class:`Stage2Hooks`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from openlt.config import Config
from openlt.errors import ConfigError
from openlt.metrics import ShotBands

__all__ = ["FittedHead", "Stage2Data", "Stage2Hooks", "Stage2Method", "linear_state"]


@dataclass
class Stage2Data:
    """What a stage-2 method fits on.

    ``train_x`` (N, D) training features, float32 or the float16 of a float16 feature cache (decouple.cache_dtype:
    kept so, never converted whole; a method computes in float32 on a batch or chunk of rows at a time), and ``train_y`` (N,) int64 class ids in [0, num_classes);
    ``val_x`` (M, D) / ``val_y`` (M,) the validation features (label -1: an open-set sample, ignored), None
    without a validation split; ``weight`` (C, D) float32 and ``bias`` (C,) (as saved, or None) of the stage-1
    linear classifier, given to methods that re-use it; ``train_counts`` the C training counts and ``bands`` the
    many / medium / few thresholds, for the validation curves."""

    train_x: Tensor
    train_y: Tensor
    num_classes: int
    train_counts: Sequence[int]
    bands: ShotBands = field(default_factory=ShotBands)
    val_x: Tensor | None = None
    val_y: Tensor | None = None
    weight: Tensor | None = None
    bias: Tensor | None = None


def _no_validation(head: nn.Module) -> dict | None:
    return None


def _silent(line: str) -> None:
    return None


@dataclass
class Stage2Hooks:
    """What the engine lends a method while it fits (every field has a do-nothing default).

    ``device``: where epoch-by-epoch training runs; ``validate(head)``: the validation metrics of a head
    (a dict with "overall", "many", ... as fractions; None without a validation split); ``on_epoch(epoch,
    mean_loss, last_lr, val_metrics)``: after every trained epoch (epoch 0-based); ``epoch_features(epoch)``:
    (N, D) features replacing the cached ones at every epoch (decouple.features=augmented); ``log``: progress
    lines."""

    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    validate: Callable[[nn.Module], dict | None] = _no_validation
    on_epoch: Callable[[int, float, float, dict | None], None] | None = None
    epoch_features: Callable[[int], Tensor] | None = None
    log: Callable[[str], None] = _silent


@dataclass
class FittedHead:
    """A fitted stage-2 head: ``state`` (entries of the head's state dict, CPU tensors) and ``details``
    (JSON-ready values for decouple.json)."""

    state: dict[str, Tensor]
    details: dict[str, Any] = field(default_factory=dict)


def linear_state(weight: Tensor, bias: Tensor) -> dict[str, Tensor]:
    """A (C, D) weight and (C,) bias as the state of the linear head (:class:`openlt.models.classifier.
    LinearClassifier`: ``fc.weight``, ``fc.bias``)."""
    return {"fc.weight": weight.detach(), "fc.bias": bias.detach()}


class Stage2Method:
    """Base class of the stage-2 methods; subclasses set the class attributes and implement ``fit``."""

    name: ClassVar[str] = ""
    head: ClassVar[str] = "linear"  # the model.classifier the stage-2 model is built with
    needs_val: ClassVar[bool] = False  # chooses a value (tau) on the validation features
    epochwise: ClassVar[bool] = False  # trains epoch by epoch (train.*, decouple.keep, decouple.features apply)
    validates_epochs: ClassVar[bool] = False  # its epoch log holds validation top-1: the under-training check reads it
    reuses_stage1_head: ClassVar[bool] = False  # starts from the stage-1 linear classifier (W, b)
    plots_tau_curve: ClassVar[bool] = False  # details["tau_curve"] is worth a figure (tau_curve.png)

    @classmethod
    def from_config(cls, cfg: Config) -> "Stage2Method":
        """The method with its options from the run's config (train.*, decouple.*, model.head.*)."""
        raise NotImplementedError

    def check(self, has_val: bool) -> None:
        """ConfigError, before any work, when the run lacks what the method needs (a validation split)."""
        if self.needs_val and not has_val:
            raise ConfigError(f"decouple.method={self.name} chooses tau on the validation split, and this run "
                              "has none (data.val_split); tau is never chosen on test")

    def stage1_linear(self, data: Stage2Data) -> tuple[Tensor, Tensor | None]:
        """The stage-1 classifier's (C, D) weight and (C,) bias (or None); ConfigError when not given."""
        if data.weight is None:
            raise ConfigError(f"decouple.method={self.name} re-uses the stage-1 linear classifier; none was given")
        return data.weight, data.bias

    def fit(self, data: Stage2Data, hooks: Stage2Hooks | None = None) -> FittedHead:
        """Fit on ``data`` (see :class:`Stage2Data`) and return the head's tensors and details."""
        raise NotImplementedError
