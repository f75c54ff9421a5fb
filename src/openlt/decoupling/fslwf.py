"""FSLwF (Gidaris & Komodakis, CVPR 2018, "Dynamic Few-Shot Visual Learning without Forgetting") as a decoupled
stage-2 method: the few-shot baseline row of both OLTR tables (Liu et al., CVPR 2019, Tables 2 and 3).

On the frozen stage-1 representation (the cached training features, as every stage-2 method here):

1. **Base classifier.** The many-shot classes (the band of ``eval.many_above``) are the *base* classes. A cosine
   classifier on their features is trained with :func:`openlt.decoupling.train_on_features` (``train.epochs``,
   ``lr``, ``batch_size``, ``sampler``, ``momentum``, ``weight_decay``, cosine lr to 0); its weights start as
   the paper's code draws them, N(0, 2 / D).
2. **Few-shot weight generator**, trained on *fake-novel episodes* drawn from the base classes with the base
   weights frozen ("without forgetting"): every episode picks ``decouple.fslwf_novel_classes`` base classes as
   fake novel, generates their weights from ``fslwf_shots`` of their features, and classifies
   ``fslwf_queries`` queries per fake-novel class plus as many queries of the other base classes (classes
   drawn uniformly, with replacement) with cross-entropy over the other base classes + the fake-novel ones.
   The fake-novel classes' own base weights and keys are left out of the attention and out of the logits.
   For a class with features z_1..z_N, with ẑ = z / ||z||::

       w' = φ_avg ⊙ mean_i ẑ_i  +  φ_att ⊙ mean_i Σ_b softmax_b(γ · cos(φ_q ẑ_i, k_b)) · ŵ_b

   ŵ_b the normalised base weights, k_b a learnable key per base class (N(0, 2 / D)), φ_q a learnable D x D
   linear layer with bias (identity + N(0, 0.001²) at the start, bias 0), φ_avg and φ_att learnable
   D-vectors (1 at the start), γ a learnable scalar (``fslwf_gamma``, the paper's 10). SGD with Nesterov
   momentum (``train.momentum``, ``train.weight_decay``), ``fslwf_episodes`` episodes per step,
   ``fslwf_steps`` steps per epoch, ``fslwf_epochs`` epochs, lr ``fslwf_lr`` times 1, 0.06, 0.012, 0.0024
   over the four parts (1/3, 1/3, 1/6, 1/6) of the epochs: the authors' schedule (20 / 40 / 50 / 60 epochs).
3. **Generation.** The medium- and few-shot classes get w' from *all* their training features (attention over
   every base class); the base rows of the head are the base classifier's weights, unchanged.

The head is the run's ``cosine`` classifier (:class:`openlt.models.meta_embedding.CosineClassifier`, state
``{"weight": (C, D)}``): logits = scale · (x / ||x||) · ŵ_c, or with ``model.head.squash`` the OLTR code's
scale · x / (1 + ||x||) · ŵ_c. Both stages train with exactly that logit function, scale included, so the
trained and the evaluated classifier are one: the paper's scale is learned (from 10), here it is
``model.head.scale``, fixed, because the cosine head takes its scale from the config (top-1 does not depend
on it; the softmax confidence the open-set threshold reads does). The configs set ``squash: false`` (the
paper's plain cosine). decouple.json records the base and generated classes, γ, and per generator epoch the
mean episode loss and the validation accuracy of the whole head.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from openlt.config import Config
from openlt.decoupling._registry import register_method
from openlt.decoupling.base import FittedHead, Stage2Data, Stage2Hooks, Stage2Method
from openlt.decoupling.classifiers import train_on_features
from openlt.decoupling.methods import TrainedOnFeatures
from openlt.errors import ConfigError, DataError, TrainingError
from openlt.metrics import ShotBands
from openlt.optim import build_scheduler, optimizer_step

__all__ = ["CosineHead", "EpisodeSampler", "FewShotWithoutForgetting", "WeightGenerator", "assemble_weight",
           "check_episodes", "class_means", "cosine_logits", "episode_loss", "generator_lr_factor"]


def cosine_logits(x: Tensor, weight: Tensor, scale: float, squash: bool) -> Tensor:
    """The run's cosine head (:class:`openlt.models.meta_embedding.CosineClassifier`) as a function: x (..., D),
    weight (C, D) or (..., C, D) batched like x -> float32 logits (..., C) = scale · x̃ · ŵ_c, x̃ = x / (1 + ||x||)
    with ``squash``, x / ||x|| without."""
    x = x.float()
    x = x / (1.0 + torch.linalg.vector_norm(x, dim=-1, keepdim=True)) if squash else F.normalize(x, dim=-1)
    return scale * torch.matmul(x, F.normalize(weight.float(), dim=-1).transpose(-1, -2))


class CosineHead(nn.Module):
    """A cosine classifier with a (C, D) ``weight`` (a parameter, trained by the base stage) and a fixed
    ``scale`` / ``squash``: (B, D) features -> (B, C) float32 logits (:func:`cosine_logits`)."""

    def __init__(self, weight: Tensor, scale: float, squash: bool) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight.detach().clone().float())
        self.scale, self.squash = float(scale), bool(squash)

    def forward(self, x: Tensor) -> Tensor:
        """(B, D) features -> (B, C) float32 logits."""
        return cosine_logits(x, self.weight, self.scale, self.squash)


def class_means(values: Tensor, labels: Tensor, num: int) -> Tensor:
    """Per-class means of ``values`` (N, D) by ``labels`` (N,) int64 in [0, num): (num, D), zero for a class
    without a row; differentiable in ``values``."""
    sums = values.new_zeros(num, values.shape[1]).index_add(0, labels, values)
    counts = torch.bincount(labels, minlength=num).clamp_min(1).to(values.dtype)
    return sums / counts[:, None]


class WeightGenerator(nn.Module):
    """FSLwF's attention-based few-shot weight generator over ``num_base`` base classes of D-dim features (the
    formula in the module docstring): ``query`` (φ_q, Linear D -> D), ``keys`` (k_b, num_base x D),
    ``phi_avg``, ``phi_att`` (D,), ``gamma`` (scalar). The initial values are drawn from ``seed`` alone (the
    global random state is left as it was)."""

    def __init__(self, dim: int, num_base: int, gamma: float = 10.0, seed: int = 0) -> None:
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.query = nn.Linear(dim, dim)
            self.keys = nn.Parameter(torch.randn(num_base, dim) * math.sqrt(2.0 / dim))
            with torch.no_grad():
                self.query.weight.copy_(torch.eye(dim) + 0.001 * torch.randn(dim, dim))
                self.query.bias.zero_()
        self.phi_avg = nn.Parameter(torch.ones(dim))
        self.phi_att = nn.Parameter(torch.ones(dim))
        self.gamma = nn.Parameter(torch.tensor(float(gamma)))

    def attention(self, z_hat: Tensor, exclude: Tensor | None = None) -> Tensor:
        """softmax_b(γ · cos(φ_q ẑ_i, k_b)) for normalised features ``z_hat`` (N, D): (N, num_base); ``exclude``
        (N, num_base) bool leaves those base classes out of row i's softmax."""
        scores = self.gamma * (F.normalize(self.query(z_hat), dim=1) @ F.normalize(self.keys, dim=1).t())
        if exclude is not None:
            scores = scores.masked_fill(exclude, float("-inf"))
        return torch.softmax(scores, dim=1)

    def forward(self, features: Tensor, labels: Tensor, num: int, base_weight: Tensor,
                exclude: Tensor | None = None) -> Tensor:
        """The weights w' (num, D) of ``num`` classes from their features (N, D) float32 and ``labels`` (N,) in
        [0, num), attending over the (num_base, D) ``base_weight`` (normalised here); ``exclude`` as in
        :meth:`attention`. A class without a feature gets φ_avg ⊙ 0 + φ_att ⊙ 0 = 0."""
        z_hat = F.normalize(features.float(), dim=1)
        attended = self.attention(z_hat, exclude) @ F.normalize(base_weight.float(), dim=1)  # (N, D)
        return self.phi_avg * class_means(z_hat, labels, num) + self.phi_att * class_means(attended, labels, num)


