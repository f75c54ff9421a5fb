"""Decoupled classifiers (NCM, tau-norm, LWS, cRT) on hand-made features with known answers."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from openlt.decoupling import (
    DEFAULT_TAUS,
    LWSClassifier,
    NCMClassifier,
    NotFittedError,
    TauNormClassifier,
    new_linear,
    search_tau,
    tau_normalize,
    train_on_features,
)
from openlt.errors import ConfigError, DataError, OpenLTError
from openlt.metrics import ShotBands

pytestmark = pytest.mark.usefixtures("single_thread")

D64 = torch.float64


def t(rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=D64)


def clusters(counts, dim=8, spread=0.3, scale=3.0, seed=0):
    """Gaussian blobs around scale * e_c (well separated): features (N, dim), labels (N,)."""
    g = torch.Generator().manual_seed(seed)
    xs, ys = [], []
    for c, n in enumerate(counts):
        centre = torch.zeros(dim)
        centre[c] = scale
        xs.append(centre + spread * torch.randn(n, dim, generator=g))
        ys.append(torch.full((n,), c, dtype=torch.long))
    return torch.cat(xs), torch.cat(ys)


# ----------------------------------------------------------------------------------------------- tau-norm

def test_tau_zero_is_joint_classifier_without_bias():
    fc = new_linear(5, 4, seed=3)
    x = torch.randn(7, 5, generator=torch.Generator().manual_seed(0))
    w, b = tau_normalize(fc.weight, fc.bias, 0.0)
    assert b is None
    assert torch.equal(w, fc.weight.detach())
    clf = TauNormClassifier(fc.weight, tau=0.0)
    assert torch.allclose(clf.logits(x), fc(x).detach() - fc.bias.detach(), atol=1e-6)
    assert not w.requires_grad


def test_tau_one_gives_unit_rows_and_half_by_hand():
    weight = t([[3.0, 4.0], [0.0, 2.0], [0.0, 0.0]])
    w1, _ = tau_normalize(weight, None, 1.0)
    assert w1[:2].norm(dim=1).tolist() == pytest.approx([1.0, 1.0], rel=1e-12)
    assert w1[0].tolist() == pytest.approx([0.6, 0.8], rel=1e-12)
    assert torch.equal(w1[2], torch.zeros(2, dtype=D64))  # a zero row stays zero, no 0/0
    w_half, _ = tau_normalize(weight, None, 0.5)
    assert w_half[0].tolist() == pytest.approx([3 / math.sqrt(5), 4 / math.sqrt(5)], rel=1e-12)
    assert w_half[1].tolist() == pytest.approx([0.0, 2 / math.sqrt(2)], rel=1e-12)
    w2, _ = tau_normalize(weight, None, 2.0)
    assert w2[0].tolist() == pytest.approx([3 / 25, 4 / 25], rel=1e-12)
    with pytest.raises(ConfigError):
        tau_normalize(weight, None, float("nan"))


# W = diag(4, 1): tau-normalised logits are [4^(1 - tau) x0, x1], so x is put in class 0 iff x1 / x0 < 4^(1 - tau).
W_HEAD_TAIL = t([[4.0, 0.0], [0.0, 1.0]])
COUNTS = [200, 5]  # class 0 many-shot, class 1 few-shot


def _val_set(r_hard0: float, r_hard1: float):
    """3 easy + 1 hard class-0 samples (ratio r_hard0), 1 easy + 2 hard class-1 samples (ratio r_hard1)."""
    x = t([[1, 0.1], [1, 0.2], [1, 0.0], [1, r_hard0],
           [0.1, 1], [1, r_hard1], [1, r_hard1]])
    y = torch.tensor([0, 0, 0, 0, 1, 1, 1])
    return x, y


def test_search_tau_picks_the_known_best():
    # hard class-1 samples (ratio 1.9) need 4^(1-tau) < 1.9, i.e. tau > 1 - log4(1.9) = 0.537;
    # the hard class-0 sample (ratio 1.6) needs 4^(1-tau) > 1.6, i.e. tau < 1 - log4(1.6) = 0.661.
    x, y = _val_set(1.6, 1.9)
    best, curve = search_tau(W_HEAD_TAIL, x, y, COUNTS)
    assert best == pytest.approx(0.6)
    assert [c["tau"] for c in curve] == list(DEFAULT_TAUS)
    by_tau = {round(c["tau"], 6): c for c in curve}
    # tau <= 0.5: the two hard tail samples go to the head class
    assert by_tau[0.0] == {"tau": 0.0, "many": 1.0, "medium": None, "few": pytest.approx(1 / 3),
                           "overall": pytest.approx(5 / 7)}
    assert by_tau[0.5]["overall"] == pytest.approx(5 / 7)
    assert by_tau[0.6]["overall"] == 1.0 and by_tau[0.6]["many"] == 1.0 and by_tau[0.6]["few"] == 1.0
    # tau >= 0.7: the hard head sample goes to the tail class
    for tau in (0.7, 1.0, 2.0):
        assert by_tau[tau]["overall"] == pytest.approx(6 / 7)
        assert by_tau[tau]["many"] == pytest.approx(0.75) and by_tau[tau]["few"] == 1.0
    # only tau = 0.6 is perfect
    assert [c["tau"] for c in curve if c["overall"] == 1.0] == [0.6]


def test_search_tau_ties_go_to_the_smaller_tau():
    # window (1 - log4(2.5), 1 - log4(1.2)) = (0.339, 0.868): 0.4 ... 0.8 are all perfect
    x, y = _val_set(1.2, 2.5)
    best, curve = search_tau(W_HEAD_TAIL, x, y, COUNTS)
    assert [round(c["tau"], 6) for c in curve if c["overall"] == 1.0] == [0.4, 0.5, 0.6, 0.7, 0.8]
    assert best == pytest.approx(0.4)
    # whatever the order of the grid, and with the public script's float32 linspace
    best_rev, curve_rev = search_tau(W_HEAD_TAIL, x, y, COUNTS, taus=[0.8, 0.6, 0.5, 0.4, 2.0])
    assert best_rev == pytest.approx(0.4)
    assert [c["tau"] for c in curve_rev] == [0.8, 0.6, 0.5, 0.4, 2.0]
    best_lin, curve_lin = search_tau(W_HEAD_TAIL, x, y, COUNTS, taus=torch.linspace(0, 2, 21))
    assert best_lin == pytest.approx(0.4) and len(curve_lin) == 21


def test_search_tau_bands_and_open_labels():
    x, y = _val_set(1.6, 1.9)
    assert search_tau(W_HEAD_TAIL, x, y, COUNTS)[0] == pytest.approx(0.6)
    # an open-set sample (-1) or a class id past the classifier's is refused, not silently left out
    for bad, says in ((-1, "must be >= 0"), (2, "below the classifier's 2 classes, got 2")):
        x_bad, y_bad = torch.cat([x, t([[5.0, 5.0]])]), torch.cat([y, torch.tensor([bad])])
        with pytest.raises(DataError, match=says):
            search_tau(W_HEAD_TAIL, x_bad, y_bad, COUNTS)
        with pytest.raises(DataError, match=says):
            TauNormClassifier(W_HEAD_TAIL, tau=None).fit(x_bad, y_bad, COUNTS)
    # different bands move class 1 to medium
    _, curve = search_tau(W_HEAD_TAIL, x, y, COUNTS, taus=[0.0], bands=ShotBands(many_above=100, few_below=2))
    assert curve[0]["few"] is None and curve[0]["medium"] == pytest.approx(1 / 3)
    with pytest.raises(ConfigError):
        search_tau(W_HEAD_TAIL, x, y, [200, 5, 1])
    with pytest.raises(DataError):
        search_tau(W_HEAD_TAIL, x[:, :1], y, COUNTS)
    with pytest.raises(DataError):
        search_tau(W_HEAD_TAIL, x[:1], torch.tensor([-1]), COUNTS)


def test_tau_norm_classifier_fit_on_validation():
    x, y = _val_set(1.6, 1.9)
    clf = TauNormClassifier(W_HEAD_TAIL, tau=None)
    with pytest.raises(NotFittedError):
        clf.logits(x)
    assert issubclass(NotFittedError, OpenLTError)
    assert clf.fit(x, y, COUNTS) is clf
    assert clf.tau_ == pytest.approx(0.6) and clf.tau is None and len(clf.curve_) == 21
    assert clf.predict(x).tolist() == y.tolist()
    expected = x @ tau_normalize(W_HEAD_TAIL, None, 0.6)[0].t()
    assert torch.allclose(clf.logits(x), expected)


# ----------------------------------------------------------------------------------------------- NCM

def test_ncm_cosine_by_hand():
    x = t([[2.0, 0.2], [4.0, -0.2], [0.0, 1.0], [0.1, 5.0]])
    y = torch.tensor([0, 0, 1, 1])
    ncm = NCMClassifier(metric="cosine", normalize=False).fit(x, y)
    assert torch.allclose(ncm.means_, t([[3.0, 0.0], [0.05, 3.0]]))
    q = t([[1.0, 0.0], [0.0, 7.0], [1.0, 1.0]])
    logits = ncm.logits(q)
    c = 0.05 / math.hypot(0.05, 3.0)
    s = 3.0 / math.hypot(0.05, 3.0)
    assert logits[0].tolist() == pytest.approx([1.0, c])
    assert logits[1].tolist() == pytest.approx([0.0, s])
    assert logits[2].tolist() == pytest.approx([1 / math.sqrt(2), (c + s) / math.sqrt(2)])
    assert ncm.predict(q).tolist() == [0, 1, 1]


def test_ncm_euclidean_by_hand_and_differs_from_cosine():
    # same direction, different magnitudes: only the (unnormalised) Euclidean metric can tell them apart
    x = t([[1.0, 1.0], [0.9, 0.9], [1.1, 1.1], [3.0, 3.0], [2.9, 2.9], [3.1, 3.1]])
    y = torch.tensor([0, 0, 0, 1, 1, 1])
    euc = NCMClassifier(metric="euclidean", normalize=False).fit(x, y)
    assert torch.allclose(euc.means_, t([[1.0, 1.0], [3.0, 3.0]]))
    assert euc.logits(t([[1.0, 1.0]]))[0].tolist() == pytest.approx([0.0, -2 * math.sqrt(2)])
    assert euc.logits(t([[4.0, 3.0]]))[0].tolist() == pytest.approx([-math.sqrt(13), -1.0])
    assert euc.predict(x).tolist() == y.tolist()
    cos = NCMClassifier(metric="cosine", normalize=False).fit(x, y)
    assert torch.allclose(cos.logits(x), torch.ones(6, 2, dtype=D64))  # every cosine is 1


def test_ncm_normalize_means_of_unit_vectors_by_hand():
    x = t([[2.0, 0.0], [0.0, 5.0], [0.0, 0.5], [3.0, 4.0]])
    y = torch.tensor([0, 0, 1, 1])
    ncm = NCMClassifier(metric="euclidean", normalize=True).fit(x, y)
    # unit vectors (1, 0), (0, 1) -> (0.5, 0.5); (0, 1), (0.6, 0.8) -> (0.3, 0.9)
    assert torch.allclose(ncm.means_, t([[0.5, 0.5], [0.3, 0.9]]))
    # the query (10, 0) is normalised to (1, 0) first
    assert ncm.logits(t([[10.0, 0.0]]))[0].tolist() == pytest.approx([-math.sqrt(0.5), -math.sqrt(0.49 + 0.81)])


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@pytest.mark.parametrize("normalize", [True, False])
def test_ncm_exact_on_separable_toy_features(metric, normalize):
    counts = [40, 12, 5, 2]
    x, y = clusters(counts, seed=0)
    xt, yt = clusters([10, 10, 10, 10], seed=1)
    ncm = NCMClassifier(metric=metric, normalize=normalize).fit(x, y)
    assert ncm.num_classes_ == 4 and ncm.means_.shape == (4, 8)
    assert ncm.predict(x).tolist() == y.tolist()
    assert ncm.predict(xt).tolist() == yt.tolist()


def test_ncm_center_subtracts_training_mean():
    x = t([[11.0, 10.0], [10.0, 11.0]])
    y = torch.tensor([0, 1])
    ncm = NCMClassifier(metric="cosine", normalize=True, center=True).fit(x, y)
    assert ncm.feature_mean_.tolist() == [10.5, 10.5]
    r = 1 / math.sqrt(2)
    assert torch.allclose(ncm.means_, t([[r, -r], [-r, r]]))
    assert torch.allclose(ncm.logits(x), t([[1.0, -1.0], [-1.0, 1.0]]))


def test_ncm_center_mean_is_the_float64_mean_over_chunks():
    """The centring mean sums float64 chunks of rows (no float64 copy of all the features): over more rows than
    one chunk (8,192) it is the float64 mean of every row, for float32 and float16 features."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(20_000, 3, generator=g) * 5 + 100
    y = torch.randint(0, 4, (20_000,), generator=g)
    for feats in (x, x.half()):
        ncm = NCMClassifier(center=True).fit(feats, y, 4)
        want = feats.double().mean(0)
        assert ncm.feature_mean_.dtype == torch.float32
        assert torch.allclose(ncm.feature_mean_.double(), want, rtol=0, atol=1e-5)
        assert ncm.feature_mean_.tolist() == want.float().tolist()


