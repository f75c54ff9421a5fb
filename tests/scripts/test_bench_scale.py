"""scripts/bench_scale.py end to end at its tiny size (K = 20, N = 600, ResNet-10 features d = 512) in a temporary
folder: every stage it promises is printed with a time and a peak memory, the table has a row for each, the
--json file holds them, and --from-json over two sizes gives the ratio columns (time ratio, work ratio, <= linear).
A few seconds of CPU (20 s of CPU time in all, more wall time on a loaded machine)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from script_loader import load_script  # tests/helpers

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_scale.py"

# every stage the script's docstring and docs/scale.md's table promise, in the order it runs them
STAGES = [
    "split files: read + check (prepare_data, no decode)",
    *(f"sampler {name}: build + one epoch of indices"
      for name in ("class_aware", "class_balanced", "instance", "progressive", "sqrt")),
    "feature cache read (load_features, 4 splits, fp16 kept)",
    "cRT: one epoch on the cache (SGD, batch 512)",
    "LWS: one epoch on the cache (SGD, batch 512)",
    "NCM: fit (class means of the training features)",
    "NCM: logits of the test images",
    "tau-norm: validation search over 21 tau",
    "OpenMax: fit (MAVs, K Weibull tails; chunks of logits)",
    "OpenMax: score test + open",
    "msp: score test + open", "max_logit: score test + open", "energy: score test + open",
    *(f"{name}: {what}" for name in ("mahalanobis", "vim", "react", "knn")
      for what in ("fit on the training features", "score test + open")),
    "per-image records: softmax, top-5, score (val+test+open)",
    "metrics (compute_metrics on the records)",
    "metrics.json: write",
    "confusion.npz: write (sparse)",
    "predictions.npz: write",
    "run report: report.md + report.html (figures)",
    "openlt summary over 3 runs",
    "bench report over 3 runs (md, csv, html, 2 png)",
    "openlt eval end to end (cRT run: cache -> head -> files, report)",
    "image path: decode + transform + ResNet-10 forward",
]
FEATURE_DETECTORS = [s for s in STAGES if s.split(":")[0] in ("mahalanobis", "vim", "react", "knn")]


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(stdout, the --json results, the folder) of one tiny run."""
    root = tmp_path_factory.mktemp("scale")
    done = _run("--sizes", "tiny", "--threads", "1", "--workdir", str(root / "work"), "--json", str(root / "scale.json"),
                "--markdown", str(root / "scale.md"), cwd=root)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout, json.loads((root / "scale.json").read_text()), root


def _has_pytorch_ood() -> bool:
    try:
        import pytorch_ood  # noqa: F401
    except ImportError:
        return False
    return True


def test_every_stage_is_printed_with_its_time_and_peak_memory(tiny):
    out, _, _ = tiny
    expected = STAGES if _has_pytorch_ood() else [s for s in STAGES if s not in FEATURE_DETECTORS]
    lines = out.splitlines()
    printed = [m.group(1).strip() for line in lines
               if (m := re.match(r"^  (\S.*?)\s+(\d+\.\d\d) s\s+(\d+) MB", line))]
    assert printed == expected  # every promised stage, in order, each once, with seconds and MB
    assert "tiny: K = 20, N = 600, val 100, test 200, open 100, d = 512" in out


def test_the_table_and_the_json_hold_every_stage_and_the_targets(tiny):
    out, results, root = tiny
    expected = STAGES if _has_pytorch_ood() else [s for s in STAGES if s not in FEATURE_DETECTORS]
    (result,) = results
    assert result["key"] == "tiny" and result["size"]["k"] == 20 and result["size"]["n_train"] == 600
    assert [row["stage"] for row in result["rows"]] == expected
    assert all(row["seconds"] >= 0 and row["peak_mb"] >= 0 for row in result["rows"])
    table = [line for line in out.splitlines() if line.startswith("| ")]
    assert table[0] == "| stage | work | tiny: s | tiny: MB"  # one size: no ratio columns
    assert [row.split(" | ")[0][2:].split(" (extrapolated")[0] for row in table[1:]] == expected
    assert "metrics.json" in out and "target <= 2048 MB: met" in out
    assert (root / "scale.md").read_text().strip() in out


def test_two_sizes_give_the_ratio_columns(tiny):
    """--from-json over two sizes (the tiny result and a copy of it as a 'larger' size: 4x the images, twice the
    time, except one stage 20x) prints the time ratio, the work ratio and whether each stage is at most linear."""
    _, (result,), root = tiny
    bench = load_script("bench_scale")
    bigger = json.loads(json.dumps(result))
    bigger["size"].update(name="tiny x4", n_train=4 * result["size"]["n_train"])
    for row in bigger["rows"]:
        row["seconds"] = 2 * max(row["seconds"], 0.1)
        row["work_value"] = bench.WORK[row["work"]](bench.Size(**bigger["size"]))
    slow = "NCM: fit (class means of the training features)"  # work N: ratio 4
    next(r for r in bigger["rows"] if r["stage"] == slow)["seconds"] = 20 * max(
        next(r for r in result["rows"] if r["stage"] == slow)["seconds"], 0.1)
    (root / "two.json").write_text(json.dumps([{**result, "rows": [{**r, "seconds": max(r["seconds"], 0.1)}
                                                                   for r in result["rows"]]}, bigger]))
    done = _run("--from-json", str(root / "two.json"), cwd=root)
    assert done.returncode == 0, done.stderr[-3000:]
    table = [line for line in done.stdout.splitlines() if line.startswith("| ")]
    assert table[0].endswith("| time ratio | work ratio | ≤ linear |")
    rows = {line.split(" | ")[0][2:]: line.split(" | ")[-3:] for line in table[1:]}
    assert rows[slow] == ["20.00", "4.00", "**no** |"]
    split = "split files: read + check (prepare_data, no decode)"  # work 2N+E: (8N + E) / (2N + E)
    n, e = result["size"]["n_train"], sum(result["size"][k] for k in ("n_val", "n_test", "n_open"))
    assert rows[split] == ["2.00", f"{(8 * n + e) / (2 * n + e):.2f}", "yes |"]
    assert f"stages growing faster than their work (x 1.25 allowed for noise; 0.2 s or more): {slow}" in done.stdout
