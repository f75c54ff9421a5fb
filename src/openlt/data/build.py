"""From a config to split files, a manifest and datasets: the one place that knows the dataset kinds."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from openlt.config import DATASET_KINDS, Config, explicit_keys, read_utf8
from openlt.data import cifar, fashion_mnist
from openlt.data.cifar_lt import write_cifar_lt_split
from openlt.data.class_names import add_class_name
from openlt.data.datasets import (ArrayImageLoader, FileImageLoader, SplitDataset, check_split_images,
                                  fashion_mnist_pool, image_folder_pool, image_header_size)
from openlt.data.splitfile import SplitEntries, read_split_file
from openlt.data.splitcheck import (ARRAY_DATASETS, check_array_classes, check_folder_classes, check_label_range,
                                   check_manifest_counts, check_no_shared_images, check_open_labels, label_counts)
from openlt.data.splits import (MANIFEST, check_outside, class_name_problem, describe_split, make_split,
                                refuse_count_that_names_a_class, write_split)
from openlt.data.transforms import build_transform, normalisation
from openlt.errors import ConfigError, DataError
from openlt.metrics import ShotBands

CIFAR_KINDS = ("cifar10", "cifar100")
_LOG = logging.getLogger(__name__)  # `openlt train` prints these records (cli.console_logging)


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
    input_note: str = ""  # what input size, transform and stem were chosen, and why (the run's first log line)
    entries: dict[str, SplitEntries] = field(default_factory=dict)  # every split file present, parsed and checked

    @property
    def class_names(self) -> list[str]:
        """The known classes' names in label order 0..K-1 (from the manifest)."""
        return self.manifest["class_names"]

    @property
    def num_classes(self) -> int:
        """K, the number of known classes (open-set images carry label -1 and are not counted)."""
        return len(self.manifest["class_names"])

    @property
    def train_counts(self) -> list[int]:
        """Training images per known class, in label order (length K; from the manifest)."""
        return self.manifest["train_counts"]

    def split_path(self, split: str) -> Path | None:
        """Where the split file of `split` (train | val | test | open) is, whether or not it exists; None when the
        config turns that split off (e.g. data.open_split: null)."""
        name = getattr(self.cfg.data, f"{split}_split")
        return None if name is None else self.split_dir / name

    def has(self, split: str) -> bool:
        """Whether the config names a file for `split` and that file exists in the split folder."""
        path = self.split_path(split)
        return path is not None and path.is_file()

    def transform(self, train: bool):
        """The image transform of this data: the family's augmentation when `train`, else the evaluation one;
        it returns a float32 (C, image_size, image_size) tensor normalised with the data set's statistics."""
        mean, std = normalisation(self.cfg.data.dataset, self.in_chans, self.family)
        return build_transform(self.family, train, self.image_size, mean, std)

    def loader_of(self, split: str):
        """The image loader for `split`: the open set's own one (images under data.open_root, or the
        manifest's open_root of a CIFAR split) for "open" when there is one, else the data's loader."""
        return self.open_loader if split == "open" and self.open_loader is not None else self.loader

    def dataset(self, split: str, train: bool = False) -> SplitDataset:
        """The checked images of `split` as a SplitDataset yielding (float32 (C, H, W) image, int label), with
        training augmentation when `train`. DataError when that split file is missing."""
        if split not in self.entries:
            raise DataError(f"the {split} split file is missing: {self.split_path(split)}")
        return SplitDataset(self.entries[split], self.loader_of(split), self.transform(train), checked=True)


def packed_data_files(cfg: Config, root: str | None) -> dict:
    """{config key: identity} of the packed files the images are read from where the data set is not an image
    folder (`cifar.data_files`: CIFAR's pickled batches, `fashion_mnist.data_files`: the IDX files; their sha256
    taken when they are loaded): "data.root" for `root`, "data.open_root" for an open set read from another copy
    of Fashion-MNIST. {} for image folders and split files (their split files' sha256 and each image's presence are
    what is checked). A run records it in split_manifest.json ``data_files`` (`engine/manifest.verify_manifest`)."""
    if cfg.data.dataset in CIFAR_KINDS:
        return {"data.root": cifar.data_files(cfg.data.dataset, root)}
    if cfg.data.dataset == "fashion-mnist":
        found = {"data.root": fashion_mnist.data_files(root)}
        if cfg.data.open_root:
            found["data.open_root"] = fashion_mnist.data_files(cfg.data.open_root)
        return found
    return {}


