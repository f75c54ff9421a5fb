"""OLTR's discriminative-centroid loss (Liu et al., CVPR 2019, L_LM), as the public OLTR code computes it.

For direct features f (B,d), labels y and centroids c (K,d):

    attract = sum_i ||f_i - c_{y_i}||^2 / 2 / B
    repel   = clamp(margin_repel - sum_i sum_{j != y_i} ||f_i - c_j||^2 / (B * K), 0, 1e6)
    centroid_loss = attract + repel_weight * repel          (margin_repel = 10, repel_weight = 0.01)

and the training loss registered as `oltr` (alias `centroid`) is CE(logits) + weight * centroid_loss with
weight = 0.01, the values of the public code (loss/DiscCentroidsLoss.py and its stage-2 configs).

Gradient of the attract term (the public code's custom autograd Function, reproduced by `_AttractFunction`):

- features get the plain gradient, (f_i - c_{y_i}) / B;
- centroid c_k gets sum_{i: y_i = k} (c_k - f_i) / (1 + n_k) / B, where n_k is the count of class k in the
  batch: the plain gradient divided by (1 + n_k), so a class that fills the batch does not drag its centroid
  further than a rare one (as in center loss). The repel term uses plain autograd for both.

One more detail of the public code: its backward returns that centroid gradient *without* multiplying it by
the incoming gradient, so the attract pull on the centroids is not scaled by the 0.01 loss weight (it is
"weight-free"; the centroids have their own optimizer and learning rate there). `OLTRLoss` reproduces this by
default (`public_code_centroid_grad=True`) by scaling that gradient by 1 / weight inside the Function, rather
than by ignoring the incoming gradient, so loss scaling (AMP) and gradient accumulation still act on it.
Set it to False for the textbook gradient (the attract centroid gradient scaled by `weight` like the rest).

The loss owns no parameters: the centroids live in the model head and arrive as `outputs["centroids"]`.

Data-parallel training (torchrun): n_k is counted over the global batch (the per-process counts are summed over
the processes in the forward pass), so that after DDP averages the gradients the centroids move exactly as
with one process on the whole batch. The repel term's clamp acts on each process's share of the batch.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
import torch.distributed as dist
from torch import nn
from torch.autograd.function import FunctionCtx, once_differentiable

from openlt.errors import ConfigError
from openlt.losses._registry import LOSSES

MISSING_CENTROIDS = "the 'oltr' loss needs a model head with centroids (model.classifier=meta_embedding)"


def _loss_dtype(a: torch.Tensor, b: torch.Tensor) -> torch.dtype:
    """The dtype the loss is computed in: the promoted dtype of `a` and `b`, at least float32."""
    dtype = torch.promote_types(a.dtype, b.dtype)
    return dtype if dtype in (torch.float32, torch.float64) else torch.float32


def batch_class_counts(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Images per class in the batch: ``labels`` (B,) int -> (num_classes,) int64 counts, on the labels' device;
    under data-parallel training, in the global batch (summed over processes)."""
    counts = torch.bincount(labels.long(), minlength=num_classes)
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(counts)  # labels live on the training device, which is the backend's (gloo: CPU, NCCL: CUDA)
    return counts


