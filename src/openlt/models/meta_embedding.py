"""Dynamic meta-embedding (OLTR, Liu et al. CVPR 2019, Sec. 3.2) and its cosine classifier.

``MetaEmbeddingHead`` maps the direct feature ``x`` (``v_direct``) to

    v_memory = softmax(T_hal(x)) @ C                      (memory: K class centroids C, K x d)
    e        = tanh(T_sel(x))                             (concept selector, element-wise gate)
    reach    = reach_scale / min_i ||x - c_i||_2          (reachability; reach_scale = 10 in the public code)
    v_meta   = reach * (x + e * v_memory)                 -> CosineClassifier -> logits

Centroid gradients. The public code passes ``centroids.data`` to the head, so the classification loss never
moves the centroids; only the centroid (discriminative large-margin) loss does, through its own optimiser.
This head does the same: memory and reachability use ``self.centroids.detach()``; the head's output dict
returns the parameter itself under ``"centroids"`` so that a centroid loss can use (and train) it. Gradient
still flows from the classification loss into ``x`` through both the memory read and the reachability.

Ablations (paper Table 4): ``use_memory=False`` gives ``v_meta = reach * x`` (no hallucinator, no selector,
not even built, so no parameter sits unused under DDP); ``use_selector=False`` gives ``e = 1``;
``use_reachability=False`` gives ``reach = 1``.

``head_outputs(head, feature)`` turns any head's output into a dict (``{"logits": t}`` for tensor heads), so a
model wrapper can treat the linear head and this one alike.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from openlt.errors import ConfigError
from openlt.models._registry import CLASSIFIERS, HeadFromConfig

__all__ = ["CosineClassifier", "MetaEmbeddingHead", "head_outputs"]


def _check_dims(in_dim: object, num_classes: object) -> None:
    for name, value in (("in_dim", in_dim), ("num_classes", num_classes)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"{name} must be a positive integer, got {value!r}")


def _check_positive(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{name} must be a positive number, got {value!r}")
    return float(value)


@CLASSIFIERS.register("cosine")
class CosineClassifier(HeadFromConfig, nn.Module):
    """Cosine-normalised linear head without bias (the public code's ``CosNorm_Classifier``).

    ``squash=True`` (the public code): ``logits = scale * (||x|| / (1 + ||x||)) * (x / ||x||) . (w_k / ||w_k||)``.
    The squashing factor pulls small-norm inputs toward 0 logits (low confidence, which reachability exploits
    for open-set samples) and leaves large-norm inputs near the plain cosine, so these logits are NOT invariant
    to the input's scale. ``squash=False`` is the plain scale-invariant cosine classifier
    ``scale * cos(x, w_k)``. Either way ``|logits| < scale`` (``<=`` without squashing). Logits are float32,
    also under autocast.
    Weights: ``(num_classes, in_dim)`` drawn from ``U(-1/sqrt(in_dim), 1/sqrt(in_dim))`` as in the public code.
    """

    config_keys = ("scale", "squash")

    def __init__(self, in_dim: int, num_classes: int, scale: float = 16.0, squash: bool = True) -> None:
        super().__init__()
        _check_dims(in_dim, num_classes)
        self.in_dim = in_dim
        self.num_classes = num_classes
        self.scale = _check_positive("scale", scale)
        self.squash = bool(squash)
        self.weight = nn.Parameter(torch.empty(num_classes, in_dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Redraw ``weight`` (num_classes, in_dim) from ``U(-1/sqrt(in_dim), 1/sqrt(in_dim))``, as the public code."""
        stdv = 1.0 / math.sqrt(self.in_dim)
        nn.init.uniform_(self.weight, -stdv, stdv)

    def normalize_input(self, x: Tensor) -> Tensor:
        """The input side of the product: ``x / (1 + ||x||)`` (squash) or ``x / ||x||``; computed in float32."""
        x = x.float()
        if self.squash:
            # == (||x|| / (1 + ||x||)) * (x / ||x||), without the 0/0 at x = 0
            return x / (1.0 + torch.linalg.vector_norm(x, dim=1, keepdim=True))
        return F.normalize(x, dim=1)

    def forward(self, feature: Tensor) -> Tensor:
        """(B, in_dim) features of any float dtype -> (B, num_classes) float32 logits (see the class docstring)."""
        # float32 even under autocast: the logits reach +-scale, where bf16 would round them to ~0.06
        with torch.autocast(device_type=feature.device.type, enabled=False):
            w = F.normalize(self.weight.float(), dim=1)
            return F.linear(self.scale * self.normalize_input(feature), w)

    def extra_repr(self) -> str:
        """The sizes and options shown by ``repr(module)``."""
        return f"in_dim={self.in_dim}, num_classes={self.num_classes}, scale={self.scale}, squash={self.squash}"


@CLASSIFIERS.register("meta_embedding")
class MetaEmbeddingHead(HeadFromConfig, nn.Module):
    """OLTR's dynamic meta-embedding followed by a :class:`CosineClassifier`.

    ``forward(x)`` returns a dict: ``logits`` (B, K); ``direct`` (the input x); ``reachability`` (B,);
    ``memory`` (v_memory, B x d; zeros when ``use_memory=False``); ``infused`` (e * v_memory, the public code's
    "infused feature"); ``meta`` (v_meta, the classifier's input); ``centroids`` (the K x d parameter itself,
    not detached, for the centroid loss). See the module docstring for the formulas and the gradient rule.

    Centroids start at zero: call :meth:`init_centroids` with the per-class means of stage-1 features, and
    :meth:`init_hallucinator_from` with the stage-1 linear classifier, before stage 2 (:meth:`init_from_stage1`
    does both, for the trainer). The centroids train at a learning rate of their own (:meth:`param_groups`).
    """

    config_keys = ("scale", "squash", "reach_scale", "use_memory", "use_selector", "use_reachability")

    def __init__(
        self,
        in_dim: int,
        num_classes: int,
        *,
        scale: float = 16.0,
        reach_scale: float = 10.0,
        use_memory: bool = True,
        use_selector: bool = True,
        use_reachability: bool = True,
        squash: bool = True,
        min_distance: float = 1e-6,
    ) -> None:
        super().__init__()
        _check_dims(in_dim, num_classes)
        self.in_dim = in_dim
        self.num_classes = num_classes
        self.reach_scale = _check_positive("reach_scale", reach_scale)
        self.min_distance = _check_positive("min_distance", min_distance)
        self.use_memory = bool(use_memory)
        self.use_selector = bool(use_selector) and self.use_memory
        self.use_reachability = bool(use_reachability)
        self.centroids = nn.Parameter(torch.zeros(num_classes, in_dim))
        self.hallucinator = nn.Linear(in_dim, num_classes) if self.use_memory else None
        self.selector = nn.Linear(in_dim, in_dim) if self.use_selector else None
        self.classifier = CosineClassifier(in_dim, num_classes, scale=scale, squash=squash)

    # -- initialisation from stage 1 --------------------------------------------------------------------------
    @torch.no_grad()
    def init_centroids(self, centroids: Tensor) -> None:
        """Copy ``(num_classes, in_dim)`` centroids (the per-class means of stage-1 features) into the memory."""
        if not isinstance(centroids, Tensor) or tuple(centroids.shape) != tuple(self.centroids.shape):
            got = tuple(centroids.shape) if isinstance(centroids, Tensor) else type(centroids).__name__
            raise ValueError(f"centroids must have shape {tuple(self.centroids.shape)}, got {got}")
        if not torch.isfinite(centroids).all():
            raise ValueError("centroids contain NaN or inf (a class without training features?)")
        self.centroids.copy_(centroids)

    @torch.no_grad()
    def init_hallucinator_from(self, linear: nn.Module) -> None:
        """Copy a stage-1 linear classifier (``nn.Linear``, or a head with an ``fc`` Linear) into the hallucinator.

        A bias-free classifier leaves the hallucinator's bias at zero.
        """
        if self.hallucinator is None:
            raise ValueError("this head has no hallucinator (use_memory=False)")
        fc = linear if isinstance(linear, nn.Linear) else getattr(linear, "fc", None)
        if not isinstance(fc, nn.Linear):
            raise TypeError(f"expected an nn.Linear (or a head with an .fc Linear), got {type(linear).__name__}")
        if tuple(fc.weight.shape) != tuple(self.hallucinator.weight.shape):
            raise ValueError(
                f"stage-1 classifier weight {tuple(fc.weight.shape)} does not match the hallucinator's "
                f"{tuple(self.hallucinator.weight.shape)} (num_classes, in_dim)"
            )
        self.hallucinator.weight.copy_(fc.weight)
        if fc.bias is not None:
            self.hallucinator.bias.copy_(fc.bias)
        else:
            self.hallucinator.bias.zero_()

    def init_from_stage1(self, weights: Mapping[str, Tensor], class_means: Callable[[], Tensor]) -> list[str]:
        """OLTR stage 2's start, as the public code: the hallucinator from the stage-1 linear classifier
        (``weights["fc.weight"]`` (num_classes, in_dim) and ``["fc.bias"]``: the stage-1 head's tensors, named
        within the head) when its shape matches, and the centroids from ``class_means()``, the (num_classes,
        in_dim) float32 per-class means of the training features. Returns what was initialised, for the log.
        Raises ValueError for class means of the wrong shape or with NaN / inf (a class without features)."""
        done = []
        if "fc.weight" in weights:
            w = weights["fc.weight"]
            # an nn.Linear, as the public code hands over, even where the shapes then differ: the draws of its
            # default init are part of the random stream every later draw of the run follows
            linear = nn.Linear(w.shape[1], w.shape[0], bias="fc.bias" in weights)
            linear.weight.data.copy_(w)
            if linear.bias is not None:
                linear.bias.data.copy_(weights["fc.bias"])
            if self.hallucinator is not None and linear.weight.shape == self.hallucinator.weight.shape:
                self.init_hallucinator_from(linear)
                done.append("hallucinator <- stage-1 classifier")
        self.init_centroids(class_means().to(self.centroids.device))
        done.append("centroids <- class means of training features")
        return done

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """Parameters with a learning rate of their own (``train.centroid_lr``): the centroids, which only the
        centroid loss trains (the classification loss sees them detached)."""
        return {"centroids": [self.centroids]}

    # -- forward ----------------------------------------------------------------------------------------------
    def nearest_distance(self, x: Tensor, centroids: Tensor) -> Tensor:
        """``min_i ||x - c_i||_2`` per row (B,), float32, clamped below at ``min_distance``.

        The nearest centroid is found with one matrix product; the distance to it is then recomputed
        directly (no cancellation error near a centroid, where reachability is largest).
        """
        xf, cf = x.float(), centroids.float()
        with torch.no_grad():
            d2 = (cf * cf).sum(1)[None, :] - 2.0 * (xf @ cf.t())  # ||x||^2 is the same for every i
            nearest = d2.argmin(dim=1)
        dist = torch.linalg.vector_norm(xf - cf[nearest], dim=1)
        return dist.clamp_min(self.min_distance)

    def forward(self, feature: Tensor) -> dict[str, Tensor]:
        """(B, in_dim) features -> the output dict described in the class docstring (``logits`` (B, K) float32).

        Raises ValueError for features that are not (B, in_dim).
        """
        if feature.dim() != 2 or feature.shape[1] != self.in_dim:
            raise ValueError(f"MetaEmbeddingHead expects (B, {self.in_dim}) features, got {tuple(feature.shape)}")
        x = feature
        centroids = self.centroids.detach()  # the classification loss must not move the centroids

        if self.use_reachability:
            reach = self.reach_scale / self.nearest_distance(x, centroids)
        else:
            reach = torch.ones(x.shape[0], device=x.device, dtype=torch.float32)

        if self.hallucinator is not None:
            coeff = torch.softmax(self.hallucinator(x).float(), dim=1)  # (B, K)
            memory = coeff @ centroids.float()  # (B, d)
            gate = torch.tanh(self.selector(x).float()) if self.selector is not None else None
            infused = memory if gate is None else gate * memory
        else:
            memory = torch.zeros_like(x, dtype=torch.float32)
            infused = memory
        meta = reach[:, None] * (x.float() + infused)
        return {
            "logits": self.classifier(meta),
            "direct": feature,
            "reachability": reach,
            "memory": memory,
            "infused": infused,
            "meta": meta,
            "centroids": self.centroids,
        }

    def extra_repr(self) -> str:
        """The sizes and ablation switches shown by ``repr(module)``."""
        return (
            f"in_dim={self.in_dim}, num_classes={self.num_classes}, reach_scale={self.reach_scale}, "
            f"use_memory={self.use_memory}, use_selector={self.use_selector}, "
            f"use_reachability={self.use_reachability}"
        )


def head_outputs(head: nn.Module, feature: Tensor) -> dict[str, Any]:
    """Run ``head`` on ``feature`` and return a dict with at least ``"logits"``.

    Tensor-returning heads (``linear``, ``cosine``) give ``{"logits": out}``; dict-returning heads
    (``meta_embedding``) give a shallow copy of their dict.
    """
    out = head(feature)
    if isinstance(out, Tensor):
        return {"logits": out}
    if isinstance(out, Mapping):
        if "logits" not in out:
            raise TypeError(f"{type(head).__name__} returned a mapping without 'logits': {sorted(out)}")
        return dict(out)
    raise TypeError(f"{type(head).__name__} returned {type(out).__name__}; expected a Tensor or a dict with 'logits'")
