"""The registries of the models package, in timm's ``_registry.py`` shape: ``BACKBONES`` (name -> builder of a
:class:`~openlt.models.backbones.Backbone`) and ``CLASSIFIERS`` (name -> head class), and what every registered
head offers (:class:`HeadFromConfig`).

The implementation modules (backbones, cifar_resnet, classifier, meta_embedding) import this module and
register into it; ``openlt/models/__init__.py`` imports every one of them, so importing anything from
``openlt.models`` registers them all, and no implementation imports the package that imports it.
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar

from openlt.registry import Registry

__all__ = ["BACKBONES", "CLASSIFIERS", "HeadFromConfig"]

# builders called as build(*, small_input: bool, in_chans: int) -> Backbone
BACKBONES: Registry[Callable[..., Any]] = Registry("backbone")
# head classes called as cls(in_dim, num_classes, **options): (B, in_dim) features -> (B, num_classes) logits
CLASSIFIERS: Registry[Callable[..., Any]] = Registry("classifier")


class HeadFromConfig:
    """Mixin of every registered head: :meth:`from_config` builds the head from the ``model.head`` config
    section, as :meth:`openlt.openset.OpenSetScore.from_config` builds a score from ``eval``. A head lists the
    keys of that section it takes in ``config_keys`` (keyword arguments of its constructor)."""

    config_keys: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def from_config(cls, in_dim: int, num_classes: int, head_cfg: Any = None) -> Any:
        """The head for ``(B, in_dim)`` features and ``num_classes`` classes. ``head_cfg`` (the ``model.head``
        section) is read duck-typed: its attributes named in ``config_keys``; None keeps the constructor's
        defaults. Raises ConfigError (from the constructor) for an invalid option value."""
        options = {} if head_cfg is None else {key: getattr(head_cfg, key) for key in cls.config_keys}
        return cls(in_dim, num_classes, **options)
