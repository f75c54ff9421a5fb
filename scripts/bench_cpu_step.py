#!/usr/bin/env python
"""The CPU levers for issue 17's speed target, measured in one process: openlt's training step of ResNet-10 at
ImageNet-LT's shape (224 px, configs/imagenet_lt/plain_resnet10.yaml, batch 32 by default; --shape fmnist_lt: the embedded benchmark's 28 px) under each way of running
it on a CPU, timed in alternating rounds so that a shared machine's load hits all alike.

* fp32 NCHW            the layout the public OLTR code runs (its step equals this one: docs/scale.md)
* fp32 channels-last   train.channels_last=true (the default), train.amp=auto on a CPU without bfloat16 units
* bf16 channels-last   train.amp=bf16 (autocast): what auto means on a CPU with avx512_bf16 or AMX (fast there)
* compiled fp32 CL     torch.compile (inductor) of the model with its loss; --compile, minutes of compiling first

Prints images per second of each, its ratio to fp32 NCHW (the target of issue 17 is >= 2x the public code), the
CPU's bfloat16 flags, and with --profile the operators that take the channels-last step's time.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/bench_cpu_step.py [--batch-size 32] [--rounds 5] [--compile] [--profile]

Run it alone: two cores shared with anything else measure the other job.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

CONFIGS = Path(__file__).parents[1] / "configs"
# name: (config, input channels, image size, class counts); "imagenet_lt" is the shape, "fmnist_lt" the
# embedded benchmark's (28 px grey images, 8 classes)
SHAPES = {
    "imagenet_lt": (CONFIGS / "imagenet_lt" / "plain_resnet10.yaml", 3, 224, [max(5, int(1280 * 0.994**i)) for i in range(1000)]),
    "fmnist_lt": (CONFIGS / "fmnist_lt" / "plain.yaml", 1, 28, [1280, 640, 320, 160, 80, 40, 20, 5]),
}


def training_step(shape: str, amp: str, channels_last: bool, batch: int, compiled: bool = False):
    """A closure running one openlt training step (model with loss under autocast, then optimizer_step) on a fixed
    synthetic batch of `batch` images of the SHAPES[shape] benchmark."""
    import torch

    from openlt.config import build_config
    from openlt.engine.precision import autocast, grad_scaler
    from openlt.engine.runtime import batch_to, to_device
    from openlt.engine.train import wrap_for_training
    from openlt.losses import build_loss
    from openlt.models.model import build_model
    from openlt.optim import build_optimizer, build_scheduler, lr_schedule, optimizer_step

    overrides = ["train.device=cpu", f"train.amp={amp}", f"train.channels_last={str(channels_last).lower()}"]
    config, channels, size, counts = SHAPES[shape]
    cfg = build_config(config, overrides)
    device = torch.device("cpu")
    torch.manual_seed(0)
    model = to_device(build_model(cfg, len(counts), channels, size), device, channels_last)
    criterion = build_loss(cfg.train.loss, counts, model.backbone.out_dim, **cfg.train.loss_args)
    optimizer = build_optimizer(model.param_groups(), cfg.train)
    scheduler = build_scheduler(optimizer, lr_schedule(cfg.train, steps_per_epoch=1000))
    net = wrap_for_training(model, criterion, device)
    net.train()
    if compiled:
        net = torch.compile(net)
    scaler = grad_scaler(amp, device)
    images = batch_to(torch.randn(batch, channels, size, size), device, channels_last)
    targets = torch.randint(0, len(counts), (batch,))

    def step() -> None:
        with autocast(amp, device):
            loss, _ = net(images, targets)
        optimizer_step(loss, optimizer, scheduler, scaler)

    return step


def cpu_flags() -> str:
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        return "unknown"
    wanted = ("avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "avx512_fp16")
    return ", ".join(f"{f} {'yes' if f in flags.split() else 'no'}" for f in wanted)


def profile(step, top: int = 8) -> None:
    """The operators that take the step's time (self CPU time, one profiled step after the timed ones)."""
    from torch.profiler import ProfilerActivity, profile as torch_profile

    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=top))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="imagenet_lt",
                        help="imagenet_lt: ResNet-10, 224 px, 1,000 classes; fmnist_lt: the embedded benchmark's 28 px")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds; each times one step of each")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (inductor) of the step")
    parser.add_argument("--profile", action="store_true", help="print the channels-last step's top operators")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    variants = {"fp32 NCHW": ("none", False), "fp32 channels-last": ("none", True), "bf16 channels-last": ("bf16", True)}
    steps = {name: training_step(args.shape, amp, cl, args.batch_size) for name, (amp, cl) in variants.items()}
    if args.compile:
        start = time.perf_counter()
        steps["compiled fp32 CL"] = training_step(args.shape, "none", True, args.batch_size, compiled=True)
        steps["compiled fp32 CL"]()
        print(f"torch.compile + first step: {time.perf_counter() - start:.0f} s", flush=True)
    for step in steps.values():  # warm-up: allocator, oneDNN primitive caches, thread pools
        step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(args.rounds):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)
    config, _, size, counts = SHAPES[args.shape]
    print(f"openlt training step, {config.parent.name}/{config.name} at {size} px, {len(counts)} classes, batch {args.batch_size}, "
          f"{args.threads} thread(s), torch {torch.__version__}; median of {args.rounds} alternating rounds")
    print(f"CPU: {cpu_flags()}")
    base = statistics.median(times["fp32 NCHW"])
    for name, values in times.items():
        median = statistics.median(values)
        print(f"  {name:<20} {args.batch_size / median:6.1f} img/s   {base / median:5.2f}x fp32 NCHW "
              "(issue 17's target: >= 2x)")
    if args.profile:
        profile(steps["fp32 channels-last"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
