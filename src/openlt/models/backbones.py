"""Feature extractors: torchvision ResNets (built offline, weights=None) and, optionally, timm models.

Every backbone is a :class:`Backbone`: ``forward(x) -> (feature_map, pooled)`` where ``feature_map`` is the
last stage's map ``(B, C, H, W)`` and ``pooled`` its global average ``(B, C)``; ``out_dim == C``.

The torchvision backbones keep torchvision's module names (``conv1``, ``bn1``, ``layer1`` .. ``layer4``), so a
torchvision ImageNet state dict loads into them as is (its ``fc.*`` is dropped).
"""

from __future__ import annotations

import logging
import os
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor, nn
from torchvision.models import resnet as tv_resnet

from openlt.errors import ConfigError
from openlt.models._registry import BACKBONES

_LOG = logging.getLogger(__name__)

__all__ = ["Backbone", "ResNetBackbone", "TimmBackbone", "build_backbone", "load_pretrained"]

TIMM_PREFIX = "timm/"


class Backbone(nn.Module):
    """Base of every backbone: subclasses implement :meth:`forward_map`; ``forward`` adds the pooled vector."""

    def __init__(self, name: str, out_dim: int) -> None:
        super().__init__()
        self.name = name
        self.out_dim = out_dim

    def forward_map(self, x: Tensor) -> Tensor:
        """The last stage's feature map of images ``x`` (B, in_chans, H, W): (B, out_dim, H', W') for CNNs.

        Subclasses implement it; the base raises NotImplementedError.
        """
        raise NotImplementedError

    def pool(self, feature_map: Tensor) -> Tensor:
        """Global average pooling: (B, C, H, W) feature map -> (B, C) feature vector."""
        return feature_map.mean(dim=(2, 3))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Images (B, in_chans, H, W) -> ``(feature_map, pooled)``: (B, out_dim, H', W') and (B, out_dim)."""
        feature_map = self.forward_map(x)
        return feature_map, self.pool(feature_map)

    def extra_repr(self) -> str:
        """The name and feature width shown by ``repr(module)``."""
        return f"name={self.name!r}, out_dim={self.out_dim}"


class ResNetBackbone(Backbone):
    """A torchvision ResNet without its ``avgpool``/``fc``; optionally a CIFAR-style stem for 28-32 px inputs."""

    def __init__(self, name: str, net: tv_resnet.ResNet, *, small_input: bool = False, in_chans: int = 3) -> None:
        super().__init__(name, net.fc.in_features)
        self.small_input = small_input
        self.in_chans = in_chans
        self.conv1 = net.conv1
        if small_input or in_chans != 3:
            if small_input:  # CIFAR ResNets: 3x3 stride-1 stem, no max-pool
                self.conv1 = nn.Conv2d(in_chans, 64, kernel_size=3, stride=1, padding=1, bias=False)
            else:
                self.conv1 = nn.Conv2d(in_chans, 64, kernel_size=7, stride=2, padding=3, bias=False)
            nn.init.kaiming_normal_(self.conv1.weight, mode="fan_out", nonlinearity="relu")
        self.bn1 = net.bn1
        self.relu = net.relu
        self.maxpool = nn.Identity() if small_input else net.maxpool
        self.layer1 = net.layer1
        self.layer2 = net.layer2
        self.layer3 = net.layer3
        self.layer4 = net.layer4

    def forward_map(self, x: Tensor) -> Tensor:
        """Stem and the four stages: (B, in_chans, H, W) -> (B, out_dim, H/32, W/32) (H/8, W/8 with ``small_input``).

        The stem runs its ReLU after the max-pool, not before as torchvision does: the two commute exactly (both are
        monotone and the pool pads with -inf), so outputs and gradients are bit for bit torchvision's, and the ReLU
        and its backward run on a quarter of the elements (a bf16 training step of ResNet-10 at 224 px 1.11x as
        fast). A forward hook on ``relu`` sees the pooled map.
        """
        x = self.relu(self.maxpool(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


class TimmBackbone(Backbone):
    """A timm model built with ``num_classes=0``: ``forward_features`` gives the map, ``forward_head`` the vector.

    For CNNs the map is ``(B, C, H, W)``; for transformers it is whatever timm's ``forward_features`` returns
    (tokens), and ``pooled`` follows the model's own pooling.
    """

    def __init__(self, name: str, model: nn.Module) -> None:
        super().__init__(name, int(model.num_features))
        self.model = model

    def forward_map(self, x: Tensor) -> Tensor:
        """timm's ``forward_features``: (B, C, H', W') for CNNs, the token sequence for transformers."""
        return self.model.forward_features(x)

    def pool(self, feature_map: Tensor) -> Tensor:
        """timm's ``forward_head(..., pre_logits=True)``: the model's own pooling -> (B, out_dim)."""
        return self.model.forward_head(feature_map, pre_logits=True)


