"""Input checks shared by the decoupling classifiers: cached features, labels and classifier weights as the
tensors they must be, with a DataError / ConfigError naming what is wrong."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from openlt.errors import ConfigError, DataError


HALF = (torch.float16, torch.bfloat16)


def _features(x: Any, name: str = "features", keep_half: bool = False) -> Tensor:
    """(N, D) floating tensor, half/bfloat16 upcast to float32; DataError on a wrong shape or non-finite values.
    ``keep_half``: half/bfloat16 features are returned as they are (a float16 feature cache is 1.7 GB at
    iNaturalist's 437k x 2048, its float32 copy 3.4 GB), for a caller that converts them a batch / chunk of rows
    at a time (:func:`compute_dtype`: to float32, the values the whole conversion gives)."""
    t = torch.as_tensor(x)
    if t.dim() != 2:
        raise DataError(f"{name} must be a 2-D tensor (N, D), got shape {tuple(t.shape)}")
    if not t.is_floating_point():
        t = t.float()
    elif t.dtype not in (torch.float32, torch.float64) and not (keep_half and t.dtype in HALF):
        t = t.float()
    # a chunk of rows at a time: isfinite over all (N, D) at once peaks at 1.7x the features (6 GB at iNaturalist)
    if t.numel() and not all(bool(torch.isfinite(rows).all()) for rows in t.split(8192)):
        raise DataError(f"{name} contain non-finite values")
    return t


def compute_dtype(x: Tensor) -> torch.dtype:
    """The dtype a classifier computes in on features `x`: float32 for half / bfloat16 (what :func:`_features`
    upcasts them to), else their own."""
    return torch.float32 if x.dtype in HALF else x.dtype


def _labels(y: Any, n: int, name: str = "labels") -> Tensor:
    """(N,) LongTensor of class ids >= 0 matching N features; DataError otherwise."""
    t = torch.as_tensor(y)
    if t.dim() != 1:
        raise DataError(f"{name} must be one-dimensional, got shape {tuple(t.shape)}")
    if len(t) != n:
        raise DataError(f"{n} features but {len(t)} {name}")
    if t.is_floating_point():
        if not torch.equal(t, t.round()):
            raise DataError(f"{name} must be integer class ids, got non-integral values")
    elif t.dtype == torch.bool or t.is_complex():
        raise DataError(f"{name} must be integer class ids, got dtype {t.dtype}")
    t = t.long()
    if t.numel() and int(t.min()) < 0:
        raise DataError(f"{name} must be >= 0 (known classes only), got {int(t.min())}")
    return t


def _weight(w: Any) -> Tensor:
    t = torch.as_tensor(w)
    if t.dim() != 2 or not t.is_floating_point():
        raise ConfigError(f"classifier weight must be a floating (num_classes, D) tensor, got "
                          f"shape {tuple(t.shape)}, dtype {t.dtype}")
    return t.detach()


def _check_dim(x: Tensor, d: int, what: str) -> None:
    if x.shape[1] != d:
        raise DataError(f"features have dimension {x.shape[1]} but the {what} expects {d}")
