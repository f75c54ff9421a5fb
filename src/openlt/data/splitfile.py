"""Split files in the ImageNet-LT format: one `relative/path label` per line (label -1 = open set).

Array datasets (the embedded Fashion-MNIST) use the same format with `part/index` in place of a path.
Reading is the boundary: a file is UTF-8 (a byte-order mark is dropped), every label is an integer written in
ASCII digits and in range, every path stays inside the data root and is listed once after normalisation
(`a//b`, `./a/b` and `a/b` are one image); every problem names the file and the line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from openlt.config import read_utf8
from openlt.errors import DataError
from openlt.io import atomic_path

_LABEL = re.compile(r"-?[0-9]+")  # ASCII digits only: int() would also take '１', '1_0' or ' 1'
_MAX_LABEL_DIGITS = 12  # more is out of range for any data set, and never reaches int()


@dataclass
class SplitEntries:
    """The parsed lines of one split file: items (relative paths or `part/index`) and integer labels."""

    path: Path
    items: list[str]
    labels: list[int]
    lines: list[int]  # the line number of each item, for error messages

    def __len__(self) -> int:
        return len(self.items)


def normalise_item(item: str, where: str) -> str:
    """The item as one canonical relative path ('./a//b' -> 'a/b'); refuses paths that leave the data root."""
    if "\0" in item:
        raise DataError(f"{where}: path {item!r} contains a NUL byte")
    pure = PurePosixPath(item.replace("\\", "/"))
    if pure.is_absolute() or item.startswith(("/", "\\")) or ".." in pure.parts:
        raise DataError(f"{where}: path {item!r} must stay inside the data root (no absolute paths, no '..')")
    return PurePosixPath(item).as_posix()


_HEADER_HINT = " (a header line? these files have none: remove it or make it a '#' comment)"


def parse_label(raw: str, where: str, num_classes: int | None, allow_open: bool) -> int:
    """A label: ASCII digits (-1 only in the open split), below `num_classes` when it is known."""
    if not _LABEL.fullmatch(raw):
        raise DataError(f"{where}: label {raw!r} is not an integer")
    if len(raw.lstrip("-")) > _MAX_LABEL_DIGITS:
        raise DataError(f"{where}: label {raw} is out of range" +
                        (f" for {num_classes} classes (0..{num_classes - 1})" if num_classes else ""))
    label = int(raw)
    if label < 0 and not (allow_open and label == -1):
        why = " (-1 alone marks an image of no known class)" if allow_open else " (only the open split may use -1)"
        raise DataError(f"{where}: label {label} is negative{why}")
    if num_classes is not None and label >= num_classes:
        raise DataError(f"{where}: label {label} is out of range for {num_classes} classes (0..{num_classes - 1})")
    return label


def read_split_file(path: str | Path, *, allow_open: bool = False, num_classes: int | None = None,
                    what: str = "split file", empty_hint: str = "") -> SplitEntries:
    """Parse and validate a split file; every error names the file and the line. `what` names the file in the
    messages (identify's ``--gallery list``: not a split file, trial 16 D12); `empty_hint` is added to the error of a
    file that lists no images (its way out: ``data.open_split=null`` for an empty open split, trial 16 D13)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{what} not found: {path}")
    text = read_utf8(path, what, DataError)
    items: list[str] = []
    labels: list[int] = []
    lines: list[int] = []
    seen: dict[str, int] = {}
    for lineno, line in enumerate(text.split("\n"), start=1):  # '\n' only: the line numbers an editor shows
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{path}, line {lineno}"
        if len(line.splitlines()) > 1:  # a lone '\r' (old Mac endings), '\f', U+2028 ...: two lines to an editor
            brk = next(c for c in line if len(f"a{c}a".splitlines()) > 1)
            raise DataError(f"{where}: the line holds a line break {brk!r} inside it (lines end with '\\n' or "
                            f"'\\r\\n'; a path cannot hold a line break)")
        parts = line.rsplit(maxsplit=1)
        if len(parts) != 2:
            comma = "; the columns are separated by whitespace, not commas" if "," in line else ""
            raise DataError(f"{where}: expected 'relative/path label', got {line!r}{comma}")
        if parts[0].endswith(","):  # 'a.png, 0': no image file name ends with a comma
            raise DataError(f"{where}: {line!r}: the columns are separated by whitespace, not commas")
        item = normalise_item(parts[0], where)
        try:
            label = parse_label(parts[1], where, num_classes, allow_open)
        except DataError as exc:  # a first line that is no entry: a CSV-style header, most likely
            raise DataError(f"{exc}{_HEADER_HINT if not items and not _LABEL.fullmatch(parts[1]) else ''}") from None
        if item in seen:
            same = "" if item == parts[0] else f" (as {parts[0]!r})"
            raise DataError(f"{where}: {item!r}{same} is listed twice (first on line {seen[item]})")
        seen[item] = lineno
        items.append(item)
        labels.append(label)
        lines.append(lineno)
    if not items:
        raise DataError(f"{what} {path} lists no images{empty_hint}")
    return SplitEntries(path, items, labels, lines)


def item_problem(item: str) -> str | None:
    """Why a relative path cannot be one line of a split file (None when it can)."""
    if len(item.splitlines()) != 1 or item != item.strip():
        return "a line break or surrounding spaces in a path cannot be written in a split file"
    if "\0" in item:
        return "a NUL byte in a path"
    return None


def write_split_file(path: str | Path, items: list[str], labels: list[int]) -> None:
    """Write `item label` lines; an item that starts with '#' (a class folder '#...') is written './#...', so
    that it is not read back as a comment."""
    with atomic_path(path) as tmp:
        tmp.write_text("".join(f"{'./' if item.startswith('#') else ''}{item} {label}\n"
                               for item, label in zip(items, labels)), encoding="utf-8")
