"""Classifier heads: feature vector -> logits. ``CLASSIFIERS`` maps config names to head classes."""

from __future__ import annotations

import inspect
from typing import Any, Callable

from torch import Tensor, nn

from openlt.errors import ConfigError
from openlt.registry import Registry

__all__ = ["CLASSIFIERS", "LinearClassifier", "build_classifier"]

CLASSIFIERS: Registry[Callable[..., nn.Module]] = Registry("classifier")


@CLASSIFIERS.register("linear")
class LinearClassifier(nn.Module):
    """A plain linear head: ``logits = W f + b``."""

    def __init__(self, in_dim: int, num_classes: int, bias: bool = True) -> None:
        super().__init__()
        self.in_dim = in_dim
        self.num_classes = num_classes
        self.fc = nn.Linear(in_dim, num_classes, bias=bias)

    def forward(self, feature: Tensor) -> Tensor:
        return self.fc(feature)


def build_classifier(name: str, in_dim: int, num_classes: int, **kwargs: Any) -> nn.Module:
    """Build the head registered as ``name``; unknown names or options raise ConfigError."""
    cls = CLASSIFIERS.get(name)
    try:
        inspect.signature(cls).bind(in_dim, num_classes, **kwargs)
    except TypeError as e:
        raise ConfigError(f"classifier {name!r}: {e}") from None
    return cls(in_dim, num_classes, **kwargs)
