"""CIFAR-10 / CIFAR-100 read from the official python-pickle batches straight into uint8 tensors.

`root` may be the folder that holds `cifar-10-batches-py/` / `cifar-100-python/` (torchvision's root) or that
folder itself. Without a root, openlt's cache is used, and torchvision's downloader fills it (needs the
internet). The pickles are read with a restricted unpickler that only builds dicts, lists, bytes and numpy
arrays, so a tampered file cannot run code; torchvision's classes are not used because they refuse any file
whose md5 differs from the official one (and so every small test file).
"""

from __future__ import annotations

import codecs
import hashlib
import importlib
import io
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from openlt.data.class_names import add_class_name
from openlt.data.fashion_mnist import ArrayPart
from openlt.errors import ConfigError, DataError

IMAGE_SHAPE = (3, 32, 32)


@dataclass(frozen=True)
class CifarFormat:
    """Where one CIFAR version keeps its batches and under which keys."""

    folder: str
    train: tuple[str, ...]
    test: tuple[str, ...]
    meta: str
    labels_key: bytes
    names_key: bytes
    num_classes: int
    archive: str  # the official archive the folder comes from
    download_class: str  # torchvision.datasets class that downloads it


FORMATS = {
    "cifar10": CifarFormat("cifar-10-batches-py", tuple(f"data_batch_{i}" for i in range(1, 6)), ("test_batch",),
                           "batches.meta", b"labels", b"label_names", 10, "cifar-10-python.tar.gz", "CIFAR10"),
    "cifar100": CifarFormat("cifar-100-python", ("train",), ("test",), "meta", b"fine_labels", b"fine_label_names",
                            100, "cifar-100-python.tar.gz", "CIFAR100"),
}


def _format(name: str) -> CifarFormat:
    if name not in FORMATS:
        raise ConfigError(f"unknown CIFAR version {name!r}; known: {', '.join(FORMATS)}")
    return FORMATS[name]


def cache_dir() -> Path:
    """openlt's CIFAR cache, $OPENLT_CACHE/cifar (default ~/.cache/openlt/cifar): where the download goes."""
    return Path(os.environ.get("OPENLT_CACHE", Path.home() / ".cache" / "openlt")) / "cifar"


# --- safe unpickling -------------------------------------------------------------------------------------

def _numpy_attr(modules: tuple[str, ...], name: str):
    for module in modules:  # numpy >= 2 moved numpy.core to numpy._core; old pickles name numpy.core
        try:
            return getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            continue
    return None


def _empty_bytes(*args) -> bytes:
    """`bytes()` as a protocol-2 pickle of Python 3 writes b''; with arguments (`bytes(10**12)`: memory) refused."""
    if args:
        raise pickle.UnpicklingError("refusing to load builtins.bytes with arguments (not part of a CIFAR batch)")
    return b""


_RECONSTRUCT = _numpy_attr(("numpy._core.multiarray", "numpy.core.multiarray"), "_reconstruct")
_FROMBUFFER = _numpy_attr(("numpy._core.numeric", "numpy.core.numeric"), "_frombuffer")
_ALLOWED = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy.core.numeric", "_frombuffer"): _FROMBUFFER,
    ("numpy._core.numeric", "_frombuffer"): _FROMBUFFER,
    ("_codecs", "encode"): codecs.encode,  # how protocol-2 pickles written by Python 3 store bytes
    ("__builtin__", "bytes"): _empty_bytes,  # ... and the empty bytes b'' (protocol 2: `bytes()`)
    ("builtins", "bytes"): _empty_bytes,
}


class _SafeUnpickler(pickle.Unpickler):
    """Builds only plain containers and numpy arrays; any other global (os.system, ...) is refused."""

    def find_class(self, module: str, name: str):
        """The global `module.name` if it is one a CIFAR batch needs (numpy array rebuilding, codecs.encode);
        anything else raises pickle.UnpicklingError (read_batch reports it as a DataError)."""
        found = _ALLOWED.get((module, name))
        if found is None:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} (not part of a CIFAR batch)")
        return found


