"""One NCM: the estimator (NCMClassifier) shares ncm_transform / class_means / ncm_logits with the model head
(NCMHead, tests/models/test_classifier.py) and gives, bit for bit, the former implementation's numbers."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from openlt.decoupling import NCMClassifier
from openlt.decoupling.ncm import class_means, ncm_logits, ncm_transform
from openlt.errors import DataError, NotFittedError

pytestmark = pytest.mark.usefixtures("single_thread")


def features(seed: int = 0, n: int = 60, d: int = 16, c: int = 5):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g) + 0.3, torch.arange(n) % c, torch.randn(n // 2, d, generator=g)


def former_classifier_fit(x, y, c, center, normalize):
    x64 = x.double()
    mean = x64.mean(0).to(x.dtype) if center else None
    z = x64 - mean.to(x64) if center else x64
    z = F.normalize(z, dim=1) if normalize else z
    sums = torch.zeros(c, x.shape[1], dtype=torch.float64).index_add_(0, y, z)
    return (sums / torch.bincount(y, minlength=c).to(sums).unsqueeze(1)).to(x.dtype), mean


def former_classifier_logits(x, means, mean, metric, normalize):
    z = x - mean.to(x) if mean is not None else x
    z = F.normalize(z, dim=1) if normalize else z
    if metric == "cosine":
        return F.normalize(z, dim=1) @ F.normalize(means.to(z), dim=1).t()
    return -torch.cdist(z, means.to(z))


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@pytest.mark.parametrize("center", [False, True])
@pytest.mark.parametrize("normalize", [True, False])
def test_classifier_is_bit_identical_to_the_former_one(metric, center, normalize):
    x, y, q = features()
    ncm = NCMClassifier(metric, normalize=normalize, center=center).fit(x, y)
    means, mean = former_classifier_fit(x, y, 5, center, normalize)
    assert torch.equal(ncm.means_, means)
    assert (ncm.feature_mean_ is None) == (mean is None) and (mean is None or torch.equal(ncm.feature_mean_, mean))
    assert torch.equal(ncm.logits(q), former_classifier_logits(q, means, mean, metric, normalize))


def test_shared_functions():
    z = ncm_transform(torch.tensor([[3.0, 4.0], [1.0, 0.0]]), torch.tensor([1.0, 0.0]))
    assert torch.allclose(z, torch.tensor([[0.4472136, 0.8944272], [0.0, 0.0]]))
    means = class_means(torch.tensor([[1.0, 0.0], [0.0, 1.0], [3.0, 1.0]]), torch.tensor([0, 1, 0]), 2)
    assert means.dtype == torch.float64 and torch.equal(means, torch.tensor([[2.0, 0.5], [0.0, 1.0]], dtype=torch.float64))
    with pytest.raises(DataError, match="1 class\\(es\\) have no training sample, so no mean: 2"):
        class_means(torch.ones(2, 2), torch.tensor([0, 1]), 3)
    unit = torch.eye(2)
    assert torch.equal(ncm_logits(unit, 2 * unit, "cosine", 2.0), 2.0 * unit)
    assert torch.allclose(ncm_logits(unit, unit, "euclidean"), -torch.tensor([[0.0, 2 ** 0.5], [2 ** 0.5, 0.0]]))


def test_head_state_before_fit():
    with pytest.raises(NotFittedError):
        NCMClassifier().head_state()