def test_ncm_errors():
    ncm = NCMClassifier()
    with pytest.raises(NotFittedError):
        ncm.logits(torch.zeros(1, 2))
    with pytest.raises(DataError, match="no training sample.*1"):
        ncm.fit(t([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 2]))
    with pytest.raises(DataError, match="3"):
        ncm.fit(t([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 1]), num_classes=4)
    with pytest.raises(DataError):
        ncm.fit(t([[1.0, 0.0]]), torch.tensor([0, 1]))
    with pytest.raises(ConfigError):
        NCMClassifier(metric="manhattan")
    ncm.fit(t([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 1]))
    with pytest.raises(DataError):
        ncm.logits(torch.zeros(1, 3))


# ----------------------------------------------------------------------------------------------- LWS

def test_lws_unit_scales_reproduce_the_original():
    fc = new_linear(6, 4, seed=0)
    x = torch.randn(9, 6, generator=torch.Generator().manual_seed(1))
    lws = LWSClassifier.from_linear(fc)
    assert torch.equal(lws.scales.detach(), torch.ones(4))
    assert torch.equal(lws(x), fc(x))
    assert torch.allclose(LWSClassifier(fc.weight, None)(x), fc(x) - fc.bias, atol=1e-6)
    assert [n for n, _ in lws.named_parameters()] == ["scales"]
    assert not lws.weight.requires_grad and not lws.bias.requires_grad
    with torch.no_grad():
        fc.weight.add_(1.0)  # the LWS copy is frozen and independent
    assert not torch.equal(lws(x), fc(x))


