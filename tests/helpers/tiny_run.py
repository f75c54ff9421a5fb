"""The tiny image-folder run several engine tests train once per module: 5 classes of 16 px images (eel held out
as the open class), ResNet-10, one epoch; the CLI called as a test calls it; a smaller folder's split."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from cli_ok import main_ok
from images import make_image_folder

TINY = ["data.dataset=image-folder", "data.image_size=16", "model.backbone=resnet10", "train.epochs=1",
        "train.batch_size=16", "train.lr=0.05", "eval.batch_size=64", "eval.many_above=30", "eval.few_below=15",
        "data.split.n_max=40", "data.split.n_min=8", "data.split.open_classes=[eel]", "data.split.val_per_class=4",
        "data.split.test_per_class=6", "data.split.order=label"]
CLASSES = {"ant": 60, "bee": 40, "cat": 30, "dog": 25, "eel": 25}


def tiny_overrides(root: Path, *extra: str) -> list[str]:
    """TINY with a fresh image folder of CLASSES under `root` and out_dir=root/runs, then `extra`, which replaces
    TINY's override of the same key (a command line refuses a key given twice)."""
    images = make_image_folder(root / "images", CLASSES)
    return [f"data.root={images}", f"out_dir={root / 'runs'}", *_tiny_with(extra)]


def _tiny_with(extra) -> list[str]:
    """TINY, its overrides of the keys `extra` sets left out, then `extra`."""
    keys = {item.split("=", 1)[0] for item in extra}
    return [*(t for t in TINY if t.split("=", 1)[0] not in keys), *extra]


def cli(capsys, *args) -> tuple[int, str, str]:
    """openlt's main on `args` (made strings): (exit status, stdout, stderr) of that call alone."""
    from openlt.cli import main

    capsys.readouterr()
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def train_tiny_run(root: Path, *extra: str):
    """The tiny run trained under `root` (tiny_overrides) and evaluated: its Run."""
    from openlt.config import build_config
    from openlt.engine.evaluate import evaluate_run
    from openlt.engine.train import train

    run = train(build_config(None, tiny_overrides(root, *extra)), quiet=True, log=lambda line: None)
    evaluate_run(run, quiet=True)
    return run


def train_with_cli(root: Path, overrides: list[str]) -> Path:
    """The directory of a run trained (and evaluated) by `openlt train` under `root`: a config of its name only
    (tiny.yaml), a fresh image folder of CLASSES, out_dir=root/runs, then `overrides` (e.g. a module's TINY)."""
    images = make_image_folder(root / "images", CLASSES)
    config = root / "tiny.yaml"
    config.write_text("name: tiny\n")
    main_ok(["train", config, f"data.root={images}", f"out_dir={root / 'runs'}", *overrides, "--quiet"])
    return next((root / "runs").iterdir())


def train_tiny_with_cli(root: Path, *extra: str) -> Path:
    """train_with_cli of TINY with `extra` (as tiny_overrides: replacing TINY's override of the same key): the
    directory of the tiny run `openlt train` trained and evaluated under `root`."""
    return train_with_cli(root, _tiny_with(extra))


def small_split(root: Path) -> Path:
    """root/split: `openlt split` (no profile) of a fresh image folder of 33 images (ant 12, bee 9, cat 8; eel 4,
    the open class), 2 images of each class for validation and 2 for test."""
    images = make_image_folder(root / "images", {"ant": 12, "bee": 9, "cat": 8, "eel": 4})
    main_ok(["split", "--dataset", "image-folder", "--root", images, "--out", root / "split", "--profile", "none",
             "--open-classes", "eel", "--val-per-class", "2", "--test-per-class", "2"])
    return root / "split"


# ---------------------------------------------------------------------------- one training shared by modules
def _cli_cpu(root: Path) -> None:
    """`openlt train` of tiny.yaml (``name: tiny``) with tiny_overrides(root, "train.device=cpu"): root/runs/tiny-*,
    as train_tiny_with_cli(root, "train.device=cpu") trains it. (A stage 2 on it is not shared: its checkpoints
    and the stage-1 run's feature cache record the stage-1 run's absolute path.)"""
    (root / "tiny.yaml").write_text("name: tiny\n")
    main_ok(["train", root / "tiny.yaml", *tiny_overrides(root, "train.device=cpu"), "--quiet"])


SHARED = {  # name -> what trains it under a folder: the trainings several modules made alike, each its own
    "api": lambda root: train_tiny_run(root),  # root/runs/plain-*: the tiny run trained and evaluated in-process
    "api-cpu": lambda root: train_tiny_run(root, "train.device=cpu"),  # the same with train.device=cpu
    "api-fp32": lambda root: train_tiny_run(root, "train.amp=none"),  # the same in float32
    "cli-cpu": _cli_cpu,
}
TEXT_SUFFIXES = {".yaml", ".json", ".jsonl", ".md", ".html", ".txt", ".csv"}


def copy_as_trained_at(source: Path, dest: Path) -> Path:
    """`dest`: a copy of the folder `source` (images, configs and the runs trained there) as if every run had been
    trained at `dest`: each absolute path under `source` that a run records in a text file (config.yaml's data.root,
    out_dir and train.init_from, metrics.json, the split manifests, report.html) names the same file under `dest`.
    File times are kept (the image cache keys, a metrics file newer than its checkpoint)."""
    shutil.copytree(source, dest, dirs_exist_ok=True)
    old, new = f"{source}{os.sep}".encode(), f"{dest}{os.sep}".encode()
    for path in sorted(dest.rglob("*")):
        if path.suffix in TEXT_SUFFIXES and path.is_file() and not path.is_relative_to(dest / "images"):
            data = path.read_bytes()
            if old in data:
                stat = path.stat()
                path.write_bytes(data.replace(old, new))
                os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    return dest


def the_run(folder: Path):
    """The Run of the one run directory in `folder` (e.g. a shared_run copy's runs/)."""
    from openlt.engine.run import Run

    (path,) = folder.iterdir()
    return Run(path)
