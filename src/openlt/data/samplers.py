"""Training samplers for long-tailed data (Kang et al., "Decoupling Representation and Classifier", ICLR 2020).

Every sampler draws class j with probability p_j = n_j^q / sum_i n_i^q (q=1 instance-balanced, q=0
class-balanced, q=1/2 square-root), or a schedule between them. Draws are seeded from (seed, epoch) only,
so every rank of a distributed run sees the same global order and a resumed run repeats it exactly.
"""

from __future__ import annotations

import hashlib
import inspect
import math
from typing import Any, Callable, Iterator, Sequence, Union

import numpy as np
import torch
from torch.utils.data import Sampler

from openlt.errors import ConfigError, DataError
from openlt.registry import Registry

Labels = Union[Sequence[int], torch.Tensor, np.ndarray]

__all__ = [
    "SAMPLERS",
    "ClassAwareSampler",
    "ClassBalancedSampler",
    "InstanceBalancedSampler",
    "LongTailSampler",
    "PowerSampler",
    "ProgressivelyBalancedSampler",
    "SquareRootSampler",
    "build_sampler",
    "class_counts",
    "class_probabilities",
]


def _as_labels(labels: Labels, *, allow_empty: bool = False) -> torch.Tensor:
    """Labels as a 1-D LongTensor of non-negative class indices, or a DataError saying what is wrong."""
    try:
        t = torch.as_tensor(np.asarray(labels) if not isinstance(labels, torch.Tensor) else labels)
    except (TypeError, ValueError) as e:
        raise DataError(f"labels must be a sequence of integers: {e}") from e
    if t.dim() != 1:
        raise DataError(f"labels must be one-dimensional, got shape {tuple(t.shape)}")
    if t.numel() == 0:
        if allow_empty:
            return t.long()
        raise DataError("labels are empty: a sampler needs at least one training image")
    if t.is_floating_point():
        if not torch.equal(t, t.round()):
            raise DataError("labels must be integers, got non-integral values")
    elif t.dtype == torch.bool or t.is_complex():
        raise DataError(f"labels must be integers, got dtype {t.dtype}")
    t = t.long()
    if int(t.min()) < 0:
        bad = int((t < 0).nonzero()[0, 0])
        raise DataError(f"labels must be >= 0, got {int(t[bad])} at position {bad}")
    return t


def class_counts(labels: Labels, num_classes: int | None = None) -> torch.Tensor:
    """Number of images per class (LongTensor of length num_classes, default max label + 1)."""
    t = _as_labels(labels, allow_empty=num_classes is not None)
    if num_classes is not None:
        if num_classes < 0:
            raise DataError(f"num_classes must be >= 0, got {num_classes}")
        if t.numel() and int(t.max()) >= num_classes:
            raise DataError(f"label {int(t.max())} out of range for num_classes={num_classes}")
    return torch.bincount(t, minlength=num_classes or 0).long()


def class_probabilities(counts: Sequence[int] | torch.Tensor, q: float) -> torch.Tensor:
    """p_j = n_j^q / sum_i n_i^q as a DoubleTensor; empty classes get 0 for every q (including q=0).

    Computed in log space so that large |q| neither overflows nor underflows to all zeros.
    """
    n = torch.as_tensor(counts, dtype=torch.float64)
    if n.dim() != 1:
        raise DataError(f"counts must be one-dimensional, got shape {tuple(n.shape)}")
    if not math.isfinite(float(q)):
        raise ConfigError(f"sampling exponent q must be finite, got {q}")
    if bool((n < 0).any()):
        raise DataError("class counts must be >= 0")
    present = n > 0
    if not bool(present.any()):
        raise DataError("every class has 0 images: there is nothing to sample")
    logw = torch.full_like(n, -math.inf)
    logw[present] = float(q) * torch.log(n[present])
    return torch.softmax(logw, dim=0)