def _image_loader(cfg: Config, root: str | None, in_chans: int):
    if cfg.data.dataset == "fashion-mnist":
        return ArrayImageLoader(fashion_mnist.load(root))
    if cfg.data.dataset in CIFAR_KINDS:
        return ArrayImageLoader(cifar.load(cfg.data.dataset, root))
    if root is None:
        raise ConfigError(f"data.root is required for data.dataset={cfg.data.dataset!r} (the folder the split file's paths are relative to)")
    return FileImageLoader(root, mode="L" if in_chans == 1 else "RGB")


def _build_splits(cfg: Config, out_dir: Path) -> None:
    listed = cfg.data.root if cfg.data.dataset == "image-folder" else cfg.data.open_root
    listed_key = "data.root" if cfg.data.dataset == "image-folder" else "data.open_root"
    runs = Path(cfg.out_dir).resolve() if cfg.out_dir else None
    if runs is not None and runs in Path(out_dir).resolve().parents:  # a run's own split folder: name out_dir
        check_outside(cfg.out_dir, listed, "out_dir", listed_key, runs=True)
    check_outside(out_dir, listed, "the run's split folder", listed_key)
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
        where = explicit_keys(cfg).get("data.split.open_classes")  # a number typed where folders are numbers
        if where is not None:
            value = cfg.data.split.open_classes
            refuse_count_that_names_a_class(str(value), value, pool.class_names, where)
    else:
        raise ConfigError("data.split_dir is required for data.dataset='split-file' (the folder of the split files)")
    split = make_split(pool, cfg.data.split)
    check_split_images(split, pool)
    write_split(split, out_dir, pool, cfg.data.split, bands=ShotBands.from_config(cfg.eval))


def _class_names(cfg: Config, split_dir: Path, num_classes: int) -> list[str]:
    if cfg.data.class_names:
        path = Path(cfg.data.class_names)
        if not path.is_absolute():
            _refuse_two_name_files(path, split_dir / path)
            path = path if path.is_file() else split_dir / path
        if not path.is_file():
            raise DataError(f"class-name file not found: {cfg.data.class_names}")
        first: dict[str, int] = {}
        for lineno, line in enumerate(read_utf8(path, "class-name file", DataError).split("\n"), start=1):
            name = line.strip()
            if not name:
                continue
            if "\0" in name:
                raise DataError(f"{path}, line {lineno}: class name {name!r} contains a NUL byte")
            add_class_name(first, name, lineno, f"{path}, line {lineno}: class name", "the class name of line {}")
        names = list(first)
        if len(names) != num_classes:
            raise DataError(f"class-name file {path} has {len(names)} names but the training split has {num_classes} classes")
        return names
    return [f"class_{i}" for i in range(num_classes)]


def _refuse_two_name_files(here: Path, in_split: Path) -> None:
    """A relative data.class_names names a file of the working directory, else one of the split folder: DataError
    when both exist with other contents (an unrelated names.txt in the working directory with the same number of
    names would have won without a word: trial 19)."""
    if here.is_file() and in_split.is_file() and not here.resolve() == in_split.resolve() \
            and here.read_bytes() != in_split.read_bytes():
        raise DataError(f"data.class_names={here} names two different files: {here.resolve()} (the working "
                        f"directory's) and {in_split} (the split folder's); give the one you mean by its path")


def _read_manifest(path: Path) -> dict:
    """A split folder's manifest.json: a mapping with class names, training counts and file hashes."""
    try:
        manifest = json.loads(read_utf8(path, "split manifest", DataError))
    except json.JSONDecodeError as exc:
        raise DataError(f"split manifest {path} is unreadable: {exc}") from None
    names = manifest.get("class_names") if isinstance(manifest, dict) else None
    counts = manifest.get("train_counts") if isinstance(manifest, dict) else None
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not (isinstance(names, list) and all(isinstance(n, str) for n in names) and isinstance(counts, list)
            and len(counts) == len(names) and all(type(c) is int and c >= 0 for c in counts)
            and isinstance(files, dict) and all(isinstance(f, dict) for f in files.values())):
        raise DataError(f"split manifest {path} is malformed (class_names, train_counts and files do not fit "
                        f"together); rerun `openlt split` for this folder")
    for name in names:
        problem = class_name_problem(name)
        if problem:
            kind = manifest.get("dataset")
            fix = ("rename its folder and rerun `openlt split`" if kind == "image-folder" else
                   f"the name comes from {kind}'s meta file (label names): fix it there and rerun `openlt split`"
                   if kind in CIFAR_KINDS else "rerun `openlt split`")
            raise DataError(f"split manifest {path}: class {name!r} cannot be a class name: {problem}; {fix}")
    return manifest


