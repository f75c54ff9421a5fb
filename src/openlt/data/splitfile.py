"""Split files in the ImageNet-LT format: one `relative/path label` per line (label -1 = open set).

Array datasets (the embedded Fashion-MNIST) use the same format with `part/index` in place of a path.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from openlt.errors import DataError
from openlt.io import atomic_path


@dataclass
class SplitEntries:
    """The parsed lines of one split file: items (relative paths or `part/index`) and integer labels."""

    path: Path
    items: list[str]
    labels: list[int]
    lines: list[int]  # the line number of each item, for error messages

    def __len__(self) -> int:
        return len(self.items)


def _check_relative(item: str, where: str) -> None:
    pure = PurePosixPath(item.replace("\\", "/"))
    if pure.is_absolute() or item.startswith(("/", "\\")) or ".." in pure.parts:
        raise DataError(f"{where}: path {item!r} must stay inside the data root (no absolute paths, no '..')")


def read_split_file(path: str | Path, *, allow_open: bool = False, num_classes: int | None = None) -> SplitEntries:
    """Parse and validate a split file; every error names the file and the line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"split file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read split file {path}: {exc}") from None
    items: list[str] = []
    labels: list[int] = []
    lines: list[int] = []
    seen: dict[str, int] = {}
    for lineno, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{path}, line {lineno}"
        parts = line.rsplit(maxsplit=1)
        if len(parts) != 2:
            raise DataError(f"{where}: expected 'relative/path label', got {line!r}")
        item, raw_label = parts
        try:
            label = int(raw_label)
        except ValueError:
            raise DataError(f"{where}: label {raw_label!r} is not an integer") from None
        if label < 0 and not (allow_open and label == -1):
            raise DataError(f"{where}: label {label} is negative" + ("" if allow_open else " (only the open split may use -1)"))
        if num_classes is not None and label >= num_classes:
            raise DataError(f"{where}: label {label} is out of range for {num_classes} classes (0..{num_classes - 1})")
        _check_relative(item, where)
        if item in seen:
            raise DataError(f"{where}: {item!r} is listed twice (first on line {seen[item]})")
        seen[item] = lineno
        items.append(item)
        labels.append(label)
        lines.append(lineno)
    if not items:
        raise DataError(f"split file {path} lists no images")
    return SplitEntries(path, items, labels, lines)


def write_split_file(path: str | Path, items: list[str], labels: list[int]) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text("".join(f"{item} {label}\n" for item, label in zip(items, labels)), encoding="utf-8")
