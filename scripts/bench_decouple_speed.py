#!/usr/bin/env python
"""How much faster is a decoupled stage-2 epoch from the feature cache than one through the backbone?

Measured in one run on the embedded benchmark (Fashion-MNIST-LT-open, ResNet-10, batch 128), each the median
of --repeats timed epochs after a warm-up:

* cache epoch     one cRT epoch on cached features (class-balanced sampler, SGD on a linear layer);
* backbone epoch  the same cRT epoch the paper's way: every training image augmented and passed through the
                  frozen backbone (eval mode, no gradient), then the same linear step;
* joint epoch     for scale, one stage-1 training epoch (forward and backward through the whole network).

Prints the times and the ratios backbone / cache (target: at least 50) and joint / cache.

    .venv/bin/python scripts/bench_decouple_speed.py [--repeats 3] [--splits splits/fmnist_lt]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F

from openlt.config import build_config
from openlt.data.build import prepare_data
from openlt.data.samplers import build_sampler
from openlt.decoupling.classifiers import new_linear, train_on_features
from openlt.engine.runtime import batch_to, make_loader
from openlt.engine.features import extract_features
from openlt.models.model import build_model
from openlt.optim import optimizer_step

from bench_perf import median_time  # this folder is on sys.path when a script here runs

CONFIG = Path(__file__).parents[1] / "configs" / "fmnist_lt" / "plain.yaml"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--splits", help="a split folder of the embedded benchmark (default: built in a temp dir)")
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()

    tmp = tempfile.TemporaryDirectory()
    overrides = ["train.device=cpu"] + ([f"data.split_dir={args.splits}"] if args.splits else [])
    cfg = build_config(CONFIG, overrides)
    data = prepare_data(cfg, default_split_dir=Path(tmp.name) / "splits")
    device = torch.device("cpu")
    model = build_model(cfg, data.num_classes, data.in_chans, data.image_size).to(device)
    model.eval()
    train_eval = make_loader(data.dataset("train", train=False), cfg.eval.batch_size, 0, device)
    train_aug = make_loader(data.dataset("train", train=True), cfg.eval.batch_size, 0, device)
    feats, labels = extract_features(model, train_eval, device, quiet=True)
    n, dim = feats.shape
    print(f"{n} training images, {dim}-d features, {cfg.model.backbone}, batch {args.batch_size}, "
          f"{torch.get_num_threads()} threads", file=sys.stderr)

    def cache_epoch() -> None:
        train_on_features(new_linear(dim, data.num_classes), feats, labels, epochs=1, batch_size=args.batch_size,
                          lr=0.2, sampler="class_balanced")

    def backbone_epoch() -> None:
        fresh, _ = extract_features(model, train_aug, device, quiet=True)
        train_on_features(new_linear(dim, data.num_classes), fresh, labels, epochs=1, batch_size=args.batch_size,
                          lr=0.2, sampler="class_balanced")

    def joint_epoch() -> None:
        net = build_model(cfg, data.num_classes, data.in_chans, data.image_size).to(device)
        net.train()
        sampler = build_sampler("instance", data.dataset("train").targets, epochs=1, seed=0)
        loader = make_loader(data.dataset("train", train=True), args.batch_size, 0, device, sampler=sampler)
        opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
        for images, targets in loader:
            loss = F.cross_entropy(net(batch_to(images, device, False))["logits"], targets)
            optimizer_step(loss, opt)  # the library's step, as in training

    t_cache = median_time(cache_epoch, args.repeats, warmup=1)
    t_backbone = median_time(backbone_epoch, args.repeats, warmup=1)
    t_joint = median_time(joint_epoch, max(1, args.repeats // 2), warmup=1)
    print(f"cache epoch     {t_cache * 1000:9.1f} ms")
    print(f"backbone epoch  {t_backbone * 1000:9.1f} ms   (frozen backbone, augmented images)")
    print(f"joint epoch     {t_joint * 1000:9.1f} ms   (stage 1, forward + backward)")
    ratio = t_backbone / t_cache
    print(f"ratio backbone / cache: {ratio:.0f}x  (target >= 50x: {'met' if ratio >= 50 else 'NOT met'})")
    print(f"ratio joint / cache:    {t_joint / t_cache:.0f}x")
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
