"""CIFAR-10-LT / CIFAR-100-LT built as the common code builds them (Cao et al.'s LDAM-DRW `IMBALANCECIFAR10`,
reused by most later CIFAR-LT code), plus openlt's validation split and optional open set.

Training set (the literature's, image for image):
    n_i = int(n_max * (1 / IF) ** (i / (C - 1))), classes in label order (n_max 5000 / 500: the full class);
    np.random.seed(seed); for each class in label order: idx = np.where(labels == i)[0]; np.random.shuffle(idx);
    keep idx[:n_i]. With the default seed 0 (LDAM-DRW's `rand_number`) this is the exact 12,406 / 10,847-image
    training set of the published CIFAR-10-LT / CIFAR-100-LT results at IF 100.
openlt's own choices:
    * validation: the next `val_per_class` images of the same shuffled list, i.e. a random sample of the training
      images the LT set leaves unused, so it never overlaps training. The head class keeps all n_max images
      for training, so it has none left and is absent from validation (the training set stays exact);
    * test: the official test set of the known classes (or its first `test_per_class` per class, file order);
    * open set (optional): the official test images of held-out classes (an integer N holds out the last N
      classes in label order; known classes are relabelled 0..K-1 and the profile runs over the K known), or
      every image under an image folder (`open_root`, e.g. SVHN or Places crops as out-of-distribution data).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from openlt.config import SplitConfig
from openlt.data import cifar
from openlt.data.datasets import IMAGE_EXTENSIONS, check_decodable, image_files
from openlt.data.splits import (SPLIT_NAMES, LabelledPool, Split, _check_open, _resolve_open_classes, as_count,
                                check_known_classes, check_test_set, write_split)
from openlt.errors import ConfigError, DataError

# `openlt split --dataset cifar10|cifar100` starts from these; the configs under configs/cifar*_lt/ say the same.
DEFAULTS = {
    "cifar10": dict(profile="exp", n_max=5000, imbalance_factor=100.0, open_classes=0, val_per_class=50,
                    test_per_class=None, order="label", seed=0),
    "cifar100": dict(profile="exp", n_max=500, imbalance_factor=100.0, open_classes=0, val_per_class=20,
                     test_per_class=None, order="label", seed=0),
}


def default_split_config(dataset: str) -> SplitConfig:
    """The literature's CIFAR-LT split of `dataset` (cifar10 | cifar100) as a SplitConfig (`DEFAULTS`).

    Exponential profile at imbalance factor 100 from n_max 5000 (CIFAR-10) / 500 (CIFAR-100), classes in
    label order, seed 0 (Cui et al., "Class-Balanced Loss Based on Effective Number of Samples", CVPR 2019;
    Cao et al., "Learning Imbalanced Datasets with Label-Distribution-Aware Margin Loss", NeurIPS 2019), no
    open classes, the whole test set, and openlt's validation share (50 / 20 per class). ConfigError for
    another `dataset`."""
    if dataset not in DEFAULTS:
        raise ConfigError(f"unknown CIFAR version {dataset!r}; known: {', '.join(DEFAULTS)}")
    return SplitConfig(**DEFAULTS[dataset])


def cifar_lt_counts(n_max: int, num_classes: int, imbalance_factor: float) -> list[int]:
    """Training images per class in rank order: int(n_max * (1/IF)^(i/(C-1))), the LDAM-DRW code's float maths."""
    if num_classes < 1:
        raise ConfigError("a CIFAR-LT split needs at least one known class")
    if imbalance_factor < 1:
        raise ConfigError(f"imbalance_factor must be >= 1, got {imbalance_factor}")
    if num_classes == 1:
        return [int(n_max)]
    ratio = 1.0 / imbalance_factor  # their imb_factor argument (0.01 for IF 100)
    return [int(n_max * (ratio ** (i / (num_classes - 1.0)))) for i in range(num_classes)]


def cifar_pool(dataset: str, root: str | Path | None = None) -> LabelledPool:
    """The official CIFAR `dataset` (cifar10 | cifar100) as a LabelledPool: items "train/i" of the training
    batches and "test/i" of the test batch (i: position in file order), int64 label arrays (N,), root the
    batch folder. ConfigError for another `dataset`, DataError when the batches are missing or corrupt
    (see `cifar.locate`: with `root` None the cache is used, and filled by a download if needed)."""
    parts = cifar.load(dataset, root)
    train, test = parts["train"], parts["test"]
    return LabelledPool(
        dataset=dataset,
        class_names=cifar.class_names(dataset, root),
        items=[f"train/{i}" for i in range(len(train.labels))],
        labels=train.labels.numpy(),
        test_items=[f"test/{i}" for i in range(len(test.labels))],
        test_labels=test.labels.numpy(),
        root=str(cifar.locate(dataset, root).resolve()),
    )


def _open_class_ids(spec, class_names: list[str], seed: int) -> list[int]:
    n = len(class_names)
    spec = as_count(spec)  # count:N is the number N: the last N classes
    if isinstance(spec, int) and not isinstance(spec, bool):
        if not 0 <= spec < n:
            raise ConfigError(f"open_classes={spec}: hold out fewer than the {n} classes")
        return list(range(n - spec, n))  # the last N classes, so that the known ones keep their labels
    return _resolve_open_classes(spec, class_names, np.random.default_rng(seed))


