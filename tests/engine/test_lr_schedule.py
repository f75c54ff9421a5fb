"""The learning-rate factor: warm-up, step every N epochs, and step at milestones (the CIFAR-LT recipe)."""

import pytest

from openlt.config import TrainConfig
from openlt.engine.train import lr_factor
from openlt.errors import ConfigError


def factor_at(epoch: int, cfg: TrainConfig, steps_per_epoch: int = 10) -> float:
    return lr_factor(epoch * steps_per_epoch, steps_per_epoch, cfg)


def test_milestones_give_the_cifar_lt_recipe():
    # LDAM-DRW: lr * epoch/5 for the first 5 epochs, x0.01 from epoch 160 (0-based), x0.0001 from 180
    cfg = TrainConfig(epochs=200, warmup_epochs=5, schedule="step", milestones=[160, 180], step_gamma=0.01)
    assert lr_factor(0, 10, cfg) == pytest.approx(1 / 50) and lr_factor(49, 10, cfg) == 1.0
    assert [factor_at(e, cfg) for e in (5, 100, 159)] == [1.0, 1.0, 1.0]
    assert factor_at(160, cfg) == pytest.approx(0.01) and factor_at(179, cfg) == pytest.approx(0.01)
    assert factor_at(180, cfg) == pytest.approx(1e-4) and factor_at(199, cfg) == pytest.approx(1e-4)
    assert lr_factor(160 * 10 - 1, 10, cfg) == 1.0  # the drop is at the first step of epoch 160


def test_without_milestones_the_step_schedule_is_unchanged():
    cfg = TrainConfig(epochs=30, warmup_epochs=0, schedule="step", step_epochs=10, step_gamma=0.1)
    assert [factor_at(e, cfg) for e in (0, 9, 10, 20, 29)] == pytest.approx([1, 1, 0.1, 0.01, 0.01])


def test_bad_milestones_are_a_config_error():
    cfg = TrainConfig(warmup_epochs=0, schedule="step", milestones=["160"])
    with pytest.raises(ConfigError, match="train.milestones"):
        lr_factor(0, 10, cfg)
