"""Plain softmax cross-entropy: the `plain` baseline's loss (`train.loss=ce`)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from openlt.losses._registry import LOSSES

__all__ = ["CrossEntropy", "cross_entropy"]


class CrossEntropy(nn.Module):
    """Softmax cross-entropy on ``outputs["logits"]`` (B, K) float against ``targets`` (B,) int64; a scalar mean,
    with optional label smoothing."""

    def __init__(self, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.label_smoothing = label_smoothing

    def forward(self, outputs: dict[str, torch.Tensor], targets: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy of ``outputs["logits"]`` (B, K) against ``targets`` (B,) int64: a 0-d tensor."""
        return nn.functional.cross_entropy(outputs["logits"], targets, label_smoothing=self.label_smoothing)


@LOSSES.register("ce")
def cross_entropy(train_counts: list[int] | None = None, feature_dim: int | None = None, **kwargs: Any) -> nn.Module:
    """`train.loss=ce`: :class:`CrossEntropy` (the class counts and feature size are not used)."""
    return CrossEntropy(**kwargs)
