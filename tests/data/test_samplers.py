"""Tests for openlt.data.samplers: class frequencies, schedules, sharding, determinism and errors.

Frequency tolerance: with N i.i.d. draws the empirical frequency of class j has standard error
sqrt(p_j (1 - p_j) / N). We allow 4 standard errors (two-sided chance of a false failure ~6e-5 per check
for a correct sampler; the seeds are fixed, so the tests are deterministic anyway). With N = 200_000 this is
at most ~0.0045, far below the gaps between the q = 1, 1/2, 0 distributions being told apart (>= 0.06).
"""

from __future__ import annotations

import math

import pytest
import torch

from openlt.data.samplers import (
    SAMPLERS,
    ClassAwareSampler,
    ClassBalancedSampler,
    InstanceBalancedSampler,
    PowerSampler,
    ProgressivelyBalancedSampler,
    SquareRootSampler,
    build_sampler,
    class_counts,
    class_probabilities,
)
from openlt.errors import ConfigError, DataError

COUNTS = [1000, 100, 10]
N_DRAWS = 200_000


def make_labels(counts=COUNTS, seed=123) -> torch.Tensor:
    """Labels with the given class counts, shuffled so class membership is not tied to index order."""
    labels = torch.cat([torch.full((n,), c, dtype=torch.long) for c, n in enumerate(counts)])
    return labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))]


def expected_p(counts, q):
    w = [n**q if n > 0 else 0.0 for n in counts]
    return torch.tensor([x / sum(w) for x in w], dtype=torch.float64)


def assert_frequencies(indices, labels, p):
    """Empirical class frequencies of the drawn indices are within 4 standard errors of p."""
    n = len(indices)
    freq = torch.bincount(labels[torch.as_tensor(indices)], minlength=len(p)).double() / n
    se = torch.sqrt(p * (1 - p) / n)
    tol = 4 * se + 1e-12
    assert torch.all((freq - p).abs() <= tol), f"freq {freq.tolist()} vs p {p.tolist()} (tol {tol.tolist()})"


# ---------------------------------------------------------------- counts and probabilities


def test_class_counts_and_num_classes():
    assert class_counts([0, 2, 2, 0, 2]).tolist() == [2, 0, 3]
    assert class_counts([0, 2], num_classes=5).tolist() == [1, 0, 1, 0, 0]
    assert class_counts(make_labels()).tolist() == COUNTS
    assert class_counts([0, 1]).dtype == torch.long
    with pytest.raises(DataError):
        class_counts([0, 5], num_classes=3)


@pytest.mark.parametrize("q", [1.0, 0.0, 0.5, 2.0])
def test_class_probabilities_formula(q):
    p = class_probabilities(torch.tensor(COUNTS), q)
    assert p.dtype == torch.float64
    torch.testing.assert_close(p, expected_p(COUNTS, q))


@pytest.mark.parametrize("q", [1.0, 0.0, 0.5, -1.0])
def test_empty_class_gets_zero_probability(q):
    p = class_probabilities([5, 0, 3], q)
    assert p[1] == 0.0
    assert math.isclose(float(p.sum()), 1.0)
    if q == 0.0:
        assert p.tolist() == [0.5, 0.0, 0.5]


def test_class_probabilities_large_q_does_not_overflow():
    p = class_probabilities([10**6, 10**5], 100.0)
    assert torch.isfinite(p).all() and math.isclose(float(p[0]), 1.0)


# ---------------------------------------------------------------- frequencies for q = 1, 0, 1/2


@pytest.mark.parametrize("q", [1.0, 0.0, 0.5])
def test_power_sampler_class_frequencies(q):
    labels = make_labels()
    s = PowerSampler(labels, q=q, num_samples=N_DRAWS, seed=1)
    idx = list(s)
    assert len(idx) == N_DRAWS
    assert_frequencies(idx, labels, expected_p(COUNTS, q))


@pytest.mark.parametrize(
    "cls, q", [(ClassBalancedSampler, 0.0), (SquareRootSampler, 0.5), (InstanceBalancedSampler, 1.0)]
)
def test_named_samplers_class_frequencies(cls, q):
    labels = make_labels()
    s = cls(labels, num_samples=N_DRAWS, seed=2)
    torch.testing.assert_close(s.current_class_probabilities(), expected_p(COUNTS, q))
    assert_frequencies(list(s), labels, expected_p(COUNTS, q))


def test_class_balanced_is_uniform_within_a_class():
    """Per-image weight p_c / n_c: each of the 10 tail images is drawn ~N/30 times, not just one of them."""
    labels = make_labels()
    idx = torch.tensor(list(ClassBalancedSampler(labels, num_samples=N_DRAWS, seed=3)))
    tail = (labels == 2).nonzero().flatten()
    hits = torch.bincount(idx, minlength=len(labels))[tail].double()
    p = 1 / 30
    mean, sd = N_DRAWS * p, math.sqrt(N_DRAWS * p * (1 - p))
    assert torch.all((hits - mean).abs() <= 4 * sd), hits.tolist()


