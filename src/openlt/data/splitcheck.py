"""Checks of a split folder against its manifest and its images, done once by `prepare_data` before any work.

`train.txt` is the truth for the training counts; a split folder's manifest.json is checked against the files and,
where the data allow it, against the images themselves, so that a manifest edited by hand (made-up counts, swapped
class names) or split files edited after `openlt split` never give a run bands or names that do not fit its data:

* the manifest's `train_counts` must equal the labels of train.txt when train.txt is the file the manifest
  describes (same sha256); after an edit of train.txt the counts are read from it;
* the manifest's class names must fit the images: an image folder's split lists `CLASS/...` paths, so every image
  labelled k lies in the folder of class k; the embedded data (Fashion-MNIST, CIFAR) know each image's own class,
  so every image labelled k is of the manifest's `original_class_ids[k]`, whose name is class k's;
* the open split holds unknown images only: label -1, and (where the data tell) no image of a known class;
* no image is in two of train / val / test / open, nor twice in one, also under two names (a symlink, a hard
  link: files are compared by device and inode).

Every error is a DataError naming the file and line (or the manifest and the class).
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import numpy as np

from openlt.data.splitfile import SplitEntries
from openlt.errors import DataError

ARRAY_DATASETS = ("fashion-mnist", "cifar10", "cifar100")


def label_counts(entries: SplitEntries, num_classes: int) -> list[int]:
    """Images per label 0..num_classes-1 of `entries` (labels >= 0; length num_classes, zeros included)."""
    return np.bincount(np.asarray(entries.labels, dtype=np.int64), minlength=num_classes).tolist()


def check_label_range(entries: SplitEntries, num_classes: int) -> None:
    """Every label of `entries` below `num_classes` (-1 is left to :func:`check_open_labels`)."""
    for label, line in zip(entries.labels, entries.lines):
        if label >= num_classes:
            raise DataError(f"{entries.path}, line {line}: label {label} is out of range for {num_classes} classes "
                            f"(0..{num_classes - 1})")


def check_open_labels(entries: SplitEntries, class_names: list[str]) -> None:
    """The open split's labels are all -1: a known label there would be scored as unknown without a word."""
    for label, line in zip(entries.labels, entries.lines):
        if label != -1:
            raise DataError(f"{entries.path}, line {line}: label {label} is the known class {class_names[label]!r}; "
                            f"the open split holds images of unknown classes only, each labelled -1")


def check_manifest_counts(manifest_path: Path, recorded: list[int], counts: list[int], names: list[str],
                          train_path: Path) -> None:
    """The counts a manifest records for the very train.txt it describes must be that file's (a manifest edited
    by hand would give the run bands from made-up counts)."""
    for k, (then, now) in enumerate(zip(recorded, counts)):
        if then != now:
            raise DataError(f"split manifest {manifest_path} gives class {names[k]!r} (label {k}) {then} training "
                            f"images, but {train_path} has {now}: the manifest does not describe these split files; "
                            f"rerun `openlt split`, or remove {manifest_path.name} and use data.dataset=split-file")


def check_folder_classes(manifest_path: Path, names: list[str], entries: dict[str, SplitEntries],
                         open_shares_root: bool) -> None:
    """An image folder's split: every image labelled k lies in the folder of class k (`names[k]/...`), and no
    open image lies in the folder of a known class."""
    known = set(names)
    for split, ent in entries.items():
        for item, label, line in zip(ent.items, ent.labels, ent.lines):
            folder = PurePosixPath(item).parts[0]
            if label >= 0 and folder != names[label]:
                raise DataError(f"{ent.path}, line {line}: {item!r} lies in the class folder {folder!r}, but label "
                                f"{label} is {names[label]!r} in {manifest_path}: the class names do not fit the "
                                f"split files (a manifest or a label edited?); rerun `openlt split`")
            if label < 0 and open_shares_root and folder in known:
                raise DataError(f"{ent.path}, line {line}: {item!r} is an image of the known class {folder!r}; the "
                                f"open split holds images of unknown classes only")


def check_array_classes(manifest: dict, manifest_path: Path, entries: dict[str, SplitEntries], parts: dict,
                        dataset_names: list[str], open_shares_data: bool) -> None:
    """The embedded data's split: class k is the data set's class `original_class_ids[k]` (by name too), every
    image labelled k is of that class, and no open image is of a known class. `parts`: the loader's arrays."""
    names, ids = manifest["class_names"], manifest.get("original_class_ids")
    if not (isinstance(ids, list) and len(ids) == len(names)
            and all(type(i) is int and 0 <= i < len(dataset_names) for i in ids)):
        raise DataError(f"split manifest {manifest_path} is malformed (original_class_ids must give each class's id "
                        f"in the data set, 0..{len(dataset_names) - 1}); rerun `openlt split`")
    for k, (name, original) in enumerate(zip(names, ids)):
        if name != dataset_names[original]:
            raise DataError(f"split manifest {manifest_path}: class {k} is named {name!r}, but it is the data set's "
                            f"class {original} ({dataset_names[original]!r}); rerun `openlt split`")
    known = set(ids)
    for split, ent in entries.items():
        if split == "open" and not open_shares_data:
            continue
        for item, label, line in zip(ent.items, ent.labels, ent.lines):
            part, _, index = item.partition("/")
            own = int(parts[part].labels[int(index)])
            if label >= 0 and own != ids[label]:
                raise DataError(f"{ent.path}, line {line}: {item!r} is an image of {dataset_names[own]!r}, but its "
                                f"label {label} is {names[label]!r}: the labels do not fit the data (edited?)")
            if label < 0 and own in known:
                raise DataError(f"{ent.path}, line {line}: {item!r} is an image of the known class "
                                f"{dataset_names[own]!r}; the open split holds images of unknown classes only")


def check_no_shared_images(entries: dict[str, SplitEntries], keys: dict[str, list]) -> None:
    """No image in two of train / val / test / open, nor twice in one split under two names. `keys[split]` gives
    each item's identity (a file's (device, inode), so a symlink or hard link is the same image; an array
    item's name)."""
    first: dict = {}
    for split, ent in entries.items():
        for item, key, line in zip(ent.items, keys[split], ent.lines):
            if key not in first:
                first[key] = (split, ent.path, line, item)
                continue
            other, other_path, other_line, other_item = first[key]
            same = "" if item == other_item else f" (the same file as {other_item!r}: a symlink or a hard link)"
            where = f"the {other} split ({other_path}, line {other_line})" if other != split else \
                f"line {other_line} of the same file"
            raise DataError(f"{ent.path}, line {line}: {item!r} is also in {where}{same}; an image belongs to one of "
                            f"train / val / test / open, once")
