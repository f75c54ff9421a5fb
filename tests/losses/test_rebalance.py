"""Re-balancing losses (class-balanced, LDAM-DRW, balanced softmax, logit adjustment) against hand-computed cases."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from openlt.errors import ConfigError
from openlt.losses import LOSSES, build_loss
from openlt.losses.rebalance import (
    BalancedSoftmaxLoss,
    ClassBalancedLoss,
    LDAMLoss,
    LogitAdjustedLoss,
    effective_number_weights,
    ldam_margins,
    log_priors,
    logit_adjust,
)

pytestmark = pytest.mark.usefixtures("single_thread")

D64 = torch.float64
NEW = ["class_balanced", "ldam", "balanced_softmax", "logit_adjusted"]

# (1 - 0.9) / (1 - 0.9^n) for n = 100, 10, then scaled to sum to 2:
#   0.1 / (1 - 2.6561e-5) = 0.1000026562,  0.1 / (1 - 0.3486784401) = 0.1535339933
W_100_10 = (0.7888615425968193, 1.2111384574031807)


def t(rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=D64)


# ----------------------------------------------------------------------------------------------- class-balanced

def test_effective_number_weights_by_hand():
    w = effective_number_weights([100, 10], beta=0.9)
    assert w.tolist() == pytest.approx(W_100_10, rel=1e-12)
    assert float(w.sum()) == pytest.approx(2.0)
    # beta = 0: no re-weighting; beta -> 1: inverse frequency (normalised to sum to C)
    assert effective_number_weights([100, 10], beta=0.0).tolist() == [1.0, 1.0]
    near1 = effective_number_weights([100, 10], beta=1 - 1e-9)
    assert near1.tolist() == pytest.approx([2 * 0.01 / 0.11, 2 * 0.1 / 0.11], rel=1e-6)
    for bad in (1.0, -0.1, 1.5):
        with pytest.raises(ConfigError):
            effective_number_weights([100, 10], beta=bad)


def test_class_balanced_ce_by_hand():
    # softmax([0, ln 3]) = [1/4, 3/4]
    logits = t([[0.0, math.log(3)], [math.log(3), 0.0]])
    loss = ClassBalancedLoss([100, 10], beta=0.9)
    w0, w1 = W_100_10
    # both targets class 0: p_t = 1/4 and 3/4; plain mean over the batch
    got = loss({"logits": logits}, torch.tensor([0, 0]))
    assert got.item() == pytest.approx(w0 * (math.log(4) + math.log(4 / 3)) / 2, rel=1e-6)
    got = loss({"logits": logits}, torch.tensor([1, 1]))
    assert got.item() == pytest.approx(w1 * (math.log(4 / 3) + math.log(4)) / 2, rel=1e-6)
    # mixed targets: sample 0 (class 0, p = 1/4), sample 1 (class 1, p = 1/4)
    got = loss({"logits": logits}, torch.tensor([0, 1]))
    assert got.item() == pytest.approx((w0 + w1) * math.log(4) / 2, rel=1e-6)


def test_class_balanced_focal_by_hand():
    logits = t([[0.0, math.log(3)], [math.log(3), 0.0]])
    y = torch.tensor([1, 1])
    l0 = 0.25 ** 2 * -math.log(0.75)
    l1 = 0.75 ** 2 * -math.log(0.25)
    got = ClassBalancedLoss([100, 10], beta=0.9, base="focal", gamma=2.0)({"logits": logits}, y)
    assert got.item() == pytest.approx(W_100_10[1] * (l0 + l1) / 2, rel=1e-6)
    # gamma = 0 focal is the CE form
    a = ClassBalancedLoss([100, 10], beta=0.9, base="focal", gamma=0.0)({"logits": logits}, y)
    b = ClassBalancedLoss([100, 10], beta=0.9)({"logits": logits}, y)
    assert a.item() == pytest.approx(b.item(), rel=1e-12)
    with pytest.raises(ConfigError):
        ClassBalancedLoss([100, 10], base="hinge")


def test_class_balanced_sigmoid_focal_by_hand():
    """Cui et al.'s CB-focal: a binary focal term per class on sigmoid outputs, summed over classes."""
    logits = t([[0.0, math.log(3)]])  # sigmoid: 1/2 and 3/4
    y = torch.tensor([1])
    # class 1 is the target: p^t = 3/4; class 0 is not: p^t = 1 - 1/2 = 1/2
    per_class = [(1 - 0.5) ** 2 * -math.log(0.5), (1 - 0.75) ** 2 * -math.log(0.75)]
    got = ClassBalancedLoss([100, 10], beta=0.9, base="sigmoid_focal", gamma=2.0)({"logits": logits}, y)
    assert got.item() == pytest.approx(W_100_10[1] * sum(per_class), rel=1e-6)
    # gamma = 0: weighted binary cross-entropy summed over the classes
    got = ClassBalancedLoss([100, 10], beta=0.9, base="sigmoid_focal", gamma=0.0)({"logits": logits}, y)
    assert got.item() == pytest.approx(W_100_10[1] * (math.log(2) + math.log(4 / 3)), rel=1e-6)