def _num_classes(train: SplitEntries) -> int:
    """Classes of a training split without a manifest: labels 0..K-1, each with an image, so K <= its lines."""
    top = max(train.labels)
    if top >= len(train):
        line = train.lines[train.labels.index(top)]
        raise DataError(f"{train.path}, line {line}: label {top} is out of range: {len(train)} training images "
                        f"cannot cover {top + 1} classes (labels 0..K-1, each with a training image)")
    return top + 1


def _load_manifest(cfg: Config, split_dir: Path, files: dict[str, Path],
                   entries: dict[str, SplitEntries]) -> tuple[dict, Path | None]:
    """The run's description of its split files (`describe_split`'s keys): the classes, the training counts read
    from train.txt, the files as read now (path, sha256); a split folder's manifest.json gives the class names
    (unless data.class_names is set) and its other keys, once checked (`splitcheck`).

    A folder of `openlt split` (every data set but split-file) must have its manifest: without one it is
    incomplete (an interrupted split of an older openlt) or not openlt's. Split files edited since the manifest
    was written are read as they are now, keeping the class names (checked against the images where the data
    allow it, in `_check_splits`), with a note. Also returns the manifest.json the class names come from (None:
    a class-name file, or class_K)."""
    saved_path = split_dir / MANIFEST
    saved = _read_manifest(saved_path) if saved_path.is_file() else None
    if saved is None and cfg.data.dataset != "split-file":
        raise DataError(f"split folder {split_dir} has no {MANIFEST}: it is incomplete (an interrupted "
                        f"`openlt split`?) or not made by `openlt split`; run `openlt split` again, or use "
                        f"data.dataset=split-file for split files of your own")
    train = entries["train"]
    num_classes = len(saved["class_names"]) if saved is not None else _num_classes(train)
    for ent in entries.values():
        check_label_range(ent, num_classes)
    counts = label_counts(train, num_classes)
    if cfg.data.class_names or saved is None:
        names = _class_names(cfg, split_dir, num_classes)
    else:
        names = saved["class_names"]
    manifest = describe_split(files, names, counts, bands=ShotBands.from_config(cfg.eval))
    if saved is None:
        return manifest, None
    recorded = saved["files"]
    changed = [name for name in files if recorded.get(name, {}).get("sha256") != manifest["files"][name]["sha256"]]
    if "train" not in changed:  # the manifest describes this very train.txt: its counts must be that file's
        check_manifest_counts(saved_path, saved["train_counts"], counts, saved["class_names"], files["train"])
    elif not cfg.data.class_names:
        _LOG.info(f"note: {', '.join(str(files[n]) for n in changed)} changed since {saved_path} was written: the "
                  f"training counts are read from {files['train']}, the class names kept from {MANIFEST}")
    return {**{k: v for k, v in saved.items() if k not in manifest}, **manifest}, \
        None if cfg.data.class_names else saved_path


def _manifest_root(manifest: dict, split_dir: Path) -> str | None:
    """The image root a split folder's manifest.json records (what a run without data.root reads), absolute.
    `openlt split` records it absolute; one of an older openlt may record it relative to the working directory
    `openlt split` ran in, which is not known now (not the split folder's, nor necessarily this one): refused,
    DataError asking for data.root, rather than read from wherever this command runs (other images, same names)."""
    root = manifest.get("root")
    if root is None or os.path.isabs(root):
        return root
    raise DataError(f"{split_dir / MANIFEST} records the image root {root!r} relative to the working directory "
                    f"`openlt split` ran in (an older openlt), which is not known now: give data.root=FOLDER, the "
                    f"image folder that split lists, as an absolute path (a run's config.yaml: set data.root there)")


