"""The registry of stage-2 methods: ``decouple.method`` name -> :class:`openlt.decoupling.base.Stage2Method`
subclass. The implementations register themselves in :mod:`openlt.decoupling.methods`, which the package's
``__init__`` imports."""

from __future__ import annotations

from openlt.config import Config
from openlt.decoupling.base import Stage2Method
from openlt.errors import ConfigError
from openlt.registry import Registry

__all__ = ["STAGE2_METHODS", "build_method", "register_method"]

STAGE2_METHODS: Registry[type[Stage2Method]] = Registry("decouple.method")


def register_method(cls: type[Stage2Method]) -> type[Stage2Method]:
    """Class decorator: register a stage-2 method under its ``name``."""
    return STAGE2_METHODS.register(cls.name)(cls)


def build_method(cfg: Config) -> Stage2Method:
    """The method named by ``cfg.decouple.method``, with its options from ``cfg``; ConfigError for an unknown
    name (listing the known ones)."""
    name = cfg.decouple.method
    if name not in STAGE2_METHODS:
        raise ConfigError(f"unknown decouple.method {name!r}; known: none, {', '.join(STAGE2_METHODS.names())}")
    return STAGE2_METHODS.get(name).from_config(cfg)
