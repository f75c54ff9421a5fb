"""Modulated attention (OLTR, Liu et al. CVPR 2019, Sec. 3.3): ``f_att = f + MA(f) * SA(f)``.

* **SA** -- self-attention: a non-local "embedded Gaussian" block (Wang et al. 2018). 1x1 convs ``theta``,
  ``phi``, ``g`` project the ``C``-channel map to ``C // reduction`` channels; every position attends to every
  position with ``softmax_q(theta_p . phi_q)``; the attended ``g`` values go back to ``C`` channels through a
  **zero-initialised** 1x1 conv (``out``, no bias), so ``SA(f) == 0`` and the whole block is the identity at
  initialisation (as in the public OLTR code, ``conv_mask``). Like that code, the dot products are not scaled
  by ``1/sqrt(d)``.
* **MA** -- conditional spatial attention: one logit per position, ``softmax`` over the ``H*W`` positions, shape
  ``(B, 1, H, W)``, broadcast over channels.

Spatial attention, size-agnostic
--------------------------------
The public code computes the logits with ``nn.Linear(7*7*C, 7*7)`` on the flattened map, which ties the
layer to 7x7 maps (ResNet at 224 px) and costs ``C * 49 * 49`` weights. That linear layer computes
``logit_p = sum_{q,c} W[p, (c, q)] f[c, q] + b_p``. Restricting it to ``W[p, (c, q)] = w_c * delta(p, q)`` and
``b_p = b`` gives a **1x1 convolution C -> 1**: each position's logit is a learned linear function of that
position's own feature vector, with the same weights at every position. Its parameter count no longer
depends on ``H*W``, so the same layer runs on 7x7, 4x4 (CIFAR-size inputs), 2x3 or any other map, and on
maps of different sizes at train and test time. What the restriction drops, and how to get it back:

* cross-position terms (the logit at ``p`` seeing features at ``q != p``): ``hidden_channels`` adds a hidden
  1x1 layer that also sees the global average of the map (``relu(W1 f_p + W2 mean(f))``), so the attention is
  conditioned on the whole image, not only on the local feature;
* the per-position bias ``b_p`` (a fixed prior over positions, e.g. "objects sit in the centre"):
  ``spatial_size=S`` (or ``(H, W)``) adds a learned ``S x S`` logit bias, zero-initialised, resized
  bilinearly to the input's ``H x W`` when the sizes differ -- so even then no size is hard-coded.

``spatial="fc"`` is the public code's layer itself: ``nn.Linear(C * H * W, H * W)`` on the map flattened
channel-major (``x.view(B, -1)``, as there), so each position's logit can depend on the features at every
position, with a bias per position. Its size is fixed when the module is built (``map_size``: the backbone's
map at the configured image size, 7x7 for a ResNet at 224 px) and an input of another size is refused with a
ConfigError. ``spatial="conv"`` (the default) is the 1x1 conv above.

The 1x1 convs are ``nn.Conv2d`` modules (the usual parameter shapes and init) applied as matrix products on
the flattened map. The last 1x1 conv of MA has no bias: a bias shared by all positions cancels in the
softmax (it would only ever get round-off gradient).

The maps of the last forward are kept (detached) in ``last_spatial_attention`` ``(B, 1, H, W)`` and
``last_self_attention`` ``(B, H*W, H*W)`` while ``record_maps`` is true; :meth:`forward_with_maps` returns them
without touching the module's state.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from openlt.errors import ConfigError

__all__ = ["SPATIAL_MODES", "ModulatedAttention"]

SPATIAL_MODES = ("conv", "fc")  # model.attention_spatial


def _pointwise(conv: nn.Conv2d, flat: Tensor) -> Tensor:
    """A 1x1 ``conv`` applied to a flattened ``(B, C_in, N)`` map as a matrix product: ``(B, C_out, N)``.

    Same result as ``conv`` on the ``(B, C_in, H, W)`` map. The attention works on flattened maps throughout
    because torch.compile's inductor (torch 2.14, CPU) fails on a 1x1 convolution of an intermediate tensor
    once H and W are symbolic (recompiled for a new map size).
    """
    out = torch.matmul(conv.weight.flatten(1), flat)
    return out if conv.bias is None else out + conv.bias[:, None]


def _positive_int(name: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    return value


def _size(name: str, value: object) -> tuple[int, int]:
    """An int S or a pair (H, W) of positive ints as (H, W); ConfigError naming ``name`` otherwise."""
    size = (value, value) if isinstance(value, int) else tuple(value) if isinstance(value, (tuple, list)) else ()
    if len(size) != 2:
        raise ConfigError(f"{name} must be an int or (H, W), got {value!r}")
    return _positive_int(name, size[0]), _positive_int(name, size[1])


class ModulatedAttention(nn.Module):
    """``forward(f) = f + MA(f) * SA(f)`` on a ``(B, C, H, W)`` map; output has the input's shape.

    Args:
        channels: ``C``, the map's channel count.
        spatial_size: optional ``S`` or ``(H, W)``: adds a learned per-position logit bias of that size (zero at
            init; bilinearly resized to other input sizes). ``None``: no positional bias, fully size-agnostic.
        reduction: the non-local block's channel reduction (``C // reduction`` inner channels; 2 as in the paper).
        hidden_channels: optional hidden width of the spatial-attention head (``None``: a single 1x1 conv).
        record_maps: keep the last forward's attention maps (detached) as attributes for inspection.
        spatial: ``"conv"`` (the size-agnostic 1x1 conv, default) or ``"fc"`` (the public OLTR code's
            ``Linear(C * H * W, H * W)`` over the flattened map; ``model.attention_spatial``).
        map_size: ``S`` or ``(H, W)``, the feature map size the ``fc`` layer is built for (required with ``fc``,
            ignored with ``conv``); a map of another size at forward raises ConfigError.
    """

    def __init__(
        self,
        channels: int,
        spatial_size: int | tuple[int, int] | None = None,
        *,
        reduction: int = 2,
        hidden_channels: int | None = None,
        record_maps: bool = True,
        spatial: str = "conv",
        map_size: int | tuple[int, int] | None = None,
    ) -> None:
        super().__init__()
        self.channels = _positive_int("channels", channels)
        reduction = _positive_int("reduction", reduction)
        self.inter_channels = max(1, channels // reduction)
        self.record_maps = record_maps

        # self-attention (non-local, embedded Gaussian)
        self.theta = nn.Conv2d(channels, self.inter_channels, kernel_size=1)
        self.phi = nn.Conv2d(channels, self.inter_channels, kernel_size=1)
        self.g = nn.Conv2d(channels, self.inter_channels, kernel_size=1)
        self.out = nn.Conv2d(self.inter_channels, channels, kernel_size=1, bias=False)

        # conditional spatial attention
        self._build_spatial(spatial, hidden_channels, map_size)
        if spatial_size is None:
            self.spatial_size: tuple[int, int] | None = None
            self.position_bias: nn.Parameter | None = None
        else:
            if self.fc_spatial is not None:
                raise ConfigError("spatial_size (a position bias) applies to spatial='conv'; the fc layer has its own")
            self.spatial_size = _size("spatial_size", spatial_size)
            self.position_bias = nn.Parameter(torch.zeros(1, 1, *self.spatial_size))

        self.last_spatial_attention: Tensor | None = None
        self.last_self_attention: Tensor | None = None
        self.reset_parameters()

    def _build_spatial(self, mode: str, hidden_channels: int | None, map_size: int | tuple[int, int] | None) -> None:
        """The spatial-attention head: ``spatial`` (1x1 conv, after ``spatial_hidden`` / ``spatial_context`` with
        ``hidden_channels``) for ``mode="conv"``, or ``fc_spatial`` = Linear(C * H * W, H * W) for ``mode="fc"``
        with ``map_size`` = (H, W). ConfigError for an unknown mode, or fc without a map size or with hidden
        channels."""
        if mode not in SPATIAL_MODES:
            raise ConfigError(f"model.attention_spatial must be one of {', '.join(SPATIAL_MODES)}, got {mode!r}")
        self.spatial_mode = mode
        self.hidden_channels = None if hidden_channels is None else _positive_int("hidden_channels", hidden_channels)
        self.spatial: nn.Conv2d | None = None
        self.spatial_context: nn.Linear | None = None
        self.spatial_hidden: nn.Conv2d | None = None
        self.fc_spatial: nn.Linear | None = None
        self.map_size: tuple[int, int] | None = None
        if mode == "fc":
            if map_size is None:
                raise ConfigError("model.attention_spatial=fc needs the feature map's size (map_size), fixed at build")
            if self.hidden_channels is not None:
                raise ConfigError("hidden_channels applies to spatial='conv' only")
            self.map_size = _size("map_size", map_size)
            positions = self.map_size[0] * self.map_size[1]
            self.fc_spatial = nn.Linear(self.channels * positions, positions)
        elif self.hidden_channels is None:
            self.spatial = nn.Conv2d(self.channels, 1, kernel_size=1, bias=False)
        else:
            self.spatial_hidden = nn.Conv2d(self.channels, self.hidden_channels, kernel_size=1)
            self.spatial_context = nn.Linear(self.channels, self.hidden_channels, bias=False)
            self.spatial = nn.Conv2d(self.hidden_channels, 1, kernel_size=1, bias=False)

    def reset_parameters(self) -> None:
        """As the public code: He-normal theta/phi/g with zero bias, and a zero output conv (identity block)."""
        for conv in (self.theta, self.phi, self.g):
            nn.init.kaiming_normal_(conv.weight)
            nn.init.zeros_(conv.bias)
        nn.init.zeros_(self.out.weight)
        if self.position_bias is not None:
            nn.init.zeros_(self.position_bias)

    def is_identity(self) -> bool:
        """Whether the block is the identity map, as :meth:`reset_parameters` leaves it: a zero output conv makes
        ``SA(f) == 0``, so ``f + MA(f) * SA(f) == f`` exactly."""
        return not bool(self.out.weight.any())

    # -- the two branches -------------------------------------------------------------------------------------
    def self_attention(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``SA(x)`` ``(B, C, H, W)`` and the attention matrix ``(B, HW, HW)`` (rows: queries, sum to 1)."""
        b, _, h, w = x.shape
        flat = x.flatten(2)  # (B, C, HW)
        theta, phi, g = (_pointwise(conv, flat) for conv in (self.theta, self.phi, self.g))  # (B, C', HW) each
        attn = torch.softmax(torch.matmul(theta.transpose(1, 2), phi).float(), dim=-1).to(g.dtype)  # (B, HW, HW)
        context = torch.matmul(g, attn.transpose(1, 2))  # context[c, p] = sum_q g[c, q] attn[p, q]
        return _pointwise(self.out, context).reshape(b, self.channels, h, w), attn

    def spatial_attention(self, x: Tensor) -> Tensor:
        """``MA(x)``: ``(B, 1, H, W)``, non-negative, summing to 1 over the ``H*W`` positions of each sample."""
        b, _, h, w = x.shape
        if self.fc_spatial is not None:
            return self._fc_spatial_attention(x)
        flat = x.flatten(2)  # (B, C, HW)
        assert self.spatial is not None
        if self.spatial_hidden is None:
            logits = _pointwise(self.spatial, flat)
        else:
            assert self.spatial_context is not None
            context = self.spatial_context(flat.mean(dim=2))[:, :, None]
            logits = _pointwise(self.spatial, F.relu(_pointwise(self.spatial_hidden, flat) + context))
        logits = logits.reshape(b, h * w)
        if self.position_bias is not None:
            bias = self.position_bias
            if bias.shape[-2:] != (h, w):
                bias = F.interpolate(bias, size=(h, w), mode="bilinear", align_corners=False)
            logits = logits + bias.reshape(1, h * w).to(logits.dtype)
        probs = torch.softmax(logits.float(), dim=1)
        return probs.reshape(b, 1, h, w).to(x.dtype)

    def _fc_spatial_attention(self, x: Tensor) -> Tensor:
        """``MA(x)`` of ``spatial="fc"``: softmax over positions of ``fc_spatial`` on the map flattened channel-major
        (index ``c * H * W + p``, the public code's ``x.view(-1, 7 * 7 * C)``): (B, C, H, W) -> (B, 1, H, W).

        Raises ConfigError when (H, W) is not the ``map_size`` the layer was built for.
        """
        b, _, h, w = x.shape
        if (h, w) != self.map_size:
            mh, mw = self.map_size
            raise ConfigError(f"model.attention_spatial=fc was built for {mh}x{mw} feature maps (from data.image_size), "
                              f"but got {h}x{w} maps: feed images of the configured size, or use "
                              "model.attention_spatial=conv, which takes any size")
        logits = self.fc_spatial(x.reshape(b, -1))  # reshape: channels_last inputs keep the logical order
        probs = torch.softmax(logits.float(), dim=1)
        return probs.reshape(b, 1, h, w).to(x.dtype)

    # -- forward ----------------------------------------------------------------------------------------------
    def forward_with_maps(self, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """``(f_att, maps)`` with maps ``spatial`` (B,1,H,W), ``self`` (B,HW,HW) and ``context`` = SA(f)."""
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise ValueError(
                f"ModulatedAttention({self.channels}) expects (B, {self.channels}, H, W), got {tuple(x.shape)}"
            )
        sa, attn = self.self_attention(x)
        ma = self.spatial_attention(x)
        return x + ma * sa, {"spatial": ma, "self": attn, "context": sa}

    def forward(self, x: Tensor) -> Tensor:
        """``f + MA(f) * SA(f)``: (B, C, H, W) -> (B, C, H, W).

        With ``record_maps`` the maps of this call are kept, detached, in ``last_spatial_attention`` (B, 1, H, W) and
        ``last_self_attention`` (B, H*W, H*W). Raises ValueError for an input that is not (B, C, H, W).
        """
        out, maps = self.forward_with_maps(x)
        if self.record_maps:
            self.last_spatial_attention = maps["spatial"].detach()
            self.last_self_attention = maps["self"].detach()
        return out

    def extra_repr(self) -> str:
        """The channel counts and options shown by ``repr(module)``."""
        return (
            f"channels={self.channels}, inter_channels={self.inter_channels}, "
            f"hidden_channels={self.hidden_channels}, spatial_size={self.spatial_size}, spatial={self.spatial_mode}"
            + ("" if self.map_size is None else f", map_size={self.map_size}")
        )