def _check_splits(data: DataBundle, names_from: Path | None) -> None:
    """Check every parsed split file before any work: every image present (and an image file name), the open
    split's labels -1, no image in two of train / val / test / open (compared as files), and the class names
    against the images where the manifest's data set tells each image's class (`splitcheck`)."""
    keys = {split: data.loader_of(split).check(ent) for split, ent in data.entries.items()}
    if "open" in data.entries:
        check_open_labels(data.entries["open"], data.class_names)
    check_no_shared_images(data.entries, keys)
    if names_from is None:  # names from a class-name file or class_K: nothing to check them against
        return
    manifest = data.manifest
    if manifest.get("dataset") == "image-folder" and isinstance(data.loader, FileImageLoader):
        check_folder_classes(names_from, data.class_names, data.entries, data.open_loader is None)
    elif manifest.get("dataset") in ARRAY_DATASETS and isinstance(data.loader, ArrayImageLoader):
        kind = manifest["dataset"]
        dataset_names = (list(fashion_mnist.CLASS_NAMES) if kind == "fashion-mnist" else
                         cifar.class_names(kind, data.cfg.data.root or manifest.get("root")))
        check_array_classes(manifest, names_from, data.entries, data.loader.parts, dataset_names,
                            data.open_loader is None)


def _split_files(cfg: Config, default_split_dir: Path | None) -> tuple[Path, dict[str, Path]]:
    """(the split folder, {split: its file}) of `cfg`: data.split_dir's, else `default_split_dir`'s, built there
    first when it holds none; val / open only when their file is there. DataError for a missing folder or a
    missing train / test file."""
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
    return split_dir, files


# the way out of an empty optional split file, added to its error (trial 16 D13: an empty open.txt was refused with no
# word of how to train without an open set)
_EMPTY_HINTS = {"val": "; data.val_split=null trains without a validation split",
                "open": "; data.open_split=null trains without an open set"}


def prepare_data(cfg: Config, *, default_split_dir: Path | None = None, decode: bool | None = None) -> DataBundle:
    """Find or build the split files, describe them, and check the training split covers every class.

    The split files are data.split_dir's; without one they are built in `default_split_dir` (a run's
    ``Run.splits_dir``) unless it already holds them. ConfigError / DataError for a missing or bad split.
    `decode`: decode every image file of every split first (`check_decodable`: 1 to 2.5 ms per JPEG, in threads);
    None decodes when no `default_split_dir` is given, i.e. for the data of a new run on data.split_dir (`train`),
    not again for a run's own data (eval, --resume: checked when the run started; splits a run builds are
    decoded when they are drawn)."""
    if cfg.data.dataset not in DATASET_KINDS:
        raise ConfigError(f"unknown data.dataset {cfg.data.dataset!r}; known: {', '.join(DATASET_KINDS)}")
    split_dir, files = _split_files(cfg, default_split_dir)
    entries = {split: read_split_file(path, allow_open=(split == "open"), empty_hint=_EMPTY_HINTS.get(split, ""))
               for split, path in files.items()}
    manifest, names_from = _load_manifest(cfg, split_dir, files, entries)
    if len(manifest["class_names"]) < 2:
        raise DataError(f"{files['train']} has {len(manifest['class_names'])} known class: a run needs at least 2 "
                        f"(with one, every image is that class and no number means anything)")
    empty = [name for name, n in zip(manifest["class_names"], manifest["train_counts"]) if n == 0]
    if empty:
        raise DataError(f"{len(empty)} class(es) have no training image in {files['train']}: {', '.join(empty[:10])}")

    root = cfg.data.root
    if root is None and cfg.data.dataset != "fashion-mnist":
        root = _manifest_root(manifest, split_dir)
        if root is not None and cfg.data.dataset not in CIFAR_KINDS:  # (CIFAR's: the cache, not a setting)
            cfg.data.root = root  # the run's config.yaml records the image folder read (as data.image_size below)
    if root is not None and cfg.data.dataset not in ("fashion-mnist", *CIFAR_KINDS):
        manifest["root"] = os.path.abspath(root)  # the run's split_manifest.json: where its images were read
    in_chans = input_channels(cfg.data)
    if cfg.data.dataset in CIFAR_KINDS and (cfg.data.open_root or manifest.get("open_root")):  # open set of files
        open_loader = FileImageLoader(cfg.data.open_root or manifest["open_root"], mode="RGB")
    else:
        open_loader = _image_loader(cfg, cfg.data.open_root, in_chans) if cfg.data.open_root else None
    data = DataBundle(cfg, split_dir, manifest, _image_loader(cfg, root, in_chans), "", 0, in_chans, open_loader,
                      entries=entries)
    manifest.pop("data_files", None)  # never a split folder's record: the files this run reads, as they are now
    packed = packed_data_files(cfg, root)
    if packed:
        manifest["data_files"] = packed
    _check_splits(data, names_from)
    if decode if decode is not None else default_split_dir is None:
        for split, ent in entries.items():
            loader = data.loader_of(split)
            if isinstance(loader, FileImageLoader):
                loader.check_decodable(ent)
    _choose_input(data)
    return data


