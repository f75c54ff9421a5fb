"""Training losses, registered by name so that configs choose them (`train.loss`)."""

from __future__ import annotations

from torch import nn

from openlt.registry import Registry

LOSSES = Registry("loss")


@LOSSES.register("ce")
def cross_entropy(train_counts: list[int] | None = None, **kwargs) -> nn.Module:
    """Plain softmax cross-entropy (the `plain` baseline)."""
    return nn.CrossEntropyLoss(**kwargs)


def build_loss(name: str, train_counts: list[int] | None = None, **kwargs) -> nn.Module:
    return LOSSES.get(name)(train_counts=train_counts, **kwargs)


__all__ = ["LOSSES", "build_loss"]