def _register_resnet(name: str, make: Callable[[], tv_resnet.ResNet]) -> None:
    def build(*, small_input: bool = False, in_chans: int = 3) -> Backbone:
        return ResNetBackbone(name, make(), small_input=small_input, in_chans=in_chans)

    build.__name__ = f"build_{name}"
    build.__doc__ = f"torchvision {name} (no weights downloaded)."
    BACKBONES.register(name)(build)


# resnet10: BasicBlock [1, 1, 1, 1], the OLTR paper's ImageNet-LT backbone (512-d).
_register_resnet("resnet10", lambda: tv_resnet.ResNet(tv_resnet.BasicBlock, [1, 1, 1, 1]))
_register_resnet("resnet18", lambda: tv_resnet.resnet18(weights=None))
_register_resnet("resnet34", lambda: tv_resnet.resnet34(weights=None))
_register_resnet("resnet50", lambda: tv_resnet.resnet50(weights=None))
_register_resnet("resnet101", lambda: tv_resnet.resnet101(weights=None))
_register_resnet("resnet152", lambda: tv_resnet.resnet152(weights=None))
_register_resnet("resnext50_32x4d", lambda: tv_resnet.resnext50_32x4d(weights=None))


def _build_timm(name: str, *, small_input: bool, in_chans: int) -> Backbone:
    model_name = name[len(TIMM_PREFIX) :]
    if not model_name:
        raise ConfigError(f"backbone {name!r}: give a timm model name after {TIMM_PREFIX!r}, e.g. 'timm/resnet18'")
    if small_input:
        raise ConfigError(f"backbone {name!r}: small_input is not supported for timm backbones")
    try:
        import timm
    except ImportError:
        raise ConfigError("install openlt[timm] to use timm backbones") from None
    try:
        model = timm.create_model(model_name, pretrained=False, num_classes=0, in_chans=in_chans)
    except RuntimeError as e:  # timm: "Unknown model (...)"
        raise ConfigError(f"backbone {name!r}: {e}") from None
    return TimmBackbone(name, model)


def _read_state_dict(path: Path) -> Mapping[str, Tensor]:
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:  # objects beyond tensors: torch's advice (weights_only=False) runs their code
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        what = [line for line in lines if "weights_only" not in line and "eights only" not in line
                and "documentation" not in line]
        raise ConfigError(f"cannot read pretrained weights {str(path)!r}: it holds Python objects, not only tensors"
                          f"{' (' + what[0].rstrip('.') + ')' if what else ''}; openlt reads tensors only and never runs "
                          f"code from a weights file: save the state dict of tensors alone") from None
    except Exception as e:  # corrupt / foreign file: report it, without the library's traceback
        text = " ".join(str(e).split())
        raise ConfigError(f"cannot read pretrained weights {str(path)!r}: {type(e).__name__}: {text}") from None
    if isinstance(state, Mapping) and "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping) or not all(
        isinstance(k, str) and isinstance(v, Tensor) for k, v in state.items()
    ):
        raise ConfigError(f"pretrained weights {str(path)!r} are not a state dict (name -> tensor)")
    return state


MISFIT_SHARE = 0.1  # more than this share of the backbone's tensors, or of the file's, not loaded: another network
_WARNED: set[tuple] = set()  # (file, size, mtime, backbone): a model built twice (train, then eval) warns once


def _examples(items: list[str], n: int = 3) -> str:
    return ", ".join(items[:n]) + (", ..." if len(items) > n else "")


