"""Keep a bench folder's evaluated runs in the repository (their records, not their weights).

    python scripts/archive_runs.py runs/convergence results/convergence

A session may start on a fresh machine, and runs/ (git-ignored) does not travel: the seeds measured before are lost
with it (session 22 lost sessions 13 - 21's). This copies each evaluated run's record, the small text files the
tables are made from (config.yaml, metrics.json, metrics.jsonl, split_manifest.json, inference.json: every
``*.json``, ``*.jsonl`` and ``*.yaml`` at the top of the run folder), into DEST/RUN/, so that
`python scripts/convergence_table.py DEST` and `openlt summary DEST/RUN ...` work on seeds measured on different
machines. Checkpoints, feature caches, predictions and reports stay behind (a stage 2 on an archived run needs its
stage 1 trained again: `openlt bench` says so). A run without metrics.json (still training, or killed) is left out;
a run already in DEST is replaced by its current record (re-evaluated: DEST/RUN then mirrors its record files).
Prints one line per run as it is copied.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path
from typing import Callable

KEEP = (".json", ".jsonl", ".yaml")


def record_files(run: Path) -> list[Path]:
    """The files of `run` that :func:`archive` keeps (sorted): the top-level ``*.json``, ``*.jsonl``, ``*.yaml``."""
    return sorted(p for p in run.iterdir() if p.is_file() and p.suffix in KEEP)


def archive(source: Path, dest: Path, report: Callable[[str], None] = lambda line: None) -> list[str]:
    """Copy the record files of every evaluated run folder in `source` (one with metrics.json) to `dest`/RUN/, so
    that DEST/RUN mirrors them: a record file of an earlier archive that the run no longer has (a renamed
    metrics-TAG.json) is removed; any other file there is left. `report` gets one line per run as it is copied
    (or skipped). Returns the names of the runs copied, sorted.
    Raises ValueError, before anything is copied, when `source` is itself a run (it holds metrics.json), `dest` is
    `source` or inside one of its runs (the copy would land among the files it copies), or a DEST/RUN is not a
    folder. A run whose DEST/RUN is that very folder (a symlink to the archived copy) is skipped, one line saying
    so."""
    source, dest = source.resolve(), dest.resolve()
    if (source / "metrics.json").is_file():
        raise ValueError(f"{source} is a run itself (it holds metrics.json): give the folder of runs it is in, "
                         f"e.g. {source.parent}")
    if dest == source or any(dest.is_relative_to(run) for run in source.iterdir() if run.is_dir()):
        raise ValueError(f"{dest} is {source} or inside one of its runs: give a folder of its own, e.g. results/NAME")
    runs = sorted(p for p in source.iterdir() if p.is_dir() and (p / "metrics.json").is_file())
    taken = [dest / run.name for run in runs if (dest / run.name).exists() and not (dest / run.name).is_dir()]
    if taken:
        raise ValueError(f"{taken[0]} is a file, not a run folder{f' (and {len(taken) - 1} more)' if taken[1:] else ''}"
                         f": move it away or give another DEST; nothing was copied")
    copied = []
    for run in runs:
        target = dest / run.name
        if target.resolve() == run.resolve():
            report(f"archive_runs: note: {run} is {target} itself (a link to the archived copy): skipped")
            continue
        target.mkdir(parents=True, exist_ok=True)
        kept = {path.name for path in record_files(run)}
        for stale in record_files(target):
            if stale.name not in kept:
                stale.unlink()
        for name in sorted(kept):
            shutil.copy2(run / name, target / name)
        copied.append(run.name)
        report(str(target))
    return copied


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
