"""The embedded benchmark's raw data: Fashion-MNIST read from its IDX files straight into tensors.

Looked for in `root` (when given), else $OPENLT_FASHION_MNIST (when set: that folder or an error, never another
copy), else Debian's `dataset-fashion-mnist` package and openlt's cache; where none has it, torchvision's
downloader fills the cache (needs the internet).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from openlt.errors import DataError

CLASS_NAMES = (
    "t-shirt/top", "trouser", "pullover", "dress", "coat",
    "sandal", "shirt", "sneaker", "bag", "ankle boot",
)
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def cache_dir() -> Path:
    """openlt's Fashion-MNIST cache, $OPENLT_CACHE/fashion-mnist (default ~/.cache/openlt/fashion-mnist)."""
    return Path(os.environ.get("OPENLT_CACHE", Path.home() / ".cache" / "openlt")) / "fashion-mnist"


def _find_file(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / stem, folder / f"{stem}.gz", folder / "FashionMNIST" / "raw" / stem,
                      folder / "FashionMNIST" / "raw" / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _missing(folder: Path) -> list[str]:
    """The IDX files (stems) that `folder` lacks: none found as STEM, STEM.gz or FashionMNIST/raw/STEM[.gz]."""
    return [stem for pair in FILES.values() for stem in pair if not _find_file(folder, stem)]


def _has_all(folder: Path) -> bool:
    return not _missing(folder)


def _env_folder() -> Path | None:
    """$OPENLT_FASHION_MNIST when set (not empty): it must be a folder of the four IDX files, else DataError naming
    the variable and what is missing -- never a silent fall back to another copy of the data set."""
    value = os.environ.get("OPENLT_FASHION_MNIST")
    if not value:
        return None
    folder = Path(value).expanduser()
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise DataError(f"$OPENLT_FASHION_MNIST is {value!r}, which {what}; point it at a folder of the four "
                        f"Fashion-MNIST IDX files, or unset it")
    missing = _missing(folder)
    if missing:
        raise DataError(f"$OPENLT_FASHION_MNIST is {value!r}, which lacks {', '.join(missing)} (as the file, .gz, or "
                        f"under FashionMNIST/raw/); point it at a folder of the four Fashion-MNIST IDX files, or "
                        f"unset it")
    return folder


def locate(root: str | os.PathLike | None = None, download: bool = True) -> Path:
    """Return a folder holding the four IDX files, downloading into the cache as a last resort."""
    if root is not None:
        folder = Path(root)
        if not folder.exists():
            raise DataError(f"Fashion-MNIST root does not exist: {folder}")
        if not _has_all(folder):
            raise DataError(f"Fashion-MNIST root {folder} lacks the IDX files ({', '.join(FILES['train'] + FILES['test'])}[.gz])")
        return folder
    env = _env_folder()  # set: that folder, or one line saying what is wrong with it
    if env is not None:
        return env
    candidates = [DEBIAN_DIR, cache_dir()]
    for folder in candidates:
        if _has_all(folder):
            return folder
    if download:
        try:
            from torchvision.datasets import FashionMNIST

            for train in (True, False):
                FashionMNIST(str(cache_dir()), train=train, download=True)
        except Exception as exc:  # offline, or the mirror is down
            raise DataError(
                "Fashion-MNIST not found (looked in $OPENLT_FASHION_MNIST, "
                f"{DEBIAN_DIR}, {cache_dir()}) and the download failed ({exc.__class__.__name__}: {exc}). "
                "Install Debian's package: apt-get install dataset-fashion-mnist"
            ) from None
        if _has_all(cache_dir()):
            return cache_dir()
    raise DataError(f"Fashion-MNIST not found in {', '.join(map(str, candidates))}")


def _read_idx(path: Path, digests: dict[str, str] | None = None) -> np.ndarray:
    """The array of one IDX file (gzipped or not). `digests`, when given, gets the sha256 (hex) of its IDX data
    (the bytes after gunzip for a .gz: a file and its gzipped copy are the same data) under the file's stem."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            data = fh.read()
        if digests is not None:
            digests[path.name.removesuffix(".gz")] = hashlib.sha256(data).hexdigest()
        zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
        if zero != 0 or dtype_code != 0x08:
            raise ValueError("not an unsigned-byte IDX file")
        shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
        array = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
        if array.size != int(np.prod(shape)):
            raise ValueError(f"expected {int(np.prod(shape))} values, found {array.size}")
        return array.reshape(shape)
    except (OSError, ValueError, EOFError, struct.error) as exc:
        raise DataError(f"cannot read IDX file {path}: {exc}") from None


@dataclass
class ArrayPart:
    """One part (train or test) of an array dataset: uint8 images (N, H, W) and int labels (N,)."""

    images: torch.Tensor
    labels: torch.Tensor


_CACHE: dict[Path, dict[str, ArrayPart]] = {}
_FILES: dict[Path, dict[str, dict[str, str]]] = {}  # {stem: {"file", "sha256"}} of the files each _CACHE entry read


def load(root: str | os.PathLike | None = None) -> dict[str, ArrayPart]:
    """Load both parts once per process (about 60 MB as uint8), with the sha256 of each IDX file's data
    (:func:`data_files`)."""
    folder = locate(root).resolve()
    if folder not in _CACHE:
        parts, files = {}, {}
        for part, (images_stem, labels_stem) in FILES.items():
            digests: dict[str, str] = {}
            paths = {stem: _find_file(folder, stem) for stem in (images_stem, labels_stem)}
            images = _read_idx(paths[images_stem], digests)
            labels = _read_idx(paths[labels_stem], digests)
            if len(images) != len(labels):
                raise DataError(f"Fashion-MNIST {part}: {len(images)} images but {len(labels)} labels in {folder}")
            parts[part] = ArrayPart(torch.from_numpy(images.copy()), torch.from_numpy(labels.astype(np.int64)))
            files.update({stem: {"file": str(path), "sha256": digests[stem]} for stem, path in paths.items()})
        _CACHE[folder], _FILES[folder] = parts, files
    return _CACHE[folder]


def data_files(root: str | os.PathLike | None = None) -> dict:
    """The identity of the IDX files :func:`load` reads from `root` (read once per process, with the images):
    ``{"folder": the folder found (absolute), "files": {stem: {"file": its absolute path, "sha256": hex of its IDX
    data, after gunzip}}}``. A run records it (split_manifest.json ``data_files``) so that `openlt eval`,
    `--resume` and a stage 2 see a data.root whose files hold other pixels."""
    load(root)
    folder = locate(root).resolve()
    return {"folder": str(folder), "files": {stem: dict(info) for stem, info in sorted(_FILES[folder].items())}}
