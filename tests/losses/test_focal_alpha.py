"""Per-class loss weights (focal's alpha) are refused before any work when they cannot train (issue 14):
all zeros (the loss was 0.0 on every image: nothing learnt, exit 0), a single number (openlt's softmax focal takes
one weight per class, not torchvision's binary alpha), or a length other than the split's class count (was: at the
first training step, after the run directory was made; in a bench, after earlier methods trained)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tiny_run import cli, small_split

from openlt.errors import ConfigError
from openlt.losses import check_class_weights, check_loss_args
from openlt.losses.focal import FocalLoss

ZERO = ("train.loss_args.alpha=[0, 0, 0]: every class weight is 0, so the loss would be 0 on every image and "
        "nothing would be learnt; give at least one class a weight > 0")
SCALAR = ("train.loss_args.alpha=0.5: loss 'focal' takes one weight per class, a list such as [1, 2, 4] (not a "
          "single number: that is the binary alpha of torchvision's sigmoid_focal_loss)")


@pytest.mark.parametrize("alpha, message", [([0, 0, 0], ZERO), (0.5, SCALAR),
                                            ([1, -1, 2], "the per-class weights of loss 'focal' must be >= 0"),
                                            ([], "loss 'focal' takes one number >= 0 per class")])
def test_check_class_weights_refuses_weights_that_cannot_train(alpha, message):
    with pytest.raises(ConfigError) as err:
        check_loss_args("focal", {"gamma": 2.0, "alpha": alpha})
    assert message in str(err.value) and "\n" not in str(err.value)


def test_the_length_is_checked_against_a_known_class_count():
    with pytest.raises(ConfigError) as err:
        check_class_weights("focal", {"alpha": [1, 2]}, 3)
    assert str(err.value) == ("train.loss_args.alpha has 2 weights but the split has 3 classes: give one weight "
                              "per class")
    check_class_weights("focal", {"alpha": [1, 0, 2]}, 3)  # one zero class is a choice, accepted
    check_class_weights("focal", {"alpha": [1, 2]})  # class count unknown: not checked
    check_class_weights("ce", {"label_smoothing": 0.1}, 3)  # no per-class entry


def test_focal_loss_itself_refuses_all_zero_and_scalar_alpha():
    with pytest.raises(ConfigError, match="every alpha weight is 0"):
        FocalLoss(alpha=[0.0, 0.0])
    with pytest.raises(ConfigError, match="not a single number"):
        FocalLoss(alpha=0.5)
    loss = FocalLoss(alpha=[0.0, 1.0])({"logits": torch.zeros(2, 2)}, torch.tensor([1, 1]))
    assert loss.item() > 0


def test_openlt_config_refuses_all_zero_alpha(capsys):
    code, _, err = cli(capsys, "config", "fmnist_lt/loss_focal", "train.loss_args.alpha=[0,0,0]")
    assert code == 2 and err.strip() == f"openlt config: error: {ZERO}"


@pytest.fixture(scope="module")
def split(tmp_path_factory) -> Path:
    return small_split(tmp_path_factory.mktemp("alpha"))


@pytest.mark.parametrize("alpha, message", [
    ("[1,2]", "train.loss_args.alpha has 2 weights but the split has 3 classes: give one weight per class"),
    ("[0,0,0]", ZERO), ("0.5", SCALAR)])
def test_train_refuses_before_the_run_directory_exists(split, tmp_path, capsys, alpha, message):
    code, _, err = cli(capsys, "train", "fmnist_lt/loss_focal", "data.dataset=image-folder", f"data.split_dir={split}",
                       "data.image_size=16", "model.backbone=resnet10", "train.epochs=1",
                       f"out_dir={tmp_path / 'runs'}", f"train.loss_args.alpha={alpha}")
    assert code == 2 and f"openlt train: error: {message}\n" in err and "run directory" not in err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_bench_refuses_a_later_method_with_the_wrong_alpha_length_at_load_time(split, tmp_path):
    from openlt.engine.bench import load_bench

    spec = tmp_path / "spec.yaml"
    spec.write_text(f"name: t\nout_dir: {tmp_path / 'bench'}\nseeds: [0]\n"
                    f"overrides: [data.dataset=image-folder, data.split_dir={split}, model.backbone=resnet10]\n"
                    "methods:\n  - {name: plain, config: fmnist_lt/plain}\n"
                    "  - {name: focal, config: fmnist_lt/loss_focal, overrides: ['train.loss_args.alpha=[1,2]']}\n")
    with pytest.raises(ConfigError) as err:
        load_bench(spec)
    assert str(err.value).startswith(f"bench spec {spec}: method 'focal' (config ")
    assert str(err.value).endswith("loss_focal.yaml): train.loss_args.alpha has 2 weights but the split has 3 "
                                   "classes: give one weight per class")
    assert not (tmp_path / "bench").exists()
    spec.write_text(spec.read_text().replace("[1,2]", "[1,2,3]"))
    load_bench(spec)  # the right length passes
