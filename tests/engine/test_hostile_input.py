"""Hostile input, in one table: every bad input goes through the CLI (`openlt split | train | eval | predict`)
and must give exit status 2, ONE line on stderr that names the culprit (the file and line of a split file,
the config key, the image path, the checkpoint file), no traceback, and nothing half-written: no run
directory when training fails before its first checkpoint, no split folder, no new file in a run that
`eval` / `predict` refused.

Add a case by adding a row to CASES: a function that builds the bad input in `env` and returns the CLI
arguments, the texts the error line must contain, and (optionally) a check of what is left on disk.
Unusual but valid input (16-bit, CMYK, palette, RGBA ... images) is accepted: see the tests at the end.
"""

from __future__ import annotations

import errno
import io
import json
import pickle
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
from PIL import Image

import openlt.engine.checkpoint as checkpoint_module
import openlt.engine.train as train_module
from openlt.cli import main
from openlt.engine.checkpoint import read_checkpoint
from openlt.errors import DataError
import forked_python  # tests/helpers

BASE = ["data.image_size=16", "model.backbone=resnet20", "train.epochs=1", "train.batch_size=4", "train.device=cpu",
        "eval.batch_size=64", "--quiet"]
GOOD_TRAIN = [f"ant/{i:03d}.png 0" for i in range(4)] + [f"bee/{i:03d}.png 1" for i in range(4)]
GOOD_EVAL = ["ant/010.png 0", "bee/010.png 1"]
GOOD_TEST = ["ant/011.png 0", "bee/011.png 1"]  # no image in two splits (a leak: refused)
SMALL_SPLIT = ["data.split.val_per_class=2", "data.split.test_per_class=2", "data.split.open_classes=0"]
ENOSPC = OSError(errno.ENOSPC, "No space left on device")


class Env:
    """One case's workspace: a fresh folder, the shared image folder and trained run, and monkeypatch."""

    def __init__(self, tmp: Path, shared: dict, monkeypatch: pytest.MonkeyPatch) -> None:
        self.tmp, self.shared, self.monkeypatch = tmp, shared, monkeypatch
        self.images: Path = shared["images"]
        self.runs = tmp / "runs"  # out_dir of every `train` case: must stay empty when training fails early
        self.config = tmp / "c.yaml"
        self.config.write_text("name: bad\n")
        self.watched: Path | None = None  # a run or split folder that must not change

    def copy_images(self) -> Path:
        target = self.tmp / "images"
        shutil.copytree(self.images, target)
        return target

    def split_dir(self, train=None, val=None, test=None) -> Path:
        folder = self.tmp / "split"
        folder.mkdir()
        for name, lines in (("train", train), ("val", val), ("test", test)):
            lines = {"train": GOOD_TRAIN, "val": GOOD_EVAL, "test": GOOD_TEST}[name] if lines is None else lines
            (folder / f"{name}.txt").write_text("".join(f"{line}\n" for line in lines))
        return folder

    def train(self, *extra: str, split: Path | None = None, root: Path | None = None) -> list[str]:
        """`openlt train` on a split-file data set (the good one unless `split` / `root` say otherwise)."""
        split = split or self.split_dir()
        return ["train", str(self.config), "data.dataset=split-file", f"data.root={root or self.images}",
                f"data.split_dir={split}", "data.open_split=null", f"out_dir={self.runs}", *BASE, *extra]

    def run(self) -> Path:
        """A copy of the shared trained run (1 epoch, never evaluated), to be damaged by the case."""
        target = self.tmp / "run"
        shutil.copytree(self.shared["run"], target)
        self.watched = target
        return target


@dataclass
class Case:
    id: str
    build: Callable[[Env], list[str]]  # makes the bad input, returns the CLI arguments
    needles: tuple[str, ...]  # what the one error line must contain
    after: Callable[[Env], None] | None = None  # extra checks of what is left on disk


# ------------------------------------------------------------------------------------------ the bad inputs
def corrupt_image(data: Callable[[bytes], bytes], name: str = "bee/001.png") -> Callable[[Env], list[str]]:
    def build(env: Env) -> list[str]:
        root = env.copy_images()
        path = root / name
        path.write_bytes(data(path.read_bytes()))
        lines = GOOD_TRAIN if name.endswith(".png") else GOOD_TRAIN + [f"{name} 1"]
        return env.train(split=env.split_dir(train=lines), root=root)
    return build


