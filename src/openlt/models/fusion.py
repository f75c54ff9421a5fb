"""Batch-norm folding for inference: a copy of a model whose convolutions absorb the batch norm that follows them.

In eval mode a batch norm is an affine map per channel with fixed statistics, y = (x - mean) / sqrt(var + eps) *
gamma + beta, so a convolution followed by it equals one convolution with rescaled weights and a bias
(``torch.nn.utils.fusion.fuse_conv_bn_weights``). On the CPU the batch norm is a pass over every activation: folding
it makes a ResNet-10 forward at 224 px 1.37x as fast in bf16 autocast and 1.18x in float32 (16 images, 2 threads,
the development machine; docs/scale.md "Evaluation against the public code"). Outputs are equal up to float rounding
(float32: ~3e-7 of the logits' scale; bf16: its own rounding of the folded weights, ~1e-2 relative).

Only the pairs openlt knows are consecutive in the forward pass are folded: the stem of :class:`ResNetBackbone`,
the convolutions of torchvision's ``BasicBlock`` / ``Bottleneck`` and their ``downsample`` (Conv2d, BatchNorm2d).
Any other module (timm backbones, heads) is kept as it is, so the copy is always the same function as the model.

The copy is structural: each module is a new object with its own child, parameter, buffer and hook tables, but
every parameter and buffer that is not folded is the model's own memory (no copy of the weights; only the folded
convolutions get new ones; its parameters are new Parameter objects on that memory, so converting the copy with
`.half()` / `.to()` leaves the model's alone, while an in-place write such as `load_state_dict` reaches both). So
it costs milliseconds whatever the model's size, and it is valid until the model's weights change: make a new one
after a training step. Hooks stay the caller's: the copy calls the very hook objects registered on the model (a
feature collector records into the caller's own), and a pair whose convolution or batch norm has a hook is not
folded (the hook would lose its module, or see the batch norm's output).
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.utils.fusion import fuse_conv_bn_weights
from torchvision.models.resnet import BasicBlock, Bottleneck

from openlt.models.backbones import ResNetBackbone

# (convolution, batch norm) attribute pairs whose forward is bn(conv(x)) with nothing between
_PAIRS = {ResNetBackbone: (("conv1", "bn1"),), BasicBlock: (("conv1", "bn1"), ("conv2", "bn2")),
          Bottleneck: (("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3"))}


# a module's hooks on its forward and backward pass: folding a hooked module would change what its hooks see
_PASS_HOOKS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")


def _hooked(module: nn.Module) -> bool:
    return any(getattr(module, name, None) for name in _PASS_HOOKS)


def _structural_copy(module: nn.Module, memo: dict[int, object]) -> nn.Module:
    """A new module object of each module of `module`'s tree (a module met twice is copied once), with its own
    tables (children, parameters, buffers, hooks: setting one on the copy leaves the original alone) holding the
    same buffers and hook objects, and parameters that are new Parameter objects on the same memory: `.half()`,
    `.to(device)` or `requires_grad_` on the copy replace its own parameters' data, never the model's. A module in
    a plain attribute (alone, or in a list or tuple) is the copy's own too, as deepcopy would make it."""
    if id(module) in memo:
        return memo[id(module)]
    new = object.__new__(type(module))  # copy.copy's shallow copy without __getstate__ (a parametrized module's
    vars(new).update(vars(module))      # refuses it): a new __dict__, its values the original's
    memo[id(module)] = new
    for name, value in vars(module).items():
        if isinstance(value, (dict, set)):  # _parameters, _buffers, every hook table, _non_persistent_buffers_set
            vars(new)[name] = copy.copy(value)
        elif isinstance(value, nn.Module):
            vars(new)[name] = _structural_copy(value, memo)
        elif type(value) in (list, tuple) and any(isinstance(v, nn.Module) for v in value):
            vars(new)[name] = type(value)(_structural_copy(v, memo) if isinstance(v, nn.Module) else v for v in value)
    for name, param in module._parameters.items():
        if param is not None:
            if id(param) not in memo:  # (a parameter tied between modules stays one in the copy)
                memo[id(param)] = nn.Parameter(param.detach(), requires_grad=param.requires_grad)
            new._parameters[name] = memo[id(param)]
    for name, child in module._modules.items():
        new._modules[name] = None if child is None else _structural_copy(child, memo)
    return new


def _foldable(conv: nn.Module, bn: nn.Module) -> bool:
    return (type(conv) is nn.Conv2d and isinstance(bn, _BatchNorm) and bn.track_running_stats
            and bn.running_mean is not None and bn.num_features == conv.out_channels
            and not _hooked(conv) and not _hooked(bn))


@torch.no_grad()
def _fold(parent: nn.Module, conv_name: str, bn_name: str) -> None:
    conv, bn = getattr(parent, conv_name), getattr(parent, bn_name)
    if _foldable(conv, bn):  # conv is the copy's own module object: its new weight and bias leave the model's alone
        conv.weight, conv.bias = fuse_conv_bn_weights(conv.weight, conv.bias, bn.running_mean, bn.running_var,
                                                      bn.eps, bn.weight, bn.bias)
        setattr(parent, bn_name, nn.Identity())


def fold_batch_norm(model: nn.Module) -> nn.Module:
    """A copy of `model` in eval mode with every known (Conv2d, BatchNorm) pair folded into one Conv2d (with bias);
    `model` itself is not changed (its mode, modules, tables and tensors). The copy is for inference only (no
    training: its batch norms are gone) and shares every tensor it does not fold with `model` (module docstring).

    Returns the copy; its outputs equal `model.eval()`'s up to float rounding. A model with nothing to fold (no
    torchvision ResNet) comes back as a copy that computes with the model's own tensors."""
    folded = _structural_copy(model, {}).eval()
    for module in list(folded.modules()):
        for conv_name, bn_name in _PAIRS.get(type(module), ()):
            _fold(module, conv_name, bn_name)
        downsample = getattr(module, "downsample", None)
        if type(module) in (BasicBlock, Bottleneck) and isinstance(downsample, nn.Sequential) and len(downsample) == 2:
            _fold(downsample, "0", "1")
    return folded


def inference_copy(model: nn.Module) -> nn.Module:
    """Put `model` in eval mode (its callers find it so afterwards, as before folding existed) and return the copy
    evaluation and feature extraction run: :func:`fold_batch_norm`'s. Its outputs equal the model's up to float
    rounding (the folding); it shares the model's unfolded tensors."""
    model.eval()
    return fold_batch_norm(model)
