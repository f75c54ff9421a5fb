"""Keep a bench folder's evaluated runs in the repository (their records, not their weights).

    python scripts/archive_runs.py runs/convergence results/convergence

A session may start on a fresh machine, and runs/ (git-ignored) does not travel: the seeds measured before are lost
with it (session 22 lost sessions 13 - 21's). This copies each evaluated run's record, the small text files the
tables are made from (config.yaml, metrics.json, metrics.jsonl, split_manifest.json, inference.json: every
``*.json``, ``*.jsonl`` and ``*.yaml`` at the top of the run folder), into DEST/RUN/, so that
`python scripts/convergence_table.py DEST` and `openlt summary DEST/RUN ...` work on seeds measured on different
machines. Checkpoints, feature caches, predictions and reports stay behind (a stage 2 on an archived run needs its
stage 1 trained again: `openlt bench` says so). A run without metrics.json (still training, or killed) is left out;
a run already in DEST is replaced by its current record (re-evaluated: DEST/RUN then mirrors its record files;
DEST/RUN/.archived lists them).
Prints one line per run as it is copied.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path
from typing import Callable

KEEP = (".json", ".jsonl", ".yaml")


def record_files(run: Path) -> list[Path]:
    """The files of `run` that :func:`archive` keeps (sorted): the top-level ``*.json``, ``*.jsonl``, ``*.yaml``."""
    return sorted(p for p in run.iterdir() if p.is_file() and p.suffix in KEEP)


ARCHIVED = ".archived"  # in DEST/RUN: the names of the record files the last archive wrote there, one a line


def archive(source: Path, dest: Path, report: Callable[[str], None] = lambda line: None) -> list[str]:
    """Copy the record files of every evaluated run folder in `source` (one with metrics.json) to `dest`/RUN/, so
    that DEST/RUN mirrors them: a record file an earlier archive wrote there that the run no longer has (a renamed
    metrics-TAG.json) is removed (DEST/RUN/.archived lists what was written); any other file there is left.
    `report` gets one line per run as it is copied (or skipped). Returns the names of the runs copied, sorted.
    Raises ValueError, before anything is copied, when `source` is itself a run (it holds metrics.json), `dest` is
    `source` or inside it (the copy would land among the files it copies), `dest` holds anything else than archived
    runs (:func:`foreign_entries`: an image folder, a repository), or something is in the way (:func:`in_the_way`). A run whose DEST/RUN is that very folder (a symlink to the archived copy) is skipped,
    one line saying so."""
    source, dest = source.resolve(), dest.resolve()
    if (source / "metrics.json").is_file():
        raise ValueError(f"{source} is a run itself (it holds metrics.json): give the folder of runs it is in, "
                         f"e.g. {source.parent}")
    if dest.is_relative_to(source):  # (inside it, the archive would be read as one more folder of the bench's)
        raise ValueError(f"{dest} is {source} or inside it: give a folder of its own, e.g. results/NAME")
    runs = sorted(p for p in source.iterdir() if p.is_dir() and (p / "metrics.json").is_file())
    foreign = [name for name in foreign_entries(dest) if name not in {run.name for run in runs}]  # (in_the_way's)
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise ValueError(f"{dest} holds what is no archived run ({shown}): give a new folder or an earlier archive "
                         f"of runs, e.g. results/NAME; nothing was copied")
    for odd in sorted(p for p in source.iterdir() if p.is_dir() and (p / "metrics.json").exists() and p not in runs):
        report(f"archive_runs: note: {odd / 'metrics.json'} is not a file: {odd.name} left out")
    blocked = [problem for run in runs if (problem := in_the_way(run, dest / run.name))]
    if blocked:
        raise ValueError(f"{blocked[0]}{f' (and {len(blocked) - 1} more)' if blocked[1:] else ''}: move it away or "
                         f"give another DEST; nothing was copied")
    copied = []
    for run in runs:
        target = dest / run.name
        if target.resolve() == run.resolve():  # a link either way between the run and its archived copy
            report(f"archive_runs: note: {run} is {target} itself (a link to the archived copy): skipped")
            continue
        _mirror(run, target)
        copied.append(run.name)
        report(str(target))
    return copied


def foreign_entries(dest: Path) -> list[str]:
    """The names in `dest` (sorted) that are not an archived run (a folder with .archived or metrics.json) nor
    hidden: what archiving into `dest` would mix runs' records with (an image folder's classes). [] when `dest` is
    not there yet."""
    if not dest.is_dir():
        return []
    return sorted(p.name for p in dest.iterdir() if not p.name.startswith(".") and not (
        p.is_dir() and ((p / ARCHIVED).is_file() or (p / "metrics.json").is_file())))


def in_the_way(run: Path, target: Path) -> str | None:
    """What keeps `run`'s records from being copied to `target` (DEST/RUN), or None: `target` a file, or a link
    (the copy would be written where it points; a link to `run` itself is let through, to be skipped), a record
    file's place in it taken by a folder or a link, or a file or folder there that cannot be written."""
    if target.resolve() == run.resolve():  # the run is its archived copy (a link either way): skipped
        return None
    if target.is_symlink():
        return f"{target} is a link (to {target.resolve()})"
    if target.exists() and not target.is_dir():
        return f"{target} is a file, not a run folder"
    for path in record_files(run):
        place = target / path.name
        if place.is_symlink() or (place.exists() and not place.is_file()):
            return f"{place} is {'a link' if place.is_symlink() else 'a folder'}, where the record file goes"
        if place.exists() and not os.access(place, os.W_OK):  # immutable (chattr +i), read-only, another owner's
            return f"{place} cannot be overwritten (permission)"
    if target.is_dir() and not os.access(target, os.W_OK | os.X_OK):
        return f"{target} cannot be written to (permission)"
    return None


def _mirror(run: Path, target: Path) -> None:
    """Copy `run`'s record files into `target`; remove those an earlier archive wrote that `run` no longer has."""
    target.mkdir(parents=True, exist_ok=True)
    kept = [path.name for path in record_files(run)]
    listed = target / ARCHIVED
    before = listed.read_text(encoding="utf-8").split() if listed.is_file() else []
    for name in sorted(set(before) - set(kept)):
        (target / name).unlink(missing_ok=True)
    for name in kept:
        shutil.copy2(run / name, target / name)
    listed.write_text("".join(f"{name}\n" for name in kept), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="a bench's out_dir, e.g. runs/convergence")
    parser.add_argument("dest", type=Path, help="where the records go, e.g. results/convergence")
    args = parser.parse_args(argv)
    if not args.source.is_dir():
        print(f"archive_runs: error: {args.source} is not a folder", file=sys.stderr)
        return 2

    def report(line: str) -> None:
        print(line, file=sys.stderr if line.startswith("archive_runs:") else sys.stdout, flush=True)

    try:
        copied = archive(args.source, args.dest, report)
    except (ValueError, OSError) as exc:
        print(f"archive_runs: error: {exc}", file=sys.stderr)
        return 2
    if not copied:
        print(f"archive_runs: no evaluated run (a folder with metrics.json) in {args.source}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
