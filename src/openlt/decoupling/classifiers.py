"""Re-balanced classifiers on a frozen representation (Kang et al., ICLR 2020, "Decoupling Representation and
Classifier for Long-Tailed Recognition"), as pure-tensor building blocks on cached features (nearest class
mean: :mod:`openlt.decoupling.ncm`).

* :func:`tau_normalize`, :class:`TauNormClassifier`, :func:`search_tau`: w_i / ||w_i||^tau, bias dropped,
  tau chosen on a validation set (top-1, ties to the smaller tau), with the many/medium/few curve.
* :class:`LWSClassifier`: learnable per-class scale f on a frozen linear classifier, logits = f * (W x + b), a
  torch module; :class:`LWS` fits one on features as a scikit-learn estimator.
* :func:`train_on_features`: a small SGD loop (cosine lr to 0) over cached features with an
  :mod:`openlt.data.samplers` sampler, for cRT (a fresh :class:`torch.nn.Linear`, see :func:`new_linear`) and LWS.

Nothing here loads images or runs a backbone: callers extract features once (backbone frozen, eval mode) and
pass tensors (or numpy arrays) of shape (N, D) and labels of shape (N,).

:class:`TauNormClassifier` and :class:`LWS` (like :class:`openlt.decoupling.NCMClassifier`) follow the
scikit-learn estimator contract: constructor arguments are parameters (``get_params`` / ``set_params`` /
``sklearn.base.clone``), ``fit`` returns self, learnt attributes end in ``_``. :class:`LWSClassifier` is an
``nn.Module`` (its state is its ``state_dict``; copy it with ``copy.deepcopy``), not an estimator.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.base import BaseEstimator
from torch import Tensor, nn
from torch.optim.lr_scheduler import LambdaLR

from openlt.config import MAX_BATCH, MAX_EPOCHS, MAX_LR, MAX_WEIGHT_DECAY, SEED_END
from openlt.data.samplers import SAMPLERS, build_sampler
from openlt.decoupling._validate import (HALF, _bias, _check_dim, _features, _integer, _labels, _tau, _weight,
                                        compute_dtype)
from openlt.errors import ConfigError, DataError, NotFittedError, TrainingError
from openlt.metrics import ShotBands, shot_accuracy
from openlt.openset.base import CheckedParams
from openlt.optim import Cosine, build_scheduler, optimizer_step

__all__ = [
    "DEFAULT_TAUS",
    "LWS",
    "LWSClassifier",
    "TauNormClassifier",
    "new_linear",
    "search_tau",
    "tau_normalize",
    "train_on_features",
]

#: The public decoupling script's sweep, torch.linspace(0, 2, 21), as exact decimals 0.0, 0.1, ..., 2.0.
DEFAULT_TAUS: tuple[float, ...] = tuple(i / 10 for i in range(21))


# ----------------------------------------------------------------------------------------------- tau-norm


def tau_normalize(weight: Tensor, bias: Tensor | None = None, tau: float = 1.0) -> tuple[Tensor, None]:
    """(w_i / ||w_i||_2^tau for every row i, None): the tau-normalised classifier, bias dropped.

    tau = 0 is the joint classifier without its bias, tau = 1 gives unit-norm rows. A zero row stays zero
    (instead of 0 / 0). The bias argument is accepted so that ``tau_normalize(fc.weight, fc.bias, tau)`` reads
    as in the paper, and is always dropped (Kang et al. 2020, Sec. 4.2; the public code's ``pnorm``).
    """
    w = _weight(weight)
    tau = _tau(tau)
    norm = w.norm(dim=1, keepdim=True)
    norm = torch.where(norm > 0, norm, torch.ones_like(norm))
    return w / norm.pow(tau), None


def _tau_logits(w_tilde: Tensor, x: Tensor) -> Tensor:
    return x @ w_tilde.to(x).t()


def search_tau(weight: Tensor, val_features: Any, val_labels: Any, train_counts: Sequence[int] | Tensor,
               taus: Iterable[float] | Tensor | None = None,
               bands: ShotBands = ShotBands()) -> tuple[float, list[dict[str, Any]]]:
    """Choose tau by validation top-1 (overall sample accuracy); ties go to the smaller tau.

    ``taus`` defaults to :data:`DEFAULT_TAUS` (0, 0.1, ..., 2, the public script's ``linspace(0, 2, 21)``).
    Returns ``(best_tau, curve)`` where ``curve`` has one dict per tau, in the order given:
    ``{"tau", "many", "medium", "few", "overall"}`` from :func:`openlt.metrics.shot_accuracy` (a band with
    no validation sample is None). ``val_labels`` are class ids in [0, C): DataError for -1 (an open-set image:
    leave it out) or an id past the classifier's classes.
    """
    w = _weight(weight)
    x = _features(val_features, "val_features")
    _check_dim(x, w.shape[1], "classifier weight")
    y = _labels(val_labels, len(x), "val_labels")  # known classes only: an open (-1) image has no class to get right
    if y.numel() and int(y.max()) >= w.shape[0]:
        raise DataError(f"val_labels must be class ids below the classifier's {w.shape[0]} classes, got {int(y.max())}")
    counts = torch.as_tensor(train_counts)
    if counts.dim() != 1 or len(counts) != w.shape[0]:
        raise ConfigError(f"train_counts must have one count per class ({w.shape[0]}), got shape "
                          f"{tuple(counts.shape)}")
    grid = [float(t) for t in (DEFAULT_TAUS if taus is None else
                               (taus.flatten().tolist() if isinstance(taus, Tensor) else taus))]
    if not grid:
        raise ConfigError("search_tau needs at least one tau")
    return search_grid(lambda tau: _tau_logits(tau_normalize(w, None, tau)[0], x), y, counts, grid, bands,
                       "search_tau")


def search_grid(logits_for: Callable[[float], Tensor], val_labels: Tensor, train_counts: Sequence[int] | Tensor,
                grid: Sequence[float], bands: ShotBands = ShotBands(), what: str = "search") -> tuple[float, list[dict]]:
    """The value of a one-parameter post-hoc adjustment (tau-norm, logit adjustment) with the best validation
    top-1, ties to the smaller value; `logits_for(v)` gives the validation logits at v. Returns (best, curve),
    the curve one {"tau", "many", "medium", "few", "overall"} per value, in the order given."""
    curve: list[dict[str, Any]] = []
    best: tuple[float, float] | None = None  # (overall, tau)
    for tau in grid:
        tau = float(tau)
        acc = shot_accuracy(logits_for(tau).argmax(1), labels=val_labels, train_counts=train_counts, bands=bands)
        if acc["overall"] is None:
            raise DataError(f"{what}: the validation set has no known (label >= 0) sample")
        curve.append({"tau": tau, "many": acc["many"], "medium": acc["medium"], "few": acc["few"],
                      "overall": acc["overall"]})
        if best is None or acc["overall"] > best[0] or (acc["overall"] == best[0] and tau < best[1]):
            best = (acc["overall"], tau)
    if best is None:
        raise ConfigError(f"{what} needs at least one value to try")
    return best[1], curve


class TauNormClassifier(CheckedParams, BaseEstimator):
    """logits = x @ tau_normalize(W, tau)^T, no bias (Kang et al. 2020, Sec. 4.2).

    ``weight``: the (C, D) floating stage-1 classifier weight, finite (ConfigError otherwise, naming the rows with
    NaN / inf); ``tau``: a number in [0, 10] (Python or numpy; ConfigError for a negative one, a string or a bool,
    the config's rule for ``decouple.taus``) or None. With ``tau=None`` call
    ``fit(val_features, val_labels, train_counts, taus=..., bands=...)`` to choose tau on a validation set
    (:func:`search_tau`); the chosen value is ``tau_`` and the sweep ``curve_``. With a given tau the
    classifier is ready at once (``fit`` may still choose one: ``tau_`` then wins over ``tau``).

    A scikit-learn estimator: ``weight`` and ``tau`` are its parameters, kept as given (``get_params``,
    ``set_params``, ``sklearn.base.clone``); ``fit`` returns self.
    """

    fit_params = {"weight": "TauNormClassifier's weight", "tau": "TauNormClassifier's tau"}
    param_checks = {"weight": lambda weight, _: _weight(weight),
                    "tau": lambda tau, _: None if tau is None else _tau(tau)}

    def __init__(self, weight: Tensor, tau: float | None = 1.0) -> None:
        self.weight = weight  # kept as given
        self.tau = tau
        self.check_params()  # refused here, and again by fit / logits after set_params

    @property
    def chosen_tau(self) -> float:
        """The tau in use: ``tau_`` once :meth:`fit` chose one, else the ``tau`` given; NotFittedError when
        neither (``tau=None`` before :meth:`fit`)."""
        self.check_params()  # set_params / an assigned attribute get past the constructor
        tau = getattr(self, "tau_", None)
        tau = self.tau if tau is None else tau
        if tau is None:
            raise NotFittedError("TauNormClassifier(tau=None): call fit(val_features, val_labels, train_counts)")
        return float(tau)

    def fit(self, val_features: Any, val_labels: Any, train_counts: Sequence[int] | Tensor,
            taus: Iterable[float] | Tensor | None = None, bands: ShotBands = ShotBands()) -> "TauNormClassifier":
        """Choose tau on validation features (M, D) and labels (M,) (class ids in [0, C)) by top-1 over ``taus``
        (default :data:`DEFAULT_TAUS`), ties to the smaller tau (:func:`search_tau`); ``train_counts`` (C,) set the
        many / medium / few bands of the curve. Sets ``tau_`` and ``curve_``; returns self.

        Raises DataError for malformed features / labels or no known validation sample, ConfigError for
        ``train_counts`` of the wrong length or an empty grid.
        """
        self.check_params()
        self.tau_, self.curve_ = search_tau(self.weight, val_features, val_labels, train_counts, taus, bands)
        return self

    @property
    def normalized_weight(self) -> Tensor:
        """The (C, D) tau-normalised weight ``w_i / ||w_i||^tau`` at :attr:`chosen_tau`, in the weight's dtype;
        NotFittedError while ``tau`` is None and :meth:`fit` has not run.
        """
        return tau_normalize(self.weight, None, self.chosen_tau)[0]

    def logits(self, features: Any) -> Tensor:
        """(N, C) logits ``x @ normalized_weight^T`` of (N, D) features (half precision upcast to float32).

        Raises NotFittedError before :meth:`fit` (with ``tau=None``), DataError for features that are not (N, D) finite.
        """
        w = self.normalized_weight
        x = _features(features)
        _check_dim(x, w.shape[1], "tau-normalised classifier")
        return _tau_logits(w, x)

    def predict(self, features: Any) -> Tensor:
        """(N,) int64 class ids: the argmax of :meth:`logits`."""
        return self.logits(features).argmax(1)


# ----------------------------------------------------------------------------------------------- LWS


class LWSClassifier(nn.Module):
    """Learnable weight scaling: logits = f * (x W^T + b) with W, b frozen (buffers) and f (``scales``, one per
    class, initialised to 1) the only parameter. The bias is scaled too, as in the classifier-balancing code.
    Unit scales reproduce the original classifier exactly. ConfigError for a weight that is not a finite (C, D)
    float tensor or a bias that is not a finite (C,) vector.
    """

    bias: Tensor | None

    def __init__(self, weight: Tensor, bias: Tensor | None = None) -> None:
        super().__init__()
        w = _weight(weight).clone()
        self.register_buffer("weight", w)
        if bias is None:
            self.register_buffer("bias", None)
        else:
            self.register_buffer("bias", _bias(bias, w.shape[0], w.dtype))
        self.scales = nn.Parameter(torch.ones(w.shape[0], dtype=w.dtype, device=w.device))

    @classmethod
    def from_linear(cls, fc: nn.Linear) -> "LWSClassifier":
        """LWS on a stage-1 ``nn.Linear``: its (C, D) weight and (C,) bias (or none), unit scales."""
        return cls(fc.weight, fc.bias)

    @property
    def num_classes(self) -> int:
        """C, the number of classes (rows of the frozen weight)."""
        return self.weight.shape[0]

    def forward(self, x: Tensor) -> Tensor:
        """(B, D) features, in the weight's dtype and device -> (B, C) logits ``scales * (x W^T + b)``."""
        return self.scales * F.linear(x, self.weight, self.bias)

    def logits(self, features: Any) -> Tensor:
        """(N, C) logits of (N, D) features of any float dtype (cast to the weight's); DataError for features that
        are not (N, D) finite or of another D.
        """
        x = _features(features)
        _check_dim(x, self.weight.shape[1], "LWS classifier")
        return self(x.to(self.weight))

    @torch.no_grad()
    def to_linear(self) -> nn.Linear:
        """An equivalent plain nn.Linear with the scales folded in: W' = diag(f) W, b' = f * b."""
        fc = nn.Linear(self.weight.shape[1], self.weight.shape[0], bias=self.bias is not None,
                       device=self.weight.device, dtype=self.weight.dtype)
        fc.weight.copy_(self.scales.unsqueeze(1) * self.weight)
        if self.bias is not None:
            fc.bias.copy_(self.scales * self.bias)
        return fc

    def extra_repr(self) -> str:
        """The sizes and whether there is a bias, shown by ``repr(module)``."""
        return f"in_features={self.weight.shape[1]}, num_classes={self.weight.shape[0]}, bias={self.bias is not None}"


def _check_seed(seed: Any, name: str = "seed") -> None:
    """ConfigError unless `seed` is an integer (Python or numpy, not a bool) in [0, 2**32), as the config's seeds
    (numpy's RandomState takes no other)."""
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, numbers.Integral) or not 0 <= seed < SEED_END:
        raise ConfigError(f"{name} must be an integer >= 0 and < 2**32, got {seed!r}")


def _check_sampler(sampler: Any, name: str = "sampler") -> None:
    """ConfigError unless `sampler` names a registered sampler (the known ones listed)."""
    if not isinstance(sampler, str) or sampler not in SAMPLERS:
        raise ConfigError(f"{name} must be one of {', '.join(SAMPLERS.names())}, got {sampler!r}")


def _bounded_integer(name: str, key: str, high: int) -> Callable[[Any, Any], None]:
    """The check of an integer training option >= 1 and <= `high`, the bound of config key `key`."""
    def check(value: Any, estimator: Any = None) -> None:
        ok = isinstance(value, numbers.Integral) or (isinstance(value, numbers.Real) and math.isfinite(value)
                                                     and float(value).is_integer())
        if isinstance(value, (bool, np.bool_)) or not ok or not 1 <= value <= high:
            raise ConfigError(f"{name} ({key}) must be an integer >= 1 and <= {high}, got {value!r}")
    return check


def _bounded_real(name: str, key: str, bounds: str, ok: Callable[[float], bool]) -> Callable[[Any, Any], None]:
    """The check of a real training option within the bounds of config key `key` (`bounds` says them)."""
    def check(value: Any, estimator: Any = None) -> None:
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real) or not math.isfinite(value) \
                or not ok(value):
            raise ConfigError(f"{name} ({key}) must be a finite number {bounds}, got {value!r}")
    return check


def _nonnegative(name: str) -> Callable[[Any, Any], None]:
    """The check of a training option that is a finite number >= 0 (lr, momentum, weight_decay)."""
    def check(value: Any, estimator: Any = None) -> None:
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real) or not math.isfinite(value) \
                or value < 0:
            raise ConfigError(f"{name} must be a finite number >= 0, got {value!r}")
    return check


