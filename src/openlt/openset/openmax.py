"""OpenMax (Bendale & Boult, "Towards Open Set Deep Networks", CVPR 2016), on logits as activation vectors.

Fit, per known class c, on the training outputs:
  * the mean activation vector μ_c (MAV): the mean logit vector of the correctly classified training
    images of c (all images of c when none is correct);
  * a Weibull distribution W_c fitted to the `tail_size` largest distances d(v, μ_c) of those images, as
    libMR's FitHigh does it (the reference code's): the tail is shifted so that its smallest distance sits
    at 10000, and scipy's `weibull_min` is fitted with loc 0. The CDF is then ~0 below the tail and ~1 past
    the farthest training image: the probability that an image lies outside the class.
Score an image with logits v:
  * rank the classes by v; the class at rank r = 0 .. α-1 gets the weight ω_c = (α - r) / α · W_c(d(v, μ_c))
    (the reference code's (α + 1 - i) / α with i = r + 1; every other class ω_c = 0);
  * revised activations v̂_c = v_c (1 - ω_c), the unknown activation v̂_0 = Σ_c (v_c - v̂_c);
  * softmax over the K + 1 activations [v̂_1 .. v̂_K, v̂_0].
The open-set score (higher = more known) is the largest *known* OpenMax probability max_c P(c | v): it is low
both when the unknown class wins and when the mass is spread, as in the paper's rule "unknown when the
top class is the unknown one or its probability is below ε". `probabilities` gives all K + 1 columns
(unknown last). Closed-set predictions stay the argmax of the logits, so that every score is compared on
the same closed-set decisions.

Distances: eucos = ||v - μ|| / 200 + (1 - cos(v, μ)) (the reference code's default, scaled for ImageNet
logits), euclidean, or cosine (1 - cos).
"""

from __future__ import annotations

import math
import numbers
import warnings
from typing import Any, Callable, Iterable, Iterator, Mapping

import numpy as np
import torch
import torch.nn.functional as F

from openlt.errors import ConfigError, DataError
from openlt.openset.base import (SCORES, NotFittedError, OpenSetScore, Outputs, as_outputs, as_tensor,
                                 class_ids, logits_of, no_spread, no_spread_warning, number_check)

DISTANCES = ("eucos", "euclidean", "cosine")
DEFAULT_ALPHA = 10  # the paper's α for ImageNet; capped at the number of classes
TRANSLATE = 10000.0  # libMR's translate_amount: where the tail's smallest distance is put before the fit
STEP_SHAPE = 100.0  # Weibull shape standing in for a step at the tail's largest distance (degenerate tails)
_CHUNK = 4096  # rows scored at once, at most: bounds the (rows, α, K) distance tensor
_CHUNK_ELEMENTS = 1 << 25  # ... and at most this many of its elements (128 MB of float32; 412 rows at K = 8,142)
_SUM_ROWS = 1024  # rows of a fit's chunk copied (float64 sums, class means per row) at once: 67 MB at K = 8,142


def distances(v: torch.Tensor, means: torch.Tensor, kind: str) -> torch.Tensor:
    """Distance of each row of `v` (..., K) to the matching row of `means` (..., K), per `kind`."""
    if kind not in DISTANCES:
        raise ConfigError(f"unknown OpenMax distance {kind!r}; known: {', '.join(DISTANCES)}")
    if kind == "euclidean":
        return (v - means).norm(dim=-1)
    cosine = 1.0 - F.cosine_similarity(v, means, dim=-1, eps=1e-12)
    return cosine if kind == "cosine" else (v - means).norm(dim=-1) / 200.0 + cosine


def fit_weibull(tail: np.ndarray) -> tuple[float, float, float, bool]:
    """(shape, scale, shift, degenerate): W(d) = 1 - exp(-((d + shift) / scale) ** shape), fitted libMR-style
    on the tail distances (shift = TRANSLATE - smallest tail distance, loc 0).

    A tail that cannot be fitted (fewer than two distinct distances, or a fit that does not rise across the
    tail) becomes a steep step at its largest distance: farther than any training image of the class is
    outside it."""
    tail = np.asarray(tail, dtype=np.float64)
    if tail.size >= 2 and np.ptp(tail) > 0:
        from scipy.stats import weibull_min

        shift = TRANSLATE - tail.min()
        try:
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore")  # optimiser warnings on small tails; the result is checked below
                shape, _, scale = weibull_min.fit(tail + shift, floc=0)
        except (RuntimeError, ValueError, FloatingPointError):  # scipy's FitError is a RuntimeError
            shape = scale = float("nan")
        if math.isfinite(shape) and math.isfinite(scale) and shape > 0 and scale > 0:
            low, high = weibull_cdf(torch.tensor([tail.min(), tail.max()], dtype=torch.float64), torch.tensor(shape),
                                    torch.tensor(scale), torch.tensor(shift)).tolist()
            if high > 0.5 > low:  # rises across the tail, as a fit of it must
                return float(shape), float(scale), float(shift), False
    return STEP_SHAPE, float(max(tail.max(initial=0.0), 1e-12)), 0.0, True