class _AttractFunction(torch.autograd.Function):
    """sum ||f_i - c_{y_i}||^2 / 2 / B, with the centroid gradient divided by (1 + class count in the batch)
    and multiplied by `centroid_grad_scale`; the feature gradient is the plain one. `counts` (per class, default:
    this batch's) may be the global batch's under data-parallel training."""

    @staticmethod
    def forward(ctx: FunctionCtx, features: torch.Tensor, labels: torch.Tensor, centroids: torch.Tensor,
                centroid_grad_scale: float = 1.0, counts: torch.Tensor | None = None) -> torch.Tensor:
        """The attract term: features (B, d) and centroids (K, d) float, labels (B,) int -> a 0-d tensor in at
        least float32 (the promoted dtype of features and centroids). ``counts`` (K,): images per class (default:
        this batch's).
        """
        labels = labels.long()
        dtype = _loss_dtype(features, centroids)
        diff = features.to(dtype) - centroids.to(dtype).index_select(0, labels)      # (B,d)
        batch = max(features.shape[0], 1)
        if counts is None:
            counts = torch.bincount(labels, minlength=centroids.shape[0])
        ctx.save_for_backward(diff, labels, counts)
        ctx.batch, ctx.num_classes, ctx.scale = batch, centroids.shape[0], float(centroid_grad_scale)
        ctx.f_dtype, ctx.c_dtype = features.dtype, centroids.dtype
        return diff.pow(2).sum() / 2.0 / batch

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor | None, None, torch.Tensor | None, None, None]:
        """Gradients for (features, labels, centroids, centroid_grad_scale, counts): the plain one for the
        features, the count-divided and ``centroid_grad_scale``-scaled one for the centroids, None for the rest.
        """
        diff, labels, counts = ctx.saved_tensors
        grad_f = grad_c = None
        if ctx.needs_input_grad[0]:
            grad_f = (grad_output * diff / ctx.batch).to(ctx.f_dtype)
        if ctx.needs_input_grad[2]:
            counts = 1.0 + counts.to(diff.dtype)
            summed = diff.new_zeros(ctx.num_classes, diff.shape[1]).index_add_(0, labels, diff)
            grad_c = (-grad_output * ctx.scale * summed / counts.unsqueeze(1) / ctx.batch).to(ctx.c_dtype)
        return grad_f, None, grad_c, None, None


def attract_loss(features: torch.Tensor, targets: torch.Tensor, centroids: torch.Tensor,
                 centroid_grad_scale: float = 1.0) -> torch.Tensor:
    """The attract term with the public code's per-class division of the centroid gradient (by the class counts
    of the global batch under data-parallel training): features (B, d), targets (B,) int, centroids (K, d) ->
    a 0-d tensor, float32 at least."""
    counts = batch_class_counts(targets, centroids.shape[0]) if centroids.requires_grad else None
    return _AttractFunction.apply(features, targets, centroids, centroid_grad_scale, counts)


def repel_loss(features: torch.Tensor, targets: torch.Tensor, centroids: torch.Tensor,
               margin: float = 10.0) -> torch.Tensor:
    """clamp(margin - sum_i sum_{j != y_i} ||f_i - c_j||^2 / (B K), 0, 1e6), plain autograd."""
    dtype = _loss_dtype(features, centroids)
    f, c = features.to(dtype), centroids.to(dtype)
    batch, k = f.shape[0], c.shape[0]
    with torch.autocast(device_type=f.device.type, enabled=False):   # the expansion needs full precision
        sq = (f * f).sum(1, keepdim=True) + (c * c).sum(1).unsqueeze(0) - 2.0 * (f @ c.t())   # (B,K)
    own = F.one_hot(targets.long(), k).bool()
    neg_sum = sq.clamp_min(0.0).masked_fill(own, 0.0).sum()
    return torch.clamp(margin - neg_sum / (batch * k), 0.0, 1e6)


