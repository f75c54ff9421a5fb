"""The NCM head: the shared NCM arithmetic (openlt.decoupling.ncm) gives, bit for bit, the logits of the head's
former own implementation (written out below), and the head loads a fitted NCMClassifier's state."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from openlt.decoupling import NCMClassifier
from openlt.errors import ConfigError
from openlt.models.classifier import NCMHead, build_classifier


def former_head_logits(feature, means, mean, metric, scale):
    x = feature.float()
    if mean is not None:
        x = x - mean
    z = F.normalize(x, dim=1)
    if metric == "cosine":
        return scale * z @ F.normalize(means, dim=1).t()
    return -scale * torch.cdist(z, means)


def features(seed: int = 1, n: int = 60, d: int = 16, c: int = 5):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g) + 0.3, torch.arange(n) % c, torch.randn(n // 2, d, generator=g)


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@pytest.mark.parametrize("center", [False, True])
@pytest.mark.parametrize("scale", [16.0, 3.7])
def test_head_is_bit_identical_to_the_former_one_and_loads_the_classifier(metric, center, scale):
    x, y, q = features()
    ncm = NCMClassifier(metric, center=center).fit(x, y, num_classes=5)
    head = NCMHead(16, 5, scale=scale, ncm_metric=metric, ncm_center=center)
    head.load_state_dict(ncm.head_state())  # strict: means, and feature_mean exactly when centred
    expected = former_head_logits(q, ncm.means_, ncm.feature_mean_, metric, scale)
    assert torch.equal(head(q), expected)
    assert torch.allclose(head(q), scale * ncm.logits(q), atol=1e-5)  # the two faces agree


def test_uncentred_head_has_no_feature_mean_and_bad_metric_is_refused():
    head = build_classifier("ncm", 4, 3)
    assert set(head.state_dict()) == {"means"}  # checkpoints of uncentred NCM runs keep their keys
    assert set(NCMHead(4, 3, ncm_center=True).state_dict()) == {"means", "feature_mean"}
    with pytest.raises(ConfigError, match="model.head.ncm_metric must be 'cosine' or 'euclidean'"):
        NCMHead(4, 3, ncm_metric="manhattan")