class LWS(CheckedParams, BaseEstimator):
    """Learnable weight scaling (Kang et al. 2020, Sec. 4.2) as a scikit-learn estimator: ``fit(features,
    labels)`` trains the per-class scales f of an :class:`LWSClassifier` on the frozen ``weight`` (C, D) and
    ``bias`` (C,) (None: no bias) with :func:`train_on_features` (softmax cross-entropy, SGD with cosine lr,
    ``sampler`` order: class-balanced by default, as the paper; the defaults are the embedded benchmark's
    configs/fmnist_lt/decouple_lws.yaml), then ``logits = f * (x W^T + b)``. ``weight`` and ``bias`` must be
    finite (ConfigError at construction naming the rows / classes with NaN / inf); ``epochs`` and ``batch_size``
    whole numbers >= 1 (Python or numpy integers, not bools); labels integer class ids (DataError for text:
    map class names to ids first).

    Parameters (``get_params`` / ``set_params`` / ``sklearn.base.clone``): ``weight``, ``bias``, ``epochs``,
    ``batch_size``, ``lr``, ``momentum``, ``weight_decay``, ``sampler``, ``seed``. Learnt: ``module_`` (the
    trained :class:`LWSClassifier`, on the CPU) and ``scales_`` (C,) in the weight's dtype. The result is a
    function of the parameters and the data (the sampler's seed is the only randomness).
    """

    fit_params = {"weight": "LWS's weight", "bias": "LWS's bias", "epochs": "epochs (train.epochs)",
                  "batch_size": "batch_size (train.batch_size)", "lr": "lr (train.lr)",
                  "momentum": "momentum (train.momentum)", "weight_decay": "weight_decay (train.weight_decay)",
                  "sampler": "sampler (train.sampler)", "seed": "seed"}
    param_checks = {
        "weight": lambda weight, _: _weight(weight),
        "bias": lambda bias, lws: None if bias is None else _bias(bias, *_classes_and_dtype(lws.weight)),
        # the config's bounds of the keys a decoupled LWS stage takes them from (train.*): lr 1e39 overflowed,
        # momentum 5 diverged to -2e10 (trial 15 item 9)
        "epochs": _bounded_integer("epochs", "train.epochs", MAX_EPOCHS),
        "batch_size": _bounded_integer("batch_size", "train.batch_size", MAX_BATCH),
        "lr": _bounded_real("lr", "train.lr", "> 0 and <= 100", lambda v: 0 < v <= MAX_LR),
        "momentum": _bounded_real("momentum", "train.momentum", ">= 0 and < 1", lambda v: 0 <= v < 1),
        "weight_decay": _bounded_real("weight_decay", "train.weight_decay", f">= 0 and <= {MAX_WEIGHT_DECAY:g}",
                                      lambda v: 0 <= v <= MAX_WEIGHT_DECAY),
        "sampler": lambda sampler, _: _check_sampler(sampler),
        "seed": lambda seed, _: _check_seed(seed),
    }

    def __init__(self, weight: Tensor, bias: Tensor | None = None, *, epochs: int = 10, batch_size: int = 128,
                 lr: float = 0.2, momentum: float = 0.9, weight_decay: float = 5e-4,
                 sampler: str = "class_balanced", seed: int = 0) -> None:
        self.weight, self.bias = weight, bias  # every parameter kept as given
        self.epochs, self.batch_size, self.lr, self.momentum = epochs, batch_size, lr, momentum
        self.weight_decay, self.sampler, self.seed = weight_decay, sampler, seed
        self.check_params()  # refused here, and again by fit / logits after set_params

    def fit(self, features: Any, labels: Any) -> "LWS":
        """Train the scales on features (N, D) and labels (N,) class ids in [0, C); returns self.

        Raises DataError for malformed features or labels, ConfigError for bad training options or a bias of
        the wrong shape, TrainingError when the loss stops being finite.
        """
        self.check_params()
        module = LWSClassifier(self.weight, self.bias)
        train_on_features(module, features, labels, epochs=self.epochs, batch_size=self.batch_size, lr=self.lr,
                          momentum=self.momentum, weight_decay=self.weight_decay, sampler=self.sampler,
                          seed=self.seed)
        self.module_ = module.cpu().eval()
        self.scales_ = module.scales.detach().clone()
        return self

    @torch.no_grad()
    def logits(self, features: Any) -> Tensor:
        """(N, C) logits ``scales_ * (x W^T + b)`` of (N, D) features (cast to the weight's dtype); NotFittedError
        before :meth:`fit`, DataError for features that are not (N, D) finite."""
        self.check_params()
        if not hasattr(self, "module_"):
            raise NotFittedError("LWS: call fit(features, labels) before logits()")
        return self.module_.logits(features)

    def predict(self, features: Any) -> Tensor:
        """(N,) int64 class ids: the argmax of :meth:`logits`."""
        return self.logits(features).argmax(1)


