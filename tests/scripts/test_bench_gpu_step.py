"""scripts/bench_gpu_step.py (a GPU benchmark) runs end to end on the CPU at a tiny batch and input size: every step it times is
openlt's real training step, and its summary lines come out."""

from script_loader import run_script  # tests/helpers


def test_the_gpu_step_benchmark_runs_on_the_cpu():
    out = run_script("bench_gpu_step", DEV="cpu", BATCH="1", N="1", W="0", SIZE="64")
    lines = out.stdout.splitlines()
    assert sum("ms/step" in line for line in lines) == 12 and "FAILED" not in out.stdout
    assert any(line.startswith("plain bf16 channels-last speed-up over fp32 NCHW:") for line in lines)
    assert any(line.startswith("OLTR / plain step time, bf16 channels-last:") for line in lines)
