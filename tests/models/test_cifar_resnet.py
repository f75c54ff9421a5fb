"""The CIFAR ResNets (option-A shortcuts) and LDAM's normalised linear head."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from openlt.config import build_config
from openlt.models import build_backbone, build_classifier
from openlt.models.cifar_resnet import CifarResNet, PadShortcut
from openlt.models.model import build_model

pytestmark = pytest.mark.usefixtures("single_thread")

# He et al. / the LDAM-DRW code's counts, with a 10-way linear layer on the 64-d feature
PARAMS = {"resnet20": 269_722, "resnet32": 464_154, "resnet44": 658_586, "resnet56": 853_018, "resnet110": 1_727_962}


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_parameter_counts_match_the_reference_implementation(name):
    bb = build_backbone(name)
    assert isinstance(bb, CifarResNet) and bb.out_dim == 64
    assert sum(p.numel() for p in bb.parameters()) + 64 * 10 + 10 == PARAMS[name]


def test_resnet32_layout_and_forward():
    torch.manual_seed(0)
    bb = build_backbone("resnet32").train()
    assert [len(bb.layer1), len(bb.layer2), len(bb.layer3)] == [5, 5, 5]
    assert isinstance(bb.layer2[0].shortcut, PadShortcut) and not list(bb.layer2[0].shortcut.parameters())
    fmap, pooled = bb(torch.randn(2, 3, 32, 32))
    assert fmap.shape == (2, 64, 8, 8) and torch.equal(pooled, fmap.mean((2, 3)))
    pooled.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in bb.parameters())


def test_option_a_shortcut_subsamples_and_pads_channels_with_zeros():
    x = torch.randn(1, 16, 8, 8)
    y = PadShortcut(16)(x)
    assert y.shape == (1, 32, 4, 4)
    assert torch.equal(y[:, 8:24], x[:, :, ::2, ::2]) and not y[:, :8].any() and not y[:, 24:].any()


def test_normed_linear_gives_cosines_with_unit_columns():
    torch.manual_seed(0)
    head = build_classifier("normed_linear", 64, 10)
    assert head.weight.shape == (64, 10)
    torch.testing.assert_close(head.weight.norm(dim=0), torch.ones(10))
    x = torch.randn(5, 64)
    logits = head(x)
    expected = F.cosine_similarity(x.unsqueeze(2), head.weight.unsqueeze(0), dim=1)
    torch.testing.assert_close(logits, expected)
    assert logits.abs().max() <= 1 + 1e-6


def test_build_model_with_the_ldam_config():
    cfg = build_config(None, ["model.backbone=resnet32", "model.classifier=normed_linear"])
    model = build_model(cfg, num_classes=100, in_chans=3, image_size=32)
    out = model(torch.randn(2, 3, 32, 32))
    assert out["logits"].shape == (2, 100) and out["feature"].shape == (2, 64)
