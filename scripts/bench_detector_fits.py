#!/usr/bin/env python
"""Mahalanobis's and ViM's fits, before and after issue 17's chunked fits: time and peak memory at a few sizes.

"before" is what openlt's fit did until then: the float16 training features converted to float32 whole (as
engine/score_fit.py handed them to these fits), pytorch-ood's ``fit_features`` on them, the no-spread check.
"after" is openlt's fit now (``Mahalanobis().fit`` / ``ViM(dim).fit`` on the float16 features as they are). Each
(size, detector, version) runs in a fresh process on random float16 features (N x d, every class present) and a
random linear head; the time is the process's CPU time (one thread: the work done, whatever else shares the
machine) and the wall time, the peak is the resident set size above the fit's start (``VmHWM`` reset through
``/proc/self/clear_refs``), so it is the fit's own. The table ends with each version's time ratio between the
sizes (CPU time), against the ratios of N and of N*K (the work of the fits' terms: N d^2 for the scatter,
N K d for ViM's max logits; pytorch-ood's Mahalanobis adds K d^2 and N K).

    OMP_NUM_THREADS=1 .venv/bin/python scripts/bench_detector_fits.py                      # ~10 min on one thread
    OMP_NUM_THREADS=1 .venv/bin/python scripts/bench_detector_fits.py --sizes 100x5000,200x10000 --d 256  # seconds
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling script's measurement, as bench_scale's stages
from bench_scale import peak_above_start  # noqa: E402

DEFAULT_SIZES = "1000x50000,2000x100000,4000x50000"  # K x N: the base, N and K doubled, K x 4 at the same N


def _data(k: int, n: int, d: int):
    """(float16 features (n, d), labels (n,) with every class, head (W (k, d), b (k,))), drawn in chunks."""
    import torch

    g = torch.Generator().manual_seed(0)
    y = torch.cat([torch.arange(k), torch.randint(0, k, (n - k,), generator=g)])
    x = torch.empty(n, d, dtype=torch.float16)
    for start in range(0, n, 8192):
        x[start:start + 8192] = torch.rand(min(8192, n - start), d, generator=g).half()
    return x, y, (torch.randn(k, d, generator=g) * 0.02, torch.randn(k, generator=g) * 0.1)


def _fit(detector: str, version: str, x, y, head, dim: int):
    """The fit being measured."""
    import pytorch_ood.detector as ood

    from openlt.openset import Mahalanobis, ViM
    from openlt.openset.base import features_warning

    if version == "after":
        if detector == "mahalanobis":
            return Mahalanobis().fit({"feature": x, "labels": y})
        return ViM(dim).fit({"feature": x, "labels": y}, head=head)
    x32 = x.float()  # score_fit / training_features: the whole float32 copy pytorch-ood's fit takes
    fitted = (ood.Mahalanobis(None).fit_features(x32, y) if detector == "mahalanobis"
              else ood.ViM(None, dim, *head).fit_features(x32, y))
    features_warning(detector, x32)
    return fitted


def child(k: int, n: int, d: int, detector: str, version: str) -> dict:
    """One measurement in this process: the data drawn, then the fit timed with its peak memory."""
    import pytorch_ood.detector  # noqa: F401  (imports before the clock: _fit's are then free)
    import torch

    import openlt.openset  # noqa: F401

    x, y, head = _data(k, n, d)
    dim = min(1000, d // 2)  # the paper's rule for d = 2,048: 1,000
    few = min(n, k + dim + 1)  # every class (the first k rows) and more rows than ViM's subspace
    _fit(detector, version, x[:few], y[:few], head, dim)  # warm-up: the first BLAS / LAPACK calls
    _, seconds, cpu, peak = peak_above_start(lambda: _fit(detector, version, x, y, head, dim))
    return {"k": k, "n": n, "d": d, "detector": detector, "version": version, "seconds": seconds, "cpu_s": cpu,
            "peak_mb": peak / 2**20, "threads": torch.get_num_threads()}


def table(rows: list[dict]) -> str:
    """Markdown: CPU time, wall time and peak per size and version, then each size's CPU-time ratio against the
    first size's (CPU time: this process's own, whatever else runs on the machine)."""
    lines = ["| detector | K | N | before: CPU s | wall s | MB | after: CPU s | wall s | MB |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    cell = {(r["detector"], r["k"], r["n"], r["version"]): r for r in rows}
    sizes = sorted({(r["k"], r["n"]) for r in rows}, key=lambda s: [(r["k"], r["n"]) for r in rows].index(s))
    detectors = sorted({r["detector"] for r in rows})
    for det in detectors:
        for k, n in sizes:
            out = [det, f"{k:,}", f"{n:,}"]
            for version in ("before", "after"):
                r = cell.get((det, k, n, version))
                out += (["", "", ""] if r is None
                        else [f"{r['cpu_s']:.2f}", f"{r['seconds']:.2f}", f"{r['peak_mb']:,.0f}"])
            lines.append("| " + " | ".join(out) + " |")
    lines += ["", "| detector | sizes | before: CPU-time ratio | after: CPU-time ratio | N ratio | N*K ratio |",
              "|---|---|---:|---:|---:|---:|"]
    for det in detectors:
        (k0, n0), rest = sizes[0], sizes[1:]
        for k, n in rest:
            ratio = [f"{cell[(det, k, n, v)]['cpu_s'] / cell[(det, k0, n0, v)]['cpu_s']:.2f}"
                     if (det, k, n, v) in cell and (det, k0, n0, v) in cell else "" for v in ("before", "after")]
            lines.append(f"| {det} | K={k:,} N={n:,} over K={k0:,} N={n0:,} | {ratio[0]} | {ratio[1]} | "
                         f"{n / n0:.2f} | {n * k / (n0 * k0):.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default=DEFAULT_SIZES, help="comma-separated KxN (classes x training images)")
    parser.add_argument("--d", type=int, default=2048, help="feature width")
    parser.add_argument("--detectors", default="mahalanobis,vim")
    parser.add_argument("--versions", default="before,after")
    parser.add_argument("--json", default=None, help="write the measurements here")
    parser.add_argument("--child", nargs=5, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        k, n, d, detector, version = args.child
        print(json.dumps(child(int(k), int(n), int(d), detector, version)))
        return
    rows = []
    for size in args.sizes.split(","):
        k, n = (int(v) for v in size.lower().split("x"))
        for detector in args.detectors.split(","):
            for version in args.versions.split(","):
                out = subprocess.run([sys.executable, __file__, "--child", str(k), str(n), str(args.d), detector,
                                      version], capture_output=True, text=True, env=os.environ)
                if out.returncode:
                    sys.exit(f"bench_detector_fits: {detector} {version} K={k} N={n} failed:\n{out.stderr}")
                rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
                r = rows[-1]
                print(f"  {detector:12s} {version:6s} K={k:6,} N={n:8,} d={args.d}: {r['cpu_s']:8.2f} s CPU "
                      f"{r['seconds']:8.2f} s wall "
                      f"{r['peak_mb']:8,.0f} MB ({r['threads']} threads)", flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)
    print(table(rows))


if __name__ == "__main__":
    main()
