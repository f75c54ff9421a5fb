"""From a config to split files, a manifest and datasets: the one place that knows the dataset kinds."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from openlt.config import Config
from openlt.data import cifar, fashion_mnist
from openlt.data.cifar_lt import write_cifar_lt_split
from openlt.data.datasets import (ArrayImageLoader, FileImageLoader, SplitDataset, fashion_mnist_pool,
                                  image_folder_pool)
from openlt.data.splitfile import read_split_file
from openlt.data.splits import MANIFEST, describe_split, make_split, write_split
from openlt.data.transforms import build_transform, normalisation
from openlt.errors import ConfigError, DataError
from openlt.io import sha256_file
from openlt.metrics import ShotBands

DATASET_KINDS = ("fashion-mnist", "image-folder", "split-file", "cifar10", "cifar100")
CIFAR_KINDS = ("cifar10", "cifar100")


@dataclass
class DataBundle:
    """Everything training and evaluation need to know about the data of one run."""

    cfg: Config
    split_dir: Path
    manifest: dict
    loader: object
    family: str
    image_size: int
    in_chans: int
    open_loader: object = None  # when the open split's paths live under another root

    @property
    def class_names(self) -> list[str]:
        return self.manifest["class_names"]

    @property
    def num_classes(self) -> int:
        return len(self.manifest["class_names"])

    @property
    def train_counts(self) -> list[int]:
        return self.manifest["train_counts"]

    def split_path(self, split: str) -> Path | None:
        name = getattr(self.cfg.data, f"{split}_split")
        return None if name is None else self.split_dir / name

    def has(self, split: str) -> bool:
        path = self.split_path(split)
        return path is not None and path.is_file()

    def transform(self, train: bool):
        mean, std = normalisation(self.cfg.data.dataset, self.in_chans)
        return build_transform(self.family, train, self.image_size, mean, std)

    def dataset(self, split: str, train: bool = False) -> SplitDataset:
        path = self.split_path(split)
        if path is None or not path.is_file():
            raise DataError(f"the {split} split file is missing: {path}")
        entries = read_split_file(path, allow_open=(split == "open"), num_classes=self.num_classes)
        loader = self.open_loader if split == "open" and self.open_loader is not None else self.loader
        return SplitDataset(entries, loader, self.transform(train))


def _image_loader(cfg: Config, root: str | None, in_chans: int):
    if cfg.data.dataset == "fashion-mnist":
        return ArrayImageLoader(fashion_mnist.load(root))
    if cfg.data.dataset in CIFAR_KINDS:
        return ArrayImageLoader(cifar.load(cfg.data.dataset, root))
    if root is None:
        raise ConfigError(f"data.root is required for data.dataset={cfg.data.dataset!r} (the folder the split file's paths are relative to)")
    return FileImageLoader(root, mode="L" if in_chans == 1 else "RGB")


def _build_splits(cfg: Config, out_dir: Path) -> None:
    if cfg.data.dataset in CIFAR_KINDS:  # the literature's own LT rule, not make_split's
        write_cifar_lt_split(cfg.data.dataset, cfg.data.root, cfg.data.split, out_dir, cfg.data.open_root,
                             bands=ShotBands.from_config(cfg.eval))
        return
    if cfg.data.dataset == "fashion-mnist":
        pool = fashion_mnist_pool(cfg.data.root)
    elif cfg.data.dataset == "image-folder":
        if cfg.data.root is None:
            raise ConfigError("data.root is required for data.dataset='image-folder'")
        pool = image_folder_pool(cfg.data.root)
    else:
        raise ConfigError("data.split_dir is required for data.dataset='split-file' (the folder of the split files)")
    write_split(make_split(pool, cfg.data.split), out_dir, pool, cfg.data.split, bands=ShotBands.from_config(cfg.eval))


def _class_names(cfg: Config, split_dir: Path, num_classes: int) -> list[str]:
    if cfg.data.class_names:
        path = Path(cfg.data.class_names)
        if not path.is_absolute() and not path.is_file():
            path = split_dir / path
        if not path.is_file():
            raise DataError(f"class-name file not found: {cfg.data.class_names}")
        names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        if len(names) != num_classes:
            raise DataError(f"class-name file {path} has {len(names)} names but the training split has {num_classes} classes")
        return names
    return [f"class_{i}" for i in range(num_classes)]


def _load_manifest(cfg: Config, split_dir: Path, files: dict[str, Path]) -> dict:
    """Reuse a split folder's manifest when its hashes still match, else describe the files afresh."""
    bands = ShotBands.from_config(cfg.eval)
    saved = split_dir / MANIFEST
    if saved.is_file():
        try:
            manifest = json.loads(saved.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise DataError(f"split manifest {saved} is unreadable: {exc}") from None
        recorded = manifest.get("files", {})
        fresh = all(name in recorded and recorded[name].get("sha256") == sha256_file(path) for name, path in files.items())
        if fresh:
            manifest["bands"] = {"rule": bands.describe(), "per_class": bands.bands_of(manifest["train_counts"])}
            return manifest
    train = read_split_file(files["train"])
    num_classes = max(train.labels) + 1
    counts = [0] * num_classes
    for label in train.labels:
        counts[label] += 1
    return describe_split(files, _class_names(cfg, split_dir, num_classes), counts, bands=bands)


def prepare_data(cfg: Config, *, default_split_dir: Path | None = None) -> DataBundle:
    """Find or build the split files, describe them, and check the training split covers every class.

    The split files are data.split_dir's; without one they are built in `default_split_dir` (a run's
    ``Run.splits_dir``) unless it already holds them. ConfigError / DataError for a missing or bad split."""
    if cfg.data.dataset not in DATASET_KINDS:
        raise ConfigError(f"unknown data.dataset {cfg.data.dataset!r}; known: {', '.join(DATASET_KINDS)}")
    if cfg.data.split_dir is not None:
        split_dir = Path(cfg.data.split_dir)
        if not split_dir.is_dir():
            raise DataError(f"split folder not found: {split_dir}")
    else:
        if default_split_dir is None:
            raise ConfigError("data.split_dir is not set and there is no run folder to build the splits into")
        split_dir = Path(default_split_dir)
        if not (split_dir / MANIFEST).is_file():
            _build_splits(cfg, split_dir)
    files = {}
    for split in ("train", "val", "test", "open"):
        name = getattr(cfg.data, f"{split}_split")
        if name is None:
            continue
        path = split_dir / name
        if path.is_file():
            files[split] = path
        elif split in ("train", "test"):
            raise DataError(f"the {split} split file is missing: {path}")
    manifest = _load_manifest(cfg, split_dir, files)
    empty = [name for name, n in zip(manifest["class_names"], manifest["train_counts"]) if n == 0]
    if empty:
        raise DataError(f"{len(empty)} class(es) have no training image in {files['train']}: {', '.join(empty[:10])}")

    root = cfg.data.root or (manifest.get("root") if cfg.data.dataset != "fashion-mnist" else None)
    is_fmnist = cfg.data.dataset == "fashion-mnist"
    in_chans = cfg.data.in_chans or (1 if is_fmnist else 3)
    is_cifar = cfg.data.dataset in CIFAR_KINDS
    image_size = cfg.data.image_size or (28 if is_fmnist else 32 if is_cifar else 224)
    family = cfg.data.transform
    if family == "auto":
        family = "small" if image_size <= 64 else "imagenet"
    if is_cifar and (cfg.data.open_root or manifest.get("open_root")):  # an open set of image files
        open_loader = FileImageLoader(cfg.data.open_root or manifest["open_root"], mode="RGB")
    else:
        open_loader = _image_loader(cfg, cfg.data.open_root, in_chans) if cfg.data.open_root else None
    return DataBundle(cfg, split_dir, manifest, _image_loader(cfg, root, in_chans), family, image_size, in_chans,
                      open_loader)