def _seed_for(seed: int, epoch: int) -> int:
    """A 63-bit generator seed from (seed, epoch), stable across processes and free of seed+epoch collisions."""
    digest = hashlib.blake2b(f"openlt-sampler:{int(seed)}:{int(epoch)}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


def _weighted_draw(labels: torch.Tensor, counts: torch.Tensor, p: torch.Tensor, num: int,
                   generator: torch.Generator) -> torch.Tensor:
    """num i.i.d. indices with replacement; image i has weight p[y_i] / n[y_i] so class j is drawn w.p. p_j."""
    per_class = torch.zeros_like(p)
    present = counts > 0
    per_class[present] = p[present] / counts[present].double()
    weights = per_class[labels]
    return torch.multinomial(weights, num, replacement=True, generator=generator)


class LongTailSampler(Sampler[int]):
    """Base sampler: draws a global epoch of indices, pads it to a multiple of world_size, yields this rank's shard.

    Subclasses implement `_draw(generator)` (a LongTensor of `num_samples` dataset indices) and
    `current_class_probabilities()`.
    """

    def __init__(self, labels: Labels, *, num_samples: int | None = None, seed: int = 0,
                 rank: int = 0, world_size: int = 1) -> None:
        self.labels = _as_labels(labels)
        self.counts = class_counts(self.labels)
        if num_samples is None:
            num_samples = len(self.labels)
        if int(num_samples) != num_samples or num_samples < 1:
            raise ConfigError(f"num_samples must be a positive integer, got {num_samples!r}")
        if int(world_size) != world_size or world_size < 1:
            raise ValueError(f"world_size must be a positive integer, got {world_size!r}")
        if int(rank) != rank or not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, {world_size}), got {rank!r}")
        self.num_samples = int(num_samples)
        self.seed = int(seed)
        self.rank = int(rank)
        self.world_size = int(world_size)
        self.total_size = math.ceil(self.num_samples / self.world_size) * self.world_size
        self.epoch = 0

    @property
    def num_classes(self) -> int:
        """The largest label + 1 (classes without images below it included)."""
        return len(self.counts)

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose order `__iter__` yields (call before each epoch, as with DistributedSampler)."""
        if int(epoch) != epoch or epoch < 0:
            raise ValueError(f"epoch must be a non-negative integer, got {epoch!r}")
        self.epoch = int(epoch)

    def generator(self) -> torch.Generator:
        """A fresh CPU generator seeded from (seed, epoch) only: identical on every rank and after a resume."""
        g = torch.Generator()
        g.manual_seed(_seed_for(self.seed, self.epoch))
        return g

    def _draw(self, generator: torch.Generator) -> torch.Tensor:
        raise NotImplementedError

    def current_class_probabilities(self) -> torch.Tensor:
        """Probability of drawing each class in the current epoch (DoubleTensor of length num_classes)."""
        raise NotImplementedError

    def global_indices(self) -> torch.Tensor:
        """The whole epoch's padded order (length total_size); rank r takes every world_size-th from r."""
        idx = self._draw(self.generator())
        if len(idx) != self.num_samples:
            raise RuntimeError(f"{type(self).__name__}._draw returned {len(idx)} indices, not {self.num_samples}")
        pad = self.total_size - len(idx)
        if pad:
            idx = torch.cat([idx, idx.repeat(math.ceil(pad / len(idx)))[:pad]])
        return idx

    def __iter__(self) -> Iterator[int]:
        return iter(self.global_indices()[self.rank:self.total_size:self.world_size].tolist())

    def __len__(self) -> int:
        return self.total_size // self.world_size


class PowerSampler(LongTailSampler):
    """i.i.d. draws with replacement where class j has probability n_j^q / sum_i n_i^q."""

    def __init__(self, labels: Labels, q: float, **kwargs: Any) -> None:
        super().__init__(labels, **kwargs)
        self.q = float(q)
        self.p = class_probabilities(self.counts, self.q)

    def current_class_probabilities(self) -> torch.Tensor:
        """n_j^q / sum_i n_i^q, the same every epoch (a copy: DoubleTensor of length num_classes)."""
        return self.p.clone()

    def _draw(self, generator: torch.Generator) -> torch.Tensor:
        return _weighted_draw(self.labels, self.counts, self.p, self.num_samples, generator)


class InstanceBalancedSampler(PowerSampler):
    """q=1, the ordinary shuffle: a permutation without replacement (permutations concatenated past one pass)."""

    def __init__(self, labels: Labels, **kwargs: Any) -> None:
        super().__init__(labels, q=1.0, **kwargs)

    def _draw(self, generator: torch.Generator) -> torch.Tensor:
        n = len(self.labels)
        perms = [torch.randperm(n, generator=generator) for _ in range(math.ceil(self.num_samples / n))]
        return torch.cat(perms)[:self.num_samples]


class ClassBalancedSampler(PowerSampler):
    """q=0: every class with images is equally likely, then an image uniformly within it."""

    def __init__(self, labels: Labels, **kwargs: Any) -> None:
        super().__init__(labels, q=0.0, **kwargs)


class SquareRootSampler(PowerSampler):
    """q=1/2: a compromise that over-samples the tail less aggressively than class-balanced sampling."""

    def __init__(self, labels: Labels, **kwargs: Any) -> None:
        super().__init__(labels, q=0.5, **kwargs)


