"""The scores that need no fitting, each a pure formula of the outputs (kept as plain functions too, so
that a caller can use the one-liner directly). Each takes an outputs dict or the (N, K) logits themselves as a
numpy array or torch tensor (:func:`openlt.openset.base.as_outputs`) and returns a (N,) float32 torch tensor
(``.numpy()`` for an array)."""

from __future__ import annotations

import math
import numbers

from typing import Any, Mapping

import torch

from openlt.config import MAX_TEMPERATURE
from openlt.errors import ConfigError
from openlt.openset.base import SCORES, OpenSetScore, Outputs, as_outputs, logits_of, number_check

NO_REACHABILITY = "eval.open_score=reachability needs a model with the meta-embedding head (model.classifier=meta_embedding)"


def max_softmax(outputs: Outputs) -> torch.Tensor:
    """Maximum softmax probability (Hendrycks & Gimpel, ICLR 2017); the OLTR code's rejection rule.

    ``outputs["logits"]`` (N, K) float -> (N,) float32 in [1/K, 1]. ValueError when the logits are missing or
    not 2-D, DataError for NaN / inf logits
    (naming how many rows), TypeError / DataError for inputs that are not numbers."""
    return torch.softmax(logits_of(outputs, "msp"), dim=1).max(dim=1).values


def max_logit(outputs: Outputs) -> torch.Tensor:
    """The largest logit (Hendrycks et al., ICML 2022, "Scaling Out-of-Distribution Detection for Real-World
    Settings"): unlike MSP it keeps the logits' magnitude.

    ``outputs["logits"]`` (N, K) float -> (N,) float32, in logit units. ValueError as :func:`max_softmax`."""
    return logits_of(outputs, "max_logit").max(dim=1).values


def negative_energy(outputs: Outputs, temperature: float = 1.0) -> torch.Tensor:
    """-E(x) = T · logsumexp(logits / T) (Liu et al., NeurIPS 2020, "Energy-based Out-of-distribution
    Detection"): the negated energy, so higher = more known.

    ``outputs["logits"]`` (N, K) float and a temperature T > 0 (not checked here: :class:`Energy` checks it)
    -> (N,) float32. ValueError as :func:`max_softmax`. Computed as ``m + T · logsumexp((logits - m) / T)`` with m
    the row's largest logit, the same value: ``logits / T`` overflows to inf for a tiny T (1e-39 gave inf and NaN),
    ``(logits - m) / T`` only goes to -inf, whose exp is 0 (the score tends to the max-logit, as it should)."""
    logits = logits_of(outputs, "energy")
    top = logits.max(dim=1, keepdim=True).values
    return (top + temperature * torch.logsumexp((logits - top) / temperature, dim=1, keepdim=True)).squeeze(1)


def reachability(outputs: Outputs) -> torch.Tensor:
    """OLTR's reachability (Liu et al., CVPR 2019), reach_scale / distance to the nearest centroid
    (meta-embedding head only): ``outputs["reachability"]`` (N,) -> (N,) float32, positive.

    Raises ConfigError when the outputs have no reachability (the model's head is not the meta-embedding; bare
    logits have none)."""
    outputs = as_outputs(outputs)
    if "reachability" not in outputs:
        raise ConfigError(NO_REACHABILITY)
    return outputs["reachability"].float()


@SCORES.register("msp")
class MaxSoftmax(OpenSetScore):
    """``msp``: maximum softmax probability (Hendrycks & Gimpel ICLR 2017), (N,) float32 in [1/K, 1]; stateless."""
    name = "msp"
    value_range = (0.0, 1.0)  # a probability: a threshold outside it is refused (rejector.check_threshold_range)

    def score(self, outputs: Outputs) -> torch.Tensor:
        """(N,) float32 maximum softmax probability of ``outputs["logits"]`` (N, K)."""
        return max_softmax(outputs)


@SCORES.register("max_logit")
class MaxLogit(OpenSetScore):
    """``max_logit``: the largest logit (Hendrycks et al. 2022), (N,) float32; stateless."""
    name = "max_logit"

    def score(self, outputs: Outputs) -> torch.Tensor:
        """(N,) float32 largest logit of ``outputs["logits"]`` (N, K)."""
        return max_logit(outputs)


@SCORES.register("energy")
class Energy(OpenSetScore):
    """``energy``: the negated free energy ``T * logsumexp(logits / T)`` (Liu et al. NeurIPS 2020), (N,) float32.

    ``temperature`` T > 0 and finite, ConfigError otherwise (also from ``score`` after ``set_params``); a
    config-built score has T = 1 (no ``eval`` key sets it).
    """
    name = "energy"

    param_checks = {"temperature": number_check(  # the config's bound of a temperature (eval.odin_temperature's)
        f"energy temperature must be > 0 and <= {MAX_TEMPERATURE:g} (a finite number)", numbers.Real,
        lambda t: math.isfinite(t) and 0 < t <= MAX_TEMPERATURE)}

    def __init__(self, temperature: float = 1.0) -> None:
        self.temperature = temperature  # as given: a scikit-learn parameter (clone checks it is kept)
        self.check_params()

    def options(self) -> dict:
        """``{"temperature": T}``, saved beside the score's name."""
        return {"temperature": float(self.temperature)}

    def score(self, outputs: Outputs) -> torch.Tensor:
        """(N,) float32 ``T * logsumexp(logits / T)`` of ``outputs["logits"]`` (N, K)."""
        self.check_params()  # set_params / an assigned attribute get past the constructor
        return negative_energy(outputs, float(self.temperature))


@SCORES.register("reachability")
class Reachability(OpenSetScore):
    """``reachability``: OLTR's reachability (Liu et al. CVPR 2019), (N,) float32; meta-embedding head only."""
    name = "reachability"

    def score(self, outputs: Outputs) -> torch.Tensor:
        """(N,) float32 ``outputs["reachability"]``; ConfigError when the model gives none."""
        return reachability(outputs)

    def check_setting(self, setting: Mapping[str, Any]) -> None:
        """ConfigError when the model's head is known and not the meta-embedding head (no reachability)."""
        head = setting.get("head")
        if head is not None and head != "meta_embedding":
            raise ConfigError(f"{NO_REACHABILITY}; this model's head is {head}")
