"""Re-balancing losses that use the training class counts n_c (all need `train_counts`; every count must be > 0).

* ``class_balanced`` (Cui et al., CVPR 2019, "Class-Balanced Loss Based on Effective Number of Samples"):
  per-class weights w_c = (1 - beta) / (1 - beta^{n_c}), normalised to sum to C, on softmax CE
  (``base="ce"``) or softmax focal loss (``base="focal"``, ``gamma``). The weighted per-sample losses are
  averaged over the batch (a plain mean, as the authors' code divides by the number of samples and as
  :class:`openlt.losses.focal.FocalLoss` does with ``alpha``). Defaults beta = 0.9999, base "ce", gamma 2.
* ``ldam`` (Cao et al., NeurIPS 2019, "Learning Imbalanced Datasets with Label-Distribution-Aware Margin
  Loss"): margins Delta_c proportional to n_c^{-1/4}, rescaled so the largest is ``max_m`` (0.5); the true
  class's logit minus Delta_y, all times ``s`` (30), then CE. Deferred re-weighting (DRW): from epoch
  ``drw_epoch`` (0-based, as the trainer's; default 160 of the 200-epoch CIFAR recipe; None disables) the CE
  is weighted by the class-balanced weights with ``drw_beta`` (0.9999); before it, unweighted (beta = 0). The
  weighted CE is ``F.cross_entropy(weight=...)``, i.e. normalised by the sum of the batch's weights, as in
  the authors' code. The trainer calls ``set_epoch(epoch)`` at the start of every epoch.
  NOTE: s = 30 assumes cosine logits in [-1, 1] (the authors' ResNet-32 ends in a normalised linear layer);
  on an ordinary linear head pass a small ``s`` (e.g. 1).
* ``balanced_softmax`` (Ren et al., NeurIPS 2020, "Balanced Meta-Softmax"): CE on logits + log n_c.
* ``logit_adjusted`` (Menon et al., ICLR 2021, "Long-Tail Learning via Logit Adjustment"): CE on
  logits + tau * log pi_c, pi_c = n_c / N (tau = 1). For tau = 1 it equals balanced softmax (the two offsets
  differ by the constant log N, which the softmax ignores).
* :func:`logit_adjust`: the post-hoc form for a model trained with plain CE, logits - tau * log pi_c.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from openlt.errors import ConfigError
from openlt.losses._registry import LOSSES

__all__ = [
    "BalancedSoftmaxLoss",
    "ClassBalancedLoss",
    "LDAMLoss",
    "LogitAdjustedLoss",
    "effective_number_weights",
    "ldam_margins",
    "log_priors",
    "logit_adjust",
]

Counts = Union[Sequence[int], Tensor]


def _counts(train_counts: Counts | None, what: str) -> Tensor:
    """Training counts as a float64 vector, or a ConfigError saying why they cannot be used."""
    if train_counts is None:
        raise ConfigError(f"{what} needs the training class counts (train_counts), got None")
    n = torch.as_tensor(train_counts).detach().cpu().to(torch.float64)
    if n.dim() != 1 or n.numel() == 0:
        raise ConfigError(f"{what}: train_counts must be a non-empty list of per-class counts, got shape "
                          f"{tuple(n.shape)}")
    if not bool(torch.isfinite(n).all()) or bool((n != n.round()).any()):
        raise ConfigError(f"{what}: train_counts must be whole numbers")
    empty = torch.nonzero(n <= 0).flatten().tolist()
    if empty:
        shown = ", ".join(map(str, empty[:10])) + (" ..." if len(empty) > 10 else "")
        raise ConfigError(f"{what} needs every class to have at least one training image; "
                          f"class(es) with none: {shown}")
    return n


def _upcast(x: Tensor) -> Tensor:
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def _check_classes(what: str, per_class: Tensor, logits: Tensor) -> None:
    if per_class.numel() != logits.shape[1]:
        raise ConfigError(f"{what}: train_counts has {per_class.numel()} classes but the model has "
                          f"{logits.shape[1]}")


def effective_number_weights(train_counts: Counts, beta: float = 0.9999) -> Tensor:
    """Cui et al.'s class-balanced weights (1 - beta) / (1 - beta^{n_c}), normalised to sum to C (float64).

    beta = 0 gives all ones; beta -> 1 tends to inverse class frequency.
    """
    beta = float(beta)
    if not 0.0 <= beta < 1.0:
        raise ConfigError(f"beta must be in [0, 1), got {beta}")
    n = _counts(train_counts, "class-balanced weights")
    w = (1.0 - beta) / (-torch.expm1(n * math.log(beta))) if beta > 0 else torch.ones_like(n)
    return w / w.sum() * n.numel()


def ldam_margins(train_counts: Counts, max_m: float = 0.5) -> Tensor:
    """Cao et al.'s margins Delta_c = C / n_c^{1/4} with C such that max_c Delta_c = max_m: a (K,) float64
    tensor, in logit units (before LDAM's scale s). ConfigError for a bad ``max_m`` or count."""
    max_m = float(max_m)
    if not math.isfinite(max_m) or max_m < 0:
        raise ConfigError(f"max_m must be a finite number >= 0, got {max_m}")
    n = _counts(train_counts, "LDAM margins")
    m = n.pow(-0.25)
    return m * (max_m / m.max())


def log_priors(train_counts: Counts) -> Tensor:
    """log pi_c = log(n_c / sum n) of the K training counts: a (K,) float64 tensor (ConfigError for a count
    <= 0 or not whole)."""
    n = _counts(train_counts, "log priors")
    return torch.log(n) - math.log(float(n.sum()))


def logit_adjust(logits: Tensor, train_counts: Counts, tau: float = 1.0) -> Tensor:
    """Post-hoc logit adjustment (Menon et al., ICLR 2021, eq. 9): logits - tau * log pi_c.

    ``logits`` (..., K) float -> the same shape, dtype and device; ConfigError for a non-finite tau, bad counts,
    or counts for another number of classes."""
    tau = float(tau)
    if not math.isfinite(tau):
        raise ConfigError(f"tau must be finite, got {tau}")
    lp = log_priors(train_counts)
    if lp.numel() != logits.shape[-1]:
        raise ConfigError(f"logit_adjust: train_counts has {lp.numel()} classes but the logits have "
                          f"{logits.shape[-1]}")
    return logits - (tau * lp).to(device=logits.device, dtype=logits.dtype)


class ClassBalancedLoss(nn.Module):
    """mean_i w_{y_i} * L_i, w the effective-number weights, L one of:

    * ``ce``: softmax cross-entropy;
    * ``focal``: softmax focal loss ``-(1 - p_y)^gamma log p_y`` (the LDAM-DRW code's re-weighted focal);
    * ``sigmoid_focal``: Cui et al.'s own CB-focal, one binary focal term per class on sigmoid outputs,
      ``-sum_c (1 - p_c^t)^gamma log p_c^t`` with ``p_c^t = sigmoid(z_c)`` for the target class and
      ``1 - sigmoid(z_c)`` for the others (their code divides the weighted sum by the batch size, as here).
    """

    weight: Tensor
    BASES = ("ce", "focal", "sigmoid_focal")

    def __init__(self, train_counts: Counts, beta: float = 0.9999, base: str = "ce", gamma: float = 2.0) -> None:
        super().__init__()
        if base not in self.BASES:
            raise ConfigError(f"class_balanced: base must be one of {', '.join(self.BASES)}, got {base!r}")
        gamma = float(gamma)
        if not math.isfinite(gamma) or gamma < 0:
            raise ConfigError(f"class_balanced: gamma must be >= 0, got {gamma}")
        self.beta, self.base, self.gamma = float(beta), base, gamma
        self.register_buffer("weight", effective_number_weights(train_counts, beta).float(), persistent=False)

    def forward(self, outputs: dict[str, Tensor], targets: Tensor) -> Tensor:
        """Class-balanced loss of ``outputs["logits"]`` (B, K) against ``targets`` (B,) int -> a 0-d tensor, float32
        at least (Cui et al. CVPR 2019). Raises ConfigError when the logits do not have one column per training class.
        """
        logits = _upcast(outputs["logits"])
        _check_classes("class_balanced", self.weight, logits)
        t = targets.long()
        if self.base == "sigmoid_focal":
            from torchvision.ops import sigmoid_focal_loss

            onehot = F.one_hot(t, logits.shape[1]).to(logits.dtype)
            loss = sigmoid_focal_loss(logits, onehot, alpha=-1, gamma=self.gamma, reduction="none").sum(dim=1)
        else:
            log_p_t = F.log_softmax(logits, dim=1).gather(1, t.unsqueeze(1)).squeeze(1)
            loss = -log_p_t
            if self.base == "focal" and self.gamma != 0:
                loss = (-torch.expm1(log_p_t)).clamp_min(1e-12).pow(self.gamma) * loss
        return (self.weight.to(loss)[t] * loss).mean()

    def extra_repr(self) -> str:
        """beta, the base loss and (for focal bases) gamma, shown by ``repr(module)``."""
        return f"beta={self.beta}, base={self.base!r}" + (f", gamma={self.gamma}" if self.base != "ce" else "")


class LDAMLoss(nn.Module):
    """LDAM with deferred re-weighting; ``set_epoch(epoch)`` switches the class weights on at ``drw_epoch``."""

    margins: Tensor
    drw_weight: Tensor

    def __init__(self, train_counts: Counts, max_m: float = 0.5, s: float = 30.0, drw_epoch: int | None = 160,
                 drw_beta: float = 0.9999) -> None:
        super().__init__()
        s = float(s)
        if not math.isfinite(s) or s <= 0:
            raise ConfigError(f"ldam: s must be a finite number > 0, got {s}")
        if drw_epoch is not None and (int(drw_epoch) != drw_epoch or drw_epoch < 0):
            raise ConfigError(f"ldam: drw_epoch must be a non-negative integer or None, got {drw_epoch!r}")
        self.max_m, self.s = float(max_m), s
        self.drw_epoch = None if drw_epoch is None else int(drw_epoch)
        self.drw_beta = float(drw_beta)
        self.register_buffer("margins", ldam_margins(train_counts, max_m).float(), persistent=False)
        self.register_buffer("drw_weight", effective_number_weights(train_counts, drw_beta).float(),
                             persistent=False)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Set the current epoch (0-based, the trainer's), which decides whether DRW re-weighting is on.

        Raises ValueError for a negative or non-integer epoch.
        """
        if int(epoch) != epoch or epoch < 0:
            raise ValueError(f"epoch must be a non-negative integer, got {epoch!r}")
        self.epoch = int(epoch)

    @property
    def reweighting(self) -> bool:
        """Whether the class-balanced weights are on in the current epoch."""
        return self.drw_epoch is not None and self.epoch >= self.drw_epoch

    def forward(self, outputs: dict[str, Tensor], targets: Tensor) -> Tensor:
        """LDAM loss of ``outputs["logits"]`` (B, K) (cosines in [-1, 1] for the default ``s``) against ``targets``
        (B,) int -> a 0-d tensor, float32 at least: CE of ``s * (logits - Delta_y at the true class)``, class-weighted
        from ``drw_epoch`` on (Cao et al. NeurIPS 2019). Raises ConfigError when the logits do not have K columns.
        """
        logits = _upcast(outputs["logits"])
        _check_classes("ldam", self.margins, logits)
        t = targets.long()
        margin = torch.zeros_like(logits).scatter_(1, t.unsqueeze(1), self.margins.to(logits)[t].unsqueeze(1))
        weight = self.drw_weight.to(logits) if self.reweighting else None
        return F.cross_entropy(self.s * (logits - margin), t, weight=weight)

    def extra_repr(self) -> str:
        """The margin, scale, DRW settings and current epoch, shown by ``repr(module)``."""
        return (f"max_m={self.max_m}, s={self.s}, drw_epoch={self.drw_epoch}, drw_beta={self.drw_beta}, "
                f"epoch={self.epoch}")


class LogitAdjustedLoss(nn.Module):
    """CE on logits + tau * log pi_c (Menon et al. 2021, eq. 10)."""

    offset: Tensor

    def __init__(self, train_counts: Counts, tau: float = 1.0) -> None:
        super().__init__()
        tau = float(tau)
        if not math.isfinite(tau):
            raise ConfigError(f"logit_adjusted: tau must be finite, got {tau}")
        self.tau = tau
        self.register_buffer("offset", (tau * log_priors(train_counts)).float(), persistent=False)

    def forward(self, outputs: dict[str, Tensor], targets: Tensor) -> Tensor:
        """CE of ``outputs["logits"] + offset`` ((B, K) + (K,)) against ``targets`` (B,) int -> a 0-d tensor,
        float32 at least. Raises ConfigError when the logits do not have one column per training class.
        """
        logits = _upcast(outputs["logits"])
        _check_classes(type(self).__name__, self.offset, logits)
        return F.cross_entropy(logits + self.offset.to(logits), targets.long())

    def extra_repr(self) -> str:
        """tau, shown by ``repr(module)``."""
        return f"tau={self.tau}"


class BalancedSoftmaxLoss(LogitAdjustedLoss):
    """CE on logits + log n_c (Ren et al. 2020, the authors' ``balanced_softmax_loss``)."""

    def __init__(self, train_counts: Counts) -> None:
        nn.Module.__init__(self)
        self.tau = 1.0
        self.register_buffer("offset", torch.log(_counts(train_counts, "balanced_softmax")).float(),
                             persistent=False)

    def extra_repr(self) -> str:
        """Nothing: the loss has no option."""
        return ""


@LOSSES.register("class_balanced")
def class_balanced(train_counts: Counts | None = None, feature_dim: int | None = None, **kwargs: Any) -> nn.Module:
    """`class_balanced`: ClassBalancedLoss(beta=0.9999, base="ce", gamma=2.0 (used when base="focal"))."""
    return ClassBalancedLoss(_counts(train_counts, "loss 'class_balanced'"), **kwargs)


@LOSSES.register("ldam")
def ldam(train_counts: Counts | None = None, feature_dim: int | None = None, **kwargs: Any) -> nn.Module:
    """`ldam`: LDAMLoss(max_m=0.5, s=30, drw_epoch=160, drw_beta=0.9999)."""
    return LDAMLoss(_counts(train_counts, "loss 'ldam'"), **kwargs)


@LOSSES.register("balanced_softmax")
def balanced_softmax(train_counts: Counts | None = None, feature_dim: int | None = None,
                     **kwargs: Any) -> nn.Module:
    """`balanced_softmax`: BalancedSoftmaxLoss (no options)."""
    return BalancedSoftmaxLoss(_counts(train_counts, "loss 'balanced_softmax'"), **kwargs)


@LOSSES.register("logit_adjusted")
def logit_adjusted(train_counts: Counts | None = None, feature_dim: int | None = None, **kwargs: Any) -> nn.Module:
    """`logit_adjusted`: LogitAdjustedLoss(tau=1.0)."""
    return LogitAdjustedLoss(_counts(train_counts, "loss 'logit_adjusted'"), **kwargs)
