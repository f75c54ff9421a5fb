"""Batch-norm folding for inference: a copy of a model whose convolutions absorb the batch norm that follows them.

In eval mode a batch norm is an affine map per channel with fixed statistics, y = (x - mean) / sqrt(var + eps) *
gamma + beta, so a convolution followed by it equals one convolution with rescaled weights and a bias
(``torch.nn.utils.fusion.fuse_conv_bn_eval``). On the CPU the batch norm is a pass over every activation: folding
it makes a ResNet-10 forward at 224 px 1.37x as fast in bf16 autocast and 1.18x in float32 (16 images, 2 threads,
the development machine; docs/scale.md "Evaluation against the public code"). Outputs are equal up to float rounding
(float32: ~3e-7 of the logits' scale; bf16: its own rounding of the folded weights, ~1e-2 relative).

Only the pairs openlt knows are consecutive in the forward pass are folded: the stem of :class:`ResNetBackbone`,
the convolutions of torchvision's ``BasicBlock`` / ``Bottleneck`` and their ``downsample`` (Conv2d, BatchNorm2d).
Any other module (timm backbones, heads) is copied unchanged, so the copy is always the same function as the model.
Hooks stay the caller's: the copy calls the very hook objects registered on the model (a feature collector records
into the caller's own), and a pair whose convolution or batch norm has a hook is not folded (the hook would lose its
module, or see the batch norm's output).
"""

from __future__ import annotations

import copy

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.utils.fusion import fuse_conv_bn_eval
from torchvision.models.resnet import BasicBlock, Bottleneck

from openlt.models.backbones import ResNetBackbone

# (convolution, batch norm) attribute pairs whose forward is bn(conv(x)) with nothing between
_PAIRS = {ResNetBackbone: (("conv1", "bn1"),), BasicBlock: (("conv1", "bn1"), ("conv2", "bn2")),
          Bottleneck: (("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3"))}


# a module's hooks on its forward and backward pass: folding a hooked module would change what its hooks see
_PASS_HOOKS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")


def _hooked(module: nn.Module) -> bool:
    return any(getattr(module, name, None) for name in _PASS_HOOKS)


def _hook_objects(model: nn.Module) -> dict[int, object]:
    """A deepcopy memo that keeps every hook of `model`'s modules (forward, backward, state-dict, ...) itself in
    the copy: a hook that is an object or a bound method would otherwise be copied with its state."""
    memo = {}
    for module in model.modules():
        for name, hooks in vars(module).items():
            if name.endswith("hooks") and isinstance(hooks, dict):
                memo.update((id(hook), hook) for hook in hooks.values()
                            if callable(hook) and not isinstance(hook, nn.Module))
    return memo


def _foldable(conv: nn.Module, bn: nn.Module) -> bool:
    return (type(conv) is nn.Conv2d and isinstance(bn, _BatchNorm) and bn.track_running_stats
            and bn.running_mean is not None and bn.num_features == conv.out_channels
            and not _hooked(conv) and not _hooked(bn))


def _fold(parent: nn.Module, conv_name: str, bn_name: str) -> None:
    conv, bn = getattr(parent, conv_name), getattr(parent, bn_name)
    if _foldable(conv, bn):
        setattr(parent, conv_name, fuse_conv_bn_eval(conv, bn))
        setattr(parent, bn_name, nn.Identity())


def fold_batch_norm(model: nn.Module) -> nn.Module:
    """A copy of `model` in eval mode with every known (Conv2d, BatchNorm) pair folded into one Conv2d (with bias);
    `model` itself is not changed. The copy is for inference only (no training: its batch norms are gone).

    Returns the copy; its outputs equal `model.eval()`'s up to float rounding. A model with nothing to fold (no
    torchvision ResNet) comes back as an unchanged copy."""
    # the parameters' gradients (a model mid-training, validated) are not copied: the memo maps each to None
    memo = {id(p.grad): None for p in model.parameters() if p.grad is not None}
    memo.update(_hook_objects(model))  # the caller's hooks themselves, not copies
    folded = copy.deepcopy(model, memo=memo).eval()
    for module in list(folded.modules()):
        for conv_name, bn_name in _PAIRS.get(type(module), ()):
            _fold(module, conv_name, bn_name)
        downsample = getattr(module, "downsample", None)
        if type(module) in (BasicBlock, Bottleneck) and isinstance(downsample, nn.Sequential) and len(downsample) == 2:
            _fold(downsample, "0", "1")
    return folded
