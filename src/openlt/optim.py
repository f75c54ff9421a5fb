"""Optimisation shared by every training loop: SGD over named parameter groups, the learning-rate schedules as
`torch.optim.lr_scheduler.LambdaLR` factors, and the one optimisation step.

Used by the stage-1 / OLTR trainer (`engine/train.py`), by cRT and LWS on cached features
(`decoupling.train_on_features`) and by `scripts/bench_perf.py`, so that all of them step alike.

The schedules are closed forms of the iteration index, evaluated in exactly the arithmetic openlt has always
used, so that a run's learning rates (and with them its weights) are the same to the last bit. torch's own
chainable schedulers (CosineAnnealingLR, LinearLR, ...) compute the rate recursively and differ in the last
bits. Each schedule is a small picklable object, validated when it is built (`lr_schedule`), never per step.

Learning rates are in the optimizer's units (SGD step size); steps are optimizer iterations (batches), not epochs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.optim.lr_scheduler import LambdaLR

from openlt.config import TrainConfig
from openlt.errors import ConfigError

__all__ = ["Cosine", "WarmupCosine", "WarmupStep", "build_optimizer", "build_scheduler", "group_lr",
           "lr_schedule", "optimizer_step", "scheduled_factor"]

#: Parameter groups with a learning-rate option of their own (None there: `train.lr`); every other group
#: (the head) trains at `train.lr`.
GROUP_LR_OPTIONS = {"backbone": "backbone_lr", "centroids": "centroid_lr"}


# ----------------------------------------------------------------------------------------------- schedules


class WarmupCosine:
    """factor(step) = (step + 1) / warmup_steps during a linear warm-up, then a cosine from 1 down to `floor`
    (`train.min_lr / train.lr`) over the remaining `total_steps - warmup_steps` iterations, `floor` after them.

    Args: total_steps (iterations of the whole run, >= 0), warmup_steps (>= 0; 0: no warm-up), floor (final
    factor). Returns a float factor of the base learning rate.
    """

    def __init__(self, total_steps: int, warmup_steps: int = 0, floor: float = 0.0) -> None:
        self.total_steps, self.warmup_steps, self.floor = int(total_steps), int(warmup_steps), float(floor)

    def __call__(self, step: int) -> float:
        if self.warmup_steps > 0 and step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        progress = min(1.0, (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps))
        return self.floor + 0.5 * (1 - self.floor) * (1 + math.cos(math.pi * progress))


class WarmupStep:
    """factor(step) = (step + 1) / warmup_steps during a linear warm-up, then `gamma` ** (decays passed): one
    decay at each epoch of `milestones` passed (0-based epochs: the CIFAR-LT recipe's [160, 180]), or, without
    milestones, one every `step_epochs` epochs (the public OLTR code's). Decays count from epoch 0, warm-up
    included; a decay takes effect at the first iteration of its epoch.
    """

    def __init__(self, steps_per_epoch: int, warmup_steps: int = 0, gamma: float = 0.1, step_epochs: int = 10,
                 milestones: Sequence[float] = ()) -> None:
        self.steps_per_epoch, self.warmup_steps = int(steps_per_epoch), int(warmup_steps)
        self.gamma, self.step_epochs, self.milestones = gamma, step_epochs, list(milestones)

    def __call__(self, step: int) -> float:
        if self.warmup_steps > 0 and step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        epoch = step // self.steps_per_epoch
        if self.milestones:
            return self.gamma ** sum(epoch >= m for m in self.milestones)
        return self.gamma ** (epoch // max(1, self.step_epochs))


class Cosine:
    """factor(step) = (1 + cos(pi * step / total_steps)) / 2: from 1 at step 0 down to 0 at `total_steps`, no
    warm-up (the decoupling recipe's cRT / LWS schedule). Kept apart from :class:`WarmupCosine` because its
    arithmetic (pi * step / total, in that order) is what decoupled runs have always used, to the last bit."""

    def __init__(self, total_steps: int) -> None:
        if int(total_steps) != total_steps or total_steps < 1:
            raise ValueError(f"total_steps must be a positive integer, got {total_steps!r}")
        self.total_steps = int(total_steps)

    def __call__(self, step: int) -> float:
        return 0.5 * (1.0 + math.cos(math.pi * step / self.total_steps))


def lr_schedule(cfg: TrainConfig, steps_per_epoch: int) -> WarmupCosine | WarmupStep:
    """The schedule `cfg.schedule` names (cosine | step, each after `warmup_epochs` of linear warm-up), for a run
    of `cfg.epochs` epochs of `steps_per_epoch` iterations. ConfigError naming the option: an unknown
    `train.schedule`, or `train.milestones` that are not a list of epochs (step schedule)."""
    warmup_steps = int(round(cfg.warmup_epochs * steps_per_epoch))
    if cfg.schedule == "cosine":
        floor = cfg.min_lr / cfg.lr if cfg.lr > 0 else 0.0
        return WarmupCosine(steps_per_epoch * cfg.epochs, warmup_steps, floor)
    if cfg.schedule == "step":
        milestones = cfg.milestones or []  # none: a decay every step_epochs
        if not isinstance(milestones, (list, tuple)) or not all(
                isinstance(m, (int, float)) and not isinstance(m, bool) for m in milestones):
            raise ConfigError(f"train.milestones must be a list of epochs, got {cfg.milestones!r}")
        return WarmupStep(steps_per_epoch, warmup_steps, cfg.step_gamma, cfg.step_epochs, milestones)
    raise ConfigError(f"unknown train.schedule {cfg.schedule!r}; known: cosine, step")


def build_scheduler(optimizer: torch.optim.Optimizer, schedule: WarmupCosine | WarmupStep | Cosine,
                    start_step: int = 0) -> LambdaLR:
    """A LambdaLR that sets every group's lr to its base lr times `schedule(step)`, to be stepped once per
    iteration, after the optimizer (:func:`optimizer_step` does both). The groups' lrs are set for iteration
    `start_step` at once.

    Resuming (`start_step` > 0, after the optimizer's state was loaded): the base lrs are the checkpoint's
    (its groups' `initial_lr`, or `base_lr` in a checkpoint written before openlt had schedulers) and the
    position is the iteration, so the resumed run continues the uninterrupted run's lr sequence exactly, also
    when another number of processes changes the iterations per epoch.
    """
    if start_step:
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["base_lr"])
    return LambdaLR(optimizer, schedule, last_epoch=start_step - 1)


def scheduled_factor(scheduler: LambdaLR) -> float:
    """The lr factor of the iteration about to run (the one `scheduler` last set the groups' lrs for)."""
    return scheduler.lr_lambdas[0](scheduler.last_epoch)


# ----------------------------------------------------------------------------------------------- optimizer


def group_lr(name: str, cfg: TrainConfig) -> float:
    """The base learning rate of the parameter group `name`: its own option (`GROUP_LR_OPTIONS`) when set,
    else `cfg.lr`."""
    option = GROUP_LR_OPTIONS.get(name)
    value = None if option is None else getattr(cfg, option)
    return cfg.lr if value is None else value


def build_optimizer(groups: dict[str, list[nn.Parameter]], cfg: TrainConfig) -> torch.optim.SGD:
    """SGD (`cfg.momentum`, `cfg.nesterov`, `cfg.weight_decay`) over named parameter groups, in the order given
    and without the empty ones, each at its base lr (:func:`group_lr`); every group keeps its `name` and
    `base_lr`. The order is the optimizer state's (and a checkpoint's), so it must not change between runs."""
    param_groups = [{"params": params, "lr": group_lr(name, cfg), "base_lr": group_lr(name, cfg), "name": name}
                    for name, params in groups.items() if params]
    return torch.optim.SGD(param_groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                           weight_decay=cfg.weight_decay)


def optimizer_step(loss: Tensor, optimizer: torch.optim.Optimizer, scheduler: LambdaLR | None = None,
                   scaler: torch.amp.GradScaler | None = None) -> None:
    """One optimisation step after the forward pass: clear the gradients, backpropagate `loss` (a scalar
    tensor), step the optimizer, then advance `scheduler` (if any) to the next iteration's lr.

    With a `scaler` (fp16 autocast) the loss is scaled before backward and the gradients are unscaled and
    checked for inf / NaN before the step, which the scaler skips when it finds any (the schedule advances
    regardless, as the lr is a function of the iteration)."""
    optimizer.zero_grad(set_to_none=True)
    if scaler is None:
        loss.backward()
        optimizer.step()
    else:
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    if scheduler is not None:
        scheduler.step()