def test_class_balanced_default_beta():
    loss = build_loss("class_balanced", train_counts=[5000, 50])
    assert loss.beta == 0.9999
    raw = [(1 - 0.9999) / (1 - 0.9999 ** 5000), (1 - 0.9999) / (1 - 0.9999 ** 50)]
    assert loss.weight.tolist() == pytest.approx([2 * r / sum(raw) for r in raw], rel=1e-6)


# ----------------------------------------------------------------------------------------------- LDAM

def test_ldam_margins_by_hand():
    # n^{1/4} = 1, 2, 3, 4 -> 1 / n^{1/4} = 1, 1/2, 1/3, 1/4, scaled so that the max is 0.5
    assert ldam_margins([1, 16, 81, 256], max_m=0.5).tolist() == pytest.approx([0.5, 0.25, 1 / 6, 0.125], rel=1e-12)
    assert ldam_margins([256, 16], max_m=1.0).tolist() == pytest.approx([0.5, 1.0], rel=1e-12)


def _ldam_by_hand() -> tuple[torch.Tensor, torch.Tensor, float, float]:
    logits = t([[0.2, -0.1, 0.4, 0.0], [0.1, 0.3, 0.0, 0.0]])
    y = torch.tensor([2, 0])
    # sample 0: class 2, margin 1/6 -> 30 * [0.2, -0.1, 0.4 - 1/6, 0] = [6, -3, 7, 0]
    l0 = -7 + math.log(math.exp(6) + math.exp(-3) + math.exp(7) + 1)
    # sample 1: class 0, margin 0.5 -> 30 * [0.1 - 0.5, 0.3, 0, 0] = [-12, 9, 0, 0]
    l1 = 12 + math.log(math.exp(-12) + math.exp(9) + 2)
    return logits, y, l0, l1


def test_ldam_by_hand_and_drw_switch():
    counts = [1, 16, 81, 256]
    logits, y, l0, l1 = _ldam_by_hand()
    loss = LDAMLoss(counts, max_m=0.5, s=30, drw_epoch=3, drw_beta=0.9)
    for epoch in (0, 2):
        loss.set_epoch(epoch)
        assert not loss.reweighting
        assert loss({"logits": logits}, y).item() == pytest.approx((l0 + l1) / 2, rel=1e-6)
    w = effective_number_weights(counts, beta=0.9)
    for epoch in (3, 10):
        loss.set_epoch(epoch)
        assert loss.reweighting
        # weighted CE normalised by the batch's weights (F.cross_entropy(weight=...), as the authors' code)
        expected = (w[2] * l0 + w[0] * l1) / (w[2] + w[0])
        assert loss({"logits": logits}, y).item() == pytest.approx(float(expected), rel=1e-6)
    # going back (e.g. a resumed run re-sets the epoch) turns the weights off again
    loss.set_epoch(1)
    assert loss({"logits": logits}, y).item() == pytest.approx((l0 + l1) / 2, rel=1e-6)


def test_ldam_drw_weights_by_hand_and_disabled():
    loss = LDAMLoss([100, 10], drw_epoch=1, drw_beta=0.9)
    assert loss.drw_weight.tolist() == pytest.approx(W_100_10, rel=1e-6)
    never = LDAMLoss([100, 10], drw_epoch=None)
    never.set_epoch(10_000)
    assert not never.reweighting
    default = build_loss("ldam", train_counts=[100, 10])
    assert (default.max_m, default.s, default.drw_epoch, default.drw_beta) == (0.5, 30.0, 160, 0.9999)
    default.set_epoch(159)
    assert not default.reweighting
    default.set_epoch(160)
    assert default.reweighting


def test_ldam_zero_margin_is_scaled_ce():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(8, 5, generator=g, dtype=D64)
    y = torch.randint(0, 5, (8,), generator=g)
    loss = LDAMLoss([50, 40, 30, 20, 10], max_m=0.0, s=2.0, drw_epoch=None)
    assert loss({"logits": logits}, y).item() == pytest.approx(F.cross_entropy(2 * logits, y).item(), rel=1e-9)


# ----------------------------------------------------------------------------------------------- logit adjustment