def read_batch(path: Path, digests: dict[str, str] | None = None) -> dict[bytes, object]:
    """One pickled batch as a dict with bytes keys (as the CIFAR page's `pickle.load(fo, encoding='bytes')`).
    `digests`, when given, gets the sha256 (hex) of the file's bytes under its name (the bytes read once)."""
    try:
        raw = Path(path).read_bytes()
        if digests is not None:
            digests[Path(path).name] = hashlib.sha256(raw).hexdigest()
        batch = _SafeUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except FileNotFoundError:
        raise DataError(f"CIFAR batch not found: {path}") from None
    except Exception as exc:  # truncated, not a pickle, or a forbidden global: all mean a corrupt file
        raise DataError(f"cannot read CIFAR batch {path}: {exc.__class__.__name__}: {exc}") from None
    if not isinstance(batch, dict):
        raise DataError(f"CIFAR batch {path} is not a pickled dict (found {type(batch).__name__})")
    # Python-3 written pickles may use str keys; the official files use bytes
    return {k.encode() if isinstance(k, str) else k: v for k, v in batch.items()}


# --- locating and loading ----------------------------------------------------------------------------------

def _missing(folder: Path, fmt: CifarFormat) -> list[str]:
    return [f for f in (*fmt.train, *fmt.test, fmt.meta) if not (folder / f).is_file()]


def _new_folders(folder: Path) -> list[Path]:
    """`folder` and its parents that do not exist yet, deepest first."""
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing


def _remove_empty(folders: list[Path]) -> None:
    """Remove `folders` (deepest first) while they are empty."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:  # not empty (or gone): it and those above it stay
            return


def locate(name: str, root: str | os.PathLike | None = None, download: bool = True) -> Path:
    """The folder that holds the batches of `name` (cifar10 | cifar100); downloads only when no root is given."""
    fmt = _format(name)
    if root is not None:
        given = Path(root)
        if not given.exists():
            raise DataError(f"{name} root does not exist: {given}")
        for folder in (given / fmt.folder, given):
            if folder.is_dir() and not _missing(folder, fmt):
                return folder
        folder = given / fmt.folder if (given / fmt.folder).is_dir() else given
        raise DataError(f"{name} root {given} lacks the python batches: missing {', '.join(_missing(folder, fmt))} "
                        f"in {folder} (expected {given}/{fmt.folder}/ as extracted from {fmt.archive})")
    folder = cache_dir() / fmt.folder
    if not _missing(folder, fmt):
        return folder
    if download:
        created = _new_folders(cache_dir())  # made by the download: removed again when it fails (nothing left)
        try:
            import torchvision.datasets as tvd

            for train in (True, False):
                getattr(tvd, fmt.download_class)(str(cache_dir()), train=train, download=True)
        except Exception as exc:  # offline, or the server is down
            if created:  # a partial archive in a cache this call made is this call's: removed with the folders
                (cache_dir() / Path(fmt.archive).name).unlink(missing_ok=True)
            _remove_empty(created)
            raise DataError(f"{name} not found in {folder} and the download failed ({exc.__class__.__name__}: {exc}); "
                            f"give data.root (or --root) = the folder holding {fmt.folder}/") from None
        if not _missing(folder, fmt):
            return folder
    raise DataError(f"{name} not found in {folder}; give data.root (or --root) = the folder holding {fmt.folder}/")


def _read_part(folder: Path, files: tuple[str, ...], fmt: CifarFormat, digests: dict[str, str]) -> ArrayPart:
    images, labels = [], []
    for file in files:
        path = folder / file
        batch = read_batch(path, digests)
        data, targets = batch.get(b"data"), batch.get(fmt.labels_key)
        if not isinstance(data, np.ndarray) or targets is None:
            raise DataError(f"CIFAR batch {path} lacks b'data' (uint8 array) or {fmt.labels_key!r}")
        if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != int(np.prod(IMAGE_SHAPE)):
            raise DataError(f"CIFAR batch {path}: b'data' must be uint8 of shape (N, 3072), found "
                            f"{data.dtype} {data.shape}")
        targets = np.asarray(targets)
        if targets.ndim != 1 or len(targets) != len(data) or not np.issubdtype(targets.dtype, np.integer):
            raise DataError(f"CIFAR batch {path}: {len(data)} images but labels of shape {targets.shape}, "
                            f"type {targets.dtype}")
        if len(targets) and (targets.min() < 0 or targets.max() >= fmt.num_classes):
            raise DataError(f"CIFAR batch {path}: labels must lie in 0..{fmt.num_classes - 1}, found "
                            f"{targets.min()}..{targets.max()}")
        images.append(data.reshape(-1, *IMAGE_SHAPE))  # rows are 1024 R, then G, then B values
        labels.append(targets.astype(np.int64))
    return ArrayPart(torch.from_numpy(np.concatenate(images)), torch.from_numpy(np.concatenate(labels)))


def class_names(name: str, root: str | os.PathLike | None = None) -> list[str]:
    """The class names of `name` (cifar10 | cifar100; CIFAR-100: the 100 fine labels) in label order, read
    from the meta file of the batches `locate` finds (downloaded when `root` is None and they are not cached).

    ConfigError for another `name`; DataError when the batches are missing or the meta file does not list
    exactly 10 / 100 names."""
    fmt = _format(name)
    path = locate(name, root) / fmt.meta
    names = read_batch(path).get(fmt.names_key)
    if not isinstance(names, list) or len(names) != fmt.num_classes:
        raise DataError(f"CIFAR meta file {path} must list {fmt.num_classes} names under {fmt.names_key!r}")
    return checked_class_names(path, names)


def checked_class_names(path: Path, names: list) -> list[str]:
    """The class names a CIFAR meta file `path` lists, as text, checked as the class names of any other source
    (class-name files, image folders) are, where they are read and so before any split is written: each is UTF-8
    text, not empty, one the outputs can hold (`splits.class_name_problem`: not 'unknown', no ';', ':' or control
    character), given once, and no two look alike (`datasets.lookalike_names`: 'cat' / 'Cat', NFC / NFD, ...).
    DataError naming the meta file, the class index (its label) and the problem. A name that mixes Latin letters
    with look-alike letters of another script inside one word ('сat', Cyrillic с) is warned about as an image
    folder's class folder is (`datasets.warn_mixed_scripts`: one line, once per process and file)."""
    from openlt.data.datasets import lookalike_names, warn_mixed_scripts  # (imports torchvision: only when read)

    texts: list[str] = []
    first: dict[str, int] = {}
    for index, raw in enumerate(names):
        where = f"CIFAR meta file {path}: class name {index}"
        if isinstance(raw, bytes):
            try:
                name = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise DataError(f"{where} ({raw!r}) is not UTF-8 text") from None
        elif isinstance(raw, str):
            name = raw
        else:
            raise DataError(f"{where} is not text (found {type(raw).__name__} {raw!r})")
        if not name.strip():
            raise DataError(f"{where} is empty ({name!r}): every class needs a name")
        add_class_name(first, name, index, where, "class name {}")
        texts.append(name)
    alike = lookalike_names(texts, folders=False)
    if alike is not None:
        other, name, how = alike
        raise DataError(f"CIFAR meta file {path}: class name {first[name]} {name!r} and class name {first[other]} "
                        f"{other!r} differ {how}: they would be two classes that look alike")
    warn_mixed_scripts(f"CIFAR meta file {path}", texts)
    return texts


