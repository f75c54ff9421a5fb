"""Input checks shared by the decoupling classifiers: cached features, labels and classifier weights as the
tensors they must be, with a DataError / ConfigError naming what is wrong."""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np
import torch
from torch import Tensor

from openlt.config import MAX_TAU  # the config's bound on decouple.taus: one rule for code and config
from openlt.errors import ConfigError, DataError
from openlt.openset.base import as_tensor, class_ids, non_finite_rows


HALF = (torch.float16, torch.bfloat16)


def _integer(value: Any, name: str, minimum: int = 1) -> int:
    """`value` as an int: a whole number (Python or numpy integer, or a float with no fraction), not a bool, at
    least `minimum`; ConfigError naming `name` otherwise."""
    ok = isinstance(value, numbers.Integral) or (isinstance(value, numbers.Real) and math.isfinite(value)
                                                 and float(value).is_integer())
    if isinstance(value, (bool, np.bool_)) or not ok or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _tau(tau: Any, name: str = "tau") -> float:
    """A tau of tau-normalisation: a real number (Python or numpy; not a bool or a string) in [0, MAX_TAU], as
    the config's ``decouple.taus`` items; ConfigError naming `name` otherwise."""
    if isinstance(tau, (bool, np.bool_)) or not isinstance(tau, numbers.Real) or not math.isfinite(tau) \
            or not 0 <= tau <= MAX_TAU:
        raise ConfigError(f"{name} must be a number >= 0 and <= {MAX_TAU:g} (w / ||w||^tau), got {tau!r}")
    return float(tau)


def _features(x: Any, name: str = "features", keep_half: bool = False) -> Tensor:
    """(N, D) floating tensor, half/bfloat16 upcast to float32; DataError on a wrong shape or non-finite values.
    ``keep_half``: half/bfloat16 features are returned as they are (a float16 feature cache is 1.7 GB at
    iNaturalist's 437k x 2048, its float32 copy 3.4 GB), for a caller that converts them a batch / chunk of rows
    at a time (:func:`compute_dtype`: to float32, the values the whole conversion gives)."""
    t = as_tensor(x, name)
    if t.dim() != 2:
        raise DataError(f"{name} must be a 2-D tensor (N, D), got shape {tuple(t.shape)}")
    if t.dtype == torch.bool or t.is_complex():
        raise DataError(f"{name} must be real numbers, got dtype {t.dtype}")
    if not t.is_floating_point():
        t = t.float()
    elif t.dtype not in (torch.float32, torch.float64) and not (keep_half and t.dtype in HALF):
        t = t.float()
    if non_finite_rows(t):  # (a chunk of rows at a time: all at once would peak at 1.7x the features)
        raise DataError(f"{name} contain non-finite values")
    return t


def compute_dtype(x: Tensor) -> torch.dtype:
    """The dtype a classifier computes in on features `x`: float32 for half / bfloat16 (what :func:`_features`
    upcasts them to), else their own."""
    return torch.float32 if x.dtype in HALF else x.dtype


def _labels(y: Any, n: int, name: str = "labels") -> Tensor:
    """(N,) LongTensor of class ids >= 0 matching N features; DataError otherwise (text: "map class names to ids
    first")."""
    t = as_tensor(y, name)
    if t.dim() != 1:
        raise DataError(f"{name} must be one-dimensional, got shape {tuple(t.shape)}")
    if len(t) != n:
        raise DataError(f"{n} features but {len(t)} {name}")
    t = class_ids(t, name)
    if t.numel() and int(t.min()) < 0:
        raise DataError(f"{name} must be >= 0 (known classes only), got {int(t.min())}")
    return t


def _weight(w: Any, name: str = "weight") -> Tensor:
    """The (C, D) floating classifier weight, finite; ConfigError naming `name` otherwise (NaN / inf rows would
    give NaN logits: argmax class 0 for every image, or a training loss that "became nan")."""
    t = as_tensor(w, name, ConfigError)
    if t.dim() != 2 or not t.is_floating_point():
        raise ConfigError(f"classifier {name} must be a floating (num_classes, D) tensor, got "
                          f"shape {tuple(t.shape)}, dtype {t.dtype}")
    found = non_finite_rows(t.detach())
    if found:
        raise ConfigError(f"classifier {name} holds NaN or infinite values in {found[0]} of {len(t)} rows (first: row "
                          f"{found[1]})")
    return t.detach()


def _bias(b: Any, num_classes: int, dtype: torch.dtype, name: str = "bias") -> Tensor:
    """The (C,) classifier bias as `dtype`, finite; ConfigError naming `name` otherwise."""
    t = as_tensor(b, name, ConfigError)
    if t.dtype == torch.bool or t.is_complex():
        raise ConfigError(f"classifier {name} must be real numbers, got dtype {t.dtype}")
    t = t.detach().clone().to(dtype)
    if t.shape != (num_classes,):
        raise ConfigError(f"{name} must have shape ({num_classes},), got {tuple(t.shape)}")
    found = non_finite_rows(t)
    if found:
        raise ConfigError(f"classifier {name} holds NaN or infinite values in {found[0]} of {num_classes} "
                          f"classes (first: class {found[1]})")
    return t


def _check_dim(x: Tensor, d: int, what: str) -> None:
    if x.shape[1] != d:
        raise DataError(f"features have dimension {x.shape[1]} but the {what} expects {d}")
