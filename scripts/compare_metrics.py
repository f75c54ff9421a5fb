"""Compare the metrics of two bench output folders run by run: `python scripts/compare_metrics.py A B`.

Runs are matched by their bench name (`plain-s0-20261129-...` -> `plain-s0`); every metrics*.json of a run is
compared number by number, leaving out what names the run itself (paths) or depends on the clock. Exits 1 and
lists the differing keys when any number differs by more than --tol (default 0: identical), so a refactoring
that must not change results can be checked with `openlt bench configs/bench/seed_check.yaml`.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path

IGNORED = {"run", "source_run", "seconds", "time_s"}


def bench_name(path: Path) -> str:
    return re.sub(r"-\d{8}-\d{6}(-\d+)?$", "", path.name)


def flatten(value, prefix: str = "") -> dict[str, object]:
    if isinstance(value, dict):
        out: dict[str, object] = {}
        for key, item in value.items():
            if key not in IGNORED:
                out.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    if isinstance(value, list):
        out = {}
        for i, item in enumerate(value):
            out.update(flatten(item, f"{prefix}[{i}]"))
        return out
    return {prefix: value}


def differences(a: dict, b: dict, tol: float) -> list[str]:
    fa, fb = flatten(a), flatten(b)
    diffs = [f"{k}: only in {'first' if k in fa else 'second'}" for k in sorted(set(fa) ^ set(fb))]
    for key in sorted(set(fa) & set(fb)):
        x, y = fa[key], fb[key]
        if isinstance(x, (int, float)) and isinstance(y, (int, float)) and not isinstance(x, bool):
            if not (math.isclose(x, y, rel_tol=0, abs_tol=tol) or (math.isnan(x) and math.isnan(y))):
                diffs.append(f"{key}: {x} != {y}")
        elif x != y:
            diffs.append(f"{key}: {x!r} != {y!r}")
    return diffs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("first", type=Path)
    parser.add_argument("second", type=Path)
    parser.add_argument("--tol", type=float, default=0.0, help="largest absolute difference taken as equal")
    args = parser.parse_args()
    runs_a = {bench_name(p): p for p in args.first.iterdir() if p.is_dir()}
    runs_b = {bench_name(p): p for p in args.second.iterdir() if p.is_dir()}
    failed = False
    for name in sorted(set(runs_a) | set(runs_b)):
        if name not in runs_a or name not in runs_b:
            print(f"{name}: only in {'first' if name in runs_a else 'second'}")
            failed = True
            continue
        for file in sorted(runs_a[name].glob("metrics*.json")):
            other = runs_b[name] / file.name
            if not other.is_file():
                print(f"{name}/{file.name}: missing in second")
                failed = True
                continue
            diffs = differences(json.loads(file.read_text()), json.loads(other.read_text()), args.tol)
            print(f"{name}/{file.name}: " + ("same" if not diffs else f"{len(diffs)} differences"))
            for line in diffs[:10]:
                print("   ", line)
            failed |= bool(diffs)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
