"""openlt.optim: the schedules' arithmetic (bit for bit), parameter groups, and the one optimisation step."""

import math
import pickle

import pytest
import torch
from torch import nn

from openlt.config import TrainConfig
from openlt.optim import (Cosine, WarmupCosine, WarmupStep, build_optimizer, build_scheduler, group_lr,
                          lr_schedule, optimizer_step, scheduled_factor)


@pytest.mark.parametrize("lr", [0.2, 0.1, 0.05, 1e-3, 0.7, 3.0])
@pytest.mark.parametrize("total", [1, 7, 30, 391])
def test_cosine_gives_the_decoupling_lrs_bit_for_bit(lr, total):
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=lr)
    scheduler = build_scheduler(optimizer, Cosine(total))
    for step in range(total):
        # what train_on_features always set before each step
        assert optimizer.param_groups[0]["lr"] == lr * 0.5 * (1.0 + math.cos(math.pi * step / total))
        optimizer.step()
        scheduler.step()
    assert optimizer.param_groups[0]["lr"] == 0.0


def test_cosine_needs_a_positive_number_of_steps():
    with pytest.raises(ValueError, match="total_steps"):
        Cosine(0)


def test_warmup_then_cosine_to_the_floor():
    schedule = WarmupCosine(total_steps=100, warmup_steps=10, floor=0.1)
    assert [schedule(s) for s in (0, 4, 9)] == [0.1, 0.5, 1.0]
    assert schedule(10) == 1.0 and schedule(100) == pytest.approx(0.1) and schedule(500) == pytest.approx(0.1)
    assert schedule(55) == pytest.approx(0.1 + 0.9 * 0.5)


def test_schedules_are_picklable_and_keep_their_values():
    for schedule in (WarmupCosine(50, 5, 0.01), WarmupStep(10, 3, 0.1, milestones=[2, 4]), Cosine(9)):
        copy = pickle.loads(pickle.dumps(schedule))
        assert [copy(s) for s in range(60)] == [schedule(s) for s in range(60)]


def test_lr_schedule_builds_the_configured_kind():
    assert isinstance(lr_schedule(TrainConfig(), 10), WarmupCosine)
    step = lr_schedule(TrainConfig(schedule="step", milestones=[]), 10)
    assert isinstance(step, WarmupStep) and step.milestones == []


def test_group_lrs_and_order():
    cfg = TrainConfig(lr=0.1, backbone_lr=0.01, centroid_lr=0.5)
    assert [group_lr(n, cfg) for n in ("backbone", "head", "centroids", "other")] == [0.01, 0.1, 0.5, 0.1]
    assert group_lr("backbone", TrainConfig(lr=0.3)) == 0.3  # None: train.lr
    a, b, c = (nn.Parameter(torch.zeros(1)) for _ in range(3))
    optimizer = build_optimizer({"backbone": [a], "head": [], "centroids": [b, c]}, cfg)
    assert [(g["name"], g["base_lr"], g["lr"], len(g["params"])) for g in optimizer.param_groups] == [
        ("backbone", 0.01, 0.01, 1), ("centroids", 0.5, 0.5, 2)]  # empty groups are left out
    assert optimizer.defaults["momentum"] == cfg.momentum and optimizer.defaults["weight_decay"] == cfg.weight_decay


def test_optimizer_step_steps_and_advances_the_schedule():
    p = nn.Parameter(torch.tensor([1.0]))
    optimizer = torch.optim.SGD([p], lr=0.5)
    scheduler = build_scheduler(optimizer, WarmupStep(steps_per_epoch=1, gamma=0.1, step_epochs=1))
    assert scheduled_factor(scheduler) == 1.0
    p.grad = torch.tensor([7.0])  # stale: cleared before backward
    optimizer_step((p ** 2).sum(), optimizer, scheduler)
    assert p.item() == pytest.approx(1.0 - 0.5 * 2.0)  # d(p^2)/dp = 2 at p = 1
    assert scheduled_factor(scheduler) == pytest.approx(0.1) and optimizer.param_groups[0]["lr"] == pytest.approx(0.05)


def test_optimizer_step_with_a_grad_scaler_skips_non_finite_gradients():
    p = nn.Parameter(torch.tensor([1.0]))
    optimizer = torch.optim.SGD([p], lr=0.5)
    scaler = torch.amp.GradScaler("cpu", init_scale=4.0)
    optimizer_step((p ** 2).sum(), optimizer, scaler=scaler)
    assert p.item() == pytest.approx(0.0)  # the gradient unscaled before the step
    optimizer_step((p * float("inf")).sum(), optimizer, scaler=scaler)
    assert p.item() == pytest.approx(0.0) and scaler.get_scale() == 2.0  # step skipped, scale halved


def test_model_groups_keep_the_name_rule_order_and_membership():
    """The groups the model and its head declare are exactly those the trainer once derived from parameter names
    (backbone / attention / feature_fc -> backbone; names ending in centroids -> centroids; the rest -> head)."""
    from openlt.config import Config
    from openlt.models.model import build_model

    cfg = Config()
    cfg.model.backbone, cfg.model.attention, cfg.model.feature_fc = "resnet10", True, True
    cfg.model.classifier = "meta_embedding"
    model = build_model(cfg, 5, 1, 28)
    model.backbone.requires_grad_(False)
    model.attention.requires_grad_(True)
    by_name = {"backbone": [], "head": [], "centroids": []}
    for name, param in model.named_parameters():
        if param.requires_grad:
            by_name["backbone" if name.startswith(("backbone.", "attention.", "feature_fc.")) else
                    "centroids" if name.endswith("centroids") else "head"].append(param)
    groups = model.param_groups()
    assert list(groups) == ["backbone", "head", "centroids"]
    assert all([id(p) for p in groups[k]] == [id(p) for p in by_name[k]] for k in by_name)
    assert groups["centroids"] == [model.classifier.centroids] and groups["backbone"]  # attention, extra fc

    cfg.model.classifier, cfg.model.attention, cfg.model.feature_fc = "linear", False, False
    assert list(build_model(cfg, 5, 1, 28).param_groups()) == ["backbone", "head"]