def open_folder_items(open_root: str | Path) -> list[str]:
    """Every image under `open_root` (any depth), as sorted paths relative to it."""
    root = Path(open_root)
    if not root.is_dir():
        raise DataError(f"open-set image folder does not exist or is not a folder: {root}")
    items = image_files(root, root)  # hidden entries (.ipynb_checkpoints/, ._x.png) skipped
    if not items:
        raise DataError(f"open-set image folder {root} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
    return items


def make_cifar_lt_split(pool: LabelledPool, cfg: SplitConfig, open_items: list[str] | None = None) -> Split:
    """The CIFAR-LT split of `pool` following `cfg` (see the module docstring); deterministic in `cfg.seed`."""
    if cfg.profile != "exp":
        raise ConfigError(f"CIFAR-LT uses the exponential profile (data.split.profile=exp), got {cfg.profile!r}")
    if cfg.imbalance_factor is None:
        raise ConfigError(f"{pool.dataset}: set data.split.imbalance_factor (10, 50, 100 or 200 in the literature); "
                          f"configs/{pool.dataset}_lt/ce.yaml holds the whole CIFAR-LT split section")
    labels, test_labels = np.asarray(pool.labels), np.asarray(pool.test_labels)
    n_classes = len(pool.class_names)
    sizes = np.bincount(labels, minlength=n_classes)
    open_ids = _open_class_ids(cfg.open_classes, pool.class_names, cfg.seed)
    check_known_classes(pool.class_names, open_ids)
    if open_ids and open_items:
        raise ConfigError("give held-out classes (open_classes) or an open image folder (open_root), not both")
    known = [c for c in range(n_classes) if c not in open_ids]
    if cfg.n_max > sizes[known].min():
        raise ConfigError(f"n_max={cfg.n_max} is more than the {int(sizes[known].min())} training images of the "
                          f"smallest known {pool.dataset} class")
    counts = cifar_lt_counts(cfg.n_max, len(known), cfg.imbalance_factor)
    if min(counts) < 1:
        raise ConfigError(f"n_max={cfg.n_max} at imbalance factor {cfg.imbalance_factor:g} leaves the last class(es) "
                          f"without a training image; n_max must be at least the imbalance factor")
    test_by_class = {c: np.flatnonzero(test_labels == c) for c in range(n_classes)}
    check_test_set(pool, cfg, known, test_by_class)  # test_per_class in full, or refused (never a silent cut)
    _check_open(pool, cfg, open_ids, test_by_class, cfg.test_per_class, separate_test=True)
    ranked = known if cfg.order == "label" else np.random.default_rng(cfg.seed).permutation(known).tolist()
    wanted = dict(zip(ranked, counts))

    out: dict[str, tuple[list[str], list[int]]] = {name: ([], []) for name in SPLIT_NAMES}

    def take(split: str, items: list[str], idx: np.ndarray, label: int) -> None:
        out[split][0].extend(items[i] for i in np.sort(idx))
        out[split][1].extend([label] * len(idx))

    shuffler = np.random.RandomState(cfg.seed)  # LDAM-DRW: np.random.seed(rand_number), one shuffle per class
    for label, c in enumerate(known):
        idx = np.where(labels == c)[0]
        shuffler.shuffle(idx)
        n_train = wanted[c]
        take("train", pool.items, idx[:n_train], label)
        take("val", pool.items, idx[n_train : n_train + cfg.val_per_class], label)
        t_idx = np.flatnonzero(test_labels == c)[: cfg.test_per_class]
        take("test", pool.test_items, t_idx, label)
    for c in open_ids:
        take("open", pool.test_items, np.flatnonzero(test_labels == c)[: cfg.test_per_class], -1)
    if open_items:
        out["open"] = (list(open_items), [-1] * len(open_items))
    if not out["test"][0]:
        raise DataError(f"{pool.dataset}: the test batch holds no image of the known classes")
    return Split(
        class_names=[pool.class_names[c] for c in known],
        open_class_names=[pool.class_names[c] for c in open_ids],
        original_ids=known,
        entries=out,
    )


def write_cifar_lt_split(dataset: str, root: str | Path | None, cfg: SplitConfig, out_dir: str | Path,
                         open_root: str | Path | None = None, bands=None, replace: bool = True) -> dict:
    """Build the split of `dataset` into `out_dir` (split files + manifest); return the manifest."""
    pool = cifar_pool(dataset, root)
    open_items = open_folder_items(open_root) if open_root else None
    if open_items:
        check_decodable([Path(open_root) / item for item in open_items])
    split = make_cifar_lt_split(pool, cfg, open_items)
    val_counts = np.bincount(np.asarray(split.entries["val"][1], dtype=np.int64), minlength=len(split.class_names))
    short = {name: int(n) for name, n in zip(split.class_names, val_counts) if n < cfg.val_per_class}
    # Recorded so that training finds the open images without data.open_root, and so that a user sees
    # which classes could not give a full validation share (the head class, which trains on all its images).
    extra = dict(open_root=str(Path(open_root).resolve()) if open_root else None, val_short_classes=short,
                 profile_rule="int(n_max * (1/IF)^(i/(C-1))), LDAM-DRW selection (seeded shuffle per class)")
    return write_split(split, out_dir, pool, cfg, bands=bands, extra=extra, replace=replace)