SMALL_IMAGES = 64  # px: images at most this large train at their own size, small-image transform and stem
PROBED_IMAGES = 64  # training images whose size is read (evenly spaced over the training split)


def native_image_size(loader: FileImageLoader, entries: SplitEntries, count: int = PROBED_IMAGES) -> tuple[int, int]:
    """(largest side, largest shorter side) in px over `count` images of `entries`, evenly spaced over the split
    (always the same ones) and read from their headers only (PIL, no decoding); an unreadable image is skipped
    (training names it). (0, 0) when none could be read."""
    step = max(1, len(entries) / count)
    picked = sorted({int(i * step) for i in range(min(count, len(entries)))})
    longest = shortest = 0
    for index in picked:
        size = image_header_size(loader.root / entries.items[index])  # (its warning handled as every read's)
        if size is None:
            continue
        width, height = size
        longest, shortest = max(longest, width, height), max(shortest, min(width, height))
    return longest, shortest


# the images' size of the data sets that have one; any other (image folder, split file) 224 px by default
DATASET_IMAGE_SIZES = {"fashion-mnist": 28, "cifar10": 32, "cifar100": 32}


def input_channels(data_cfg) -> int:
    """data.in_chans, else the data set's: 1 for Fashion-MNIST, 3 for any other."""
    return data_cfg.in_chans or (1 if data_cfg.dataset == "fashion-mnist" else 3)


def default_image_size(dataset: str) -> int:
    """The size (px) a data set is read at when data.image_size is not given and not found from the images."""
    return DATASET_IMAGE_SIZES.get(dataset, 224)


def transform_family(transform: str, size: int) -> str:
    """data.transform, or for auto: small at SMALL_IMAGES px or less, else imagenet."""
    return transform if transform != "auto" else ("small" if size <= SMALL_IMAGES else "imagenet")


def _choose_input(data: DataBundle) -> None:
    """Set `data.image_size`, `data.family` and `data.input_note` (what was chosen and why).

    data.image_size wins; else Fashion-MNIST 28 px, CIFAR 32 px; an image folder or split file of images at most
    SMALL_IMAGES px (every probed one) trains at their native size (the largest shorter side); else 224 px. The
    size found is written into the config (data.image_size), so a run's saved config holds it. The transform
    family is data.transform, or for auto: small at 64 px or less, else imagenet."""
    cfg = data.cfg.data
    size, why = cfg.image_size, "data.image_size"
    if size is None:
        size = default_image_size(cfg.dataset)
        why = f"{cfg.dataset}'s size" if size != 224 else "the default"
    if cfg.image_size is None and cfg.dataset in ("image-folder", "split-file") and cfg.transform in ("auto", "small"):
        longest, shortest = native_image_size(data.loader, data.entries["train"])
        if 0 < longest <= SMALL_IMAGES:
            size, why = shortest, f"the training images' own size: they are at most {SMALL_IMAGES} px"
            cfg.image_size = size  # the run's config.yaml records what was chosen
        elif longest:
            why = f"the training images are larger than {SMALL_IMAGES} px"
    data.image_size = size
    data.family = transform_family(cfg.transform, size)
    stem = data.cfg.model.small_input if data.cfg.model.small_input is not None else size <= SMALL_IMAGES
    data.input_note = (f"input {size} px ({why}), {data.family} transform, "
                       f"{'small-input' if stem else 'ImageNet'} stem")