_CACHE: dict[tuple[str, Path], dict[str, ArrayPart]] = {}
_DIGESTS: dict[tuple[str, Path], dict[str, str]] = {}  # {file name: sha256} of the files each _CACHE entry read


def load(name: str, root: str | os.PathLike | None = None) -> dict[str, ArrayPart]:
    """Both parts as uint8 (N, 3, 32, 32) images and int64 labels, in file order; read once per process (the
    sha256 of every file read, batches and meta file, taken from the same bytes: :func:`data_files`)."""
    fmt = _format(name)
    folder = locate(name, root).resolve()
    if (name, folder) not in _CACHE:
        digests: dict[str, str] = {}
        parts = {part: _read_part(folder, files, fmt, digests)
                 for part, files in (("train", fmt.train), ("test", fmt.test))}
        try:
            digests[fmt.meta] = hashlib.sha256((folder / fmt.meta).read_bytes()).hexdigest()
        except OSError as exc:
            raise DataError(f"cannot read CIFAR meta file {folder / fmt.meta}: {exc}") from None
        _CACHE[(name, folder)], _DIGESTS[(name, folder)] = parts, digests
    return _CACHE[(name, folder)]


def data_files(name: str, root: str | os.PathLike | None = None) -> dict:
    """The identity of the files :func:`load` reads for `name` from `root` (read once per process, with the images):
    ``{"folder": the batch folder (absolute), "files": {file name: {"file": its absolute path, "sha256": hex of its
    bytes}}}``, every batch file and the meta file. A run records it (split_manifest.json ``data_files``) so that
    `openlt eval`, `--resume` and a stage 2 see a data.root whose batches hold other pixels."""
    load(name, root)
    folder = locate(name, root).resolve()
    digests = _DIGESTS[(name, folder)]
    return {"folder": str(folder),
            "files": {file: {"file": str(folder / file), "sha256": digests[file]} for file in sorted(digests)}}
