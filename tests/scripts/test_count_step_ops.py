"""scripts/count_step_ops.py counts one training step's operations by phase and module, plain against OLTR."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]


def test_the_step_is_counted_by_phase_and_the_shared_backbone_counts_alike():
    env = {**os.environ, "DEV": "cpu", "AMP": "none", "SIZE": "32", "BATCH": "2", "K": "20", "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "scripts/count_step_ops.py"], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = {}
    for line in out.stdout.splitlines()[2:]:
        name, plain, oltr = line[:34].strip(), *line[34:].split()[:2]
        rows[name] = (int(plain), int(oltr))
    assert rows["forward: backbone"][0] == rows["forward: backbone"][1] > 0  # the same ResNet-10 in both
    assert rows["forward: attention"][0] == 0 < rows["forward: attention"][1]
    assert rows["forward: head.fc"][0] > 0 and rows["loss"][1] > rows["loss"][0] > 0
    phases = [name for name in rows if name != "step without the optimizer"]
    for i, kind in enumerate(("plain", "OLTR")):
        total = sum(rows[name][i] for name in phases if name != "optimizer")
        assert rows["step without the optimizer"][i] == total, kind
