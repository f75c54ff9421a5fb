"""The loss registry, in timm's ``_registry.py`` shape: ``LOSSES`` maps a config name (``train.loss``) to a
builder, and :func:`build_loss` calls it. The implementation modules import this module and register into it;
``openlt/losses/__init__.py`` imports every one of them, so importing anything from ``openlt.losses`` registers
them all.

A builder is called as ``builder(train_counts=..., feature_dim=..., **train.loss_args)`` and returns an
``nn.Module`` called as ``loss(outputs, targets)``.
"""

from __future__ import annotations

from typing import Any, Callable

from torch import nn

from openlt.errors import ConfigError
from openlt.registry import Registry

__all__ = ["LOSSES", "build_loss"]

LOSSES: Registry[Callable[..., nn.Module]] = Registry("loss")


def build_loss(name: str, train_counts: list[int] | None = None, feature_dim: int | None = None,
               **kwargs: Any) -> nn.Module:
    """The loss registered as `name`; every builder receives the training images per class (`train_counts`,
    length K) and the feature dimension D of the head's input. ConfigError for an unknown name or bad options."""
    try:
        return LOSSES.get(name)(train_counts=train_counts, feature_dim=feature_dim, **kwargs)
    except TypeError as exc:
        raise ConfigError(f"bad arguments for loss {name!r}: {exc}") from None


def check_loss_args(name: str, loss_args: dict[str, Any]) -> None:
    """ConfigError ("bad arguments for loss ...", as :func:`build_loss`) when the loss registered as `name` does not
    take `loss_args`: checked by building it once on two dummy classes, before any run directory exists. Other
    failures of that dummy build are left to the real one (they may come from the dummy counts)."""
    builder = LOSSES.get(name)
    try:
        builder(train_counts=[2, 1], feature_dim=4, **loss_args)
    except TypeError as exc:
        raise ConfigError(f"bad arguments for loss {name!r} (train.loss_args): {exc}") from None
    except Exception:  # noqa: BLE001 - only the arguments are checked here
        pass


def check_train_loss(cfg: Any) -> None:
    """:func:`check_loss_args` of a config's train.loss / train.loss_args, for a config that trains that loss (a
    decoupled stage 2 trains none). `openlt config` and `openlt train` both call it, so that `openlt config` refuses
    what `openlt train` refuses before any run exists."""
    if cfg.decouple.method == "none":
        check_loss_args(cfg.train.loss, cfg.train.loss_args)