class ProgressivelyBalancedSampler(LongTailSampler):
    """p(t) = (1 - t/T) p_IB + (t/T) p_CB with T = max(total_epochs - 1, 1): instance- to class-balanced.

    Kang et al. (ICLR 2020) write t/T over epochs t of T; with 0-based t that never reaches class-balanced. T =
    total_epochs - 1 follows their code (classifier-balancing's MixedPrioritizedSampler: np.linspace(0, 1,
    epochs)), so the first epoch is instance-balanced and the last fully class-balanced. The epoch t comes from
    `set_epoch`; epochs past T stay fully class-balanced.
    """

    def __init__(self, labels: Labels, total_epochs: int, **kwargs: Any) -> None:
        super().__init__(labels, **kwargs)
        if int(total_epochs) != total_epochs or total_epochs < 1:
            raise ConfigError(f"total_epochs must be a positive integer, got {total_epochs!r}")
        self.total_epochs = int(total_epochs)
        self.p_instance = class_probabilities(self.counts, 1.0)
        self.p_class = class_probabilities(self.counts, 0.0)

    def mixing_weight(self) -> float:
        """t / T for the current epoch, clipped to 1."""
        return min(self.epoch / max(self.total_epochs - 1, 1), 1.0)

    def current_class_probabilities(self) -> torch.Tensor:
        """(1 - t/T) p_IB + (t/T) p_CB for the current epoch t (DoubleTensor of length num_classes)."""
        a = self.mixing_weight()
        return (1.0 - a) * self.p_instance + a * self.p_class

    def _draw(self, generator: torch.Generator) -> torch.Tensor:
        return _weighted_draw(self.labels, self.counts, self.current_class_probabilities(),
                              self.num_samples, generator)


class _CycleIter:
    """Endless iterator over a list, reshuffled (with the given generator) each time it is exhausted."""

    def __init__(self, items: torch.Tensor, generator: torch.Generator) -> None:
        self.items, self.generator = items, generator
        self.order: list[int] = []
        self.pos = 0

    def __next__(self) -> int:
        if self.pos == len(self.order):
            self.order = self.items[torch.randperm(len(self.items), generator=self.generator)].tolist()
            self.pos = 0
        self.pos += 1
        return self.order[self.pos - 1]


class ClassAwareSampler(LongTailSampler):
    """Class-aware sampling as in the OLTR / decoupling code: pick a class (cycling a shuffled class list),
    then take `samples_per_class` of its images in a row (cycling a shuffled per-class list).

    Every class with images is picked equally often, so class frequencies are uniform.
    """

    def __init__(self, labels: Labels, samples_per_class: int = 4, **kwargs: Any) -> None:
        super().__init__(labels, **kwargs)
        if int(samples_per_class) != samples_per_class or samples_per_class < 1:
            raise ConfigError(f"samples_per_class must be a positive integer, got {samples_per_class!r}")
        self.samples_per_class = int(samples_per_class)
        order = torch.argsort(self.labels, stable=True)
        self._per_class = list(torch.split(order, self.counts.tolist()))

    def current_class_probabilities(self) -> torch.Tensor:
        """Uniform over the classes with images, 0 for empty ones (DoubleTensor of length num_classes)."""
        return class_probabilities(self.counts, 0.0)

    def _draw(self, generator: torch.Generator) -> torch.Tensor:
        present = torch.nonzero(self.counts > 0).flatten()
        classes = _CycleIter(present, generator)
        images = {int(c): _CycleIter(self._per_class[int(c)], generator) for c in present}
        out: list[int] = []
        while len(out) < self.num_samples:
            it = images[next(classes)]
            out.extend(next(it) for _ in range(self.samples_per_class))
        return torch.tensor(out[:self.num_samples], dtype=torch.long)


SAMPLERS: Registry[Callable[..., LongTailSampler]] = Registry("sampler")


@SAMPLERS.register("instance")
def _build_instance(labels: Labels, *, epochs: int, **common: Any) -> LongTailSampler:
    return InstanceBalancedSampler(labels, **common)


@SAMPLERS.register("class_balanced")
def _build_class_balanced(labels: Labels, *, epochs: int, **common: Any) -> LongTailSampler:
    return ClassBalancedSampler(labels, **common)


@SAMPLERS.register("sqrt")
def _build_sqrt(labels: Labels, *, epochs: int, **common: Any) -> LongTailSampler:
    return SquareRootSampler(labels, **common)


@SAMPLERS.register("progressive")
def _build_progressive(labels: Labels, *, epochs: int, **common: Any) -> LongTailSampler:
    return ProgressivelyBalancedSampler(labels, total_epochs=epochs, **common)


@SAMPLERS.register("class_aware")
def _build_class_aware(labels: Labels, *, epochs: int, samples_per_class: int = 4,
                       **common: Any) -> LongTailSampler:
    return ClassAwareSampler(labels, samples_per_class=samples_per_class, **common)


_COMMON = {"seed", "rank", "world_size", "num_samples"}


def build_sampler(name: str, labels: Labels, *, epochs: int = 1, seed: int = 0, rank: int = 0,
                  world_size: int = 1, num_samples: int | None = None, **kwargs: Any) -> LongTailSampler:
    """Build the sampler registered as `name`; extra kwargs (e.g. samples_per_class) go to that sampler only."""
    builder = SAMPLERS.get(name)
    accepted = [p for p in inspect.signature(builder).parameters
                if p not in _COMMON | {"labels", "epochs", "common"}]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        opts = ", ".join(accepted) or "none"
        raise ConfigError(f"sampler {name!r} got unknown option(s) {', '.join(unknown)}; its options: {opts}")
    return builder(labels, epochs=epochs, seed=seed, rank=rank, world_size=world_size,
                   num_samples=num_samples, **kwargs)
