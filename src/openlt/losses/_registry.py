"""The loss registry, in timm's ``_registry.py`` shape: ``LOSSES`` maps a config name (``train.loss``) to a
builder, and :func:`build_loss` calls it. The implementation modules import this module and register into it;
``openlt/losses/__init__.py`` imports every one of them, so importing anything from ``openlt.losses`` registers
them all.

A builder is called as ``builder(train_counts=..., feature_dim=..., **train.loss_args)`` and returns an
``nn.Module`` called as ``loss(outputs, targets)``.
"""

from __future__ import annotations

import difflib
import inspect
from typing import Any, Callable

from torch import nn

from openlt.errors import ConfigError
from openlt.registry import Registry

__all__ = ["CLASS_WEIGHT_ARGS", "LOSSES", "build_loss", "check_class_weights"]

LOSSES: Registry[Callable[..., nn.Module]] = Registry("loss")

# The train.loss_args entries of a loss that hold one weight per class (focal: alpha), filled in by the modules
# that register such a loss: checked at the config (:func:`check_class_weights`) and against the split's class
# count before any run exists (`engine.precheck.check_loss_weights`).
CLASS_WEIGHT_ARGS: dict[str, tuple[str, ...]] = {}


def build_loss(name: str, train_counts: list[int] | None = None, feature_dim: int | None = None,
               **kwargs: Any) -> nn.Module:
    """The loss registered as `name`; every builder receives the training images per class (`train_counts`,
    length K) and the feature dimension D of the head's input. ConfigError for an unknown name or bad options."""
    builder = LOSSES.get(name)
    problem = loss_args_problem(name, kwargs)
    if problem:
        raise ConfigError(problem)
    try:
        return builder(train_counts=train_counts, feature_dim=feature_dim, **kwargs)
    except TypeError as exc:
        raise ConfigError(f"bad arguments for loss {name!r}: {exc}") from None


_GIVEN = ("train_counts", "feature_dim")  # what every builder receives from openlt, not from train.loss_args


def loss_arguments(name: str) -> dict[str, inspect.Parameter] | None:
    """The train.loss_args the loss registered as `name` takes, by name (with their defaults): the builder's
    keyword arguments, and where it passes ``**kwargs`` on, those of the loss class it builds (the nn.Module class
    the builder's code names: ``CrossEntropy(**kwargs)``). None when they cannot be told (a builder whose
    ``**kwargs`` go elsewhere): then nothing is refused by name."""
    builder = LOSSES.get(name)
    found: dict[str, inspect.Parameter] = {}
    open_ended = False
    for param in inspect.signature(builder).parameters.values():
        if param.kind is param.VAR_KEYWORD:
            open_ended = True
        elif param.kind in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY) and param.name not in _GIVEN:
            found[param.name] = param
    if not open_ended:
        return found
    code = getattr(builder, "__code__", None)
    scope = getattr(builder, "__globals__", {})
    classes = [scope[n] for n in (code.co_names if code else ()) if isinstance(scope.get(n), type)
               and issubclass(scope[n], nn.Module)]
    if len(classes) != 1:
        return None
    for param in list(inspect.signature(classes[0].__init__).parameters.values())[1:]:  # after self
        if param.kind is param.VAR_KEYWORD:
            return None
        if param.kind in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY) and param.name not in _GIVEN:
            found[param.name] = param
    return found


def _arguments_text(name: str, known: dict[str, inspect.Parameter]) -> str:
    if not known:
        return "it takes no arguments (leave train.loss_args empty)"
    return "its arguments: " + ", ".join(
        f"{p.name} (default {p.default!r})" if p.default is not p.empty else p.name for p in known.values())


def _may_be_none(param: inspect.Parameter) -> bool:
    return param.default is None or "None" in str(param.annotation) or "Optional" in str(param.annotation)