def test_instance_balanced_is_a_permutation():
    labels = make_labels()
    s = InstanceBalancedSampler(labels, seed=4)
    for epoch in range(3):
        s.set_epoch(epoch)
        idx = list(s)
        assert sorted(idx) == list(range(len(labels)))
        assert idx != sorted(idx)  # actually shuffled


def test_instance_balanced_more_samples_than_images():
    labels = make_labels()
    n = len(labels)
    idx = list(InstanceBalancedSampler(labels, num_samples=2 * n + n // 2, seed=5))
    assert sorted(idx[:n]) == list(range(n))
    assert sorted(idx[n: 2 * n]) == list(range(n))
    assert len(set(idx[2 * n:])) == n // 2  # a partial third permutation: no repeats
    hits = torch.bincount(torch.tensor(idx), minlength=n)
    assert set(hits.tolist()) == {2, 3}


# ---------------------------------------------------------------- progressive schedule


def test_progressive_schedule_probabilities():
    labels = make_labels()
    s = ProgressivelyBalancedSampler(labels, total_epochs=5)
    p_ib, p_cb = expected_p(COUNTS, 1.0), expected_p(COUNTS, 0.0)
    s.set_epoch(0)
    torch.testing.assert_close(s.current_class_probabilities(), p_ib)
    s.set_epoch(2)
    torch.testing.assert_close(s.current_class_probabilities(), 0.5 * p_ib + 0.5 * p_cb)
    s.set_epoch(1)
    torch.testing.assert_close(s.current_class_probabilities(), 0.75 * p_ib + 0.25 * p_cb)
    s.set_epoch(4)  # last epoch is fully class-balanced
    torch.testing.assert_close(s.current_class_probabilities(), p_cb)
    s.set_epoch(9)  # past the end it stays class-balanced
    torch.testing.assert_close(s.current_class_probabilities(), p_cb)


def test_progressive_single_epoch_is_instance_balanced():
    s = ProgressivelyBalancedSampler(make_labels(), total_epochs=1)
    torch.testing.assert_close(s.current_class_probabilities(), expected_p(COUNTS, 1.0))


@pytest.mark.parametrize("epoch, alpha", [(0, 0.0), (2, 0.5), (4, 1.0)])
def test_progressive_empirical_frequencies(epoch, alpha):
    labels = make_labels()
    s = ProgressivelyBalancedSampler(labels, total_epochs=5, num_samples=N_DRAWS, seed=6)
    s.set_epoch(epoch)
    p = (1 - alpha) * expected_p(COUNTS, 1.0) + alpha * expected_p(COUNTS, 0.0)
    assert_frequencies(list(s), labels, p)


# ---------------------------------------------------------------- class-aware


def test_class_aware_runs_and_uniform_frequencies():
    labels = make_labels()
    k, rounds = 4, 200
    n = len(COUNTS) * k * rounds
    s = ClassAwareSampler(labels, samples_per_class=k, num_samples=n, seed=7)
    idx = torch.tensor(list(s))
    blocks = labels[idx].view(-1, k)
    # runs of k images of one class
    assert torch.all(blocks == blocks[:, :1])
    block_classes = blocks[:, 0].view(-1, len(COUNTS))
    # class list is cycled: each consecutive group of 3 blocks covers all 3 classes
    assert all(sorted(row) == [0, 1, 2] for row in block_classes.tolist())
    # so class frequencies are exactly uniform
    assert torch.bincount(labels[idx]).tolist() == [n // 3] * 3
    # and the class order is shuffled, not fixed
    assert len({tuple(row) for row in block_classes.tolist()}) > 1
    # per-class list is cycled: each of the 10 tail images used exactly (k * rounds) / 10 times
    tail_hits = torch.bincount(idx, minlength=len(labels))[labels == 2]
    assert tail_hits.tolist() == [k * rounds // 10] * 10
    torch.testing.assert_close(s.current_class_probabilities(), expected_p(COUNTS, 0.0))


def test_class_aware_skips_empty_classes_and_truncates():
    labels = torch.tensor([0] * 5 + [2] * 3)  # class 1 has no images
    s = ClassAwareSampler(labels, samples_per_class=3, num_samples=10, seed=8)
    idx = list(s)
    assert len(idx) == 10
    assert 1 not in labels[torch.tensor(idx)].tolist()
    assert s.current_class_probabilities().tolist() == [0.5, 0.0, 0.5]


# ---------------------------------------------------------------- sharding


@pytest.mark.parametrize("name", ["instance", "class_balanced", "sqrt", "progressive", "class_aware"])
def test_sharding_world_size_3(name):
    labels = make_labels()
    num = 100  # not a multiple of 3: total_size 102, two padded entries
    full = build_sampler(name, labels, epochs=3, seed=9, num_samples=num)
    full.set_epoch(1)
    draw = torch.tensor(list(full))
    assert len(draw) == num
    padded = torch.cat([draw, draw[:2]])  # padding repeats from the start
    shards = []
    for rank in range(3):
        s = build_sampler(name, labels, epochs=3, seed=9, num_samples=num, rank=rank, world_size=3)
        s.set_epoch(1)
        shards.append(list(s))
        assert len(s) == len(shards[-1]) == 34
        assert torch.equal(s.global_indices(), padded)  # every rank sees the same padded global draw
    interleaved = torch.tensor([shards[i % 3][i // 3] for i in range(102)])
    assert torch.equal(interleaved, padded)
    assert sorted(sum(shards, [])) == sorted(padded.tolist())
    assert shards[0] != shards[1] and shards[1] != shards[2] and shards[0] != shards[2]


def test_sharding_more_ranks_than_samples():
    s = InstanceBalancedSampler([0, 1], num_samples=2, rank=4, world_size=5)
    assert len(s) == 1 and len(list(s)) == 1


# ---------------------------------------------------------------- determinism


@pytest.mark.parametrize("name", ["instance", "class_balanced", "sqrt", "progressive", "class_aware"])
def test_determinism_and_epochs(name):
    labels = make_labels()
    a = build_sampler(name, labels, epochs=4, seed=10)
    b = build_sampler(name, labels, epochs=4, seed=10)
    assert list(a) == list(b)
    assert list(a) == list(a)  # iterating twice in the same epoch repeats the order
    e0 = list(a)
    a.set_epoch(1)
    assert list(a) != e0
    # resume: a fresh sampler set to epoch 3 equals one that went through epochs 0..3
    for epoch in range(4):
        a.set_epoch(epoch)
        last = list(a)
    c = build_sampler(name, labels, epochs=4, seed=10)
    c.set_epoch(3)
    assert list(c) == last
    assert list(build_sampler(name, labels, epochs=4, seed=11)) != e0


def test_sampler_does_not_touch_global_rng():
    torch.manual_seed(0)
    before = torch.rand(3)
    torch.manual_seed(0)
    list(ClassBalancedSampler(make_labels(), seed=0))
    assert torch.equal(torch.rand(3), before)


def test_works_with_dataloader():
    labels = make_labels()
    ds = torch.utils.data.TensorDataset(torch.arange(len(labels)))
    s = SquareRootSampler(labels, num_samples=64, seed=0)
    dl = torch.utils.data.DataLoader(ds, batch_size=16, sampler=s)
    got = torch.cat([b[0] for b in dl]).tolist()
    assert got == list(s)


# ---------------------------------------------------------------- registry and errors


def test_registry_names_and_build():
    assert SAMPLERS.names() == sorted(["instance", "class_balanced", "sqrt", "progressive", "class_aware"])
    labels = make_labels()
    assert type(build_sampler("instance", labels)) is InstanceBalancedSampler
    assert type(build_sampler("class_balanced", labels)) is ClassBalancedSampler
    assert type(build_sampler("sqrt", labels)) is SquareRootSampler
    prog = build_sampler("progressive", labels, epochs=7)
    assert type(prog) is ProgressivelyBalancedSampler and prog.total_epochs == 7
    ca = build_sampler("class_aware", labels, samples_per_class=2, num_samples=10)
    assert type(ca) is ClassAwareSampler and ca.samples_per_class == 2 and len(ca) == 10


def test_unknown_name_lists_valid_names():
    with pytest.raises(ConfigError) as e:
        build_sampler("balanced_ish", make_labels())
    for name in ["instance", "class_balanced", "sqrt", "progressive", "class_aware"]:
        assert name in str(e.value)


def test_unknown_option_is_config_error():
    with pytest.raises(ConfigError, match="samples_per_class"):
        build_sampler("sqrt", make_labels(), samples_per_class=4)


@pytest.mark.parametrize("bad", [[0, 1, -1], torch.tensor([-3, 0]), []])
def test_bad_labels_raise_data_error(bad):
    with pytest.raises(DataError):
        ClassBalancedSampler(bad)


def test_non_integer_labels_raise_data_error():
    with pytest.raises(DataError):
        InstanceBalancedSampler([0.0, 1.5])


@pytest.mark.parametrize("rank, world_size", [(3, 3), (-1, 2), (0, 0)])
def test_bad_rank_or_world_size(rank, world_size):
    with pytest.raises((ValueError, DataError)):
        InstanceBalancedSampler([0, 1, 1], rank=rank, world_size=world_size)


@pytest.mark.parametrize(
    "make",
    [
        lambda: ClassAwareSampler([0, 1], samples_per_class=0),
        lambda: ProgressivelyBalancedSampler([0, 1], total_epochs=0),
        lambda: InstanceBalancedSampler([0, 1], num_samples=0),
    ],
)
def test_bad_hyperparameters_raise_config_error(make):
    with pytest.raises(ConfigError):
        make()
