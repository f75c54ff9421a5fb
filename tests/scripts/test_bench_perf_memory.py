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


def _refused(bench, monkeypatch, capsys, *args) -> str:
    """bench_perf.py's one-line refusal (exit 2, argparse's usage and one error line) of `args`."""
    monkeypatch.setattr(sys, "argv", ["bench_perf.py", *map(str, args)])
    with pytest.raises(SystemExit) as stop:
        bench.main()
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "Traceback" not in err
    return err.strip().splitlines()[-1]


def test_a_factor_without_write_split_is_refused_not_ignored(bench, monkeypatch, capsys):
    # was: ignored, and the whole benchmark (minutes of training steps) ran
    for option in ("--train-factor", "--eval-factor"):
        assert "only applies with --write-split" in _refused(bench, monkeypatch, capsys, option, 4)


def test_a_split_larger_than_the_free_space_is_refused_before_writing(tmp_path, bench, monkeypatch, capsys):
    # --train-factor 1000000: 421 million JPEGs (~12 TB), written until the disk filled
    err = _refused(bench, monkeypatch, capsys, "--write-split", tmp_path / "s", "--train-factor", 1_000_000)
    assert "free" in err and "--train-factor" in err
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("where", ["under_a_file", "unwritable"])
def test_a_folder_that_cannot_be_written_is_one_line_and_nothing_is_left(tmp_path, bench, monkeypatch, capsys, where):
    monkeypatch.setattr(bench, "MEMORY_SPLIT", {"train": [2, 1], "val": 1, "test": 1, "open": (1, 1)})
    (tmp_path / "file").write_text("x")
    target = tmp_path / "file" / "s"
    if where == "unwritable":  # (root writes anywhere: a failure half-way stands for it)
        target = tmp_path / "s"

        def fails_half_way(root, seed=0, split=None):
            (root / "images" / "train").mkdir(parents=True)
            raise PermissionError(13, "Permission denied", str(root / "images" / "train"))

        monkeypatch.setattr(bench, "write_224_split", fails_half_way)
    err = _refused(bench, monkeypatch, capsys, "--write-split", target)
    assert err.startswith("bench_perf.py: error: --write-split: cannot write") and str(target) in err
    assert not target.exists()  # no half-written split left to refuse the next try as "exists"
