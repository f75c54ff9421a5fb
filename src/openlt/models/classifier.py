"""Classifier heads: feature vector -> logits, registered in ``openlt.models._registry.CLASSIFIERS`` by their
config name (``model.classifier``) and built by :func:`build_classifier`."""

from __future__ import annotations

import inspect
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from openlt.decoupling.ncm import METRICS as NCM_METRICS
from openlt.decoupling.ncm import ncm_logits, ncm_transform
from openlt.errors import ConfigError
from openlt.models._registry import CLASSIFIERS, HeadFromConfig

__all__ = ["LinearClassifier", "NCMHead", "NormedLinear", "build_classifier"]


@CLASSIFIERS.register("linear")
class LinearClassifier(HeadFromConfig, nn.Module):
    """A plain linear head: ``logits = W f + b``."""

    def __init__(self, in_dim: int, num_classes: int, bias: bool = True) -> None:
        super().__init__()
        self.in_dim = in_dim
        self.num_classes = num_classes
        self.fc = nn.Linear(in_dim, num_classes, bias=bias)

    def forward(self, feature: Tensor) -> Tensor:
        """(B, in_dim) features -> (B, num_classes) logits ``W f + b``."""
        return self.fc(feature)


@CLASSIFIERS.register("normed_linear")
class NormedLinear(HeadFromConfig, nn.Module):
    """LDAM-DRW's head (Cao et al. 2019): logits = cos(x, w_c), the normalised feature times the normalised
    class columns of ``weight`` (in_dim x num_classes), in [-1, 1] and without a scale, because the LDAM loss
    multiplies by s = 30. Initialised as there: uniform(-1, 1), every column rescaled to unit norm."""

    def __init__(self, in_dim: int, num_classes: int) -> None:
        super().__init__()
        self.in_dim, self.num_classes = in_dim, num_classes
        self.weight = nn.Parameter(torch.empty(in_dim, num_classes))
        with torch.no_grad():
            self.weight.uniform_(-1, 1).renorm_(2, 1, 1e-5).mul_(1e5)

    def forward(self, feature: Tensor) -> Tensor:
        """(B, in_dim) features -> (B, num_classes) float32 cosines in [-1, 1] (float32 also under autocast)."""
        # float32 even under autocast: LDAM multiplies these cosines by s = 30, where half precision's rounding
        # of the cosine (bf16: ~0.004) becomes a logit error of ~0.1
        with torch.autocast(device_type=feature.device.type, enabled=False):
            return F.normalize(feature.float(), dim=1) @ F.normalize(self.weight.float(), dim=0)

    def extra_repr(self) -> str:
        """The sizes shown by ``repr(module)``."""
        return f"in_dim={self.in_dim}, num_classes={self.num_classes}"


@CLASSIFIERS.register("ncm")
class NCMHead(HeadFromConfig, nn.Module):
    """Nearest class mean as a head (Kang et al. 2020): features (N, in_dim) are L2-normalised (after
    subtracting ``feature_mean``, the training features' mean, with ``ncm_center``: the public code's ``cl2n``),
    ``means`` (num_classes, in_dim) float32 buffers are the class means of the normalised training features;
    logits (N, num_classes) float32 = scale * cos(x, mu_c) or -scale * ||x - mu_c||. The arithmetic is
    :mod:`openlt.decoupling.ncm`'s, shared with :class:`openlt.decoupling.NCMClassifier`, whose
    ``head_state()`` fills the buffers (``head.load_state_dict(ncm.head_state())``). Nothing here is trained:
    the head is a module only so that an NCM run saves, evaluates and predicts like any other run."""

    config_keys = ("scale", "ncm_metric", "ncm_center")

    def __init__(self, in_dim: int, num_classes: int, scale: float = 16.0, ncm_metric: str = "cosine",
                 ncm_center: bool = False) -> None:
        super().__init__()
        if ncm_metric not in NCM_METRICS:
            raise ConfigError(f"model.head.ncm_metric must be 'cosine' or 'euclidean', got {ncm_metric!r}")
        self.in_dim, self.num_classes, self.scale, self.metric = in_dim, num_classes, float(scale), ncm_metric
        self.center = bool(ncm_center)
        self.register_buffer("means", torch.zeros(num_classes, in_dim))
        # only with centring, so that the checkpoints of uncentred NCM runs keep their keys
        self.register_buffer("feature_mean", torch.zeros(in_dim) if self.center else None)

    def forward(self, feature: Tensor) -> Tensor:
        """(B, in_dim) features -> (B, num_classes) float32 logits (also under autocast); see the class docstring."""
        with torch.autocast(device_type=feature.device.type, enabled=False):  # float32, like the cosine classifier
            z = ncm_transform(feature.float(), self.feature_mean)
            return ncm_logits(z, self.means, self.metric, self.scale)

    def extra_repr(self) -> str:
        """The sizes and options shown by ``repr(module)``."""
        return (f"in_dim={self.in_dim}, num_classes={self.num_classes}, metric={self.metric}, scale={self.scale}, "
                f"center={self.center}")


def build_classifier(name: str, in_dim: int, num_classes: int, head_cfg: Any = None, **kwargs: Any) -> nn.Module:
    """The head registered as ``name``, mapping ``(B, in_dim)`` features to ``(B, num_classes)`` logits: built by
    its ``from_config`` from the ``model.head`` section ``head_cfg`` (the options that head takes), or else from
    the keyword options given. ConfigError for an unknown name or option, or an invalid option value."""
    cls = CLASSIFIERS.get(name)
    if head_cfg is not None:
        if kwargs:
            raise TypeError("build_classifier takes head_cfg or keyword options, not both")
        return cls.from_config(in_dim, num_classes, head_cfg)
    try:
        inspect.signature(cls).bind(in_dim, num_classes, **kwargs)
    except TypeError as e:
        raise ConfigError(f"classifier {name!r}: {e}") from None
    return cls(in_dim, num_classes, **kwargs)
