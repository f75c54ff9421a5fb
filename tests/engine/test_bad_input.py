"""Each user mistake gives one clear message (exit 2), no traceback, and leaves no half-written run."""

import shutil
from pathlib import Path

import pytest

from openlt.cli import main

BASE = ["data.image_size=16", "model.backbone=resnet10", "train.epochs=1", "train.batch_size=16", "--quiet"]


def run_cli(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out + err


def write_split_dir(folder: Path, image_folder: Path, train_lines: list[str], val_lines=None, test_lines=None):
    folder.mkdir(parents=True, exist_ok=True)
    default = [f"ant/{i:03d}.png 0" for i in range(3)] + [f"bee/{i:03d}.png 1" for i in range(3)]
    (folder / "train.txt").write_text("\n".join(train_lines) + "\n")
    (folder / "val.txt").write_text("\n".join(val_lines or default) + "\n")
    (folder / "test.txt").write_text("\n".join(test_lines or default) + "\n")
    return folder


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: bad\n")
    return path


def assert_clean_failure(code, text, *needles, runs: Path | None = None):
    assert code == 2, text
    assert "Traceback" not in text
    for needle in needles:
        assert needle in text, (needle, text)
    if runs is not None and runs.exists():
        assert not any(runs.iterdir()), f"half-written run left in {runs}: {list(runs.iterdir())}"


def test_missing_root(capsys, config, tmp_path):
    code, text = run_cli(capsys, "train", config, "data.dataset=image-folder", f"data.root={tmp_path / 'nope'}",
                         f"out_dir={tmp_path / 'runs'}", *BASE)
    assert_clean_failure(code, text, "does not exist", runs=tmp_path / "runs")


def test_listed_image_absent_names_file_and_line(capsys, config, tmp_path, image_folder):
    lines = [f"ant/{i:03d}.png 0" for i in range(3)] + ["bee/missing.png 1"]
    split = write_split_dir(tmp_path / "split", image_folder, lines)
    code, text = run_cli(capsys, "train", config, "data.dataset=split-file", f"data.root={image_folder}",
                         f"data.split_dir={split}", "data.open_split=null", f"out_dir={tmp_path / 'runs'}", *BASE)
    assert_clean_failure(code, text, "train.txt, line 4", "bee/missing.png", runs=tmp_path / "runs")


@pytest.mark.parametrize("workers", [0, 2])
def test_corrupt_image_is_named(capsys, config, tmp_path, image_folder, workers):
    broken = tmp_path / "imgs"
    shutil.copytree(image_folder, broken)
    (broken / "bee" / "000.png").write_bytes(b"not a png at all")
    lines = [f"ant/{i:03d}.png 0" for i in range(3)] + [f"bee/{i:03d}.png 1" for i in range(3)]
    split = write_split_dir(tmp_path / "split", broken, lines)
    code, text = run_cli(capsys, "train", config, "data.dataset=split-file", f"data.root={broken}",
                         f"data.split_dir={split}", "data.open_split=null", f"out_dir={tmp_path / 'runs'}", *BASE,
                         f"data.workers={workers}")  # 2: the error comes back from a loader worker process
    assert_clean_failure(code, text, "corrupt or unreadable image", "bee/000.png", runs=tmp_path / "runs")


def test_label_out_of_range(capsys, config, tmp_path, image_folder):
    lines = [f"ant/{i:03d}.png 0" for i in range(3)] + [f"bee/{i:03d}.png 1" for i in range(3)]
    split = write_split_dir(tmp_path / "split", image_folder, lines, val_lines=["ant/010.png 0", "bee/010.png 7"])
    code, text = run_cli(capsys, "train", config, "data.dataset=split-file", f"data.root={image_folder}",
                         f"data.split_dir={split}", "data.open_split=null", f"out_dir={tmp_path / 'runs'}", *BASE)
    assert_clean_failure(code, text, "val.txt, line 2", "out of range", runs=tmp_path / "runs")


def test_class_without_training_image(capsys, config, tmp_path, image_folder):
    lines = [f"ant/{i:03d}.png 0" for i in range(3)] + [f"cat/{i:03d}.png 2" for i in range(3)]
    split = write_split_dir(tmp_path / "split", image_folder, lines)
    code, text = run_cli(capsys, "train", config, "data.dataset=split-file", f"data.root={image_folder}",
                         f"data.split_dir={split}", "data.open_split=null", f"out_dir={tmp_path / 'runs'}", *BASE)
    assert_clean_failure(code, text, "no training image", "class_1", runs=tmp_path / "runs")


@pytest.mark.parametrize("override, needle", [
    ("train.epoch=3", "unknown config key 'train.epoch'"),
    ("model.backbone=resnet11", "unknown backbone 'resnet11'"),
    ("train.sampler=balanced", "unknown sampler 'balanced'"),
    ("data.dataset=imagenet", "unknown data.dataset 'imagenet'"),
])
def test_bad_config(capsys, config, tmp_path, image_folder, override, needle):
    code, text = run_cli(capsys, "train", config, "data.dataset=image-folder", f"data.root={image_folder}",
                         f"out_dir={tmp_path / 'runs'}", *BASE, override)
    assert_clean_failure(code, text, needle, runs=tmp_path / "runs")


def test_not_a_run_directory(capsys, tmp_path):
    code, text = run_cli(capsys, "eval", tmp_path)
    assert_clean_failure(code, text, "not an openlt run directory")
    code, text = run_cli(capsys, "predict", tmp_path / "missing", "x.png")
    assert_clean_failure(code, text, "run directory not found")