class DiscriminativeCentroidLoss(nn.Module):
    """attract + repel_weight * repel on (features, targets, centroids); owns no parameters."""

    def __init__(self, margin_repel: float = 10.0, repel_weight: float = 0.01) -> None:
        super().__init__()
        self.margin_repel = float(margin_repel)
        self.repel_weight = float(repel_weight)

    def terms(self, features: torch.Tensor, targets: torch.Tensor, centroids: torch.Tensor,
              centroid_grad_scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
        """(attract, repel), two 0-d tensors, before repel_weight: features (B, d) (flattened from (B, ...)),
        targets (B,) int, centroids (K, d). ConfigError for centroids that are not (K, d)."""
        features = features.flatten(1)
        if centroids.dim() != 2 or centroids.shape[1] != features.shape[1]:
            raise ConfigError(f"centroid loss: centroids of shape {tuple(centroids.shape)} do not match "
                              f"features of dimension {features.shape[1]}")
        return (attract_loss(features, targets, centroids, centroid_grad_scale),
                repel_loss(features, targets, centroids, self.margin_repel))

    def forward(self, features: torch.Tensor, targets: torch.Tensor, centroids: torch.Tensor,
                centroid_grad_scale: float = 1.0) -> torch.Tensor:
        """attract + repel_weight * repel: features (B, d) (flattened from (B, ...)), targets (B,) int,
        centroids (K, d) -> a 0-d float tensor (at least float32). ``centroid_grad_scale`` scales the attract
        term's centroid gradient (see the module docstring). Raises ConfigError for centroids that are not (K, d).
        """
        attract, repel = self.terms(features, targets, centroids, centroid_grad_scale)
        return attract + self.repel_weight * repel

    def extra_repr(self) -> str:
        """The margin and weight shown by ``repr(module)``."""
        return f"margin_repel={self.margin_repel}, repel_weight={self.repel_weight}"


class OLTRLoss(nn.Module):
    """CE(outputs["logits"]) + weight * DiscriminativeCentroidLoss(direct feature, centroids).

    Features come from `outputs["direct"]` (falling back to `outputs["feature"]`), centroids from
    `outputs["centroids"]`; a model without centroids is a ConfigError.
    """

    def __init__(self, weight: float = 0.01, margin_repel: float = 10.0, repel_weight: float = 0.01,
                 public_code_centroid_grad: bool = True) -> None:
        super().__init__()
        if float(weight) < 0:
            raise ConfigError(f"oltr loss: weight must be >= 0, got {weight}")
        self.weight = float(weight)
        self.public_code_centroid_grad = bool(public_code_centroid_grad)
        self.centroid_loss = DiscriminativeCentroidLoss(margin_repel, repel_weight)

    @property
    def uses_centroids(self) -> bool:
        """Whether the loss gives the model's centroids a gradient (data-parallel training needs to know)."""
        return self.weight != 0

    def forward(self, outputs: dict[str, torch.Tensor], targets: torch.Tensor) -> torch.Tensor:
        """CE + weight * centroid loss on the model's output dict and targets (B,) int64 -> a 0-d float tensor.

        Reads ``outputs["logits"]`` (B, K), ``outputs["direct"]`` (or ``"feature"``) (B, d) and
        ``outputs["centroids"]`` (K, d); raises ConfigError when the model gives no centroids.
        """
        centroids = outputs.get("centroids")
        if centroids is None:
            raise ConfigError(MISSING_CENTROIDS)
        features = outputs["direct"] if "direct" in outputs else outputs["feature"]
        ce = F.cross_entropy(outputs["logits"], targets)
        if self.weight == 0:
            return ce
        scale = 1.0 / self.weight if self.public_code_centroid_grad else 1.0
        return ce + self.weight * self.centroid_loss(features, targets, centroids, centroid_grad_scale=scale)

    def extra_repr(self) -> str:
        """The loss weight and the centroid-gradient rule shown by ``repr(module)``."""
        return f"weight={self.weight}, public_code_centroid_grad={self.public_code_centroid_grad}"


@LOSSES.register("centroid")
@LOSSES.register("oltr")
def oltr(train_counts: list[int] | None = None, feature_dim: int | None = None, weight: float = 0.01,
         margin_repel: float = 10.0, repel_weight: float = 0.01, public_code_centroid_grad: bool = True) -> nn.Module:
    """`oltr` / `centroid`: CE + weight * discriminative-centroid loss (needs a head that returns centroids)."""
    return OLTRLoss(weight=weight, margin_repel=margin_repel, repel_weight=repel_weight,
                    public_code_centroid_grad=public_code_centroid_grad)


__all__ = ["DiscriminativeCentroidLoss", "MISSING_CENTROIDS", "OLTRLoss", "attract_loss", "batch_class_counts",
           "repel_loss"]
