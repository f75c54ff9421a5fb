"""Feature-space baselines of the OLTR table: range loss and lifted structured loss.

Each is trained as `CE(logits) + weight * metric(feature)` (registered as `range` and `lifted`), on
`outputs["feature"]`. Distances are Euclidean, `sqrt(max(||a||^2 + ||b||^2 - 2ab, 0) + eps)`: the `eps` inside
the square root keeps gradients finite where two features coincide (it adds at most sqrt(eps) = 1e-6 to a
distance).

Defaults and where they come from:

- range: k = 2 (Zhang et al. use the k = 2 largest ranges), alpha = beta = 1 and margin = 5.0 (the public OLTR
  code's RangeLoss, which produced the table's `range loss` row). The paper's own margin is tied to the scale
  of its unnormalised face features (a public Caffe port uses 2e4 on squared distances), so it does not carry
  over; margin is a parameter.
- lifted: margin = 1.0 (Oh Song et al., alpha = 1 in their notation; the public OLTR code uses 5.0).
- weight = 0.01 for both: the weight the public OLTR code gives every feature loss next to the softmax loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from openlt.errors import ConfigError
from openlt.losses._registry import LOSSES

DIST_EPS = 1e-12


def _upcast(x: torch.Tensor) -> torch.Tensor:
    """Half and bfloat16 tensors to float32 (losses are computed at least in float32); others unchanged."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def pairwise_distances(a: torch.Tensor, b: torch.Tensor | None = None, eps: float = DIST_EPS) -> torch.Tensor:
    """Euclidean distances between the rows of `a` (N,d) and `b` (M,d) -> (N,M), with a finite gradient at 0."""
    b = a if b is None else b
    with torch.autocast(device_type=a.device.type, enabled=False):   # the expansion needs full precision
        a, b = _upcast(a), _upcast(b)
        sq = (a * a).sum(1, keepdim=True) + (b * b).sum(1).unsqueeze(0) - 2.0 * (a @ b.t())
    return (sq.clamp_min(0.0) + eps).sqrt()


def _zero_with_grad(x: torch.Tensor) -> torch.Tensor:
    """A scalar 0 that is still connected to the graph of `x` (so `.backward()` works and gives zero grads)."""
    return x.sum() * 0.0