def _classes_and_dtype(weight: Any) -> tuple[int, torch.dtype]:
    """(C, dtype) of a classifier weight (checked by :func:`_weight`): what its bias must match."""
    w = _weight(weight)
    return w.shape[0], w.dtype


# ----------------------------------------------------------------------------------------------- training


def new_linear(in_dim: int, num_classes: int, *, bias: bool = True, seed: int = 0) -> nn.Linear:
    """A freshly initialised nn.Linear (PyTorch's default init) whose values depend on ``seed`` only, for cRT;
    the global RNG state is left untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Linear(in_dim, num_classes, bias=bias)


def train_on_features(module: nn.Module, features: Any, labels: Any, *, epochs: int, batch_size: int, lr: float,
                      momentum: float = 0.9, weight_decay: float = 5e-4, sampler: str = "class_balanced",
                      seed: int = 0, sampler_args: dict[str, Any] | None = None,
                      epoch_features: Callable[[int], Tensor] | None = None,
                      on_epoch: Callable[[int, float, float], None] | None = None) -> nn.Module:
    """Train ``module`` (features -> logits, or a dict with "logits") with softmax cross-entropy on cached
    features; returns the same module, trained in place.

    SGD(momentum, weight_decay) over the module's parameters that require grad; the learning rate follows a
    cosine from ``lr`` to 0 over all steps, set per step (:class:`openlt.optim.Cosine`): lr_s = lr * (1 +
    cos(pi * s / S)) / 2; each step is :func:`openlt.optim.optimizer_step`, the trainer's. Each epoch's
    order comes from ``openlt.data.samplers.build_sampler(sampler, labels, epochs=epochs, seed=seed,
    **sampler_args)`` after ``set_epoch(epoch)``, cut into consecutive batches (the last may be smaller).
    The only randomness is the sampler's, so the result is a function of (initial module, data, seed).
    The module is left in the train/eval mode it had.

    Half-precision ``features`` (a float16 feature cache) are kept as they are and converted one batch at a time
    (the same values as converting all of them first). ``epoch_features(epoch)``, when given, replaces ``features`` at the start of every epoch (same samples, same
    order: e.g. freshly augmented images through a frozen backbone, the paper's cRT). ``on_epoch(epoch,
    mean_loss, last_lr)`` is called after every epoch (logging, progress).
    """
    epochs, batch_size = _check_training_options(epochs, batch_size, lr, momentum, weight_decay)
    x = _features(features, keep_half=True)  # float16 stays float16: each batch is converted (_features_epoch)
    y = _labels(labels, len(x))
    if len(x) == 0:
        raise DataError("train_on_features needs at least one feature")
    params = [p for p in module.parameters() if p.requires_grad]
    if not params:
        raise ConfigError(f"{type(module).__name__} has no trainable parameter")
    ref = params[0]
    dtype = ref.dtype if ref.is_floating_point() else compute_dtype(x)  # what the module computes in
    x = x.to(device=ref.device, dtype=x.dtype if x.dtype in HALF else dtype)
    y_dev = y.to(ref.device)
    smp = build_sampler(sampler, y, epochs=int(epochs), seed=seed, **(sampler_args or {}))
    opt = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    scheduler = build_scheduler(opt, Cosine(int(epochs) * math.ceil(len(smp) / batch_size)))
    was_training = module.training
    module.train()
    try:
        for epoch in range(int(epochs)):
            smp.set_epoch(epoch)
            if epoch_features is not None:
                fresh = _features(epoch_features(epoch))
                if fresh.shape != x.shape:
                    raise DataError(f"epoch_features({epoch}) gave shape {tuple(fresh.shape)}, expected {tuple(x.shape)}")
                x = fresh.to(device=x.device, dtype=dtype)
            order = torch.as_tensor(list(smp), dtype=torch.long, device=ref.device)
            losses, last_lr = _features_epoch(module, x, y, y_dev, order, batch_size, opt, scheduler, epoch, dtype)
            if on_epoch is not None:
                on_epoch(epoch, sum(losses) / len(losses), last_lr)
    finally:
        module.train(was_training)
    return module


def _check_training_options(epochs: Any, batch_size: Any, lr: Any, momentum: Any,
                            weight_decay: Any) -> tuple[int, int]:
    """(epochs, batch_size) as ints: whole numbers >= 1, Python or numpy (np.int64 from a notebook), not a bool;
    lr, momentum, weight_decay finite numbers >= 0. ConfigError naming the option otherwise."""
    epochs, batch_size = _integer(epochs, "epochs"), _integer(batch_size, "batch_size")
    for name, v in (("lr", lr), ("momentum", momentum), ("weight_decay", weight_decay)):
        _nonnegative(name)(v)
    return epochs, batch_size


def _features_epoch(module: nn.Module, x: Tensor, y: Tensor, y_dev: Tensor, order: Tensor, batch_size: int,
                    opt: torch.optim.Optimizer, scheduler: LambdaLR, epoch: int,
                    dtype: torch.dtype | None = None) -> tuple[list[float], float]:
    """One epoch of :func:`train_on_features` over ``order`` (sample indices) in consecutive batches, each
    batch's features converted to `dtype` (float16 cached features: only the batch, never all N); returns the
    batch losses and the lr of the last step."""
    losses, lr = [], 0.0
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        step, lr = scheduler.last_epoch, opt.param_groups[0]["lr"]
        out = module(x[idx].to(dtype or x.dtype))
        logits = out["logits"] if isinstance(out, dict) else out
        if step == 0 and int(y.max()) >= logits.shape[-1]:
            raise DataError(f"label {int(y.max())} out of range for a classifier with {logits.shape[-1]} outputs")
        loss = F.cross_entropy(logits, y_dev[idx])
        if not torch.isfinite(loss):
            raise TrainingError(f"loss became {loss.item()} at epoch {epoch + 1}, step {step + 1} (try a lower lr)")
        optimizer_step(loss, opt, scheduler)
        losses.append(loss.item())
    return losses, lr
