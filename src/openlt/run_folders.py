"""Folders of runs: telling a run (a folder with a config.yaml) from a folder that holds runs (a bench's out_dir, or
a folder of them such as runs/), so that a command given the wrong one can name what the user may have meant.
Foundation layer, pathlib only: `engine.run.open_run` (its error path) and `reporting.summary` share it."""

from __future__ import annotations

from pathlib import Path


def is_folder_of_runs(folder: Path) -> bool:
    """Whether `folder` is not a run (no config.yaml) but holds runs (sub-folders with a config.yaml, or their
    sub-folders: a folder of bench out_dirs): :func:`example_run`."""
    try:
        return folder.is_dir() and not (folder / "config.yaml").is_file() and example_run(folder) is not None
    except OSError:
        return False


def example_run(folder: Path) -> Path | None:
    """The first run (a folder with a config.yaml), in name order, among `folder`'s sub-folders, else among theirs
    (a folder of bench out_dirs, such as runs/), or None; a sub-folder that cannot be listed is passed over."""
    children = _subfolders(folder)
    for level in (children, [grandchild for child in children for grandchild in _subfolders(child)]):
        runs = [child for child in level if (child / "config.yaml").is_file()]
        if runs:
            return runs[0]
    return None


def _subfolders(folder: Path) -> list[Path]:
    try:
        return sorted(child for child in folder.iterdir() if child.is_dir())
    except OSError:
        return []