def jpeg_bytes() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((16, 16, 3), 128, np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def truncated_jpeg(env: Env) -> list[str]:
    root = env.copy_images()
    (root / "bee" / "photo.jpg").write_bytes(jpeg_bytes()[:200])
    return env.train(split=env.split_dir(train=GOOD_TRAIN + ["bee/photo.jpg 1"]), root=root)


def with_train_line(line: str) -> Callable[[Env], list[str]]:
    return lambda env: env.train(split=env.split_dir(train=GOOD_TRAIN + [line]))


def not_utf8_split(env: Env) -> list[str]:
    split = env.split_dir()
    (split / "train.txt").write_bytes(b"ant/000.png 0\n\xff\xfe\x00bad 1\n")
    return env.train(split=split)


def split_without_train_file(env: Env) -> list[str]:
    split = env.split_dir()
    (split / "train.txt").unlink()
    return env.train(split=split)


class NaNFrom(torch.nn.Module):
    """A loss that turns NaN from a given (0-based) epoch on: a divergence at a known point."""

    def __init__(self, inner: torch.nn.Module, epoch: int) -> None:
        super().__init__()
        self.inner, self.start, self.epoch = inner, epoch, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if hasattr(self.inner, "set_epoch"):
            self.inner.set_epoch(epoch)

    def forward(self, out, targets):
        loss = self.inner(out, targets)
        return loss * float("nan") if self.epoch >= self.start else loss


def nan_in_epoch_1(env: Env) -> list[str]:
    """A loss NaN from the first epoch on (train.lr=1e30 did this until float keys got upper bounds)."""
    real = train_module.build_loss
    env.monkeypatch.setattr(train_module, "build_loss", lambda *a, **k: NaNFrom(real(*a, **k), epoch=0))
    return env.train("train.epochs=2")


def nan_in_epoch_2(env: Env) -> list[str]:
    real = train_module.build_loss
    env.monkeypatch.setattr(train_module, "build_loss", lambda *a, **k: NaNFrom(real(*a, **k), epoch=1))
    return env.train("train.epochs=2")


def disk_full_on_checkpoint(epoch: int) -> Callable[[Env], list[str]]:
    def build(env: Env) -> list[str]:
        real = checkpoint_module.save_file

        def save_file(tensors, filename, metadata=None):
            if ".last.safetensors." in filename and json.loads(metadata["openlt"])["state"]["epoch"] == epoch:
                Path(filename).write_bytes(b"half a checkpoint")  # the bytes that fitted before the disk filled
                raise ENOSPC
            return real(tensors, filename, metadata=metadata)

        env.monkeypatch.setattr(checkpoint_module, "save_file", save_file)
        return env.train(f"train.epochs={epoch + 1}")
    return build


def kept_epoch_1(env: Env) -> None:
    """Training stopped in epoch 2: the run stays, with epoch 1's complete checkpoint and log line."""
    run = only_run(env.runs)
    _, meta = read_checkpoint(run / "checkpoints" / "last.safetensors")
    assert meta["state"]["epoch"] == 0 and "optimizer" in meta
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 1
    assert not list(run.rglob("*.tmp")), "temporary file left behind"


def yaml_file(text: str) -> Callable[[Env], list[str]]:
    def build(env: Env) -> list[str]:
        env.config.write_text(text)
        return ["train", str(env.config), f"out_dir={env.runs}", *BASE]
    return build


def image_folder_train(*extra: str, root: str | None = "images") -> Callable[[Env], list[str]]:
    def build(env: Env) -> list[str]:
        args = ["train", str(env.config), "data.dataset=image-folder", f"out_dir={env.runs}", *BASE, *SMALL_SPLIT, *extra]
        return args + ([f"data.root={env.images if root == 'images' else env.tmp / root}"] if root else [])
    return build


def split_cmd(*extra: str, root: Callable[[Env], Path] | None = None) -> Callable[[Env], list[str]]:
    def build(env: Env) -> list[str]:
        folder = root(env) if root else env.images
        return ["split", "--dataset", "image-folder", "--root", str(folder), "--out", str(env.tmp / "out"),
                "--val-per-class", "2", "--test-per-class", "2", "--open-classes", "0", "--n-max", "8", "--n-min", "2",
                *extra]
    return build


def folder_with_empty_class(env: Env) -> Path:
    root = env.copy_images()
    shutil.rmtree(root / "cat")
    (root / "cat").mkdir()
    (root / "cat" / "readme.txt").write_text("no images here")
    return root


def folder_with_tiny_class(env: Env) -> Path:
    root = env.copy_images()
    for extra in sorted((root / "cat").iterdir())[1:]:
        extra.unlink()
    return root


def split_disk_full(env: Env) -> list[str]:
    import openlt.data.splits as splits

    real, calls = splits.write_split_file, []

    def write_split_file(path, items, labels):
        calls.append(path)
        if len(calls) == 2:  # train.txt written, then the disk is full
            raise ENOSPC
        return real(path, items, labels)

    env.monkeypatch.setattr(splits, "write_split_file", write_split_file)
    return split_cmd()(env)


def damaged_checkpoint(damage: Callable[[Path], None], command: str = "eval") -> Callable[[Env], list[str]]:
    def build(env: Env) -> list[str]:
        run = env.run()
        damage(run / "checkpoints" / "best.safetensors")
        if command == "predict":  # (a fixed threshold: the run was never evaluated)
            return ["predict", str(run), str(env.images / "ant" / "000.png"), "--threshold", "0.5"]
        return ["eval", str(run), "--quiet"]
    return build


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def random_bytes(path: Path) -> None:
    path.write_bytes(np.random.default_rng(0).bytes(4096))


def foreign_safetensors(path: Path) -> None:
    from safetensors.torch import save_file

    save_file({"weight": torch.zeros(3, 3)}, str(path), metadata={"producer": "someone else"})


def torch_pth(path: Path) -> None:
    torch.save({"state_dict": {"fc.weight": torch.zeros(2, 2)}}, path)


class Payload:
    """A pickle that would create a file if anything unpickled it."""

    marker: Path

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def malicious_pickle(path: Path) -> None:
    Payload.marker = path.parent.parent / "pwned"
    path.write_bytes(pickle.dumps(Payload(), protocol=2))


def not_executed(env: Env) -> None:
    assert not (env.watched / "pwned").exists(), "a pickle in a checkpoint's place was executed"


def edit_run_config(old: str, new: str) -> Callable[[Env], list[str]]:
    def build(env: Env) -> list[str]:
        run = env.run()
        config = run / "config.yaml"
        text = config.read_text()
        assert old in text
        config.write_text(text.replace(old, new))
        return ["eval", str(run), "--quiet"]
    return build


def on_run(*args: str, image: Callable[[Env], Path] | None = None) -> Callable[[Env], list[str]]:
    def build(env: Env) -> list[str]:
        run = env.run()
        return [args[0], str(run), *([str(image(env))] if image else []), *args[1:]]
    return build


FIXED = ("--threshold", "0.5")  # the shared run was never evaluated: predict needs a threshold


def no_bundle(env: Env) -> None:
    assert not (env.tmp / "bundle").exists() and not list(env.tmp.glob(".bundle.*"))


def calibration_of(checkpoint: str) -> Callable[[Env], list[str]]:
    """predict of best with a calibration.json fitted on `checkpoint` (another file than best's)."""
    def build(env: Env) -> list[str]:
        from openlt.engine.inference import checkpoint_identity
        from openlt.engine.run import Run
        from openlt.openset import Rejector

        run = env.run()
        fitted_on = checkpoint_identity(Run(run), checkpoint)
        Rejector("msp", 0.5, "validation: keeps 95% of the known validation images", fitted_on).save(
            run / "calibration.json")
        return ["predict", str(run), str(env.images / "ant" / "000.png")]
    return build


def folder_without_images(env: Env) -> Path:
    path = env.tmp / "no-images"  # a folder is read for its image files (recursively): this one has none
    (path / "sub").mkdir(parents=True)
    (path / "sub" / "notes.txt").write_text("no images here")
    return path


def not_an_image(env: Env) -> Path:
    path = env.tmp / "notes.txt"
    path.write_text("this is not an image\n")
    return path


CASES = [
    # --- split files (each error names the file and the line)
    Case("image-listed-but-missing", with_train_line("bee/missing.png 1"), ("train.txt, line 9", "bee/missing.png")),
    Case("label-out-of-range", lambda env: env.train(split=env.split_dir(val=["ant/010.png 0", "bee/010.png 7"])),
         ("val.txt, line 2", "label 7 is out of range")),
    Case("label-not-an-integer", with_train_line("cat/000.png two"), ("train.txt, line 9", "'two' is not an integer")),
    Case("negative-label-in-train", with_train_line("cat/000.png -1"), ("train.txt, line 9", "label -1 is negative")),
    Case("duplicate-line", with_train_line("ant/001.png 0"), ("train.txt, line 9", "listed twice (first on line 2)")),
    Case("path-escapes-root", with_train_line("../outside.png 0"), ("train.txt, line 9", "'../outside.png'", "inside the data root")),
    Case("absolute-path", with_train_line("/etc/hostname 0"), ("train.txt, line 9", "'/etc/hostname'")),
    Case("line-without-label", with_train_line("bee/003.png"), ("train.txt, line 9", "expected 'relative/path label'")),
    Case("empty-split-file", lambda env: env.train(split=env.split_dir(train=[])), ("train.txt", "lists no images")),
    Case("split-file-not-utf8", not_utf8_split, ("train.txt", "cannot read split file")),
    Case("class-without-training-image", with_train_line("cat/000.png 3"), ("no training image", "class_2")),
    # --- images (each error names the image path)
    Case("corrupt-image-bytes", corrupt_image(lambda b: b"not a png at all"), ("corrupt or unreadable image", "bee/001.png")),
    Case("corrupt-image-in-loader-worker", lambda env: corrupt_image(lambda b: b"\x89PNG garbage")(env) + ["data.workers=2"],
         ("corrupt or unreadable image", "bee/001.png")),
    Case("truncated-png", corrupt_image(lambda b: b[: len(b) // 2]), ("bee/001.png", "truncated")),
    Case("truncated-jpeg", truncated_jpeg, ("corrupt or unreadable image", "bee/photo.jpg")),
    Case("empty-image-file", corrupt_image(lambda b: b""), ("corrupt or unreadable image", "bee/001.png")),
    Case("image-too-large-is-not-corrupt", lambda env: (env.monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100),
                                                        env.train())[1],
         ("image too large", "has 256 pixels, above PIL's limit of 200", "PIL.Image.MAX_IMAGE_PIXELS")),
    # --- data configuration
    Case("data-root-missing", image_folder_train(root="nope"), ("does not exist", "nope")),
    Case("data-root-not-given", image_folder_train(root=None), ("data.root is required",)),
    Case("split-dir-missing", lambda env: env.train(split=env.tmp / "no-such-split"), ("split folder not found", "no-such-split")),
    Case("split-dir-without-train-file", split_without_train_file, ("the train split file is missing", "train.txt")),
    # --- config keys and values (each error names the key)
    Case("unknown-key-override", image_folder_train("train.epoch=3"),
         ("unknown config key 'train.epoch'", "did you mean 'train.epochs'")),
    Case("unknown-key-in-file", yaml_file("model:\n  backbone: resnet20\n  head:\n    scal: 3\n"),
         ("unknown config key 'model.head.scal'",)),
    Case("wrong-value-type", image_folder_train("train.epochs=abc"), ("'train.epochs' must be an integer", "'abc'")),
    Case("value-for-a-section", image_folder_train("train=3"), ("'train' is a section",)),
    Case("unknown-backbone", image_folder_train("model.backbone=resnet11"), ("unknown backbone 'resnet11'",)),
    Case("unknown-sampler", image_folder_train("train.sampler=balanced"), ("unknown sampler 'balanced'",)),
    Case("unknown-dataset", image_folder_train("data.dataset=imagenet"), ("unknown data.dataset 'imagenet'",)),
    Case("yaml-syntax-error", yaml_file("name: x\ntrain:\n  epochs: 2\n lr: [0.1\n"), ("c.yaml", "not valid YAML", "line 4")),
    Case("yaml-not-a-mapping", yaml_file("- a\n- b\n"), ("c.yaml", "must hold a mapping")),
    Case("config-file-missing", lambda env: ["train", str(env.tmp / "nope.yaml")], ("config file not found", "nope.yaml")),
    # --- training that cannot go on
    Case("nan-loss-before-first-checkpoint", nan_in_epoch_1,
         ("loss became nan", "epoch 1", "no checkpoint was written")),
    Case("nan-loss-keeps-last-good-checkpoint", nan_in_epoch_2,
         ("loss became nan at epoch 2", "last good checkpoint (epoch 1) is kept", "last.safetensors", "--resume"),
         after=kept_epoch_1),
    Case("disk-full-keeps-previous-checkpoint", disk_full_on_checkpoint(epoch=1),
         ("cannot write", "last.safetensors", "No space left on device", "previous version"), after=kept_epoch_1),
    Case("disk-full-at-first-checkpoint", disk_full_on_checkpoint(epoch=0), ("last.safetensors", "No space left on device")),
    # --- openlt split (no output folder is left behind)
    Case("split-root-missing", split_cmd(root=lambda env: env.tmp / "nope"), ("does not exist", "nope")),
    Case("split-empty-class-folder", split_cmd(root=folder_with_empty_class), ("class folder", "cat", "has no images")),
    Case("split-class-too-small", split_cmd(root=folder_with_tiny_class), ("class 'cat' has no image left for training",)),
    Case("split-unknown-open-class", split_cmd("--open-classes", "zebra"), ("open class 'zebra'",)),
    Case("split-disk-full", split_disk_full, ("cannot write the split folder", "No space left on device")),
    # --- run directories and checkpoints (eval / predict)
    Case("eval-run-missing", lambda env: ["eval", str(env.tmp / "no-run")], ("run directory not found", "no-run")),
    Case("eval-not-a-run", lambda env: ["eval", str(env.images)], ("not an openlt run directory", "no config.yaml")),
    Case("predict-run-missing", lambda env: ["predict", str(env.tmp / "no-run"), "x.png"], ("run directory not found",)),
    Case("resume-not-a-run", lambda env: ["train", "--resume", str(env.tmp / "no-run")], ("run directory not found",)),
    Case("checkpoint-truncated", damaged_checkpoint(truncate), ("best.safetensors", "corrupt")),
    Case("checkpoint-random-bytes", damaged_checkpoint(random_bytes), ("best.safetensors", "corrupt")),
    Case("checkpoint-empty", damaged_checkpoint(lambda p: p.write_bytes(b"")), ("best.safetensors", "corrupt")),
    Case("checkpoint-foreign-safetensors", damaged_checkpoint(foreign_safetensors),
         ("best.safetensors", "not written by openlt")),
    Case("checkpoint-torch-pth-renamed", damaged_checkpoint(torch_pth), ("best.safetensors", "pickle")),
    Case("checkpoint-malicious-pickle", damaged_checkpoint(malicious_pickle, "predict"), ("best.safetensors", "never loaded"),
         after=not_executed),
    Case("checkpoint-missing", damaged_checkpoint(lambda p: p.unlink()), ("checkpoint not found", "best.safetensors")),
    Case("config-edited-to-another-backbone", edit_run_config("backbone: resnet20", "backbone: resnet32"),
         ("config.yaml: model.backbone is resnet32 now, but the run was trained with resnet20", "best.safetensors",
          "set model.backbone back to resnet20")),  # (was the checkpoint's 'does not match the model': issue 14)
    Case("run-config-broken-yaml", edit_run_config("name: bad", "name: [bad"), ("config.yaml", "not valid YAML")),
    Case("eval-unknown-override", on_run("eval", "eval.bogus=1", "--quiet"), ("unknown config key 'eval.bogus'",)),
    Case("predict-non-image-file", on_run("predict", *FIXED, image=not_an_image), ("is not an image file name", "notes.txt")),
    Case("predict-missing-image", on_run("predict", *FIXED, image=lambda env: env.tmp / "gone.png"), ("image not found", "gone.png")),
    Case("predict-folder-without-images", on_run("predict", *FIXED, image=folder_without_images), ("no image files", "no-images", "skipped 1 file without an image extension (sub/notes.txt)")),
    # --- what a run's evaluation leaves, and how predict / export / eval use it
    Case("predict-never-evaluated", on_run("predict", image=lambda env: env.images / "ant" / "000.png"),
         ("has no calibration.json: it was never evaluated", "`openlt eval ", "(--threshold T)")),
    Case("export-never-evaluated", lambda env: ["export", str(env.run()), str(env.tmp / "bundle")],
         ("has no calibration.json", "(--threshold T)"), after=no_bundle),
    Case("predict-calibration-of-last", calibration_of("last"),
         ("calibration.json was fitted on checkpoints/last.safetensors", "not on checkpoints/best.safetensors",
          "with `openlt eval ")),
    Case("predict-topk-above-the-classes", on_run("predict", *FIXED, "--topk", "4", image=lambda env: env.tmp / "x.png"),
         ("--topk must be an integer from 1 to 2 (the run's known classes), got 4",)),
    Case("eval-override-not-an-eval-setting", on_run("eval", "train.lr=5", "--quiet"),
         ("train.lr is not an evaluation setting",)),
]


# ------------------------------------------------------------------------------------------ the harness
@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """A small image folder and one trained (never evaluated) run, made once for the whole table."""
    from images import make_image_folder  # tests/helpers, on the path through conftest

    root = tmp_path_factory.mktemp("hostile")
    images = make_image_folder(root / "images", {"ant": 12, "bee": 12, "cat": 12}, size=16)
    split = root / "split"
    split.mkdir()
    (split / "train.txt").write_text("".join(f"{line}\n" for line in GOOD_TRAIN))
    (split / "val.txt").write_text("".join(f"{line}\n" for line in GOOD_EVAL))
    (split / "test.txt").write_text("".join(f"{line}\n" for line in GOOD_TEST))
    (split / "open.txt").write_text("cat/000.png -1\ncat/001.png -1\n")  # an open split: evaluation chooses a threshold
    (root / "c.yaml").write_text("name: bad\n")
    code = main(["train", str(root / "c.yaml"), "data.dataset=split-file", f"data.root={images}",
                 f"data.split_dir={split}", f"out_dir={root / 'runs'}", *BASE, "--no-eval"])
    assert code == 0
    return {"images": images, "run": only_run(root / "runs")}


def only_run(folder: Path) -> Path:
    runs = [p for p in folder.iterdir() if p.is_dir()]
    assert len(runs) == 1, runs
    return runs[0]


def snapshot(folder: Path | None) -> dict:
    """(size, mtime) of every file but train.lock (it names the last process that held the run's lock: an
    evaluation holds it too, also one refused after taking it)."""
    if folder is None or not folder.exists():
        return {}
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")
            if p.is_file() and p.name != "train.lock"}


def test_the_table_covers_enough_cases():
    ids = [case.id for case in CASES]
    assert len(ids) == len(set(ids)), "case ids must be unique"
    assert len(ids) >= 20


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_hostile_input(case: Case, shared, tmp_path, monkeypatch, capsys):
    env = Env(tmp_path, shared, monkeypatch)
    args = case.build(env)
    before = snapshot(env.watched)
    capsys.readouterr()
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.strip()]
    command = args[0]
    assert code == 2, f"exit {code}\nstdout: {out}\nstderr: {err}"
    assert len(lines) == 1, f"expected one line on stderr, got:\n{err}"
    line = lines[0]
    assert line.startswith(f"openlt {command}: error: "), line
    assert "Traceback" not in out + err
    for needle in case.needles:
        assert needle in line, f"{needle!r} not in: {line}"
    # Nothing half-written.
    if case.after is not None:
        case.after(env)
    elif command == "train" and env.runs.exists():
        assert not any(env.runs.iterdir()), f"half-written run left behind: {list(env.runs.iterdir())}"
    if command == "split":
        assert not (tmp_path / "out").exists(), "half-written split folder left behind"
    if env.watched is not None:
        assert snapshot(env.watched) == before, "a refused eval / predict changed the run directory"


# ------------------------------------------------------------------------------------------ accepted input
def _mode_images(root: Path) -> dict[str, Image.Image]:
    """One image per unusual mode (what real data sets contain), saved in a format that keeps the mode."""
    ramp16 = (np.arange(256, dtype=np.uint32).reshape(16, 16) * 257).astype(np.uint16)  # 0 .. 65535
    images = {
        "ant/gray16.png": Image.fromarray(ramp16),  # 16-bit grayscale PNG: mode I;16
        "ant/cmyk.jpg": Image.new("CMYK", (16, 16), (0, 255, 255, 0)),  # red in CMYK
        "ant/palette.png": Image.new("RGB", (16, 16), (10, 200, 30)).convert("P"),
        "ant/palette_transparent.gif": Image.new("P", (16, 16), 3),
        "bee/rgba.png": Image.new("RGBA", (16, 16), (10, 200, 30, 100)),
        "bee/la.png": Image.new("LA", (16, 16), (90, 10)),
        "bee/bilevel.png": Image.new("1", (16, 16), 1),
        "bee/float.tif": Image.fromarray(np.full((16, 16), 0.5, np.float32)),  # mode F in [0, 1]
        "bee/int32.tif": Image.fromarray(ramp16.astype(np.int32)),  # mode I (32-bit) holding 16-bit values
    }
    for name, img in images.items():
        kwargs = {"transparency": 3} if name.endswith(".gif") else {}
        img.save(root / name, **kwargs)
    return images


def test_unusual_image_modes_are_converted_not_refused(shared, tmp_path, capsys):
    from openlt.data.datasets import FileImageLoader

    root = tmp_path / "images"
    shutil.copytree(shared["images"], root)
    names = list(_mode_images(root))
    rgb, gray = FileImageLoader(root, "RGB"), FileImageLoader(root, "L")
    for name in names:
        for loader, mode in ((rgb, "RGB"), (gray, "L")):
            img = loader(name)
            assert img.mode == mode and img.size == (16, 16), (name, mode)
    ramp = np.asarray(gray("ant/gray16.png"))
    assert ramp.min() == 0 and ramp.max() == 255 and len(np.unique(ramp)) == 256  # scaled, not clipped to white
    assert np.array_equal(np.asarray(gray("bee/int32.tif")), ramp)
    assert np.asarray(gray("bee/float.tif")).mean() == pytest.approx(128, abs=1)
    r, g, b = np.asarray(rgb("ant/cmyk.jpg")).reshape(-1, 3).mean(0)
    assert r > 200 and g < 60 and b < 60
    assert tuple(np.asarray(rgb("bee/rgba.png"))[0, 0]) == (10, 200, 30)  # alpha dropped

    # And through the CLI: a run trains on them (RGB) without a warning line on stderr.
    config = tmp_path / "c.yaml"
    config.write_text("name: modes\n")
    split = tmp_path / "split"
    split.mkdir()
    lines = [f"{name} {0 if name.startswith('ant') else 1}" for name in names]
    (split / "train.txt").write_text("\n".join(lines) + "\n")
    (split / "test.txt").write_text("\n".join(GOOD_TEST) + "\n")
    code = main(["train", str(config), "data.dataset=split-file", f"data.root={root}", f"data.split_dir={split}",
                 "data.val_split=null", "data.open_split=null", "eval.open_threshold=0.5", f"out_dir={tmp_path / 'runs'}",
                 *BASE, "--no-eval"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "error" not in err.lower()


def test_open_image_names_the_file_for_any_unreadable_content(tmp_path):
    from openlt.data.datasets import open_image

    cases = {"empty.png": b"", "text.jpg": b"hello", "half.png": None}
    png = io.BytesIO()
    Image.new("RGB", (64, 64), (1, 2, 3)).save(png, "PNG")
    cases["half.png"] = png.getvalue()[:60]
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(DataError, match=name):
            open_image(tmp_path / name)
    with pytest.raises(DataError, match="not found"):
        open_image(tmp_path / "absent.png")


@pytest.mark.parametrize("argv", [["configs"], ["config", "fmnist_lt/plain"], ["config", "--reference"]])
def test_a_reader_that_goes_away_ends_the_command_quietly(argv):
    """`openlt configs | head -1`: the pipe's reader is gone before openlt writes; no traceback, no error line,
    status 141 (128 + SIGPIPE), as Python's docs advise (stdout pointed at /dev/null for the last flush)."""
    import os
    import subprocess
    import sys

    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first write: the write fails, deterministically
    try:
        done = forked_python.run([sys.executable, "-m", "openlt", *argv], stdout=write_end, stderr=subprocess.PIPE,
                                 text=True, timeout=300)
    finally:
        os.close(write_end)
    assert done.returncode == 141 and done.stderr == "", (done.returncode, done.stderr)
