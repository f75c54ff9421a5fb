"""Focal loss (Lin et al., ICCV 2017, "Focal Loss for Dense Object Detection"), the `focal loss` row of the
OLTR table, in its softmax (multi-class) form:

    FL = mean_i  -alpha_{y_i} * (1 - p_{i,y_i})^gamma * log p_{i,y_i}

`gamma = 0` and no `alpha` is exactly softmax cross-entropy. `alpha`, when given, is one weight per class (a list
of K numbers >= 0, not all 0; a single number, the binary alpha of torchvision's sigmoid_focal_loss, is refused); the
mean is the plain mean over the batch (not divided by the sum of the weights), as in the paper's form.
Defaults: gamma = 2 (the paper's best value); no alpha.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from openlt.errors import ConfigError
from openlt.losses._registry import CLASS_WEIGHT_ARGS, LOSSES

# (1 - p_t) is clamped to this before the power, so that 0 < gamma < 1 keeps a finite gradient at p_t = 1.
_TINY = 1e-12


def _upcast(x: torch.Tensor) -> torch.Tensor:
    """Half and bfloat16 tensors to float32 (losses are computed at least in float32); others unchanged."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


class FocalLoss(nn.Module):
    """Softmax focal loss on `outputs["logits"]`; owns no parameters (the class weights are a plain buffer)."""

    alpha: torch.Tensor | None

    def __init__(self, gamma: float = 2.0, alpha: Sequence[float] | torch.Tensor | None = None) -> None:
        super().__init__()
        gamma = float(gamma)
        if gamma < 0:
            raise ConfigError(f"focal loss: gamma must be >= 0, got {gamma}")
        self.gamma = gamma
        if alpha is None:
            self.register_buffer("alpha", None, persistent=False)
        else:
            a = torch.as_tensor(alpha, dtype=torch.float32)
            if a.dim() != 1 or a.numel() == 0 or bool((a < 0).any()) or not bool(torch.isfinite(a).all()):
                raise ConfigError("focal loss: alpha must be a non-empty list of non-negative per-class weights "
                                  "(one per class, not a single number)")
            if not bool((a > 0).any()):
                raise ConfigError("focal loss: every alpha weight is 0, so the loss would be 0 on every image; "
                                  "give at least one class a weight > 0")
            self.register_buffer("alpha", a, persistent=False)

    def forward(self, outputs: dict[str, torch.Tensor], targets: torch.Tensor) -> torch.Tensor:
        """Mean focal loss of ``outputs["logits"]`` (B, K) against ``targets`` (B,) int -> a 0-d tensor, float32 at
        least (half-precision logits are upcast). Raises ConfigError when ``alpha`` does not have K weights.
        """
        logits = _upcast(outputs["logits"])
        log_p_t = F.log_softmax(logits, dim=1).gather(1, targets.long().unsqueeze(1)).squeeze(1)
        loss = -log_p_t
        if self.gamma != 0:
            # 1 - p_t computed from log p_t without cancellation for p_t near 1.
            one_minus_p = (-torch.expm1(log_p_t)).clamp_min(_TINY)
            loss = one_minus_p.pow(self.gamma) * loss
        if self.alpha is not None:
            if self.alpha.numel() != logits.shape[1]:
                raise ConfigError(f"focal loss: alpha has {self.alpha.numel()} weights but the model has "
                                  f"{logits.shape[1]} classes")
            loss = self.alpha.to(loss.device)[targets.long()] * loss
        return loss.mean()

    def extra_repr(self) -> str:
        """gamma and the shape of alpha, shown by ``repr(module)``."""
        return f"gamma={self.gamma}, alpha={'None' if self.alpha is None else list(self.alpha.shape)}"


CLASS_WEIGHT_ARGS["focal"] = ("alpha",)


@LOSSES.register("focal")
def focal(train_counts: list[int] | None = None, feature_dim: int | None = None, **kwargs: Any) -> nn.Module:
    """`focal`: FocalLoss(gamma=2.0, alpha=None) on the logits."""
    return FocalLoss(**kwargs)


__all__ = ["FocalLoss"]