def load_pretrained(backbone: nn.Module, path: str | os.PathLike, *, skip_prefixes: tuple[str, ...] = ("fc.",)) -> None:
    """Load a local state dict (``.pth``/``.pt`` via torch.load of tensors only, or ``.safetensors``).

    Keys under ``skip_prefixes`` (the classifier) are dropped silently. The file must fit the backbone: a
    ConfigError names the counts and a few examples when more than MISFIT_SHARE of the backbone's tensors are not
    in it, or more than that share of the file's tensors have no place in the backbone (weights of another
    architecture, e.g. ResNet-34 for resnet18), or a tensor's shape differs but the stem's first convolution's
    (3-channel weights for a 1-channel stem, a 7x7 ImageNet stem for the 3x3 small-input one: that tensor is
    skipped, the stem being made for the data). The few that are skipped otherwise are named in
    one logged warning (``openlt: warning:`` on the command line), once per process for a file and backbone.
    ConfigError also for a missing or unreadable file, and when nothing in it matches the backbone.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise ConfigError(f"pretrained weights file not found: {str(p)!r}")
    state = _read_state_dict(p)
    own = backbone.state_dict()
    # DataParallel checkpoints prefix every key with "module."; a saved TimmBackbone with "model."
    for prefix in ("module.", "model."):
        if state and all(k.startswith(prefix) for k in state) and not any(k.startswith(prefix) for k in own):
            state = {k[len(prefix) :]: v for k, v in state.items()}
    stem = next(iter(own), None)  # the first convolution: its shape follows in_chans and small_input
    to_load: dict[str, Tensor] = {}
    unexpected: list[str] = []
    reshaped: list[str] = []
    stem_skipped: list[str] = []
    considered = 0
    for key, value in state.items():
        if key.startswith(skip_prefixes):
            continue
        counted = not key.endswith("num_batches_tracked")  # a BN counter: loaded where it fits, never counted
        considered += counted
        if key not in own:
            if counted:
                unexpected.append(key)
        elif own[key].shape != value.shape:
            note = f"{key} (shape {tuple(value.shape)} vs {tuple(own[key].shape)})"
            (stem_skipped if key == stem else reshaped).append(note)
        else:
            to_load[key] = value
    if not to_load:
        raise ConfigError(f"pretrained weights {str(p)!r}: no tensor matches backbone (is it the right file?)")
    own_keys = [k for k in own if not k.endswith("num_batches_tracked")]
    shaped = reshaped + stem_skipped
    missing = [k for k in own_keys if k not in to_load and not any(n.startswith(k + " ") for n in shaped)]
    fit = sum(k in to_load for k in own_keys)
    if reshaped or len(missing) > MISFIT_SHARE * len(own_keys) or len(unexpected) > MISFIT_SHARE * max(considered, 1):
        _refuse_misfit(p, fit, len(own_keys), missing, unexpected, considered, reshaped)
    backbone.load_state_dict(to_load, strict=False)
    notes = stem_skipped + [f"{k} (not in backbone)" for k in unexpected] + [f"{k} (not in file)" for k in missing]
    if notes:
        stat = p.stat()
        key = (str(p.resolve()), stat.st_size, stat.st_mtime_ns, type(backbone).__name__, len(own_keys))
        if key not in _WARNED:
            _WARNED.add(key)
            _LOG.warning(f"pretrained weights {str(p)!r}: loaded {fit} tensors, skipped {len(notes)}: "
                         + ", ".join(notes))


def _refuse_misfit(p: Path, fit: int, total: int, missing: list[str], unexpected: list[str], considered: int,
                   reshaped: list[str]) -> None:
    """The ConfigError of a weights file that does not fit the backbone: the counts and a few examples."""
    parts = [f"{fit} of the backbone's {total} tensors fit"]
    if missing:
        parts.append(f"{len(missing)} are not in the file (e.g. {_examples(missing)})")
    if unexpected:
        parts.append(f"{len(unexpected)} of the file's {considered} are not in the backbone (e.g. "
                     f"{_examples(unexpected)})")
    if reshaped:
        parts.append(f"{len(reshaped)} differ in shape (e.g. {_examples(reshaped, 2)})")
    raise ConfigError(f"pretrained weights {str(p)!r} do not fit this backbone: " + "; ".join(parts)
                      + ": weights of another architecture? (model.pretrained must be of model.backbone)")


def build_backbone(
    name: str,
    *,
    small_input: bool = False,
    in_chans: int = 3,
    pretrained: str | os.PathLike | None = None,
) -> Backbone:
    """Build a backbone by name: a registered torchvision name (see ``BACKBONES.names()``) or ``timm/<model>``.

    ``small_input`` swaps in a CIFAR-style stem (3x3 stride-1 conv, no max-pool) for 28-32 px images;
    ``in_chans`` sets the stem's input channels; ``pretrained`` is a local state-dict file to load non-strictly.
    """
    if not isinstance(in_chans, int) or isinstance(in_chans, bool) or in_chans < 1:
        raise ConfigError(f"in_chans must be a positive integer, got {in_chans!r}")
    if name.startswith(TIMM_PREFIX):
        backbone = _build_timm(name, small_input=small_input, in_chans=in_chans)
        cfg = getattr(backbone.model, "pretrained_cfg", None) or {}
        head = cfg.get("classifier") if isinstance(cfg, Mapping) else None
        skip = ("fc.",) if not head else ("fc.", f"{head}.")
        if pretrained is not None:
            load_pretrained(backbone.model, pretrained, skip_prefixes=skip)
        return backbone
    try:
        builder = BACKBONES.get(name)
    except ConfigError as e:
        raise ConfigError(f"{e}; or '{TIMM_PREFIX}<name>' for a timm model") from None
    backbone = builder(small_input=small_input, in_chans=in_chans)
    if pretrained is not None:
        load_pretrained(backbone, pretrained)
    return backbone

