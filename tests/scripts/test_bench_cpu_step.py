"""scripts/bench_cpu_step.py (the CPU levers of issue 17's speed target) runs end to end at a tiny batch in this
process: every variant is openlt's real training step, each printed with images/s and its ratio to fp32 NCHW."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[2] / "scripts"))
import bench_cpu_step  # noqa: E402  (a script, not a package module)


def test_every_variant_is_timed_and_compared_with_fp32_nchw(capsys):
    assert bench_cpu_step.main(["--shape", "fmnist_lt", "--batch-size", "2", "--rounds", "1"]) == 0
    out = capsys.readouterr().out
    assert "fmnist_lt/plain.yaml at 28 px, 8 classes, batch 2" in out
    assert out.count("x fp32 NCHW (issue 17's target: >= 2x)") == 3
    for name in ("fp32 NCHW", "fp32 channels-last", "bf16 channels-last"):
        assert any(line.strip().startswith(name) and "img/s" in line for line in out.splitlines()), name
    assert any(line.strip().startswith("fp32 NCHW") and " 1.00x fp32 NCHW" in line for line in out.splitlines())


def test_the_cpu_flags_line_names_the_bfloat16_features():
    flags = bench_cpu_step.cpu_flags()
    assert flags == "unknown" or all(f"{f} " in flags for f in ("avx512_bf16", "amx_bf16"))


@pytest.mark.parametrize("shape", ["imagenet_lt", "fmnist_lt"])
def test_each_shape_names_an_existing_config(shape):
    config, channels, size, counts = bench_cpu_step.SHAPES[shape]
    assert config.is_file() and channels in (1, 3) and size in (28, 224) and len(counts) in (8, 1000)
