"""Small CIFAR-10 / CIFAR-100 folders in the real file format (pickled dicts with bytes keys, uint8 N x 3072
rows of 1024 R, G, B values), so that tests read the batches exactly as they would read the official ones."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np


def _images(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A class-specific colour plus noise, so that a small net could tell the classes apart."""
    base = np.stack([(labels * 67) % 256, (labels * 151) % 256, (labels * 29 + 80) % 256], axis=1).astype(np.float32)
    img = np.repeat(base, 1024, axis=1) + rng.normal(0, 20, (len(labels), 3072))
    return np.clip(img, 0, 255).astype(np.uint8)


def _labels(num_classes: int, per_class: int, rng: np.random.Generator) -> np.ndarray:
    return rng.permutation(np.repeat(np.arange(num_classes), per_class))  # classes interleaved, as in the real files


def _dump(path: Path, obj: dict, protocol: int) -> None:
    with open(path, "wb") as fh:
        pickle.dump(obj, fh, protocol=protocol)


def write_cifar10(root: Path, per_class: int = 30, test_per_class: int = 5, protocol: int = 2, seed: int = 0) -> Path:
    """root/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}; returns root."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    labels = _labels(10, per_class, rng)
    for i, chunk in enumerate(np.array_split(labels, 5), start=1):
        batch = {b"batch_label": f"training batch {i} of 5".encode(), b"labels": chunk.tolist(),
                 b"data": _images(chunk, rng), b"filenames": [b"x.png"] * len(chunk)}
        _dump(folder / f"data_batch_{i}", batch, protocol)
    test = _labels(10, test_per_class, rng)
    _dump(folder / "test_batch", {b"batch_label": b"testing batch 1 of 1", b"labels": test.tolist(),
                                  b"data": _images(test, rng)}, protocol)
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    _dump(folder / "batches.meta", {b"num_cases_per_batch": len(labels) // 5, b"label_names": names,
                                    b"num_vis": 3072}, protocol)
    return Path(root)


def write_cifar100(root: Path, per_class: int = 12, test_per_class: int = 3, protocol: int = 4, seed: int = 0) -> Path:
    """root/cifar-100-python/{train, test, meta}; returns root."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    for part, n in (("train", per_class), ("test", test_per_class)):
        fine = _labels(100, n, rng)
        _dump(folder / part, {b"filenames": [b"x.png"] * len(fine), b"batch_label": part.encode(),
                              b"fine_labels": fine.tolist(), b"coarse_labels": (fine // 5).tolist(),
                              b"data": _images(fine, rng)}, protocol)
    _dump(folder / "meta", {b"fine_label_names": [f"class{i:02d}".encode() for i in range(100)],
                            b"coarse_label_names": [f"super{i:02d}".encode() for i in range(20)]}, protocol)
    return Path(root)
