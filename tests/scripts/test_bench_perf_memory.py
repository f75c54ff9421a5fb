"""scripts/bench_perf.py --memory: the generated 224 px split and the peak-memory measurement of a command."""

import sys

import pytest
from script_loader import load_script  # tests/helpers


@pytest.fixture(scope="module")
def bench():
    return load_script("bench_perf")


def test_the_split_is_224_px_jpegs_in_imagenet_lt_split_files(tmp_path, bench, monkeypatch):
    from PIL import Image

    monkeypatch.setattr(bench, "MEMORY_SPLIT", {"train": [3, 1], "val": 1, "test": 2, "open": (1, 2)})
    images, splits = bench.write_224_split(tmp_path)
    lines = {part: (splits / f"ImageNet_LT_{part}.txt").read_text().split("\n")[:-1]
             for part in ("train", "val", "test", "open")}
    assert {part: len(rows) for part, rows in lines.items()} == {"train": 4, "val": 2, "test": 4, "open": 2}
    assert {row.split()[1] for row in lines["open"]} == {"-1"}
    with Image.open(images / lines["train"][0].split()[0]) as first:
        assert first.size == (224, 224) and first.format == "JPEG"


def test_peak_memory_sees_the_command_and_its_children(bench):
    grow = "x = bytearray(200 * 2**20); import time; time.sleep(0.3)"
    parent = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {grow!r}], check=True)"
    peak = bench.peak_memory([sys.executable, "-c", parent])
    assert peak["largest_mb"] >= 200 and peak["tree_pss_mb"] >= 150 and peak["processes"] == 2
    with pytest.raises(RuntimeError, match="failed"):
        bench.peak_memory([sys.executable, "-c", "import sys; sys.exit(3)"])
