"""Training losses, registered by name so that configs choose them (`train.loss`, `train.loss_args`).

Every loss is an nn.Module called as `loss(outputs, targets)`, where `outputs` is the model's dict
(`logits`, `feature`, and whatever a head adds): a loss on logits, on features, or both, fits one shape.
Learnable state (e.g. OLTR's centroids) lives in the model, which returns it in `outputs`; losses own no
parameters, so that one checkpoint of the model holds everything a run needs.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from openlt.registry import Registry

LOSSES = Registry("loss")


class CrossEntropy(nn.Module):
    """Plain softmax cross-entropy on the logits (the `plain` baseline)."""

    def __init__(self, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.label_smoothing = label_smoothing

    def forward(self, outputs: dict[str, torch.Tensor], targets: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(outputs["logits"], targets, label_smoothing=self.label_smoothing)


@LOSSES.register("ce")
def cross_entropy(train_counts: list[int] | None = None, feature_dim: int | None = None, **kwargs: Any) -> nn.Module:
    return CrossEntropy(**kwargs)


def build_loss(name: str, train_counts: list[int] | None = None, feature_dim: int | None = None,
               **kwargs: Any) -> nn.Module:
    """Build a registered loss; every builder receives the training counts and the feature dimension."""
    from openlt.errors import ConfigError

    try:
        return LOSSES.get(name)(train_counts=train_counts, feature_dim=feature_dim, **kwargs)
    except TypeError as exc:
        raise ConfigError(f"bad arguments for loss {name!r}: {exc}") from None


__all__ = ["LOSSES", "CrossEntropy", "build_loss"]

from openlt.losses import centroid, focal, metric, rebalance  # noqa: E402,F401  (their registrations run on import)
