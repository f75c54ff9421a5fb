"""The learning-rate schedule of training: warm-up, step every N epochs, step at milestones (the CIFAR-LT recipe),
cosine to min_lr; the config checked once, when the schedule is built; and a resumed run's lr sequence."""

import dataclasses
import json
import math

import pytest
import torch

from openlt.config import TrainConfig
from openlt.errors import ConfigError
from openlt.optim import build_optimizer, build_scheduler, lr_schedule, optimizer_step


def factor_at(epoch: int, cfg: TrainConfig, steps_per_epoch: int = 10) -> float:
    return lr_schedule(cfg, steps_per_epoch)(epoch * steps_per_epoch)


def test_milestones_give_the_cifar_lt_recipe():
    # LDAM-DRW: lr * epoch/5 for the first 5 epochs, x0.01 from epoch 160 (0-based), x0.0001 from 180
    cfg = TrainConfig(epochs=200, warmup_epochs=5, schedule="step", milestones=[160, 180], step_gamma=0.01)
    schedule = lr_schedule(cfg, 10)
    assert schedule(0) == pytest.approx(1 / 50) and schedule(49) == 1.0
    assert [factor_at(e, cfg) for e in (5, 100, 159)] == [1.0, 1.0, 1.0]
    assert factor_at(160, cfg) == pytest.approx(0.01) and factor_at(179, cfg) == pytest.approx(0.01)
    assert factor_at(180, cfg) == pytest.approx(1e-4) and factor_at(199, cfg) == pytest.approx(1e-4)
    assert schedule(160 * 10 - 1) == 1.0  # the drop is at the first step of epoch 160


def test_without_milestones_the_step_schedule_is_unchanged():
    cfg = TrainConfig(epochs=30, warmup_epochs=0, schedule="step", step_epochs=10, step_gamma=0.1)
    assert [factor_at(e, cfg) for e in (0, 9, 10, 20, 29)] == pytest.approx([1, 1, 0.1, 0.01, 0.01])


def test_bad_milestones_and_unknown_schedules_are_config_errors_when_the_schedule_is_built():
    with pytest.raises(ConfigError, match="train.milestones"):
        lr_schedule(TrainConfig(warmup_epochs=0, schedule="step", milestones=["160"]), 10)
    with pytest.raises(ConfigError, match="train.schedule 'linear'"):
        lr_schedule(TrainConfig(schedule="linear"), 10)


def reference_factor(step: int, steps_per_epoch: int, cfg: TrainConfig) -> float:
    """The per-step factor as openlt computed it before the schedules were objects (the arithmetic to keep)."""
    total_steps = steps_per_epoch * cfg.epochs
    warmup_steps = int(round(cfg.warmup_epochs * steps_per_epoch))
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    if cfg.schedule == "cosine":
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        floor = cfg.min_lr / cfg.lr if cfg.lr > 0 else 0.0
        return floor + 0.5 * (1 - floor) * (1 + math.cos(math.pi * progress))
    epoch = step // steps_per_epoch
    if cfg.milestones:
        return cfg.step_gamma ** sum(epoch >= m for m in cfg.milestones)
    return cfg.step_gamma ** (epoch // max(1, cfg.step_epochs))


CONFIGS = [TrainConfig(epochs=7, warmup_epochs=1.5, lr=0.1),
           TrainConfig(epochs=5, warmup_epochs=0, lr=0.07, min_lr=0.001),
           TrainConfig(epochs=9, warmup_epochs=2, schedule="step", milestones=[3, 7], step_gamma=0.1),
           TrainConfig(epochs=9, warmup_epochs=0.3, schedule="step", step_epochs=4, step_gamma=0.5)]


@pytest.mark.parametrize("cfg", CONFIGS)
def test_the_scheduled_lrs_are_bit_identical_to_the_closed_form(cfg):
    steps_per_epoch = 13
    params = {"backbone": [torch.nn.Parameter(torch.zeros(2))], "head": [torch.nn.Parameter(torch.zeros(2))]}
    cfg = dataclasses.replace(cfg, backbone_lr=0.003)
    optimizer = build_optimizer(params, cfg)
    scheduler = build_scheduler(optimizer, lr_schedule(cfg, steps_per_epoch))
    for step in range(cfg.epochs * steps_per_epoch):
        factor = reference_factor(step, steps_per_epoch, cfg)
        assert [g["lr"] for g in optimizer.param_groups] == [0.003 * factor, cfg.lr * factor]  # exact
        optimizer.step()
        scheduler.step()


def lr_sequence(cfg: TrainConfig, steps_per_epoch: int, stop_after_epoch: int | None = None) -> list[list[float]]:
    """The lr of every group at every step; with `stop_after_epoch`, the optimizer's state goes through a
    JSON round trip (as in a checkpoint) after that epoch and a new optimizer and scheduler continue."""
    def fresh():
        torch.manual_seed(0)
        return {"backbone": [torch.nn.Parameter(torch.randn(3))], "head": [torch.nn.Parameter(torch.randn(3))]}

    params = fresh()
    optimizer = build_optimizer(params, cfg)
    scheduler = build_scheduler(optimizer, lr_schedule(cfg, steps_per_epoch))
    lrs = []
    for epoch in range(cfg.epochs):
        if epoch == stop_after_epoch:
            saved = json.loads(json.dumps(optimizer.state_dict()["param_groups"]))
            params = fresh()
            optimizer = build_optimizer(params, cfg)
            optimizer.load_state_dict({"state": {}, "param_groups": saved})
            scheduler = build_scheduler(optimizer, lr_schedule(cfg, steps_per_epoch), start_step=epoch * steps_per_epoch)
        for _ in range(steps_per_epoch):
            lrs.append([g["lr"] for g in optimizer.param_groups])
            loss = sum((p ** 2).sum() for group in params.values() for p in group)
            optimizer_step(loss, optimizer, scheduler)
    return lrs


@pytest.mark.parametrize("cfg", CONFIGS)
def test_an_interrupted_and_resumed_run_follows_the_uninterrupted_lr_sequence(cfg):
    cfg = dataclasses.replace(cfg, backbone_lr=0.01)
    whole = lr_sequence(cfg, 6)
    assert len(whole) == cfg.epochs * 6
    for stop in (1, 3):
        assert lr_sequence(cfg, 6, stop_after_epoch=stop) == whole


def test_a_checkpoint_from_before_schedulers_resumes_from_its_base_lr():
    # such checkpoints carry each group's base_lr, and no initial_lr
    cfg = TrainConfig(epochs=4, warmup_epochs=1, lr=0.2, backbone_lr=0.02)
    params = {"backbone": [torch.nn.Parameter(torch.zeros(1))], "head": [torch.nn.Parameter(torch.zeros(1))]}
    optimizer = build_optimizer(params, cfg)
    for group in optimizer.param_groups:
        group.pop("initial_lr", None)
        group["lr"] = 123.0  # whatever the last step used
    build_scheduler(optimizer, lr_schedule(cfg, 5), start_step=12)
    factor = reference_factor(12, 5, cfg)
    assert [g["lr"] for g in optimizer.param_groups] == [0.02 * factor, 0.2 * factor]
