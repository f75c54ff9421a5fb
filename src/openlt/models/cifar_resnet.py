"""The CIFAR ResNets of He et al. (2016, sec. 4.2) as the CIFAR-LT literature uses them (LDAM-DRW's
`resnet_cifar.py`): a 3x3 16-channel stem, three stages of n BasicBlocks with 16 / 32 / 64 channels (the second
and third stride 2), global average pooling; depth 6n + 2 (ResNet-32: n = 5, 0.46M parameters, 64-d feature).

Shortcuts are option A, as in the paper and the LDAM-DRW code: where a stage halves the map and doubles the
channels, the identity is subsampled by 2 and zero-padded with the new channels, so shortcuts add no parameter.
Convolutions get Kaiming-normal (fan-in) initialisation as there. The stem is always the 32 px one, whatever
`small_input` says: the network is defined for CIFAR-size images.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from openlt.models._registry import BACKBONES
from openlt.models.backbones import Backbone

__all__ = ["CifarResNet", "PadShortcut"]


class PadShortcut(nn.Module):
    """Option-A shortcut: every second pixel, and the missing channels as zeros split evenly on both sides."""

    def __init__(self, extra_channels: int) -> None:
        super().__init__()
        self.before, self.after = extra_channels // 2, extra_channels - extra_channels // 2

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, C + extra_channels, ceil(H/2), ceil(W/2)): stride-2 subsampling, zero channels."""
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.before, self.after))


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with a ReLU between them and an option-A shortcut: ``relu(F(x) + shortcut(x))``.

    (B, in_planes, H, W) -> (B, planes, H/stride, W/stride); the shortcut pads channels (no parameter) when the
    block changes the map's size or width.
    """
    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = PadShortcut(planes - in_planes) if stride != 1 or in_planes != planes else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        """(B, in_planes, H, W) -> (B, planes, H/stride, W/stride)."""
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(Backbone):
    """ResNet-(6n+2) for 32 px images; ``out_dim`` 64."""

    def __init__(self, name: str, blocks_per_stage: int, in_chans: int = 3) -> None:
        super().__init__(name, 64)
        self.conv1 = nn.Conv2d(in_chans, 16, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        layers, in_planes = [], 16
        for planes, stride in ((16, 1), (32, 2), (64, 2)):
            blocks = [BasicBlock(in_planes, planes, stride)]
            blocks += [BasicBlock(planes, planes) for _ in range(blocks_per_stage - 1)]
            layers.append(nn.Sequential(*blocks))
            in_planes = planes
        self.layer1, self.layer2, self.layer3 = layers
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)

    def forward_map(self, x: Tensor) -> Tensor:
        """Stem and the three stages: (B, in_chans, 32, 32) -> (B, 64, 8, 8) (any H, W: H/4, W/4 rounded up)."""
        x = F.relu(self.bn1(self.conv1(x)))
        return self.layer3(self.layer2(self.layer1(x)))


def _register(depth: int) -> None:
    name = f"resnet{depth}"

    def build(*, small_input: bool = True, in_chans: int = 3) -> Backbone:
        return CifarResNet(name, (depth - 2) // 6, in_chans=in_chans)

    build.__name__ = f"build_{name}"
    build.__doc__ = f"CIFAR {name} (option-A shortcuts, 64-d feature)."
    BACKBONES.register(name)(build)


for _depth in (20, 32, 44, 56, 110):
    _register(_depth)
