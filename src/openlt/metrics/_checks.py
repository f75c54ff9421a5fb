"""The input checks every metric function shares: what each kind of input may hold, said once.

Each helper converts (numpy arrays, torch tensors on any device, lists) and refuses with one ValueError naming the
argument: class ids that are not whole numbers, scores that are nan / inf, probabilities outside [0, 1], a
right / wrong flag that is not a boolean or 0 / 1, arrays of different lengths; a dict, set, text or iterator where
a vector is expected is a TypeError naming it (:func:`refuse_unordered`). An empty input passes these
checks; what it means is each metric's business (its docstring says).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

__all__ = ["binary_vector", "finite_vector", "int_vector", "probability_vector", "refuse_unordered", "same_length",
           "to_numpy"]


def to_numpy(x: Any) -> np.ndarray:
    """Return ``x`` as a numpy array; torch tensors are detached and moved to the CPU first."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # torch.Tensor, without importing torch
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _vector(x: Any, name: str) -> np.ndarray:
    refuse_unordered(x, name)
    arr = to_numpy(x)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    return arr


def refuse_unordered(x: Any, name: str) -> None:
    """TypeError naming the argument for what numpy would read as one object, not a vector: a dict (``{class id:
    count}``: which key is which position is not the caller's to guess, and a key left out would shift every
    class after it), a set (no order), a text, an iterator. Lists, tuples, numpy arrays and tensors pass."""
    if isinstance(x, Mapping):
        raise TypeError(f"{name} must be a list, a numpy array or a tensor, got a {type(x).__name__} of {len(x)} "
                        f"keys (a mapping has no positions: a missing key would shift every class after it); for "
                        f"a {{class id: value}} dict d pass [d[c] for c in range(num_classes)]")
    if isinstance(x, (set, frozenset, str, bytes)) or isinstance(x, Iterator):
        raise TypeError(f"{name} must be a list, a numpy array or a tensor, got a {type(x).__name__}"
                        + (f"; pass list({name})" if isinstance(x, Iterator) else ""))


def int_vector(x: Any, name: str) -> np.ndarray:
    """``x`` as a 1-D int64 array; ValueError for booleans, text, or values that are not whole numbers."""
    arr = _vector(x, name)
    if arr.size == 0:
        return arr.astype(np.int64)
    if arr.dtype.kind == "b" or arr.dtype.kind not in "iuf":
        raise ValueError(f"{name} must hold integer class ids, got dtype {arr.dtype}")
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise ValueError(f"{name} must hold integer class ids, got non-integral values")
    return arr.astype(np.int64)


def finite_vector(x: Any, name: str) -> np.ndarray:
    """``x`` as a 1-D float64 array of finite numbers; ValueError for text, booleans, nan or inf."""
    arr = _vector(x, name)
    if arr.size and (arr.dtype.kind == "b" or arr.dtype.kind not in "iuf"):
        raise ValueError(f"{name} must hold numbers, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains nan or inf")
    return arr


def probability_vector(x: Any, name: str) -> np.ndarray:
    """``x`` as a 1-D float64 array of probabilities: finite and in [0, 1] (ValueError naming the first outside)."""
    arr = finite_vector(x, name)
    outside = (arr < 0) | (arr > 1)
    if outside.any():
        i = int(np.argmax(outside))
        raise ValueError(f"{name} must be probabilities in [0, 1], got {arr[i].item()!r} at index {i}")
    return arr


def binary_vector(x: Any, name: str) -> np.ndarray:
    """``x`` as a 1-D bool array: booleans, or numbers that are all 0 or 1 (ValueError naming the first other
    value: ``[2, 0]`` is not a list of right / wrong flags, and ``astype(bool)`` would call 2 right)."""
    arr = _vector(x, name)
    if arr.dtype.kind == "b" or arr.size == 0:
        return arr.astype(bool)
    if arr.dtype.kind not in "iuf":
        raise ValueError(f"{name} must hold booleans or 0 / 1, got dtype {arr.dtype}")
    other = ~((arr == 0) | (arr == 1))  # nan is neither
    if other.any():
        i = int(np.argmax(other))
        raise ValueError(f"{name} must hold booleans or 0 / 1, got {arr[i].item()!r} at index {i}")
    return arr == 1


def same_length(**arrays: np.ndarray) -> None:
    """ValueError naming the arrays when they are not all of one length (keyword name = the argument's name)."""
    lengths = {name: len(arr) for name, arr in arrays.items()}
    if len(set(lengths.values())) > 1:
        names = list(lengths)
        raise ValueError(f"{', '.join(names[:-1])} and {names[-1]} differ in length: "
                         f"{' vs '.join(str(n) for n in lengths.values())}")
