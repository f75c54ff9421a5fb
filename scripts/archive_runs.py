"""Keep a bench folder's evaluated runs in the repository (their records, not their weights).

    python scripts/archive_runs.py runs/convergence results/convergence

A session may start on a fresh machine, and runs/ (git-ignored) does not travel: the seeds measured before are lost
with it (session 22 lost sessions 13 - 21's). This copies each evaluated run's record, the small text files the
tables are made from (config.yaml, metrics.json, metrics.jsonl, split_manifest.json, inference.json: every
``*.json``, ``*.jsonl`` and ``*.yaml`` at the top of the run folder), into DEST/RUN/, so that
`python scripts/convergence_table.py DEST` and `openlt summary DEST/RUN ...` work on seeds measured on different
machines. Checkpoints, feature caches, predictions and reports stay behind (a stage 2 on an archived run needs its
stage 1 trained again). A run without metrics.json (still training, or killed) is left out; a run already in DEST
is overwritten (re-evaluated). Prints one line per run copied.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

KEEP = (".json", ".jsonl", ".yaml")


def record_files(run: Path) -> list[Path]:
    """The files of `run` that :func:`archive` keeps (sorted): the top-level ``*.json``, ``*.jsonl``, ``*.yaml``."""
    return sorted(p for p in run.iterdir() if p.is_file() and p.suffix in KEEP)


def archive(source: Path, dest: Path) -> list[str]:
    """Copy the record files of every evaluated run folder in `source` (one with metrics.json) to `dest`/RUN/;
    returns the names of the runs copied, sorted. Raises ValueError when `dest` is `source` or inside one of its
    runs (the copy would land among the files it copies)."""
    source, dest = source.resolve(), dest.resolve()
    if dest == source or any(dest.is_relative_to(run) for run in source.iterdir() if run.is_dir()):
        raise ValueError(f"{dest} is {source} or inside one of its runs: give a folder of its own, e.g. results/NAME")
    copied = []
    for run in sorted(p for p in source.iterdir() if p.is_dir() and (p / "metrics.json").is_file()):
        (dest / run.name).mkdir(parents=True, exist_ok=True)
        for path in record_files(run):
            shutil.copy2(path, dest / run.name / path.name)
        copied.append(run.name)
    return copied


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="a bench's out_dir, e.g. runs/convergence")
    parser.add_argument("dest", type=Path, help="where the records go, e.g. results/convergence")
    args = parser.parse_args(argv)
    if not args.source.is_dir():
        print(f"archive_runs: error: {args.source} is not a folder", file=sys.stderr)
        return 2
    try:
        copied = archive(args.source, args.dest)
    except (ValueError, OSError) as exc:
        print(f"archive_runs: error: {exc}", file=sys.stderr)
        return 2
    for name in copied:
        print(f"{args.dest / name}")
    if not copied:
        print(f"archive_runs: no evaluated run (a folder with metrics.json) in {args.source}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