def test_lws_scales_weight_and_bias_by_hand():
    lws = LWSClassifier(t([[1.0, 0.0], [0.0, 1.0]]), t([1.0, -1.0]))
    with torch.no_grad():
        lws.scales.copy_(t([2.0, 0.5]))
    # x W^T + b = [2 + 1, 3 - 1] = [3, 2]; times [2, 0.5] -> [6, 1]
    assert lws(t([[2.0, 3.0]])).tolist() == [[6.0, 1.0]]
    folded = lws.to_linear()
    assert folded.weight.tolist() == [[2.0, 0.0], [0.0, 0.5]] and folded.bias.tolist() == [2.0, -0.5]
    assert folded(t([[2.0, 3.0]])).tolist() == [[6.0, 1.0]]


def test_lws_training_fixes_a_head_biased_classifier():
    # frozen classifier with a head bias: tail features (0, 1.5) score [2, 1.5] -> all go to class 0
    x = torch.cat([torch.tensor([[1.0, 0.0]]).repeat(30, 1), torch.tensor([[0.0, 1.5]]).repeat(3, 1)])
    y = torch.tensor([0] * 30 + [1] * 3)
    lws = LWSClassifier(torch.eye(2), torch.tensor([2.0, 0.0]))
    assert lws.logits(x).argmax(1).tolist() == [0] * 33
    train_on_features(lws, x, y, epochs=20, batch_size=8, lr=0.2, sampler="class_balanced", seed=0)
    assert lws.logits(x).argmax(1).tolist() == y.tolist()
    assert torch.equal(lws.weight, torch.eye(2)) and lws.bias.tolist() == [2.0, 0.0]
    assert lws.scales[1] > lws.scales[0]


