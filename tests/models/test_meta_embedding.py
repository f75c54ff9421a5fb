"""CosineClassifier and MetaEmbeddingHead: formulas by hand, reachability, centroid gradients, ablations."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from openlt.errors import ConfigError
from openlt.models import CLASSIFIERS, LinearClassifier, build_classifier
from openlt.models.meta_embedding import CosineClassifier, MetaEmbeddingHead, head_outputs

D, K = 6, 4


pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _cos_by_hand(x: torch.Tensor, w: torch.Tensor, scale: float, squash: bool = True) -> torch.Tensor:
    n = x.norm(dim=1, keepdim=True)
    ex = (n / (1 + n)) * (x / n) if squash else x / n
    return scale * ex @ (w / w.norm(dim=1, keepdim=True)).t()


def _head(**kw) -> MetaEmbeddingHead:
    head = MetaEmbeddingHead(D, K, **kw)
    head.init_centroids(torch.randn(K, D) * 2)
    return head


# -- cosine classifier -----------------------------------------------------------------------------------------
def test_cosine_init_and_formula():
    clf = CosineClassifier(D, K, scale=16.0)
    stdv = 1 / math.sqrt(D)
    assert clf.weight.shape == (K, D)
    assert clf.weight.abs().max() <= stdv
    assert not hasattr(clf, "bias") or clf.bias is None
    x = torch.randn(5, D) * 3
    torch.testing.assert_close(clf(x), _cos_by_hand(x, clf.weight.detach(), 16.0))
    plain = CosineClassifier(D, K, scale=16.0, squash=False)
    torch.testing.assert_close(plain(x), _cos_by_hand(x, plain.weight.detach(), 16.0, squash=False))


def test_cosine_scale_invariance_only_without_squash():
    plain = CosineClassifier(D, K, squash=False)
    squash = CosineClassifier(D, K, squash=True)
    squash.load_state_dict(plain.state_dict())
    x = torch.randn(3, D)
    x = x / x.norm(dim=1, keepdim=True)  # ||x|| = 1
    for t in (1e-3, 0.5, 7.0, 1e4):
        torch.testing.assert_close(plain(t * x), plain(x))
    ref = plain(x)
    prev = torch.zeros(3)
    for t in (0.01, 0.1, 1.0, 10.0, 100.0, 1e4):
        out = squash(t * x)
        torch.testing.assert_close(out, ref * (t / (1 + t)))  # squashing factor ||x|| / (1 + ||x||)
        mag = out.abs().amax(dim=1)
        assert (mag > prev).all()  # grows with ||x||
        prev = mag
    torch.testing.assert_close(squash(1e6 * x), ref, atol=1e-4, rtol=1e-4)  # ... toward the cosine logits


def test_cosine_logits_bounded_by_scale_and_zero_input():
    for squash in (True, False):
        clf = CosineClassifier(D, K, scale=5.0, squash=squash)
        x = torch.randn(64, D) * torch.logspace(-3, 4, 64)[:, None]
        assert (clf(x).abs() <= 5.0 + 1e-5).all()
        with torch.no_grad():
            clf.weight[0] = x[0]
        n = x[0].norm().item()
        assert clf(x[:1])[0, 0].item() == pytest.approx(5.0 * (n / (1 + n) if squash else 1.0), rel=1e-5)
        assert torch.isfinite(clf(torch.zeros(2, D))).all()
        torch.testing.assert_close(clf(torch.zeros(2, D)), torch.zeros(2, K))


# -- meta-embedding head ---------------------------------------------------------------------------------------
def test_output_dict_shapes_and_defaults():
    head = MetaEmbeddingHead(D, K)
    assert head.centroids.shape == (K, D) and (head.centroids == 0).all()
    assert isinstance(head.centroids, nn.Parameter)
    x = torch.randn(5, D)
    out = head(x)
    assert out["logits"].shape == (5, K)
    assert out["direct"] is x
    assert out["reachability"].shape == (5,)
    assert out["memory"].shape == (5, D)
    assert out["centroids"] is head.centroids
    # zero centroids: nearest distance is ||x||, and the memory is 0
    torch.testing.assert_close(out["reachability"], 10.0 / x.norm(dim=1))
    torch.testing.assert_close(out["memory"], torch.zeros(5, D))


def test_full_forward_by_hand():
    head = _head(scale=12.0, reach_scale=7.0)
    x = torch.randn(5, D)
    out = head(x)
    c = head.centroids.detach()
    dist = torch.cdist(x, c, compute_mode="donot_use_mm_for_euclid_dist").min(dim=1).values
    reach = 7.0 / dist
    memory = torch.softmax(head.hallucinator(x), dim=1) @ c
    e = torch.tanh(head.selector(x))
    meta = reach[:, None] * (x + e * memory)
    with torch.no_grad():
        torch.testing.assert_close(out["reachability"], reach)
        torch.testing.assert_close(out["memory"], memory)
        torch.testing.assert_close(out["infused"], e * memory)
        torch.testing.assert_close(out["meta"], meta)
        torch.testing.assert_close(out["logits"], _cos_by_hand(meta, head.classifier.weight, 12.0))


def test_reachability_exact_and_falls_with_distance():
    head = MetaEmbeddingHead(2, 3, reach_scale=10.0)
    head.init_centroids(torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]]))
    # points moving away from centroid 0 along the diagonal (still nearest to it)
    d = torch.tensor([0.5, 1.0, 2.0, 3.0, 4.0])
    x = torch.stack([d / math.sqrt(2), d / math.sqrt(2)], dim=1)
    reach = head(x)["reachability"]
    torch.testing.assert_close(reach, 10.0 / d)
    assert (reach[1:] < reach[:-1]).all()
    # the nearest centroid counts, whichever it is
    x2 = torch.tensor([[9.0, 0.0], [0.0, 7.0], [4.0, 0.0], [6.0, 0.0]])
    torch.testing.assert_close(head(x2)["reachability"], 10.0 / torch.tensor([1.0, 3.0, 4.0, 4.0]))
    # far from every centroid: low reachability
    assert head(torch.tensor([[100.0, 100.0]]))["reachability"].item() < 0.1


def test_reachability_exact_next_to_a_large_centroid():
    # ||x||^2 - 2 x.c + ||c||^2 would lose this distance to cancellation; the head recomputes it directly
    head = MetaEmbeddingHead(2, 2)
    head.init_centroids(torch.tensor([[1000.0, 1000.0], [-1000.0, 0.0]]))
    x = torch.tensor([[1000.0, 1000.001]])
    true = (x.double() - head.centroids.detach().double()[0]).norm(dim=1)  # ~1e-3 (float32 rounding of x)
    torch.testing.assert_close(head(x)["reachability"].double(), 10.0 / true, rtol=1e-6, atol=0)
    naive = (x.pow(2).sum() - 2 * x @ head.centroids.detach()[0] + head.centroids.detach()[0].pow(2).sum()).clamp_min(0)
    assert abs(naive.sqrt().item() - true.item()) > 1e-2 * true.item()  # what the shortcut would have given


def test_reachability_clamped_at_a_centroid():
    head = _head()
    x = head.centroids.detach()[:2].clone().requires_grad_(True)
    out = head(x)
    assert torch.isfinite(out["reachability"]).all()
    torch.testing.assert_close(out["reachability"], torch.full((2,), 10.0 / head.min_distance))
    assert torch.isfinite(out["logits"]).all()
    out["logits"].sum().backward()
    assert torch.isfinite(x.grad).all()


def test_use_reachability_false_gives_one():
    head = _head(use_reachability=False)
    x = torch.randn(4, D)
    out = head(x)
    torch.testing.assert_close(out["reachability"], torch.ones(4))
    with torch.no_grad():
        e = torch.tanh(head.selector(x))
        meta = x + e * (torch.softmax(head.hallucinator(x), 1) @ head.centroids)
        torch.testing.assert_close(out["logits"], head.classifier(meta))


def test_use_memory_false_is_reach_times_x():
    head = _head(use_memory=False, scale=16.0)
    assert head.hallucinator is None and head.selector is None
    x = torch.randn(4, D)
    out = head(x)
    c = head.centroids.detach()
    reach = 10.0 / (x[:, None, :] - c[None]).norm(dim=2).min(dim=1).values
    torch.testing.assert_close(out["memory"], torch.zeros(4, D))
    with torch.no_grad():
        torch.testing.assert_close(out["logits"], _cos_by_hand(reach[:, None] * x, head.classifier.weight, 16.0))
    # both off: the plain cosine classifier on x
    bare = _head(use_memory=False, use_reachability=False)
    with torch.no_grad():
        torch.testing.assert_close(bare(x)["logits"], bare.classifier(x))
    with pytest.raises(ValueError, match="no hallucinator"):
        head.init_hallucinator_from(nn.Linear(D, K))


def test_use_selector_false_gates_with_one():
    head = _head(use_selector=False)
    assert head.selector is None
    x = torch.randn(4, D)
    out = head(x)
    with torch.no_grad():
        memory = torch.softmax(head.hallucinator(x), 1) @ head.centroids
        torch.testing.assert_close(out["meta"], out["reachability"][:, None] * (x + memory))
        torch.testing.assert_close(out["logits"], head.classifier(out["reachability"][:, None] * (x + memory)))


def test_switches_change_the_output():
    x = torch.randn(4, D)
    torch.manual_seed(1)
    full = _head()
    outs = {}
    for kw in ({}, {"use_memory": False}, {"use_selector": False}, {"use_reachability": False}):
        h = MetaEmbeddingHead(D, K, **kw)
        h.load_state_dict(full.state_dict(), strict=False)
        outs[tuple(kw)] = h(x)["logits"]
    keys = list(outs)
    for i in range(len(keys)):
        for j in range(i + 1, len(keys)):
            assert not torch.allclose(outs[keys[i]], outs[keys[j]]), (keys[i], keys[j])


def test_classification_loss_gives_no_gradient_to_centroids():
    head = _head()
    x = torch.randn(8, D, requires_grad=True)
    y = torch.randint(0, K, (8,))
    out = head(x)
    F.cross_entropy(out["logits"], y).backward()
    assert head.centroids.grad is None or (head.centroids.grad == 0).all()
    for module in (head.hallucinator, head.selector):
        for p in module.parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0
    assert head.classifier.weight.grad.abs().sum() > 0
    assert x.grad is not None and x.grad.abs().sum() > 0
    # ... while a loss on the returned centroids does move them
    head.zero_grad()
    out = head(x.detach())
    (x.detach() - out["centroids"][y]).pow(2).sum().backward()
    assert head.centroids.grad is not None and head.centroids.grad.abs().sum() > 0


def test_init_centroids_and_hallucinator_copy_exactly():
    head = MetaEmbeddingHead(D, K)
    c = torch.randn(K, D)
    head.init_centroids(c)
    assert torch.equal(head.centroids.detach(), c)
    assert head.centroids.requires_grad
    c.add_(1)  # a copy, not a view
    assert not torch.equal(head.centroids.detach(), c)
    lin = nn.Linear(D, K)
    head.init_hallucinator_from(lin)
    assert torch.equal(head.hallucinator.weight, lin.weight)
    assert torch.equal(head.hallucinator.bias, lin.bias)
    stage1 = LinearClassifier(D, K)  # the registry's linear head (wraps .fc)
    head.init_hallucinator_from(stage1)
    assert torch.equal(head.hallucinator.weight, stage1.fc.weight)
    no_bias = nn.Linear(D, K, bias=False)
    head.init_hallucinator_from(no_bias)
    assert torch.equal(head.hallucinator.weight, no_bias.weight) and (head.hallucinator.bias == 0).all()
    with pytest.raises(ValueError, match="shape"):
        head.init_centroids(torch.randn(K + 1, D))
    with pytest.raises(ValueError, match="NaN"):
        head.init_centroids(torch.full((K, D), float("nan")))
    with pytest.raises(ValueError, match="does not match"):
        head.init_hallucinator_from(nn.Linear(D, K + 1))
    with pytest.raises(TypeError):
        head.init_hallucinator_from(nn.Conv2d(D, K, 1))


@pytest.mark.parametrize("b,d,k", [(1, 3, 2), (7, 16, 10), (32, 64, 100)])
def test_shapes_and_gradients_several_sizes(b, d, k):
    head = MetaEmbeddingHead(d, k)
    head.init_centroids(torch.randn(k, d))
    x = torch.randn(b, d, requires_grad=True)
    out = head(x)
    assert out["logits"].shape == (b, k) and out["reachability"].shape == (b,)
    out["logits"].logsumexp(1).sum().backward()
    assert torch.isfinite(x.grad).all()


def test_bad_input_and_arguments():
    head = MetaEmbeddingHead(D, K)
    with pytest.raises(ValueError, match="expects"):
        head(torch.randn(3, D + 1))
    with pytest.raises(ConfigError):
        MetaEmbeddingHead(0, K)
    with pytest.raises(ConfigError):
        MetaEmbeddingHead(D, K, reach_scale=0)
    with pytest.raises(ConfigError):
        CosineClassifier(D, K, scale=-1.0)


# -- registry and head_outputs ---------------------------------------------------------------------------------
def test_registry_builds_by_name():
    assert "cosine" in CLASSIFIERS and "meta_embedding" in CLASSIFIERS
    cos = build_classifier("cosine", D, K, scale=8.0, squash=False)
    assert isinstance(cos, CosineClassifier) and cos.scale == 8.0 and not cos.squash
    meta = build_classifier("meta_embedding", D, K, use_memory=False, reach_scale=5.0)
    assert isinstance(meta, MetaEmbeddingHead) and meta.hallucinator is None and meta.reach_scale == 5.0
    with pytest.raises(ConfigError, match="meta_embedding"):
        build_classifier("meta_embedding", D, K, no_such_option=1)


def test_head_outputs_treats_all_heads_alike():
    x = torch.randn(3, D)
    for name in ("linear", "cosine", "meta_embedding"):
        head = build_classifier(name, D, K)
        out = head_outputs(head, x)
        assert out["logits"].shape == (3, K), name
    lin = LinearClassifier(D, K)
    assert set(head_outputs(lin, x)) == {"logits"}
    meta = MetaEmbeddingHead(D, K)
    assert {"logits", "direct", "reachability", "memory", "centroids"} <= set(head_outputs(meta, x))

    class Bad(nn.Module):
        def forward(self, f):
            return {"feat": f}

    with pytest.raises(TypeError, match="logits"):
        head_outputs(Bad(), x)
