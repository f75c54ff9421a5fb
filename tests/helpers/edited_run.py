"""Copies of a trained run with its config.yaml edited, and a run folder's files: for the tests of what openlt does
with a run directory changed after training (tests/engine/test_edited_run_config.py, test_train_resume_config.py)."""

import shutil
from pathlib import Path

import yaml


def edited_copy(run: Path, tmp_path: Path, **edits) -> Path:
    """A copy of `run` in `tmp_path` (its name kept) whose config.yaml has `edits` ({"section__key": value}) set."""
    copy = tmp_path / run.name
    shutil.copytree(run, copy)
    saved = yaml.safe_load((copy / "config.yaml").read_text())
    for dotted, value in edits.items():
        node = saved
        *parents, last = dotted.split("__")
        for key in parents:
            node = node[key]
        node[last] = value
    (copy / "config.yaml").write_text(yaml.safe_dump(saved, sort_keys=False))
    return copy


def run_files(run: Path, skip: tuple[str, ...] = ()) -> dict[Path, bytes]:
    """{path relative to `run`: bytes} of every file below `run` but those named in `skip`."""
    return {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file() and p.name not in skip}