# ----------------------------------------------------------------------------------------------- cRT

def _crt(seed: int, sampler: str = "class_balanced", **kw) -> nn.Linear:
    x, y = clusters([60, 20, 8, 3], seed=0)
    fc = new_linear(8, 4, seed=0)
    return train_on_features(fc, x, y, epochs=15, batch_size=16, lr=0.2, sampler=sampler, seed=seed, **kw)


def test_crt_reaches_full_accuracy_on_separable_features():
    fc = _crt(0)
    x, y = clusters([60, 20, 8, 3], seed=0)
    xt, yt = clusters([10, 10, 10, 10], seed=1)
    with torch.no_grad():
        assert fc(x).argmax(1).tolist() == y.tolist()
        assert fc(xt).argmax(1).tolist() == yt.tolist()


def test_crt_is_deterministic_in_seed():
    a, b, c = _crt(0), _crt(0), _crt(1)
    assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)
    assert not torch.equal(a.weight, c.weight)
    # new_linear depends on its seed only and leaves the global generator alone
    state = torch.get_rng_state()
    assert torch.equal(new_linear(8, 4, seed=5).weight, new_linear(8, 4, seed=5).weight)
    assert not torch.equal(new_linear(8, 4, seed=5).weight, new_linear(8, 4, seed=6).weight)
    assert torch.equal(torch.get_rng_state(), state)


