"""scripts/count_step_ops.py counts one training step's operations by phase and module, plain against OLTR."""

from script_loader import run_script  # tests/helpers


def test_the_step_is_counted_by_phase_and_the_shared_backbone_counts_alike():
    out = run_script("count_step_ops", DEV="cpu", AMP="none", SIZE="32", BATCH="2", K="20")
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
