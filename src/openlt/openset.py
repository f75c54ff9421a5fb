"""Open-set scores from a model's outputs, all "higher = more known", registered by name (`eval.open_score`).

Each is a pure function of the outputs dict (`logits`, and `reachability` from the meta-embedding head),
so that it works on cached outputs as well as live ones.
"""

from __future__ import annotations

from typing import Callable

import torch

from openlt.errors import ConfigError
from openlt.registry import Registry

SCORES: Registry[Callable[[dict], torch.Tensor]] = Registry("open-set score")


@SCORES.register("msp")
def max_softmax(outputs: dict) -> torch.Tensor:
    """Maximum softmax probability (Hendrycks & Gimpel 2017); the OLTR code's rejection rule."""
    return torch.softmax(outputs["logits"].float(), dim=1).max(dim=1).values


@SCORES.register("max_logit")
def max_logit(outputs: dict) -> torch.Tensor:
    return outputs["logits"].float().max(dim=1).values


@SCORES.register("energy")
def negative_energy(outputs: dict, temperature: float = 1.0) -> torch.Tensor:
    """-E(x) = T · logsumexp(logits / T) (Liu et al. 2020): the negated energy, so higher = more known."""
    return temperature * torch.logsumexp(outputs["logits"].float() / temperature, dim=1)


@SCORES.register("reachability")
def reachability(outputs: dict) -> torch.Tensor:
    """OLTR's reachability, reach_scale / distance to the nearest centroid (meta-embedding head only)."""
    if "reachability" not in outputs:
        raise ConfigError("eval.open_score=reachability needs a model with the meta-embedding head "
                          "(model.classifier=meta_embedding)")
    return outputs["reachability"].float()


def open_score(name: str, outputs: dict) -> torch.Tensor:
    return SCORES.get(name)(outputs)
