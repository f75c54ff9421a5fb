#!/usr/bin/env python
"""How much does training 28 px images at their own size save over the old 224 px default?

An image folder of Fashion-MNIST PNGs (28 x 28, --per-class images of each of the 10 classes, written to a
temporary folder) is trained with the plain recipe (configs/fmnist_lt/plain.yaml: ResNet-10, batch 128, SGD)
twice, one after the other in one process:

* native  data.image_size unset: the images' own size (28 px), small transform (pad-and-crop, flip) and the
          small-input stem (3x3 stride 1, no max-pool) -- the default since small images are detected;
* 224     data.image_size=224: what an image folder got before (RandomResizedCrop to 224 px, flip, colour
          jitter, ImageNet stem: 7x7 stride 2 and max-pool).

Each timed step is a whole training step: the next batch from the loader (decode, augmentation, batching,
data.workers=0), the forward pass, the loss, backward and the SGD update. Prints the median seconds per step
and images per second of each, and the ratio 224 / native.

    .venv/bin/python scripts/bench_small_images.py [--steps 3] [--threads 1] [--per-class 70]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch
from PIL import Image

from openlt.config import build_config
from openlt.data import fashion_mnist
from openlt.data.build import prepare_data
from openlt.data.fashion_mnist import CLASS_NAMES
from openlt.engine.runtime import make_loader
from openlt.losses import build_loss
from openlt.models.model import build_model
from openlt.optim import optimizer_step

from bench_perf import median_time  # this folder is on sys.path when a script here runs

SPLIT = ["data.dataset=image-folder", "data.split.profile=none", "data.split.open_classes=0",
         "data.split.val_per_class=2", "data.split.test_per_class=2", "train.device=cpu", "data.workers=0"]


def write_folder(root: Path, per_class: int) -> Path:
    """root/<class>/<i>.png: the first `per_class` Fashion-MNIST training images of each class, as 28 px PNGs."""
    part = fashion_mnist.load()["train"]
    for label, name in enumerate(CLASS_NAMES):
        folder = root / name.replace("/", "-")
        folder.mkdir(parents=True)
        for i, index in enumerate((part.labels == label).nonzero().flatten()[:per_class].tolist()):
            Image.fromarray(part.images[index].numpy()).save(folder / f"{i}.png")
    return root


def training_step(images: Path, tmp: Path, name: str, overrides: list[str], batch: int):
    """A function doing one training step of the plain recipe on the folder, and the data's input note."""
    cfg = build_config("fmnist_lt/plain", [f"data.root={images}", f"train.batch_size={batch}", *SPLIT, *overrides])
    data = prepare_data(cfg, default_split_dir=tmp / f"splits-{name}")
    model = build_model(cfg, data.num_classes, data.in_chans, data.image_size)
    model.train()
    loss_fn = build_loss(cfg.train.loss, data.train_counts, model.backbone.out_dim, **cfg.train.loss_args)
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.train.lr, momentum=cfg.train.momentum)
    loader = make_loader(data.dataset("train", train=True), batch, 0, torch.device("cpu"), shuffle=True)
    batches = iter(())

    def step() -> None:
        nonlocal batches
        try:
            images_, targets = next(batches)
        except StopIteration:
            batches = iter(loader)
            images_, targets = next(batches)
        optimizer_step(loss_fn(model(images_), targets), optimizer)

    return step, data.input_note


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=3, help="timed steps of each setting (median)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--per-class", type=int, default=70)
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        images = write_folder(tmp / "images", args.per_class)
        steps = {}
        for key, overrides in (("native", []), ("224", ["data.image_size=224"])):
            steps[key], note = training_step(images, tmp, key, overrides, args.batch_size)
            print(f"{key:6s} {note}", file=sys.stderr)
        seconds = {key: median_time(fn, args.steps, warmup=1) for key, fn in steps.items()}
    print(f"plain recipe (ResNet-10), batch {args.batch_size}, CPU, {args.threads} thread(s), median of "
          f"{args.steps} steps after 1 warm-up, loading included (data.workers=0):")
    for key, s in seconds.items():
        print(f"  {key:6s} {s:7.2f} s/step  {args.batch_size / s:8.1f} images/s")
    print(f"  224 / native: {seconds['224'] / seconds['native']:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