def test_train_on_features_other_samplers_and_mode():
    fc = _crt(0, sampler="class_aware", sampler_args={"samples_per_class": 4})
    assert torch.isfinite(fc.weight).all()
    inst = _crt(0, sampler="instance")
    assert not torch.equal(inst.weight, _crt(0).weight)
    m = new_linear(8, 4).eval()
    x, y = clusters([5, 5, 5, 5])
    train_on_features(m, x, y, epochs=1, batch_size=4, lr=0.1)
    assert not m.training


def test_train_on_features_errors():
    x, y = clusters([5, 5])
    with pytest.raises(ConfigError):
        train_on_features(new_linear(8, 2), x, y, epochs=1, batch_size=4, lr=0.1, sampler="nope")
    with pytest.raises(ConfigError):
        train_on_features(new_linear(8, 2), x, y, epochs=0, batch_size=4, lr=0.1)
    with pytest.raises(ConfigError):
        train_on_features(new_linear(8, 2).requires_grad_(False), x, y, epochs=1, batch_size=4, lr=0.1)
    with pytest.raises(DataError, match="out of range"):
        train_on_features(new_linear(8, 1), x, y, epochs=1, batch_size=4, lr=0.1)
    with pytest.raises(DataError):
        train_on_features(new_linear(8, 2), x, y[:-1], epochs=1, batch_size=4, lr=0.1)


class _Recorder(nn.Module):
    """Logits from a linear layer; records which samples (feature 0 holds the index) each batch held."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(2, 3)
        self.batches: list[list[int]] = []

    def forward(self, x):
        if self.training:
            self.batches.append(x[:, 0].round().long().tolist())
        return {"logits": self.fc(x)}  # a dict with "logits" is accepted too


def test_train_on_features_draws_each_epoch_from_the_sampler():
    from openlt.data.samplers import build_sampler

    y = torch.tensor([0] * 8 + [1] * 3 + [2] * 2)
    x = torch.stack([torch.arange(13, dtype=torch.float32), torch.zeros(13)], dim=1)
    rec = _Recorder()
    train_on_features(rec, x, y, epochs=3, batch_size=5, lr=0.0, sampler="class_balanced", seed=7)
    smp = build_sampler("class_balanced", y, epochs=3, seed=7)
    expected = []
    for epoch in range(3):
        smp.set_epoch(epoch)
        order = list(smp)
        expected += [order[i:i + 5] for i in range(0, 13, 5)]
    assert rec.batches == expected  # batches of 5, 5, 3 per epoch, a new order every epoch
    assert rec.batches[0] != rec.batches[3]


class _LrProbe(nn.Module):
    """logits [p, 0] for every sample; records p at each forward and dL/dp at each backward."""

    def __init__(self) -> None:
        super().__init__()
        self.p = nn.Parameter(torch.zeros((), dtype=D64))
        self.values: list[float] = []
        self.grads: list[float] = []
        self.p.register_hook(lambda g: self.grads.append(float(g)))

    def forward(self, x):
        self.values.append(float(self.p.detach()))
        return torch.stack([self.p.expand(len(x)), torch.zeros(len(x), dtype=D64)], dim=1)


def test_train_on_features_cosine_lr_per_step():
    x = torch.zeros(10, 1, dtype=D64)
    y = torch.zeros(10, dtype=torch.long)
    probe = _LrProbe()
    train_on_features(probe, x, y, epochs=3, batch_size=4, lr=0.5, momentum=0.0, weight_decay=0.0,
                      sampler="instance")
    total = 3 * 3  # 3 epochs of ceil(10 / 4) steps
    assert len(probe.grads) == total
    for s in range(total - 1):
        lr_s = (probe.values[s] - probe.values[s + 1]) / probe.grads[s]
        assert lr_s == pytest.approx(0.5 * 0.5 * (1 + math.cos(math.pi * s / total)), rel=1e-9)