class RangeLoss(nn.Module):
    """Range loss (Zhang et al., ICCV 2017, "Range Loss for Deep Face Recognition with Long-Tailed Training Data").

    On a batch of features `x` (B,d) with labels `y`:

    - intra = sum over the classes present in the batch of the harmonic mean of the class's k largest pairwise
      distances, k' / sum_{j<=k'} 1/D_j with k' = min(k, number of pairs); a class with one sample adds 0.
    - inter = max(margin - D_center, 0), D_center the smallest distance between the batch's class centres
      (the mean feature of each class present in the batch); 0 when the batch holds fewer than two classes.
    - range = alpha * intra + beta * inter.

    The centres are the batch means, as in the paper (the public OLTR code's RangeLoss instead reads an
    uninitialised, unused parameter); the loss owns no parameters.
    """

    def __init__(self, k: int = 2, margin: float = 5.0, alpha: float = 1.0, beta: float = 1.0) -> None:
        super().__init__()
        if int(k) < 1:
            raise ConfigError(f"range loss: k must be >= 1, got {k}")
        self.k, self.margin, self.alpha, self.beta = int(k), float(margin), float(alpha), float(beta)

    def terms(self, features: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(intra, inter), two 0-d tensors, before alpha and beta: features (B, d) (flattened from (B, ...)),
        targets (B,) int."""
        x = _upcast(features).flatten(1)
        y = targets.long()
        classes, inverse, counts = torch.unique(y, return_inverse=True, return_counts=True)
        n_cls = classes.numel()

        # intra: per class, the k largest distances among its pairs i < j (vectorised over classes).
        if x.shape[0] >= 2 and bool((counts >= 2).any()):
            dist = pairwise_distances(x)
            i, j = torch.triu_indices(x.shape[0], x.shape[0], offset=1, device=x.device)
            same = inverse[i] == inverse[j]
            i, j = i[same], j[same]
            pair_d = dist[i, j]                                        # (P,)
            pair_cls = inverse[i]                                      # (P,)
            table = pair_d.new_full((n_cls, pair_d.numel()), float("-inf"))
            table[pair_cls, torch.arange(pair_d.numel(), device=x.device)] = pair_d
            top, _ = table.topk(min(self.k, pair_d.numel()), dim=1)   # (C, k')
            valid = torch.isfinite(top)
            inv = torch.where(valid, 1.0 / torch.where(valid, top, torch.ones_like(top)), torch.zeros_like(top))
            n_valid = valid.sum(1)
            has = n_valid > 0
            intra = (n_valid[has].to(x.dtype) / inv[has].sum(1)).sum()
        else:
            intra = _zero_with_grad(x)

        # inter: margin minus the smallest distance between class centres.
        if n_cls >= 2:
            centres = x.new_zeros(n_cls, x.shape[1]).index_add(0, inverse, x) / counts.unsqueeze(1).to(x.dtype)
            cd = pairwise_distances(centres)
            ci, cj = torch.triu_indices(n_cls, n_cls, offset=1, device=x.device)
            d_center = cd[ci, cj].min()
            inter = F.relu(self.margin - d_center)
        else:
            inter = _zero_with_grad(x)
        return intra, inter

    def forward(self, features: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """alpha * intra + beta * inter: features (B, d) (flattened from (B, ...)), targets (B,) int -> a 0-d
        tensor, float32 at least.
        """
        intra, inter = self.terms(features, targets)
        return self.alpha * intra + self.beta * inter

    def extra_repr(self) -> str:
        """k, margin, alpha and beta, shown by ``repr(module)``."""
        return f"k={self.k}, margin={self.margin}, alpha={self.alpha}, beta={self.beta}"


class LiftedStructureLoss(nn.Module):
    """Lifted structured embedding loss (Oh Song et al., CVPR 2016, "Deep Metric Learning via Lifted Structured
    Feature Embedding"), over all positive pairs of the batch:

        J_ij = log( sum_{k in N(i)} exp(m - D_ik) + sum_{l in N(j)} exp(m - D_jl) ) + D_ij
        loss = 1 / (2|P|) * sum_{(i,j) in P} max(J_ij, 0)^2

    P = unordered pairs i < j with the same label, N(i) = samples with a label different from i's. Computed with
    log-sum-exp, so large margins or distances do not overflow. A batch with no positive pair, or with a single
    class (no negatives), gives 0 (still connected to the graph).
    """

    def __init__(self, margin: float = 1.0) -> None:
        super().__init__()
        self.margin = float(margin)

    def forward(self, features: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The lifted structured loss of features (B, d) (flattened from (B, ...)) with targets (B,) int -> a 0-d
        tensor, float32 at least; 0 (connected to the graph) without a positive pair or a negative.
        """
        x = _upcast(features).flatten(1)
        y = targets.long()
        n = x.shape[0]
        if n < 2:
            return _zero_with_grad(x)
        i, j = torch.triu_indices(n, n, offset=1, device=x.device)
        pos = y[i] == y[j]
        neg = y.unsqueeze(0) != y.unsqueeze(1)                           # (B,B)
        if not bool(pos.any()) or not bool(neg.any()):
            return _zero_with_grad(x)
        i, j = i[pos], j[pos]
        dist = pairwise_distances(x)
        # Every sample has a negative once the batch holds two classes, so no row is all -inf.
        a = torch.logsumexp((self.margin - dist).masked_fill(~neg, float("-inf")), dim=1)   # (B,)
        J = torch.logaddexp(a[i], a[j]) + dist[i, j]
        return F.relu(J).pow(2).sum() / (2 * i.numel())

    def extra_repr(self) -> str:
        """The margin shown by ``repr(module)``."""
        return f"margin={self.margin}"


class CEWithFeatureLoss(nn.Module):
    """`CE(outputs["logits"], y) + weight * metric(outputs[feature_key], y)`."""

    def __init__(self, metric: nn.Module, weight: float = 0.01, feature_key: str = "feature") -> None:
        super().__init__()
        if float(weight) < 0:
            raise ConfigError(f"feature-loss weight must be >= 0, got {weight}")
        self.metric = metric
        self.weight = float(weight)
        self.feature_key = feature_key

    def forward(self, outputs: dict[str, torch.Tensor], targets: torch.Tensor) -> torch.Tensor:
        """CE on ``outputs["logits"]`` (B, K) + weight * metric on ``outputs[feature_key]`` (B, d), against
        ``targets`` (B,) int64 -> a 0-d tensor. Raises ConfigError when the model gives no ``feature_key`` output.
        """
        if self.feature_key not in outputs:
            raise ConfigError(f"this loss needs the model output {self.feature_key!r}; the model gives "
                              f"{sorted(outputs)}")
        ce = F.cross_entropy(outputs["logits"], targets)
        if self.weight == 0:
            return ce
        return ce + self.weight * self.metric(outputs[self.feature_key], targets)

    def extra_repr(self) -> str:
        """The weight and the feature key shown by ``repr(module)``."""
        return f"weight={self.weight}, feature_key={self.feature_key!r}"


@LOSSES.register("range")
def range_loss(train_counts: list[int] | None = None, feature_dim: int | None = None, weight: float = 0.01,
               k: int = 2, margin: float = 5.0, alpha: float = 1.0, beta: float = 1.0,
               feature_key: str = "feature") -> nn.Module:
    """`range`: CE + weight * RangeLoss(k, margin, alpha, beta) on the features."""
    return CEWithFeatureLoss(RangeLoss(k=k, margin=margin, alpha=alpha, beta=beta), weight, feature_key)


@LOSSES.register("lifted")
def lifted(train_counts: list[int] | None = None, feature_dim: int | None = None, weight: float = 0.01,
           margin: float = 1.0, feature_key: str = "feature") -> nn.Module:
    """`lifted`: CE + weight * LiftedStructureLoss(margin) on the features."""
    return CEWithFeatureLoss(LiftedStructureLoss(margin=margin), weight, feature_key)


__all__ = ["CEWithFeatureLoss", "LiftedStructureLoss", "RangeLoss", "pairwise_distances"]