@dataclass
class Episodes:
    """A batch of E fake-novel episodes as indices into the base features: ``novel`` (E, n) base-class ids
    picked as fake novel, ``support`` (E, n, shots) feature indices, ``query`` (E, Q) feature indices and
    ``query_labels`` (E, Q) in the episode's label space (base class b -> b, fake-novel class j -> num_base + j),
    ``exclude`` (E, num_base) bool, True for the fake-novel classes."""

    novel: Tensor
    support: Tensor
    query: Tensor
    query_labels: Tensor
    exclude: Tensor


def check_episodes(base_counts: Tensor, *, novel: int, shots: int, queries: int) -> None:
    """ConfigError unless episodes of ``novel`` fake-novel classes with ``shots + queries`` features each can be
    drawn from base classes of ``base_counts`` (len: the number of base classes) training features: more base
    classes than ``novel`` (one at least is left to attend to), each with ``shots + queries`` features."""
    num_base = len(base_counts)
    if num_base <= novel:
        raise ConfigError(f"decouple.fslwf_novel_classes={novel} needs more base (many-shot) classes than that; "
                          f"this run has {num_base} (lower decouple.fslwf_novel_classes or eval.many_above)")
    if int(base_counts.min()) < shots + queries:
        raise ConfigError(f"a base class has {int(base_counts.min())} training features, fewer than "
                          f"decouple.fslwf_shots + fslwf_queries = {shots + queries}")


