"""The checks every source of class names shares (a class-name file, a CIFAR meta file), one name at a time, where
the names are read and so before any split is written."""

from __future__ import annotations

from typing import TypeVar

from openlt.data.splits import class_name_problem
from openlt.errors import DataError

At = TypeVar("At")


def add_class_name(first: dict[str, At], name: str, at: At, where: str, earlier: str) -> None:
    """Record `name`, read at `at` (a line number, a class index), in `first` ({name: where it was read first})
    once it is checked: one the outputs can hold (`splits.class_name_problem`: not 'unknown', no ';', ':' or
    control character) and not given before. DataError ``{where} {name!r} ...`` naming the problem; `where` names
    the source and the place (``names.txt, line 3: class name``), `earlier` (``the class name of line {}``, a
    format of the first place) names where a repeated name was given first."""
    problem = class_name_problem(name)
    if problem:
        raise DataError(f"{where} {name!r} cannot be a class name: {problem}")
    if name in first:
        raise DataError(f"{where} {name!r} repeats {earlier.format(first[name])}: two classes would have one name "
                        f"(in every report, and for --open-classes {name})")
    first[name] = at
