"""Name -> builder registries, so that configs choose every pluggable piece by string (as timm does)."""

from __future__ import annotations

import difflib
from typing import Callable, Generic, TypeVar

from openlt.errors import ConfigError

T = TypeVar("T", bound=Callable)

# Every registry by kind, so that the config (a foundation module) can check a name against what the packages
# registered without importing them (they sit a layer above it).
_BY_KIND: dict[str, "Registry"] = {}


def registered_names(kind: str) -> list[str] | None:
    """The sorted names registered as `kind` ("backbone", "loss", ...), or None when no registry of that kind
    exists yet (its package has not been imported, so nothing can be checked)."""
    registry = _BY_KIND.get(kind)
    return None if registry is None else registry.names()


class Registry(Generic[T]):
    """A named table of builders. `register` is a decorator; `get` fails with the valid names listed."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        _BY_KIND[kind] = self

    def register(self, name: str | None = None) -> Callable[[T], T]:
        """Decorator adding a builder under `name` (default: its __name__); ValueError when the name is taken."""
        def add(fn: T) -> T:
            key = name or fn.__name__
            if key in self._items:
                raise ValueError(f"{self.kind} {key!r} registered twice")
            self._items[key] = fn
            return fn

        return add

    def get(self, name: str) -> T:
        """The builder registered as `name`; ConfigError listing the known names (and the closest) otherwise."""
        if name not in self._items:
            close = difflib.get_close_matches(name, self._items, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"unknown {self.kind} {name!r}.{hint} Known: {', '.join(sorted(self._items))}")
        return self._items[name]

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items