class EpisodeSampler:
    """Draws fake-novel episodes (:class:`Episodes`) from the features of ``num_base`` base classes, ``labels``
    (N,) int64 in [0, num_base): ``novel`` fake-novel classes, each with ``shots`` support and ``queries``
    query features (distinct), and ``novel * queries`` queries of the other base classes. Every draw comes
    from the torch.Generator ``generator`` (CPU). ConfigError when there are not more base classes than
    ``novel``, or a base class has fewer than ``shots + queries`` features."""

    def __init__(self, labels: Tensor, num_base: int, *, novel: int, shots: int, queries: int,
                 generator: torch.Generator) -> None:
        labels = labels.cpu()
        self.counts = torch.bincount(labels, minlength=num_base)
        check_episodes(self.counts, novel=novel, shots=shots, queries=queries)
        order = torch.argsort(labels, stable=True)
        starts = torch.cumsum(self.counts, 0) - self.counts
        self.table = torch.full((num_base, int(self.counts.max())), -1, dtype=torch.long)
        positions = torch.arange(len(labels)) - starts[labels[order]]
        self.table[labels[order], positions] = order  # table[b, k]: the k-th feature of base class b
        self.num_base, self.novel, self.shots, self.queries, self.generator = num_base, novel, shots, queries, generator

    def _distinct(self, classes: Tensor, k: int) -> Tensor:
        """k distinct feature indices of every class in ``classes`` (M,): (M, k)."""
        keys = torch.rand(len(classes), self.table.shape[1], generator=self.generator)
        keys[torch.arange(self.table.shape[1])[None, :] >= self.counts[classes][:, None]] = 2.0  # past the class
        return self.table[classes[:, None], keys.topk(k, dim=1, largest=False).indices]

    def draw(self, episodes: int) -> Episodes:
        """``episodes`` episodes (see :class:`Episodes`), on the CPU."""
        e, n, b = episodes, self.novel, self.num_base
        novel = torch.rand(e, b, generator=self.generator).argsort(dim=1)[:, :n]  # (E, n) uniform subsets
        picked = self._distinct(novel.flatten(), self.shots + self.queries).view(e, n, -1)
        exclude = torch.zeros(e, b, dtype=torch.bool).scatter_(1, novel, True)
        base_classes = torch.multinomial((~exclude).float(), n * self.queries, replacement=True,
                                         generator=self.generator)  # (E, n * queries) among the other base classes
        within = (torch.rand(base_classes.shape, generator=self.generator) * self.counts[base_classes]).long()
        query = torch.cat([picked[:, :, self.shots:].reshape(e, -1), self.table[base_classes, within]], dim=1)
        novel_labels = (b + torch.arange(n)).repeat_interleave(self.queries).expand(e, -1)
        return Episodes(novel, picked[:, :, :self.shots], query, torch.cat([novel_labels, base_classes], dim=1),
                        exclude)


