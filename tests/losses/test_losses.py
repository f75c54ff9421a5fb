"""Losses against hand-computed cases and literal reference implementations."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from openlt.errors import ConfigError
from openlt.losses import LOSSES, build_loss
from openlt.losses.centroid import DiscriminativeCentroidLoss, OLTRLoss, attract_loss
from openlt.losses.focal import FocalLoss
from openlt.losses.metric import CEWithFeatureLoss, LiftedStructureLoss, RangeLoss, pairwise_distances

D64 = torch.float64


def t(rows, **kw) -> torch.Tensor:
    return torch.tensor(rows, dtype=D64, **kw)


# ----------------------------------------------------------------------------------------------- focal

def test_focal_gamma0_is_cross_entropy():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(16, 7, generator=g) * 3
    y = torch.randint(0, 7, (16,), generator=g)
    ce = F.cross_entropy(logits, y)
    fl = FocalLoss(gamma=0.0)({"logits": logits}, y)
    assert torch.allclose(fl, ce, rtol=0, atol=1e-6)
    # and the gradients agree too
    a = logits.clone().requires_grad_()
    b = logits.clone().requires_grad_()
    F.cross_entropy(a, y).backward()
    FocalLoss(gamma=0.0)({"logits": b}, y).backward()
    assert torch.allclose(a.grad, b.grad, atol=1e-7)


def test_focal_two_samples_by_hand():
    # softmax([0, ln 3]) = [1/4, 3/4]
    logits = t([[0.0, math.log(3)], [math.log(3), 0.0]])
    y = torch.tensor([1, 1])
    # sample 0: p_t = 3/4 -> (1/4)^2 * -ln(3/4); sample 1: p_t = 1/4 -> (3/4)^2 * -ln(1/4)
    l0 = (0.25 ** 2) * -math.log(0.75)
    l1 = (0.75 ** 2) * -math.log(0.25)
    expected = (l0 + l1) / 2  # = 0.39888...
    got = FocalLoss(gamma=2.0)({"logits": logits}, y)
    assert got.item() == pytest.approx(expected, rel=1e-9)
    assert expected == pytest.approx(0.398886, abs=1e-6)
    # per-class alpha: both targets are class 1 -> times alpha_1
    got_a = FocalLoss(gamma=2.0, alpha=[0.25, 0.75])({"logits": logits}, y)
    assert got_a.item() == pytest.approx(0.75 * expected, rel=1e-9)
    # gamma = 1 differs from gamma = 2 (the exponent is used)
    g1 = FocalLoss(gamma=1.0)({"logits": logits}, y)
    assert g1.item() == pytest.approx((0.25 * -math.log(0.75) + 0.75 * -math.log(0.25)) / 2, rel=1e-9)


def test_focal_finite_gradient_when_confident():
    logits = t([[60.0, 0.0], [0.0, 1.0]], requires_grad=True)
    FocalLoss(gamma=0.5)({"logits": logits}, torch.tensor([0, 1])).backward()
    assert torch.isfinite(logits.grad).all()


def test_focal_bad_args():
    with pytest.raises(ConfigError):
        FocalLoss(gamma=-1)
    with pytest.raises(ConfigError):
        FocalLoss(alpha=[1.0, 1.0])({"logits": torch.zeros(2, 3)}, torch.tensor([0, 1]))


# ----------------------------------------------------------------------------------------------- range

RANGE_X = [[0.0, 0.0], [3.0, 0.0], [0.0, 4.0],  # class 0: pair distances 3, 4, 5; centre (1, 4/3)
           [10.0, 0.0], [10.0, 2.0],            # class 1: one pair, distance 2; centre (10, 1)
           [1.0, 4.0 / 3.0 + 2.0]]              # class 2: a single sample, 2 away from centre 0
RANGE_Y = [0, 0, 0, 1, 1, 2]


def test_range_terms_by_hand():
    x, y = t(RANGE_X), torch.tensor(RANGE_Y)
    intra, inter = RangeLoss(k=2, margin=10.0).terms(x, y)
    # class 0: harmonic mean of the 2 largest (5, 4); class 1: its only pair (2); class 2: no pair
    assert intra.item() == pytest.approx(2 / (1 / 5 + 1 / 4) + 2.0, abs=1e-6)
    assert inter.item() == pytest.approx(10.0 - 2.0, abs=1e-6)        # closest centres: 0 and 2
    intra3, _ = RangeLoss(k=3).terms(x, y)
    assert intra3.item() == pytest.approx(3 / (1 / 3 + 1 / 4 + 1 / 5) + 2.0, abs=1e-6)
    _, inter_small = RangeLoss(margin=1.5).terms(x, y)
    assert inter_small.item() == pytest.approx(0.0, abs=1e-9)       # margin below D_center
    full = RangeLoss(k=2, margin=10.0, alpha=0.5, beta=3.0)(x, y)
    assert full.item() == pytest.approx(0.5 * (40 / 9 + 2) + 3.0 * 8.0, abs=1e-5)


def test_range_order_invariant_and_degenerate_batches():
    x, y = t(RANGE_X), torch.tensor(RANGE_Y)
    perm = torch.tensor([5, 2, 4, 0, 3, 1])
    assert RangeLoss(margin=10.0)(x[perm], y[perm]).item() == pytest.approx(
        RangeLoss(margin=10.0)(x, y).item(), abs=1e-9)
    # one class only: no inter term; all singletons: no intra term; both still backpropagate
    xs = x.clone().requires_grad_()
    intra, inter = RangeLoss().terms(xs[:3], y[:3])
    assert inter.item() == 0.0 and intra.item() > 0
    intra, inter = RangeLoss(margin=100.0).terms(xs[[0, 3, 5]], y[[0, 3, 5]])
    assert intra.item() == 0.0 and inter.item() > 0
    (intra + inter).backward()
    assert torch.isfinite(xs.grad).all()


def test_range_gradient_finite_on_coincident_points():
    x = t([[1.0, 1.0], [1.0, 1.0], [2.0, 2.0], [2.0, 2.0]], requires_grad=True)
    RangeLoss()(x, torch.tensor([0, 0, 1, 1])).backward()
    assert torch.isfinite(x.grad).all()


def test_pairwise_distances():
    a = t([[0.0, 0.0], [3.0, 4.0]])
    d = pairwise_distances(a)
    assert d[0, 1].item() == pytest.approx(5.0, abs=1e-9)
    assert d[0, 0].item() == pytest.approx(0.0, abs=2e-6)


# ---------------------------------------------------------------------------------------------- lifted

def lifted_reference(x: torch.Tensor, y: torch.Tensor, m: float) -> float:
    """Literal double loop over positive pairs, in plain Python floats."""
    pts, lab = x.tolist(), y.tolist()
    n = len(pts)

    def dist(i, j):
        return math.sqrt(sum((a - b) ** 2 for a, b in zip(pts[i], pts[j])))

    total, count = 0.0, 0
    for i in range(n):
        for j in range(i + 1, n):
            if lab[i] != lab[j]:
                continue
            s = sum(math.exp(m - dist(i, k)) for k in range(n) if lab[k] != lab[i])
            s += sum(math.exp(m - dist(j, k)) for k in range(n) if lab[k] != lab[j])
            J = math.log(s) + dist(i, j)
            total += max(J, 0.0) ** 2
            count += 1
    return total / (2 * count)


def test_lifted_four_points_by_hand():
    x = t([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0], [3.0, 1.0]])
    y = torch.tensor([0, 0, 1, 1])
    # both positive pairs (0,1) and (2,3) have D = 1 and the same negative distances {3, sqrt10, 2, sqrt5}
    s = math.exp(1 - 3) + math.exp(1 - math.sqrt(10)) + math.exp(1 - 2) + math.exp(1 - math.sqrt(5))
    J = math.log(s) + 1.0
    expected = 2 * J ** 2 / (2 * 2)
    assert expected == pytest.approx(0.408943, abs=1e-5)
    assert LiftedStructureLoss(margin=1.0)(x, y).item() == pytest.approx(expected, abs=1e-6)
    assert lifted_reference(x, y, 1.0) == pytest.approx(expected, abs=1e-12)


def test_lifted_hinge_clips_to_zero_for_separated_clusters():
    x = t([[0.0, 0.0], [0.1, 0.0], [10.0, 0.0], [10.1, 0.0]])
    assert LiftedStructureLoss(1.0)(x, torch.tensor([0, 0, 1, 1])).item() == 0.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lifted_matches_literal_loop(seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(12, 5, generator=g, dtype=D64) * (0.5 + seed)   # seed 2: spread out, some J < 0
    y = torch.randint(0, 4, (12,), generator=g)
    for m in (1.0, 5.0):
        assert LiftedStructureLoss(m)(x, y).item() == pytest.approx(lifted_reference(x, y, m), rel=1e-6)


def test_lifted_degenerate_batches_are_zero_with_grad():
    x = torch.randn(4, 3, requires_grad=True)
    for y in (torch.tensor([0, 1, 2, 3]), torch.tensor([1, 1, 1, 1])):   # no positive pair / no negative
        loss = LiftedStructureLoss()(x, y)
        assert loss.item() == 0.0
        loss.backward()
        assert torch.equal(x.grad, torch.zeros_like(x))
    xc = t([[1.0, 1.0], [1.0, 1.0], [2.0, 2.0]], requires_grad=True)   # coincident positive pair
    LiftedStructureLoss()(xc, torch.tensor([0, 0, 1])).backward()
    assert torch.isfinite(xc.grad).all()


def test_ce_plus_feature_loss_combines():
    g = torch.Generator().manual_seed(3)
    logits, feat = torch.randn(8, 4, generator=g), torch.randn(8, 6, generator=g)
    y = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    out = {"logits": logits, "feature": feat}
    loss = build_loss("lifted", weight=0.5, margin=2.0)(out, y)
    assert loss.item() == pytest.approx(F.cross_entropy(logits, y).item()
                                        + 0.5 * LiftedStructureLoss(2.0)(feat, y).item(), rel=1e-6)
    loss = build_loss("range", weight=0.1, margin=7.0)(out, y)
    assert loss.item() == pytest.approx(F.cross_entropy(logits, y).item()
                                        + 0.1 * RangeLoss(margin=7.0)(feat, y).item(), rel=1e-6)
    assert isinstance(build_loss("range"), CEWithFeatureLoss)


# -------------------------------------------------------------------------------------------- centroid

CENTROIDS = [[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]]


def test_centroid_loss_on_centroids_by_hand():
    c = t(CENTROIDS)
    y = torch.tensor([0, 1])
    f = c[y]
    attract, repel = DiscriminativeCentroidLoss().terms(f, y, c)
    assert attract.item() == 0.0
    # sample 0 at c0: ||c0-c1||^2 + ||c0-c2||^2 = 1 + 4; sample 1 at c1: ||c1-c0||^2 + ||c1-c2||^2 = 1 + 5
    assert repel.item() == pytest.approx(10.0 - 11.0 / (2 * 3), abs=1e-9)
    total = DiscriminativeCentroidLoss()(f, y, c)
    assert total.item() == pytest.approx(0.01 * (10 - 11 / 6), abs=1e-9)
    # margin below the mean distance -> repel clamps to 0
    _, repel0 = DiscriminativeCentroidLoss(margin_repel=1.0).terms(f, y, c)
    assert repel0.item() == 0.0
    # the attract term off the centroids: ||(1,1) - c0||^2 = 2, sample 1 still on c1 -> 2 / 2 / B
    a, _ = DiscriminativeCentroidLoss().terms(t([[1.0, 1.0], [1.0, 0.0]]), y, c)
    assert a.item() == pytest.approx(2 / 2 / 2)
    # and OLTRLoss adds CE + 0.01 * it
    logits = t([[1.0, 0.0, -1.0], [0.0, 2.0, 0.0]])
    got = OLTRLoss()({"logits": logits, "direct": f, "centroids": c}, y)
    assert got.item() == pytest.approx(F.cross_entropy(logits, y).item() + 0.01 * total.item(), abs=1e-12)


def _plain_terms(f, c, y, margin=10.0):
    """The centroid loss terms written out literally, differentiated by plain autograd."""
    b, k = f.shape[0], c.shape[0]
    attract = sum(((f[i] - c[y[i]]) ** 2).sum() for i in range(b)) / 2 / b
    neg = sum(((f[i] - c[j]) ** 2).sum() for i in range(b) for j in range(k) if j != int(y[i]))
    repel = torch.clamp(margin - neg / (b * k), 0.0, 1e6)
    return attract, repel


def _grads(fn, f0, c0):
    f, c = f0.clone().requires_grad_(), c0.clone().requires_grad_()
    fn(f, c).backward()
    return f.grad, c.grad


@pytest.fixture
def centroid_batch():
    g = torch.Generator().manual_seed(0)
    f = torch.randn(6, 4, generator=g, dtype=D64)
    c = torch.randn(4, 4, generator=g, dtype=D64)          # class 3 is absent from the batch
    y = torch.tensor([0, 0, 0, 1, 2, 2])
    counts = torch.tensor([3.0, 1.0, 2.0, 0.0], dtype=D64)
    a, r = _plain_terms(f, c, y)
    assert r.item() > 0                                     # the repel term is active in this case
    return f, c, y, counts


def test_centroid_gradient_divided_by_class_count(centroid_batch):
    f, c, y, counts = centroid_batch
    fa_plain, ca_plain = _grads(lambda f, c: _plain_terms(f, c, y)[0], f, c)
    fr_plain, cr_plain = _grads(lambda f, c: _plain_terms(f, c, y)[1], f, c)
    # attract alone: features plain, centroids / (1 + n_k)
    fa, ca = _grads(lambda f, c: attract_loss(f, y, c), f, c)
    assert torch.allclose(fa, fa_plain, rtol=1e-10, atol=1e-12)
    assert torch.allclose(ca, ca_plain / (1 + counts).unsqueeze(1), rtol=1e-10, atol=1e-12)
    assert not torch.allclose(ca, ca_plain)                 # the division really happens
    assert torch.equal(ca[3], torch.zeros(4, dtype=D64))    # absent class: no attract pull
    # the whole centroid loss: repel uses plain autograd
    ft, ct = _grads(lambda f, c: DiscriminativeCentroidLoss()(f, y, c), f, c)
    assert torch.allclose(ft, fa_plain + 0.01 * fr_plain, rtol=1e-10, atol=1e-12)
    assert torch.allclose(ct, ca_plain / (1 + counts).unsqueeze(1) + 0.01 * cr_plain, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("public", [True, False])
def test_oltr_loss_weights_and_public_code_gradient(centroid_batch, public):
    f, c, y, counts = centroid_batch
    w = 0.05
    logits = torch.randn(6, 4, dtype=D64)
    fa_plain, ca_plain = _grads(lambda f, c: _plain_terms(f, c, y)[0], f, c)
    fr_plain, cr_plain = _grads(lambda f, c: _plain_terms(f, c, y)[1], f, c)
    loss = OLTRLoss(weight=w, public_code_centroid_grad=public)
    scale = 8.0                                            # as under a gradient scaler: everything scales
    ft, ct = _grads(lambda f, c: scale * loss({"logits": logits, "direct": f, "feature": f * 0, "centroids": c}, y),
                    f, c)
    assert torch.allclose(ft, scale * w * (fa_plain + 0.01 * fr_plain), rtol=1e-10, atol=1e-12)
    attract_c = ca_plain / (1 + counts).unsqueeze(1)
    if public:   # the public code does not scale the attract pull on the centroids by the loss weight
        expected_c = attract_c + w * 0.01 * cr_plain
    else:
        expected_c = w * (attract_c + 0.01 * cr_plain)
    assert torch.allclose(ct, scale * expected_c, rtol=1e-10, atol=1e-12)


def test_oltr_loss_falls_back_to_feature_and_needs_centroids():
    c = t(CENTROIDS)
    y = torch.tensor([0, 1])
    logits = torch.zeros(2, 3, dtype=D64)
    f = t([[1.0, 1.0], [1.0, 0.0]])
    got = OLTRLoss()({"logits": logits, "feature": f, "centroids": c}, y)
    want = F.cross_entropy(logits, y) + 0.01 * DiscriminativeCentroidLoss()(f, y, c)
    assert got.item() == pytest.approx(want.item(), abs=1e-12)
    for name in ("oltr", "centroid"):
        with pytest.raises(ConfigError, match=r"model\.classifier=meta_embedding"):
            build_loss(name)({"logits": logits, "feature": f}, y)
    with pytest.raises(ConfigError):
        OLTRLoss()({"logits": logits, "feature": torch.zeros(2, 5), "centroids": c}, y)


def test_centroid_grads_keep_dtypes():
    f = torch.randn(4, 3, dtype=torch.bfloat16, requires_grad=True)
    c = torch.randn(2, 3, requires_grad=True)
    DiscriminativeCentroidLoss()(f, torch.tensor([0, 1, 1, 0]), c).backward()
    assert f.grad.dtype == torch.bfloat16 and c.grad.dtype == torch.float32


# -------------------------------------------------------------------------------------- every registered

@pytest.mark.parametrize("name", LOSSES.names())
def test_every_registered_loss_builds_and_backprops(name):
    g = torch.Generator().manual_seed(1)
    b, k, d = 16, 5, 8
    params = {
        "logits": torch.randn(b, k, generator=g, requires_grad=True),
        "feature": torch.randn(b, d, generator=g, requires_grad=True),
        "direct": torch.randn(b, d, generator=g, requires_grad=True),
        "centroids": torch.randn(k, d, generator=g, requires_grad=True),
    }
    y = torch.arange(b) % k
    loss_fn = build_loss(name, train_counts=[50, 30, 20, 10, 5], feature_dim=d)
    assert len(list(loss_fn.parameters())) == 0
    loss = loss_fn(dict(params), y)
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    assert params["logits"].grad is not None
    for p in params.values():
        assert p.grad is None or torch.isfinite(p.grad).all()


def test_loss_builders_report_bad_arguments():
    for name in ("focal", "range", "lifted", "oltr"):
        with pytest.raises(ConfigError):
            build_loss(name, no_such_argument=1)