def weibull_cdf(d: torch.Tensor, shape: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """W(d) = 1 - exp(-((d + shift) / scale) ** shape) (libMR's w_score), in float64: with the shift of 10000
    the tail's spread lives in the fifth decimal of (d + shift) / scale."""
    x = (d.double() + shift.double()).clamp_min(0) / scale.double()
    return -torch.expm1(-torch.exp(shape.double() * torch.log(x)))


def _check_distance(value: Any) -> None:
    """ConfigError unless `value` is one of :data:`DISTANCES` (OpenMax's ``distance``)."""
    if not isinstance(value, str) or value not in DISTANCES:
        raise ConfigError(f"eval.openmax_distance (OpenMax's distance) must be one of {', '.join(DISTANCES)}, got "
                          f"{value!r}")


def training_labels(labels: Any, where: str) -> torch.Tensor:
    """(n,) int64 training labels; DataError naming `where` for text, booleans or fractional values (0.9 would
    become class 0): :func:`class_ids`."""
    return class_ids(as_tensor(labels, f"{where}: labels"), f"{where}: labels")


@SCORES.register("openmax")
class OpenMax(OpenSetScore):
    """OpenMax on the logits; score = the largest known-class OpenMax probability (see the module doc).

    Parameters (scikit-learn style: ``get_params`` / ``set_params`` / ``clone``): ``tail_size`` (distances in
    each class's Weibull tail), ``alpha`` (top classes revised; None: min(10, K)), ``distance`` (eucos |
    euclidean | cosine). Learnt by :meth:`fit`: ``means_`` (K, K) float32 MAVs, ``shape_`` / ``scale_`` /
    ``shift_`` (K,) float64 Weibull parameters, ``fallback_`` (K,) bool (MAV from all images: none was
    correct), ``degenerate_`` (K,) bool (tail replaced by a step).
    """

    name = "openmax"
    value_range = (0.0, 1.0)  # a probability: a threshold outside it is refused (rejector.check_threshold_range)
    requires_fit = True

    fit_params = {"tail_size": "eval.openmax_tail (OpenMax's tail_size)",  # the Weibull tails
                  "distance": "eval.openmax_distance (OpenMax's distance)"}  # (alpha: read when scoring)
    param_checks = {
        "tail_size": number_check("eval.openmax_tail (OpenMax's tail_size) must be an integer >= 2 (distances in each "
                                  "class's Weibull tail)", numbers.Integral, lambda n: n >= 2),
        "alpha": number_check(f"eval.openmax_alpha (OpenMax's alpha) must be an integer >= 1 (top classes revised) or "
                              f"null for min({DEFAULT_ALPHA}, number of classes)", numbers.Integral, lambda n: n >= 1,
                              none_ok=True),
        "distance": lambda value, _: _check_distance(value),
    }

    def __init__(self, tail_size: int = 20, alpha: int | None = None, distance: str = "eucos") -> None:
        self.tail_size, self.alpha, self.distance = tail_size, alpha, distance
        self.check_params()

    @classmethod
    def from_config(cls, eval_cfg: Any) -> "OpenMax":
        """Build from the ``eval`` section: ``openmax_tail``, ``openmax_alpha``, ``openmax_distance``."""
        return cls(eval_cfg.openmax_tail, eval_cfg.openmax_alpha, eval_cfg.openmax_distance)

    def options(self) -> dict:
        """The constructor's keyword arguments (``tail_size``, ``alpha``, ``distance``), saved beside the fit."""
        return {"tail_size": int(self.tail_size), "alpha": None if self.alpha is None else int(self.alpha),
                "distance": self.distance}

    @property
    def num_classes(self) -> int:
        """K, the number of known classes fitted; :class:`~openlt.errors.NotFittedError` before :meth:`fit`."""
        if not hasattr(self, "means_"):
            raise NotFittedError("OpenMax is not fitted: call fit(train_outputs) with 'logits' and 'labels'")
        return self.means_.shape[0]

    def alpha_for(self, num_classes: int) -> int:
        """The number of top classes revised for ``num_classes`` known classes: ``alpha``, or min(10, K) when None.

        Raises ConfigError when ``alpha`` exceeds ``num_classes``.
        """
        alpha = min(DEFAULT_ALPHA, num_classes) if self.alpha is None else self.alpha
        if alpha > num_classes:
            raise ConfigError(f"eval.openmax_alpha={alpha} is more than the {num_classes} known classes")
        return alpha

    def check_setting(self, setting: Mapping[str, Any]) -> None:
        """`eval.openmax_alpha` against the known classes, when their number is known (:meth:`alpha_for`)."""
        self.check_params()
        if setting.get("num_classes") is not None:
            self.alpha_for(setting["num_classes"])

    def fit(self, outputs: Outputs | Any, labels: Any = None) -> "OpenMax":
        """Fit the K MAVs and Weibull tails on training outputs: ``"logits"`` (N, K) float and ``"labels"`` (N,) int
        in [0, K) -- or the logits as a numpy array / tensor and `labels` beside them. Returns self.

        Raises ValueError for missing or mis-shaped logits / labels, DataError for a label out of range or a class
        without a training image, for NaN / inf logits (naming how many rows), for labels that are not integer
        class ids (text: map class names to ids first; fractional values), ConfigError for an ``alpha`` above K. For training sets whose N x K logits do not
        fit in memory, :meth:`fit_chunks` gives the same fit from chunks of rows.
        """
        self.check_params()  # set_params / an assigned attribute get past the constructor
        outputs = as_outputs(outputs, labels)
        logits = logits_of(outputs, "OpenMax.fit")
        if "labels" not in outputs:
            raise ValueError("OpenMax.fit needs outputs['labels'] (the training labels)")
        return self.fit_chunks(lambda: iter([(logits, outputs["labels"])]))

    def fit_chunks(self, chunks: Callable[[], Iterable[tuple[torch.Tensor, torch.Tensor]]]) -> "OpenMax":
        """The fit of :meth:`fit` from the training rows in chunks: `chunks()` returns a fresh iterable of
        (logits (n, K) float, labels (n,) int) pairs, the same rows in the same order each time; it is called two
        or three times (class means, the means of classes without a correctly classified image when there are
        any, then the distances). Memory: the K x K float64 sums and one float per training row, never N x K.
        Returns self; errors as :meth:`fit`, naming the chunk.
        """
        self.check_params()
        n_rows, k, sums, counts = self._class_sums(chunks)
        spread = self.__dict__.pop("_moments")  # of all the training logits, from that pass
        if n_rows == 0:
            raise ValueError("OpenMax.fit: no training rows")
        if (counts[0] == 0).any():
            raise DataError(f"OpenMax.fit: class {int((counts[0] == 0).nonzero()[0])} has no training image")
        fallback = counts[1] == 0  # no correctly classified image: the MAV of all the class's images
        if fallback.any():
            sums[fallback] = self._class_sums(chunks, fallback.nonzero().flatten())[2]
        means = sums.div_(torch.where(fallback, counts[0], counts[1]).unsqueeze(1)).float()  # in place: K x K float64 once
        del sums
        distance, label, chosen = self._distances_to_means(chunks, means, fallback, n_rows)
        shapes, scales, shifts = (torch.zeros(k, dtype=torch.float64) for _ in range(3))
        degenerate = torch.zeros(k, dtype=torch.bool)
        # each class's chosen rows in their original order, found once (a sort), not by a pass per class
        for c, members in enumerate(torch.argsort(label, stable=True).split(counts[0].tolist())):
            tail = distance[members[chosen[members]]].sort().values[-self.tail_size:].double().numpy()
            shapes[c], scales[c], shifts[c], degenerate[c] = fit_weibull(tail)
        self.means_, self.shape_, self.scale_, self.shift_ = means, shapes, scales, shifts
        self.fallback_, self.degenerate_ = fallback, degenerate
        # logits without spread: every distance to a MAV is float rounding, and so is the AUROC
        self.warning_ = no_spread_warning(self.name, "logits") if no_spread(n_rows, *spread) else None
        return self

    def _checked_chunks(self, chunks: Callable[[], Iterable]) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
        """(chunk number, float32 logits (n, K), int64 labels (n,)) of each chunk, checked: one K throughout,
        labels (n,) in [0, K)."""
        k = None
        for i, (logits, labels) in enumerate(chunks()):
            where = f"OpenMax.fit, chunk {i}"
            logits, labels = logits_of(logits, where), training_labels(labels, where)
            k = logits.shape[1] if k is None else k
            if logits.shape[1] != k:
                raise ValueError(f"{where}: logits have {logits.shape[1]} columns, the chunks before {k}")
            if labels.shape != (logits.shape[0],):
                raise ValueError(f"{where}: labels must be ({logits.shape[0]},) to match the logits, "
                                 f"got {tuple(labels.shape)}")
            if len(labels) and (labels.min() < 0 or labels.max() >= k):
                raise DataError(f"{where}: training labels must be in [0, {k}), got {int(labels.min())} .. "
                                f"{int(labels.max())}")
            yield i, logits, labels

    def _class_sums(self, chunks: Callable[[], Iterable], classes: torch.Tensor | None = None
                    ) -> tuple[int, int, torch.Tensor, torch.Tensor]:
        """One pass: (rows, K, sums, counts (2, K): all images, correctly classified). The sums are float64: of the
        correctly classified rows per class (K, K), or with `classes` (C,) of every row of those classes (C, K)."""
        n_rows, k, sums, counts, slot_of = 0, 0, None, None, None
        total, squares = None, 0.0  # of every row's logits (float64): whether they have any spread (no_spread)
        for _, logits, labels in self._checked_chunks(chunks):
            if sums is None:
                k = logits.shape[1]
                self.alpha_for(k)  # refuse a too-large alpha now, not at scoring time
                counts = torch.zeros(2, k, dtype=torch.long)
                slot_of = torch.arange(k)  # the row of `sums` of each class (-1: not summed)
                if classes is not None:
                    slot_of = torch.full((k,), -1)
                    slot_of[classes] = torch.arange(len(classes))
                sums = torch.zeros(k if classes is None else len(classes), k, dtype=torch.float64)
            correct = logits.argmax(dim=1) == labels
            rows = (correct if classes is None else slot_of[labels] >= 0).nonzero().flatten()
            for part in rows.split(_SUM_ROWS):  # float64 copies of a few rows at a time, same order of additions
                sums.index_add_(0, slot_of[labels[part]], logits[part].double())
            for part in logits.split(_SUM_ROWS) if classes is None else ():
                part = part.double()
                total = part.sum(0) if total is None else total + part.sum(0)
                squares += float(part.pow(2).sum())
            counts[0] += torch.bincount(labels, minlength=k)
            counts[1] += torch.bincount(labels[correct], minlength=k)
            n_rows += len(labels)
        if classes is None:
            self._moments = (torch.zeros(max(k, 1), dtype=torch.float64) if total is None else total, squares)
        return n_rows, k, sums, counts

    def _distances_to_means(self, chunks: Callable[[], Iterable], means: torch.Tensor, fallback: torch.Tensor,
                            n_rows: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One pass: every row's distance to its class's MAV (N,), its label (N,), and whether it is one of the
        rows the MAV was taken over (N,) bool (correctly classified, or any row of a fallback class).

        The three are filled in place, allocated before the pass: small tensors kept between the (rows, K)
        temporaries pin glibc's heap (a 437k-row fit grew to 8 GB that way). ValueError when `chunks()` gives
        other rows than in the first pass."""
        distance, label = torch.empty(n_rows), torch.empty(n_rows, dtype=torch.long)
        chosen, start = torch.empty(n_rows, dtype=torch.bool), 0
        for i, logits, labels in self._checked_chunks(chunks):
            if start + len(labels) > n_rows:
                raise ValueError(f"OpenMax.fit, chunk {i}: chunks() gave more than the {n_rows} rows of its first pass")
            for v, y in zip(logits.split(_SUM_ROWS), labels.split(_SUM_ROWS)):  # rows are independent
                distance[start:start + len(y)] = distances(v, means[y], self.distance)
                label[start:start + len(y)] = y
                chosen[start:start + len(y)] = (v.argmax(dim=1) == y) | fallback[y]
                start += len(y)
        if start != n_rows:
            raise ValueError(f"OpenMax.fit: chunks() gave {start} rows, its first pass {n_rows}")
        return distance, label, chosen

    def _probability_chunks(self, outputs: Outputs,
                            column: Callable[[torch.Tensor], torch.Tensor] | None = None) -> Iterator[torch.Tensor]:
        """Yield the (n, K + 1) OpenMax probabilities of consecutive row chunks of ``outputs["logits"]`` (each
        reduced by `column`, e.g. a max over the known classes, when given), so that a caller keeping one number
        per image never holds all N x (K + 1) of them."""
        self.check_params()  # fitted with other parameters: refused as the constructor refuses them
        logits = logits_of(outputs, "OpenMax.score")
        k = self.num_classes
        if logits.shape[1] != k:
            raise ValueError(f"OpenMax was fitted on {k} classes, the logits have {logits.shape[1]}")
        alpha = self.alpha_for(k)
        rank_weight = torch.arange(alpha, 0, -1, dtype=torch.float64) / alpha  # (α - r) / α, r = 0 .. α-1
        for v in logits.split(max(1, min(_CHUNK, _CHUNK_ELEMENTS // (alpha * k)))):  # rows are independent
            top = v.topk(alpha, dim=1).indices  # (n, α), best first
            d = distances(v.unsqueeze(1), self.means_[top], self.distance)  # (n, α)
            w = rank_weight * weibull_cdf(d, self.shape_[top], self.scale_[top], self.shift_[top])
            omega = torch.zeros_like(v).scatter_(1, top, w.float())
            revised = v * (1 - omega)
            unknown = (v - revised).sum(dim=1, keepdim=True)
            prob = torch.softmax(torch.cat([revised, unknown], dim=1), dim=1)
            yield prob if column is None else column(prob)

    def probabilities(self, outputs: Outputs) -> torch.Tensor:
        """(N, K + 1) OpenMax probabilities; the last column is the unknown class."""
        rows = list(self._probability_chunks(outputs))
        return torch.cat(rows) if rows else torch.zeros(0, self.num_classes + 1)

    def score(self, outputs: Outputs) -> torch.Tensor:
        """(N,) float32 largest known-class OpenMax probability of ``outputs["logits"]`` (N, K), in (0, 1]; computed
        chunk by chunk (memory O(chunk x K), not N x K).

        Raises NotFittedError before :meth:`fit`, ValueError for logits of another class count.
        """
        rows = list(self._probability_chunks(outputs, lambda prob: prob[:, :-1].max(dim=1).values))
        return torch.cat(rows) if rows else torch.zeros(0)

    def unknown_probability(self, outputs: Outputs) -> torch.Tensor:
        """(N,) float32 OpenMax probability of the unknown class (the last column of :meth:`probabilities`)."""
        rows = list(self._probability_chunks(outputs, lambda prob: prob[:, -1]))
        return torch.cat(rows) if rows else torch.zeros(0)

    def summary(self) -> dict:
        """Name, options and, once fitted, alpha, K and the classes with a fallback MAV or a step tail (metrics)."""
        out = {"name": self.name, **self.options(), "score": "max known-class OpenMax probability"}
        if hasattr(self, "means_"):
            k = self.num_classes
            out.update({"alpha": self.alpha_for(k), "num_classes": k,
                        "weibull": "libMR FitHigh (tail shifted to 10000, weibull_min loc 0)",
                        "classes_without_correct_train_images": self.fallback_.nonzero().flatten().tolist(),
                        "classes_with_step_tail": self.degenerate_.nonzero().flatten().tolist()})
        return out

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The fit as tensors: ``means`` (K, K) float32, ``weibull_shape`` / ``_scale`` / ``_shift`` (K,) float64,
        ``fallback`` and ``degenerate`` (K,) bool. Raises NotFittedError before :meth:`fit`.
        """
        if not hasattr(self, "means_"):
            raise NotFittedError("OpenMax is not fitted: nothing to save")
        return {"means": self.means_, "weibull_shape": self.shape_, "weibull_scale": self.scale_,
                "weibull_shift": self.shift_, "fallback": self.fallback_, "degenerate": self.degenerate_}

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> "OpenMax":
        """Restore the tensors of :meth:`state_dict` (KeyError for a missing one); returns self."""
        self.means_ = state["means"].float()
        self.shape_, self.scale_, self.shift_ = (state[f"weibull_{k}"].double() for k in ("shape", "scale", "shift"))
        self.fallback_, self.degenerate_ = state["fallback"].bool(), state["degenerate"].bool()
        return self