def test_balanced_softmax_is_ce_on_logits_plus_log_counts():
    g = torch.Generator().manual_seed(1)
    counts = [500, 120, 30, 4]
    logits = torch.randn(16, 4, generator=g, dtype=D64)
    y = torch.randint(0, 4, (16,), generator=g)
    expected = F.cross_entropy(logits + torch.log(t(counts)), y)
    got = BalancedSoftmaxLoss(counts)({"logits": logits}, y)
    assert got.item() == pytest.approx(expected.item(), rel=1e-6)
    # by hand for one sample: counts [3, 1], logits [0, 0], class 1 -> -log(1 / (3 + 1))
    one = BalancedSoftmaxLoss([3, 1])({"logits": t([[0.0, 0.0]])}, torch.tensor([1]))
    assert one.item() == pytest.approx(math.log(4), rel=1e-6)
    # logit-adjusted loss with tau = 1 is the same loss (log pi = log n - log N, a constant shift)
    la = LogitAdjustedLoss(counts, tau=1.0)({"logits": logits}, y)
    assert la.item() == pytest.approx(expected.item(), rel=1e-6)


def test_logit_adjusted_loss_tau_by_hand():
    # counts [3, 1]: pi = [3/4, 1/4]; tau = 2, logits [0, 0], class 1 -> softmax of [2 ln 3/4, 2 ln 1/4]
    got = LogitAdjustedLoss([3, 1], tau=2.0)({"logits": t([[0.0, 0.0]])}, torch.tensor([1]))
    assert got.item() == pytest.approx(-math.log((1 / 16) / (9 / 16 + 1 / 16)), rel=1e-6)
    assert got.item() == pytest.approx(math.log(10), rel=1e-6)


def test_logit_adjust_post_hoc_by_hand():
    assert log_priors([3, 1]).tolist() == pytest.approx([math.log(0.75), math.log(0.25)], rel=1e-12)
    logits = t([[1.0, 0.5], [2.0, 0.0]])
    adj = logit_adjust(logits, [3, 1], tau=1.0)
    # row 0: [1 - ln .75, 0.5 - ln .25] = [1.28768, 1.88629] -> the tail class wins now
    assert adj[0].tolist() == pytest.approx([1 - math.log(0.75), 0.5 - math.log(0.25)], rel=1e-12)
    assert adj.argmax(1).tolist() == [1, 0]
    assert logits.argmax(1).tolist() == [0, 0]
    assert adj.dtype == logits.dtype
    assert torch.equal(logit_adjust(logits, [3, 1], tau=0.0), logits)
    half = logit_adjust(logits, [3, 1], tau=0.5)
    assert half[0, 1].item() == pytest.approx(0.5 - 0.5 * math.log(0.25), rel=1e-12)
    with pytest.raises(ConfigError):
        logit_adjust(logits, [3, 1, 2])


# ----------------------------------------------------------------------------------------------- registry

@pytest.mark.parametrize("name", NEW)
def test_registered_losses_build_and_backprop(name):
    assert name in LOSSES
    counts = [200, 50, 10, 2]
    loss = build_loss(name, train_counts=counts, feature_dim=8)
    if hasattr(loss, "set_epoch"):
        loss.set_epoch(0)
    g = torch.Generator().manual_seed(0)
    logits = (torch.randn(12, 4, generator=g) * 0.5).requires_grad_()
    y = torch.randint(0, 4, (12,), generator=g)
    out = loss({"logits": logits, "feature": torch.randn(12, 8, generator=g)}, y)
    assert out.dim() == 0 and torch.isfinite(out)
    out.backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0
    assert not list(loss.parameters())  # losses own no parameters
    # half-precision logits are computed in float32
    assert torch.isfinite(loss({"logits": logits.detach().half()}, y))


@pytest.mark.parametrize("name", NEW)
def test_missing_or_bad_train_counts(name):
    with pytest.raises(ConfigError, match="train_counts"):
        build_loss(name)
    with pytest.raises(ConfigError, match="at least one training image"):
        build_loss(name, train_counts=[10, 0, 3])
    with pytest.raises(ConfigError):
        build_loss(name, train_counts=[10, 3], no_such_option=1)
    loss = build_loss(name, train_counts=[10, 3])
    with pytest.raises(ConfigError, match="classes"):
        loss({"logits": torch.zeros(2, 3)}, torch.tensor([0, 1]))


def test_ldam_set_epoch_exists_and_others_have_none():
    assert callable(getattr(build_loss("ldam", train_counts=[3, 1]), "set_epoch", None))
    for name in ("class_balanced", "balanced_softmax", "logit_adjusted"):
        assert not hasattr(build_loss(name, train_counts=[3, 1]), "set_epoch")