def episode_loss(generator: WeightGenerator, base_weight: Tensor, features: Tensor, batch: Episodes, scale: float,
                 squash: bool) -> Tensor:
    """Mean cross-entropy of the queries of a batch of episodes: per episode the fake-novel weights are generated
    from their support features (their own base classes left out of the attention), and each query is classified
    by the cosine head over the other base classes (``base_weight`` (num_base, D), not trained here) and the
    fake-novel ones. ``features`` (N, D) float32, the batch's indices on their device."""
    e, n, shots = batch.support.shape
    num_base, dim = base_weight.shape
    support_labels = torch.arange(e * n, device=features.device).repeat_interleave(shots)
    exclude = batch.exclude.repeat_interleave(n * shots, dim=0)
    novel_weight = generator(features[batch.support.flatten()], support_labels, e * n, base_weight, exclude)
    weights = torch.cat([base_weight.expand(e, num_base, dim), novel_weight.view(e, n, dim)], dim=1)
    logits = cosine_logits(features[batch.query], weights, scale, squash)  # (E, Q, num_base + n)
    hidden = torch.cat([batch.exclude, batch.exclude.new_zeros(e, n)], dim=1)[:, None, :]
    logits = logits.masked_fill(hidden, float("-inf"))
    return F.cross_entropy(logits.flatten(0, 1), batch.query_labels.flatten())


def generator_lr_factor(epoch: int, epochs: int) -> float:
    """The authors' step schedule scaled to ``epochs``: 1, 0.06, 0.012, 0.0024 over the first third, the second
    third, the next sixth and the last sixth of the epochs (their 60-epoch table: 20, 40, 50, 60)."""
    if 3 * epoch < epochs:
        return 1.0
    if 3 * epoch < 2 * epochs:
        return 0.06
    return 0.012 if 6 * epoch < 5 * epochs else 0.0024