def loss_args_problem(name: str, loss_args: dict[str, Any], where: dict[str, str] | None = None) -> str | None:
    """Why the loss registered as `name` cannot take `loss_args` (None when it can, as far as names and value
    kinds tell): an argument it does not take, an empty value (`train.loss_args.gamma=`: null) where the argument
    has no null meaning, a number argument given text, a true / false one given something else. One line naming
    train.loss_args.KEY (and, from `where`: dotted key -> "override 'K=V'" / "FILE, line N", where it was set)
    and the arguments the loss takes."""
    known = loss_arguments(name)
    if known is None:
        return None
    for key, value in loss_args.items():
        full = f"train.loss_args.{key}"
        origin = (where or {}).get(full) or (where or {}).get("train.loss_args")
        head = f"{origin + ': ' if origin else ''}bad arguments for loss {name!r} ({full})"
        param = known.get(key)
        if param is None:
            close = difflib.get_close_matches(str(key), list(known), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            return f"{head}: it takes no argument {key!r}{hint}; {_arguments_text(name, known)}"
        default = param.default
        if value is None and not _may_be_none(param):
            return (f"{head}: {key} is empty (null); give it a value or leave it out (default {default!r}); "
                    f"{_arguments_text(name, known)}")
        if value is None:
            continue
        if isinstance(default, bool):
            if not isinstance(value, bool):
                return f"{head}: {key} must be true or false, got {value!r}; {_arguments_text(name, known)}"
        elif isinstance(default, (int, float)) and (isinstance(value, bool) or not isinstance(value, (int, float))):
            return f"{head}: {key} must be a number, got {value!r}; {_arguments_text(name, known)}"
    return None


def check_loss_args(name: str, loss_args: dict[str, Any], where: dict[str, str] | None = None) -> None:
    """ConfigError when the loss registered as `name` does not take `loss_args`: first by the names and kinds of
    its arguments (:func:`loss_args_problem`, `where`: where each key was set), then by building it once on two
    dummy classes, before any run directory exists. Other
    failures of that dummy build are left to the real one (they may come from the dummy counts). Then the per-class
    weights (:func:`check_class_weights`: all zeros, a single number), whose length is checked where the class count
    is known (`engine.precheck.check_loss_weights`)."""
    builder = LOSSES.get(name)
    problem = loss_args_problem(name, loss_args, where)
    if problem:
        raise ConfigError(problem)
    try:
        builder(train_counts=[2, 1], feature_dim=4, **loss_args)
    except TypeError as exc:
        raise ConfigError(f"bad arguments for loss {name!r} (train.loss_args): {exc}") from None
    except Exception:  # noqa: BLE001 - only the arguments are checked here
        pass
    check_class_weights(name, loss_args)


def check_train_loss(cfg: Any) -> None:
    """:func:`check_loss_args` of a config's train.loss / train.loss_args, for a config that trains that loss (a
    decoupled stage 2 trains none). `openlt config` and `openlt train` both call it, so that `openlt config` refuses
    what `openlt train` refuses before any run exists."""
    if cfg.decouple.method == "none":
        check_loss_args(cfg.train.loss, cfg.train.loss_args, getattr(cfg, "_explicit", None))


def check_class_weights(name: str, loss_args: dict[str, Any], num_classes: int | None = None) -> None:
    """ConfigError (one line naming train.loss_args.KEY) when a per-class weight entry of loss `name`
    (:data:`CLASS_WEIGHT_ARGS`) is not a list of numbers >= 0, is all zeros (the loss would be 0 on every image:
    nothing learnt), or, with `num_classes` known, does not hold one weight per class."""
    for key in CLASS_WEIGHT_ARGS.get(name, ()):
        value = loss_args.get(key)
        if value is None:
            continue
        where = f"train.loss_args.{key}"
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}={value!r}: loss {name!r} takes one weight per class, a list such as "
                              f"[1, 2, 4] (not a single number: that is the binary alpha of torchvision's "
                              f"sigmoid_focal_loss)")
        if not value or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            raise ConfigError(f"{where}={value!r}: loss {name!r} takes one number >= 0 per class")
        if any(not v >= 0 for v in value):
            raise ConfigError(f"{where}={value!r}: the per-class weights of loss {name!r} must be >= 0")
        if not any(v > 0 for v in value):
            raise ConfigError(f"{where}={value!r}: every class weight is 0, so the loss would be 0 on every image "
                              f"and nothing would be learnt; give at least one class a weight > 0")
        if num_classes is not None and len(value) != num_classes:
            raise ConfigError(f"{where} has {len(value)} weights but the split has {num_classes} classes: "
                              f"give one weight per class")
