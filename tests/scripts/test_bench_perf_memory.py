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


def test_scaled_split_multiplies_training_and_evaluation_images_apart(bench):
    split = bench.scaled_split(train_factor=4, eval_factor=8)
    assert split["train"] == [4 * n for n in bench.MEMORY_SPLIT["train"]]
    assert split["val"] == bench.MEMORY_SPLIT["val"]  # the training process evaluates it: kept
    assert split["test"] == 8 * bench.MEMORY_SPLIT["test"]
    assert split["open"] == (bench.MEMORY_SPLIT["open"][0], 8 * bench.MEMORY_SPLIT["open"][1])
    assert bench.scaled_split() == bench.MEMORY_SPLIT
    with pytest.raises(ValueError, match="factors must be >= 1"):
        bench.scaled_split(eval_factor=0)


def test_write_split_option_writes_the_scaled_split_and_refuses_an_existing_folder(tmp_path, bench, monkeypatch):
    import subprocess
    from pathlib import Path

    script = Path(bench.__file__)
    monkeypatch.setattr(bench, "MEMORY_SPLIT", {"train": [2, 1], "val": 1, "test": 1, "open": (1, 1)})
    monkeypatch.setattr(sys, "argv", ["bench_perf.py", "--write-split", str(tmp_path / "s"), "--eval-factor", "3"])
    assert bench.main() == 0
    counts = {part: len((tmp_path / "s" / "splits" / f"ImageNet_LT_{part}.txt").read_text().split("\n")[:-1])
              for part in ("train", "val", "test", "open")}
    assert counts == {"train": 3, "val": 2, "test": 6, "open": 3}
    again = subprocess.run([sys.executable, str(script), "--write-split", str(tmp_path / "s")],
                           capture_output=True, text=True)
    assert again.returncode == 2 and "exists; give a new folder" in again.stderr