@register_method
class FewShotWithoutForgetting(Stage2Method):
    """FSLwF (see the module docstring): a cosine classifier for the many-shot (base) classes, and the
    medium- / few-shot classes' weights from the attention-based generator trained on fake-novel episodes."""

    name = "fslwf"
    head = "cosine"
    epochwise = True  # the base classifier trains epoch by epoch (train.*, decouple.features apply to it)
    validates_epochs = False  # ... logged without validation (the head is whole only once the generator is trained)

    def __init__(self, *, scale: float = 16.0, squash: bool = False, novel_classes: int = 5, shots: int = 5,
                 queries: int = 3, episodes: int = 8, generator_epochs: int = 60, steps: int = 1000,
                 generator_lr: float = 0.1, gamma: float = 10.0, **training: Any) -> None:
        self.training = dict(training)
        self.keep = self.training.pop("keep", "last")
        self.seed = int(self.training.get("seed", 0))
        self.scale, self.squash = float(scale), bool(squash)
        self.episode = dict(novel=int(novel_classes), shots=int(shots), queries=int(queries))
        self.episodes, self.generator_epochs, self.steps = int(episodes), int(generator_epochs), int(steps)
        self.generator_lr, self.gamma = float(generator_lr), float(gamma)

    @classmethod
    def from_config(cls, cfg: Config) -> "FewShotWithoutForgetting":
        """The method with ``model.head.scale`` / ``squash`` (the run's cosine head), the ``train.*`` options
        and ``seed`` (base classifier), and the ``decouple.fslwf_*`` options (generator)."""
        d = cfg.decouple
        return cls(scale=cfg.model.head.scale, squash=cfg.model.head.squash, novel_classes=d.fslwf_novel_classes,
                   shots=d.fslwf_shots, queries=d.fslwf_queries, episodes=d.fslwf_episodes,
                   generator_epochs=d.fslwf_epochs, steps=d.fslwf_steps, generator_lr=d.fslwf_lr,
                   gamma=d.fslwf_gamma, **TrainedOnFeatures.training_options(cfg))

    def check(self, has_val: bool) -> None:
        """ConfigError for ``decouple.keep=best``: FSLwF keeps its last base classifier and generator."""
        if self.keep != "last":
            raise ConfigError("decouple.method=fslwf keeps the last epoch; decouple.keep=best is for crt / lws")

    def split_classes(self, data: Stage2Data) -> tuple[Tensor, Tensor]:
        """(base class ids, novel class ids), int64: the many-shot band of ``data.train_counts`` by ``data.bands``,
        and the others (medium and few). ConfigError when no class is many-shot."""
        return _split_classes(data.train_counts, data.bands)

    def check_counts(self, train_counts: list[int], bands: ShotBands) -> None:
        """ConfigError, before any feature is extracted or the run created (``engine.decouple.stage1_features``),
        when the classes' training counts ``train_counts`` cannot make FSLwF's episodes: no many-shot (base) class
        by ``bands``, too few base classes or too few images in one (:func:`check_episodes`)."""
        base, _ = _split_classes(train_counts, bands)
        check_episodes(torch.as_tensor(list(train_counts), dtype=torch.long)[base], **self.episode)

    def fit_base(self, data: Stage2Data, base: Tensor, hooks: Stage2Hooks | None = None) -> Tensor:
        """The base classes' (len(base), D) float32 cosine-classifier weights (CPU), trained on their features;
        every epoch goes to ``hooks.on_epoch`` (without validation: the head is not whole yet)."""
        hooks = hooks or Stage2Hooks()
        mask = torch.isin(data.train_y.cpu(), base)
        local = torch.searchsorted(base, data.train_y.cpu()[mask])  # base class ids -> 0 .. len(base) - 1
        dim = data.train_x.shape[1]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            initial = torch.randn(len(base), dim) * math.sqrt(2.0 / dim)
        head = CosineHead(initial, self.scale, self.squash).to(hooks.device)
        epoch_features = None if hooks.epoch_features is None else _rows_of(hooks.epoch_features, mask)
        on_epoch = None if hooks.on_epoch is None else lambda epoch, loss, lr: hooks.on_epoch(epoch, loss, lr, None)
        train_on_features(head, data.train_x[mask.to(data.train_x.device)].float(), local, **self.training,
                          epoch_features=epoch_features, on_epoch=on_epoch)
        return head.weight.detach().cpu()

    def fit(self, data: Stage2Data, hooks: Stage2Hooks | None = None) -> FittedHead:
        """The cosine head's ``weight`` (C, D) float32: base rows from :meth:`fit_base`, the other rows generated
        by the trained generator (:meth:`fit_generator`) from all their training features. ``details``: base and
        generated class ids, γ and the generator curve. Raises ConfigError / DataError (see the checks)."""
        hooks = hooks or Stage2Hooks()
        self.check(data.val_x is not None)
        base, novel = self.split_classes(data)
        counts = torch.bincount(data.train_y.cpu(), minlength=data.num_classes)
        check_episodes(counts[base], **self.episode)  # before any training
        missing = novel[counts[novel] == 0].tolist()
        if missing:
            raise DataError(f"decouple.method=fslwf: classes {missing} have no training feature to generate from")
        base_weight = self.fit_base(data, base, hooks)
        hooks.log(f"fslwf: cosine classifier of the {len(base)} base classes trained; generator next "
                  f"({self.generator_epochs} epochs x {self.steps} steps of {self.episodes} episodes)")
        generator, curve = self.fit_generator(data, base, novel, base_weight, hooks)
        weight = assemble_weight(generator, base_weight, data, base, novel)
        details = {"base_classes": base.tolist(), "generated_classes": novel.tolist(), "scale": self.scale,
                   "squash": self.squash, "gamma": generator.gamma.item(), "generator_curve": curve}
        return FittedHead({"weight": weight}, details)

    def fit_generator(self, data: Stage2Data, base: Tensor, novel: Tensor, base_weight: Tensor,
                      hooks: Stage2Hooks) -> tuple[WeightGenerator, list[dict]]:
        """The generator trained on fake-novel episodes of the base features (``base_weight`` frozen), on
        ``hooks.device``; returns it (CPU) and one {"epoch", "loss", "lr", "val"} record per epoch."""
        device = hooks.device
        mask = torch.isin(data.train_y.cpu(), base)
        features = data.train_x[mask.to(data.train_x.device)].float().to(device)
        local = torch.searchsorted(base, data.train_y.cpu()[mask])
        sampler = EpisodeSampler(local, len(base), **self.episode, generator=torch.Generator().manual_seed(self.seed))
        generator = WeightGenerator(features.shape[1], len(base), self.gamma, seed=self.seed).to(device)
        frozen = base_weight.to(device)
        opt = torch.optim.SGD(generator.parameters(), lr=self.generator_lr, momentum=self.training["momentum"],
                              weight_decay=self.training["weight_decay"], nesterov=self.training["momentum"] > 0)
        scheduler = build_scheduler(opt, lambda step: generator_lr_factor(step // self.steps, self.generator_epochs))
        curve = []
        for epoch in range(self.generator_epochs):
            lr, total = opt.param_groups[0]["lr"], 0.0
            for step in range(self.steps):
                batch = sampler.draw(self.episodes)
                batch = Episodes(*(t.to(device) for t in (batch.novel, batch.support, batch.query, batch.query_labels,
                                                          batch.exclude)))
                loss = episode_loss(generator, frozen, features, batch, self.scale, self.squash)
                if not torch.isfinite(loss):
                    raise TrainingError(f"fslwf generator loss became {loss.item()} at epoch {epoch + 1}, step "
                                        f"{step + 1} (try a lower decouple.fslwf_lr)")
                optimizer_step(loss, opt, scheduler)
                total += loss.item()
            curve.append(self._generator_epoch(epoch, total / self.steps, lr, generator, base_weight, data, base,
                                               novel, hooks))
        return generator.cpu(), curve

    def _generator_epoch(self, epoch: int, loss: float, lr: float, generator: WeightGenerator, base_weight: Tensor,
                         data: Stage2Data, base: Tensor, novel: Tensor, hooks: Stage2Hooks) -> dict:
        """One generator epoch's record: the mean episode loss, the lr, and the validation metrics of the whole
        head (base + generated weights); logged through ``hooks.log``."""
        weight = assemble_weight(generator, base_weight, data, base, novel)
        val = hooks.validate(CosineHead(weight, self.scale, self.squash).to(hooks.device))
        line = f"fslwf generator epoch {epoch + 1:3d}/{self.generator_epochs}  episode loss {loss:.3f}"
        if val is not None:
            line += "  val " + " ".join(f"{b} {_pct(val.get(b))}" for b in ("many", "medium", "few", "overall"))
        hooks.log(line)
        return {"epoch": epoch + 1, "loss": loss, "lr": lr, "val": val}


def _rows_of(epoch_features: Callable[[int], Tensor], mask: Tensor) -> Callable[[int], Tensor]:
    """``epoch_features`` restricted to the rows of ``mask`` (N,) bool (the base classes' features)."""
    def rows(epoch: int) -> Tensor:
        fresh = epoch_features(epoch)
        return fresh[mask.to(fresh.device)]
    return rows


@torch.no_grad()
def assemble_weight(generator: WeightGenerator, base_weight: Tensor, data: Stage2Data, base: Tensor,
                    novel: Tensor) -> Tensor:
    """The whole head's (C, D) float32 weight (CPU): rows ``base`` = ``base_weight`` as given, rows ``novel`` =
    the generator's weights from every training feature of those classes (attention over all base classes)."""
    device = generator.gamma.device
    train_y = data.train_y.cpu()
    weight = torch.zeros(data.num_classes, base_weight.shape[1])
    weight[base] = base_weight.float().cpu()
    if len(novel):
        mask = torch.isin(train_y, novel)
        local = torch.searchsorted(novel, train_y[mask]).to(device)
        features = data.train_x[mask.to(data.train_x.device)].float().to(device)
        weight[novel] = generator(features, local, len(novel), base_weight.to(device)).cpu()
    return weight


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def _split_classes(train_counts, bands: ShotBands) -> tuple[Tensor, Tensor]:
    """(base, novel) class ids of :meth:`FewShotWithoutForgetting.split_classes`, from the counts and bands."""
    band_of = bands.bands_of(train_counts)
    base = torch.tensor([c for c, band in enumerate(band_of) if band == "many"], dtype=torch.long)
    if len(base) == 0:
        raise ConfigError(f"decouple.method=fslwf needs many-shot (base) classes: none of the {len(band_of)} "
                          f"classes has more than eval.many_above={bands.many_above} training images")
    novel = torch.tensor([c for c, band in enumerate(band_of) if band != "many"], dtype=torch.long)
    return base, novel
