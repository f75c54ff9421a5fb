"""Operations per training step, plain against OLTR stage 2, by phase and by module: where OLTR's extra GPU kernels
come from (issue 17: on an H200 OLTR's bf16 step is 1.47x the plain one, far more than its extra arithmetic).

`python scripts/count_step_ops.py` (any device: DEV=cuda on a GPU; AMP=none|bf16|fp16, SIZE, BATCH, K). Counts every
aten operation that writes memory (views, `empty*`, `detach` and `resize_` are left out: they launch no kernel) in
one training step of openlt's own step, ResNet-10 at ImageNet-LT's shape: the model's forward split by its modules
(backbone, modulated attention, feature fc, the head's parts), the loss, the backward, and the optimizer (SGD; on a
CPU torch steps it parameter by parameter, on a GPU with foreach kernels: its count is the device's). On a GPU a
small kernel costs ~5 - 10 us to launch whatever its size, so a step made of many small ones is launch-bound.
Counts do not depend on the batch or image size (SIZE=32 BATCH=4 runs in seconds on a CPU).
"""
from __future__ import annotations

import collections
import os
import sys

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from openlt.engine.precision import autocast

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_gpu_step import CFG as CONFIGS, step_setup  # noqa: E402  (the same step the GPU benchmark times)
NO_KERNEL = {"detach", "empty", "empty_strided", "empty_like", "resize_", "promote_types", "_local_scalar_dense",
             "_record_function_enter_new", "_record_function_exit"}


class OpCounter(TorchDispatchMode):
    """Counts the aten operations that write memory under `phase` (set by the caller and by module hooks)."""

    def __init__(self) -> None:
        super().__init__()
        self.phase = "?"
        self.counts: collections.Counter[str] = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        aliases = any(r.alias_info is not None and not r.alias_info.is_write for r in func._schema.returns)
        if not aliases and func.overloadpacket.__name__ not in NO_KERNEL:
            self.counts[self.phase] += 1
        return func(*args, **(kwargs or {}))


def count_step(kind: str, device: str, amp: str, size: int, batch: int, num_classes: int) -> dict[str, int]:
    """Operations of one training step (after one warm-up step) of `kind` ("plain" or "oltr"), by phase."""
    cfg, model, criterion, optimizer, images, targets = step_setup(kind, device, amp, True, batch, size, num_classes)
    dev = torch.device(device)
    counter = OpCounter()

    def label(module: torch.nn.Module, before: str, after: str) -> None:
        module.register_forward_pre_hook(lambda m, a: setattr(counter, "phase", before))
        module.register_forward_hook(lambda m, a, o: setattr(counter, "phase", after))

    for name, module in model.named_children():  # the backbone runs through forward_map: no hook, the step's start
        if name not in ("backbone", "classifier"):
            label(module, f"forward: {name}", "forward: backbone")  # then the backbone's pooling
    label(model.classifier, "forward: head (own ops)", "forward: head (own ops)")
    for name, module in model.classifier.named_children():
        label(module, f"forward: head.{name}", "forward: head (own ops)")
    model.train()
    for _ in range(2):  # the second step is counted (the first builds the optimizer's state)
        counter.counts.clear()
        with counter:
            counter.phase = "forward: backbone"
            with autocast(amp, dev):
                out = model(images)
                counter.phase = "loss"
                loss = criterion(out, targets)
            counter.phase = "backward"
            loss.backward()
            counter.phase = "optimizer"
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
    return dict(counter.counts)


def main() -> int:
    device, amp = os.environ.get("DEV", "cpu"), os.environ.get("AMP", "bf16")
    size, batch, k = int(os.environ.get("SIZE", 32)), int(os.environ.get("BATCH", 4)), int(os.environ.get("K", 1000))
    results = {kind: count_step(kind, device, amp, size, batch, k) for kind in CONFIGS}
    phases = sorted(set(results["plain"]) | set(results["oltr"]), key=lambda p: (not p.startswith("forward"), p))
    order = ["forward", "loss", "backward", "optimizer"]
    phases.sort(key=lambda p: order.index(p.split(":")[0]))
    print(f"aten operations that write memory, one training step, ResNet-10, {k} classes, device {device}, amp {amp}")
    print(f"{'phase':34s} {'plain':>7s} {'OLTR':>7s}")
    for phase in phases:
        print(f"{phase:34s} {results['plain'].get(phase, 0):7d} {results['oltr'].get(phase, 0):7d}")
    totals = {kind: sum(v for p, v in c.items() if p != "optimizer") for kind, c in results.items()}
    print(f"{'step without the optimizer':34s} {totals['plain']:7d} {totals['oltr']:7d}   "
          f"OLTR / plain {totals['oltr'] / totals['plain']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
