"""The one interface of open-set scores: `fit(outputs)` where a score learns from training data, then
`score(outputs)` on any batch. Scores are registered by name (`eval.open_score`) and run "higher = more known".

`outputs` is the dict the evaluator collects from a model: "logits" (N x K), "labels" (N, known classes
only, needed to fit), "reachability" from the meta-embedding head, and "feature" (N x D, the penultimate
features the head sees) only for a score that declares ``needs_features`` (Mahalanobis, KNN, ViM, ReAct), so
that the other evaluations keep no (N x D) tensor. Working on these tensors, never on the model, lets every
score run on cached outputs and with every trained model. Two flags tell the evaluator what more a score
needs: ``needs_head`` (ViM, ReAct): ``fit(..., head=(W, b))`` gets the classifier's linear map, weight (K, D)
and bias (K,), which the score keeps as learnt state; ``needs_model`` (ODIN, which perturbs the input
images along a gradient): the evaluator passes every batch of images through :meth:`OpenSetScore.score_images`
and keeps the result as ``outputs["model_score"]``, which ``score`` then reads. A numpy array or torch
tensor of logits (N, K) stands for ``{"logits": ...}`` (:func:`as_outputs`): ``max_softmax(np_logits)``,
``OpenMax().fit(train_logits, train_labels)``.

Scores follow the scikit-learn estimator contract (:class:`sklearn.base.BaseEstimator`): the constructor
only stores its options, ``get_params`` / ``set_params`` / ``sklearn.base.clone`` work, ``fit`` returns
self, and what a fit learns ends in ``_`` (OpenMax's ``means_``, ``shape_``, ...). Each score declares its
parameters' checks once (:class:`CheckedParams`), run by the constructor and again by ``fit`` and ``score``, so
that ``set_params`` cannot get a value past them.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping, Sequence

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from sklearn.base import BaseEstimator

from openlt.config import TRAINED_AMPS
from openlt.errors import ConfigError, DataError, NotFittedError, RunDirError
from openlt.io import atomic_path
from openlt.registry import Registry

Outputs = Mapping[str, torch.Tensor]
Head = tuple[torch.Tensor, torch.Tensor]  # a linear classifier's weight (K, D) and bias (K,)
FORMAT = "openlt-open-score/1"
MODEL_SCORE = "model_score"  # outputs key of a needs_model score, computed batch by batch from the images


def as_tensor(value: Any, name: str, error: type[Exception] = DataError) -> torch.Tensor:
    """`value` (a numpy array, tensor, list or number) as a torch tensor; `error` (DataError) naming `name` for text
    or objects, which torch would refuse with a raw TypeError (a numpy array of class names or paths). Also the
    decoupled classifiers' conversion (decoupling/_validate.py)."""
    if isinstance(value, torch.Tensor):
        return value
    arr = np.asarray(value) if isinstance(value, (np.ndarray, list, tuple)) else None
    if arr is not None and arr.dtype.kind in "USOV":
        what = ("integer class ids (map class names to ids first)" if name.endswith("labels")
                else "numbers (int or float)")
        raise error(f"{name} must hold {what}, got a numpy array of dtype {arr.dtype}")
    try:
        return torch.as_tensor(value if arr is None else arr)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise error(f"{name} must be a numeric numpy array or tensor, got {type(value).__name__} ({exc})") from None


def as_outputs(outputs: Any, labels: Any = None) -> dict[str, torch.Tensor]:
    """An outputs dict of torch tensors from what a caller has: a mapping ({"logits": (N, K), "labels"?: (N,),
    "reachability"?: (N,)}; numpy values become tensors) or the (N, K) logits themselves as a numpy array or
    torch tensor. `labels` (N,) class ids, when given, are added as "labels" (for ``fit``). TypeError for
    anything else; DataError naming the entry for an array of text (class names, paths) or objects."""
    if isinstance(outputs, Mapping):
        out = {key: as_tensor(value, "labels" if key == "labels" else f"outputs[{key!r}]")
               for key, value in outputs.items()}
    elif isinstance(outputs, (torch.Tensor, np.ndarray)):
        out = {"logits": as_tensor(outputs, "logits")}
    else:
        raise TypeError(f"open-set scores take an outputs dict or an (N, K) array / tensor of logits, got "
                        f"{type(outputs).__name__}")
    if labels is not None:
        out["labels"] = as_tensor(labels, "labels")
    return out


FINITE_CHUNK = 8192  # rows checked at a time: isfinite over all (N, D) at once peaks at 1.7x the features (6 GB at
# iNaturalist's 437k x 2048 float32)


def non_finite_rows(x: torch.Tensor) -> tuple[int, int] | None:
    """(how many rows of `x` (N, ...; a 0-d tensor is one row) hold NaN or infinite values, the first of them), or
    None when none does; checked :data:`FINITE_CHUNK` rows at a time. Integer tensors are finite. The one non-finite
    check of the open-set scores and the decoupled classifiers (each caller words its own error)."""
    if not x.is_floating_point() or not x.numel():
        return None
    rows = x.reshape(len(x), -1) if x.dim() else x.reshape(1, 1)
    count, first = 0, None
    for start in range(0, len(rows), FINITE_CHUNK):
        bad = ~torch.isfinite(rows[start:start + FINITE_CHUNK]).all(dim=1)
        if bool(bad.any()):
            count += int(bad.sum())
            first = start + int(bad.nonzero()[0]) if first is None else first
    return None if first is None else (count, first)


def check_finite_rows(x: torch.Tensor, what: str) -> None:
    """DataError when `x` (N, ...) holds NaN or infinite values (:func:`non_finite_rows`): `what` (the caller and
    argument) and how many rows, the first of them. Integer tensors are finite."""
    found = non_finite_rows(x)
    if found:
        raise DataError(f"{what} hold NaN or infinite values in {found[0]} of {len(x)} rows (first: row {found[1]})")


def class_ids(t: torch.Tensor, name: str) -> torch.Tensor:
    """Labels `t` (a tensor from :func:`as_tensor`) as int64 class ids; DataError naming `name` for booleans,
    complex numbers or fractional values (0.9 would become class 0). The dtype check of OpenMax's training labels
    and the decoupled classifiers' labels."""
    if t.dtype == torch.bool or t.is_complex():
        raise DataError(f"{name} must be integer class ids, got dtype {t.dtype}")
    if t.is_floating_point() and not torch.equal(t, t.round()):
        raise DataError(f"{name} must be integer class ids, got non-integral values")
    return t.long()


ParamCheck = Callable[[Any, Any], None]
"""One parameter's check, ``check(value, estimator)``: ConfigError naming the parameter when `value` is refused
(`estimator` for a rule that depends on another parameter: LWS's bias on its weight's classes)."""


class CheckedParams:
    """The parameter checks of a scikit-learn estimator, declared once: ``param_checks`` maps each constructor
    parameter to its :data:`ParamCheck`. :meth:`check_params` runs them on the current values: the constructor
    calls it (a bad value is refused where it is given) and so do ``fit`` and ``score`` / ``predict`` /
    ``logits``, as scikit-learn validates in ``fit``: ``set_params`` and an assigned attribute get past the
    constructor (GridSearchCV does ``clone(est).set_params(...)``), and each refuses them with the constructor's
    ConfigError."""

    param_checks: ClassVar[Mapping[str, ParamCheck]] = {}
    # The parameters the fit uses -> how a refusal names them (with the config key): their values are recorded at
    # the end of ``fit`` / ``fit_chunks`` / ``load_state_dict`` (``fitted_params_``), and a value changed since then
    # is refused by every use of the fit (score, logits, summary, options, state_dict: save_score), since the fit
    # holds the old one (trial 15 item 9: OpenMax's tail_size 20 -> 5 after fit scored with 20, summarised as 5).
    fit_params: ClassVar[Mapping[str, str]] = {}

    def check_params(self) -> None:
        """ConfigError naming the first parameter whose current value its check refuses, or that changed since the
        fit (:attr:`fit_params`)."""
        for name, check in self.param_checks.items():
            check(getattr(self, name), self)
        for name, was in self.__dict__.get("fitted_params_", {}).items():
            now = getattr(self, name)
            if not _same_value(was, now):
                label = self.fit_params.get(name, name)
                shown = ("differs from the one the fit used" if _is_array(was) or _is_array(now) else
                         f"is {now!r}, but the fit used {was!r}")
                raise ConfigError(f"{label} {shown}: fit again, or set {name} back")

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for attr in ("fit", "fit_chunks", "load_state_dict"):  # (re)fitting: the values it used are recorded
            method = cls.__dict__.get(attr)
            if callable(method) and not getattr(method, "_records_fit", False):
                setattr(cls, attr, _recording(method))
        for attr in ("summary", "options", "state_dict", "logits", "predict", "score"):  # uses of the fit
            method = cls.__dict__.get(attr)
            if callable(method) and not getattr(method, "_checks_fit", False):
                setattr(cls, attr, _checking(method))


def _is_array(value: Any) -> bool:
    return isinstance(value, (torch.Tensor, np.ndarray, list, tuple))


def _recorded(value: Any) -> Any:
    """`value` as the fit's record: an array / tensor / list copied as a tensor, a numpy number as Python's."""
    if _is_array(value):
        return torch.as_tensor(np.asarray(value) if isinstance(value, (list, tuple)) else value).detach().clone()
    return value.item() if isinstance(value, np.generic) else value


def _same_value(was: Any, now: Any) -> bool:
    if isinstance(was, torch.Tensor) or _is_array(now):
        try:
            now = _recorded(now)
        except (TypeError, ValueError, RuntimeError):
            return False
        return (isinstance(was, torch.Tensor) and isinstance(now, torch.Tensor) and was.shape == now.shape
                and was.dtype == now.dtype and bool(torch.equal(was, now)))
    now = now.item() if isinstance(now, np.generic) else now
    return type(was) is type(now) and was == now or (isinstance(was, (int, float)) and not isinstance(was, bool)
                                                    and isinstance(now, (int, float)) and not isinstance(now, bool)
                                                    and was == now)


def _recording(method: Callable) -> Callable:
    """`method` (a fit) forgetting the previous fit's record first and recording the values it used after."""
    import functools

    @functools.wraps(method)
    def wrapper(self, *args: Any, **kwargs: Any) -> Any:
        self.__dict__.pop("fitted_params_", None)
        out = method(self, *args, **kwargs)
        if self.fit_params:
            self.fitted_params_ = {name: _recorded(getattr(self, name)) for name in self.fit_params}
        return out
    wrapper._records_fit = True
    return wrapper


def _checking(method: Callable) -> Callable:
    """`method` (a use of the fit) refusing first a parameter changed since the fit (:meth:`check_params`)."""
    import functools

    @functools.wraps(method)
    def wrapper(self, *args: Any, **kwargs: Any) -> Any:
        if "fitted_params_" in self.__dict__:
            self.check_params()
        return method(self, *args, **kwargs)
    wrapper._checks_fit = True
    return wrapper


def number_check(message: str, kind: type, ok: Callable[[Any], bool], none_ok: bool = False) -> ParamCheck:
    """The :data:`ParamCheck` of a numeric parameter: a number of `kind` (numbers.Integral, numbers.Real: numpy's
    np.int64 and np.float32 too; a bool or np.bool_ not; None when `none_ok`) for which `ok` holds, else
    ConfigError(`message` + ``, got {value!r}``)."""
    def check(value: Any, estimator: Any = None) -> None:
        if value is None and none_ok:
            return
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, kind) or not ok(value):
            raise ConfigError(f"{message}, got {value!r}")
    return check


class OpenSetScore(CheckedParams, BaseEstimator):
    """Base class: a score is "higher = more known". Stateless scores only implement `score`.

    A scikit-learn estimator: the constructor's keyword arguments are its parameters (``get_params``,
    ``set_params``, ``sklearn.base.clone``), ``fit`` returns self, learnt attributes end in ``_``."""

    name: ClassVar[str] = ""
    requires_fit: ClassVar[bool] = False  # True: call fit(train outputs) before score()
    needs_features: ClassVar[bool] = False  # True: outputs carry "feature" (N, D), the head's input
    fits_half_features: ClassVar[bool] = False  # True: fit takes float16 features as they are (converts by chunks)
    needs_head: ClassVar[bool] = False  # True: fit(..., head=(weight (K, D), bias (K,))) of a linear head
    needs_model: ClassVar[bool] = False  # True: scored from the images (score_images), kept as "model_score"
    value_range: ClassVar[tuple[float, float] | None] = None  # (low, high) every score lies in, when bounded

    @classmethod
    def from_config(cls, eval_cfg: Any) -> "OpenSetScore":
        """Build from the `eval` config section (scores with options read their `eval.*` keys)."""
        return cls()

    def fit(self, outputs: Outputs | Any, labels: Any = None, head: Head | None = None) -> "OpenSetScore":
        """Learn what the score needs from training outputs ("logits", "labels", "feature" where
        ``needs_features``; or (N, K) logits and (N,) `labels`, see :func:`as_outputs`) and, where
        ``needs_head``, the classifier's linear map `head` = (weight (K, D), bias (K,)); returns self.
        Stateless scores learn nothing (their parameters are checked: :meth:`check_params`)."""
        self.check_params()
        return self

    def check_setting(self, setting: Mapping[str, Any]) -> None:
        """Refuse, before any work, a score that cannot work with this model and data. `setting` (see
        :func:`check_score_setting`) gives what is known: ``"head"`` ("linear", "meta_embedding" or another
        head's name), ``"feature_dim"`` (D of the penultimate features), ``"num_classes"`` (K) and ``"num_train"``
        (training images); a missing or None value is not checked. ConfigError naming the key and why. The base
        class checks the parameters (:meth:`check_params`) and the linear head of a score that ``needs_head``;
        scores with more conditions extend it."""
        self.check_params()
        head = setting.get("head")
        if self.needs_head and head is not None and head != "linear":
            raise ConfigError(no_linear_head(self.name, f"this model's head is {head}"))

    def score_images(self, logits_of_images: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor,
                     norm_std: Sequence[float] | None = None) -> torch.Tensor:
        """(B,) float32 CPU score of a batch of normalised images (B, C, H, W), for a score that ``needs_model``:
        `logits_of_images` is the network (images -> (B, K) logits, gradients allowed), `norm_std` the
        per-channel std the images were normalised by (on the [0, 1] pixel scale). The evaluator keeps the
        result as ``outputs["model_score"]``. NotImplementedError for the scores that work on outputs."""
        raise NotImplementedError(f"open-set score {self.name!r} works on outputs, not on images")

    def score(self, outputs: Outputs | Any) -> torch.Tensor:
        """(N,) float score of a batch of outputs (``"logits"`` (N, K), ...; or the logits as a numpy array /
        tensor), higher = more known.

        Subclasses implement it. Fitted scores raise :class:`~openlt.errors.NotFittedError` before ``fit``.
        """
        raise NotImplementedError

    def __call__(self, outputs: Outputs | Any) -> torch.Tensor:
        return self.score(outputs)

    def options(self) -> dict:
        """The constructor's keyword arguments (saved beside a fitted state): ``get_params()``, numpy numbers
        (``np.int64(5)`` from a notebook) as Python ones, so that they can be written as JSON."""
        return {key: value.item() if isinstance(value, np.generic) else value
                for key, value in self.get_params(deep=False).items()}

    def summary(self) -> dict:
        """What the metrics record about this score: its name, options and (once fitted) what it learnt."""
        return {"name": self.name, **self.options()}

    def state_dict(self) -> dict[str, torch.Tensor]:
        """What a fitted score learnt, as named tensors (for :func:`save_score`); empty for stateless scores."""
        return {}

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> "OpenSetScore":
        """Restore what :meth:`state_dict` gave (nothing for stateless scores); returns self."""
        return self


SCORES: Registry[type[OpenSetScore]] = Registry("open-set score")

# Rows whose root-mean-square distance to their mean is at most this fraction of their root-mean-square norm are
# the same up to float rounding (identical images give features that differ by ~1e-7 relative, from the batch
# they were computed in); real features spread by ~0.1 - 1 of their norm.
SPREAD_RTOL = 1e-5
_SPREAD_ROWS = 4096  # rows summed in float64 at once


def no_spread(n: int, total: torch.Tensor, squares: float) -> bool:
    """Whether `n` rows with column sums `total` (D,) and sum of squared entries `squares` have no spread: their
    total variance at most SPREAD_RTOL^2 of their mean squared norm (float64 moments; False for fewer than 2
    rows)."""
    if n < 2:
        return False
    mean_square = float(squares) / n
    variance = mean_square - float((total.double() / n).pow(2).sum())
    return variance <= SPREAD_RTOL ** 2 * mean_square


def rows_have_no_spread(x: torch.Tensor) -> bool:
    """:func:`no_spread` of the rows of `x` (N, D) (every row the same up to float rounding), summed in float64 a
    few thousand rows at a time."""
    x = x.detach().reshape(len(x), -1)
    total, squares = torch.zeros(x.shape[1], dtype=torch.float64), 0.0
    for part in x.split(_SPREAD_ROWS):
        part = part.double().cpu()
        total += part.sum(0)
        squares += float(part.pow(2).sum())
    return no_spread(len(x), total, squares)


def no_spread_warning(name: str, what: str = "features") -> str:
    """The one-line warning of a score fitted on training `what` (features, logits) without spread."""
    one = "feature" if what == "features" else what
    return (f"eval.open_score={name}: the training {what} have no spread (every image gives the same {one}): the "
            f"AUROC reflects float rounding, not the data")


def features_warning(name: str, feats: torch.Tensor) -> str | None:
    """What a score `name` fitted on the training features `feats` (N, D) records as ``warning_``:
    :func:`no_spread_warning` when they have no spread (:func:`rows_have_no_spread`), else None."""
    return no_spread_warning(name) if rows_have_no_spread(feats) else None


def open_score_warning(scorer: OpenSetScore, known: Any, unknown: Any) -> str | None:
    """The warning metrics["open"] records about the separation of `known` and `unknown` scores (N,) by `scorer`:
    its fit's (``warning_``: training features or logits without spread), else one when the scores themselves
    have no spread (every image scored the same up to float rounding, e.g. energy on identical images); None when
    the AUROC reflects the data."""
    fitted = getattr(scorer, "warning_", None)
    if fitted:
        return fitted
    scores = np.concatenate([np.asarray(known, dtype=np.float64).ravel(),
                             np.asarray(unknown, dtype=np.float64).ravel()])
    scores = scores[np.isfinite(scores)]
    if len(scores) < 2 or float(scores.max() - scores.min()) > SPREAD_RTOL * float(np.abs(scores).max()):
        return None
    return (f"eval.open_score={scorer.name}: the scores of the test and open images have no spread (every image gets "
            f"the same score): the AUROC reflects float rounding, not the data")


def no_linear_head(name: str, why: str) -> str:
    """The message of a score that ``needs_head`` (ViM, ReAct) on a model without a linear head (`why`: what the
    head is)."""
    return (f"eval.open_score={name} needs a linear classifier head (logits = W f + b: model.classifier=linear, or "
            f"a cRT / LWS / tau-norm / logit-adjust run); {why}")


def check_score_setting(scorer: OpenSetScore, setting: Mapping[str, Any]) -> None:
    """The one check of an open-set score against the model and data it will score: the head type
    (``setting["head"]``), the feature width (``"feature_dim"``), the class count (``"num_classes"``) and the
    training-image count (``"num_train"``), each None when not known yet (:meth:`OpenSetScore.check_setting`).
    The same conditions as the scores' own `fit` / `score`, which refuse them again on data given directly.
    ConfigError, one line naming the key and why."""
    scorer.check_setting(setting)


def build_score(name: str, eval_cfg: Any = None) -> OpenSetScore:
    """The score registered as `name`, with its options from the `eval` config section when given."""
    cls = SCORES.get(name)
    return cls() if eval_cfg is None else cls.from_config(eval_cfg)


def open_score(name: str, outputs: Outputs | Any) -> torch.Tensor:
    """Score a batch (an outputs dict or (N, K) logits) with a score that needs no fitting (msp, max_logit,
    energy, reachability)."""
    scorer = build_score(name)
    if scorer.requires_fit:
        raise NotFittedError(f"open-set score {name!r} must be fitted on the training outputs first: "
                             f"build_score({name!r}, cfg.eval).fit(train_outputs).score(outputs)")
    return scorer.score(outputs)


def logits_of(outputs: Outputs | Any, where: str = "open-set score") -> torch.Tensor:
    """The (N, K) float32 logits of an outputs dict, or of (N, K) logits given as a numpy array / torch tensor;
    ValueError when they are missing or not 2-D, TypeError for another input, DataError (naming `where`, the
    caller) for NaN / inf logits, which would give NaN scores (and a NaN fit) without a word."""
    outputs = as_outputs(outputs)
    if "logits" not in outputs:
        raise ValueError(f"open-set scores need outputs['logits']; got keys {sorted(outputs)}")
    logits = outputs["logits"]
    if logits.dim() != 2:
        raise ValueError(f"outputs['logits'] must be (N, K), got shape {tuple(logits.shape)}")
    if logits.dtype == torch.bool or logits.is_complex():
        raise DataError(f"{where}: the logits must be real numbers, got dtype {logits.dtype}")
    logits = logits.float()
    check_finite_rows(logits, f"{where}: the logits")
    return logits


def features_of(outputs: Outputs | Any, name: str) -> torch.Tensor:
    """The (N, D) float32 penultimate features ``outputs["feature"]`` of a score that ``needs_features``
    (`name`: the score, for the message). ConfigError when they are missing (bare logits, or outputs collected
    without features), ValueError when they are not 2-D."""
    outputs = as_outputs(outputs)
    if "feature" not in outputs:
        raise ConfigError(f"open-set score {name!r} works on the penultimate features: the outputs need a "
                          f"'feature' (N, D) tensor (openlt eval keeps it for this score); got keys {sorted(outputs)}")
    feature = outputs["feature"]
    if feature.dim() != 2:
        raise ValueError(f"outputs['feature'] must be (N, D), got shape {tuple(feature.shape)}")
    return feature.float()


def save_score(path: str | Path, scorer: OpenSetScore, fitted_on: dict | None = None) -> None:
    """A fitted score as one safetensors file (tensors + name and options as metadata); atomic. `fitted_on`: the
    checkpoint whose outputs it was fitted on, ``{"checkpoint": name, "sha256": hex}``, kept in the metadata
    (:func:`score_fitted_on` reads it back)."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in scorer.state_dict().items()}
    meta = {"format": FORMAT, "name": scorer.name, "options": scorer.options(),
            **({} if fitted_on is None else {"fitted_on": dict(fitted_on)})}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"openlt": json.dumps(meta)})


def load_score(path: str | Path) -> OpenSetScore:
    """The fitted score saved by `save_score`; a missing or corrupt file is a RunDirError naming it."""
    path = Path(path)
    if not path.is_file():
        raise RunDirError(f"fitted open-set score not found: {path}")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as fh:
            meta = json.loads((fh.metadata() or {})["openlt"])
            tensors = {key: fh.get_tensor(key) for key in fh.keys()}
        if meta.get("format") != FORMAT:
            raise KeyError("format")
    except (SafetensorError, OSError, ValueError, KeyError, RuntimeError) as exc:
        raise RunDirError(f"{path} is not a fitted open-set score file ({exc})") from None
    try:
        return SCORES.get(meta["name"])(**meta["options"]).load_state_dict(tensors)
    except (ConfigError, TypeError, KeyError) as exc:
        raise RunDirError(f"{path} holds a score this version cannot read ({exc})") from None


def fitted_on_ok(value: Any) -> bool:
    """Whether `value` is a checkpoint record ``{"checkpoint": non-empty str, "sha256": 64 lowercase hex digits}``
    (what calibration.json and a fitted score's file say they were fitted on), with ``"amp"`` (none | bf16 | fp16:
    the precision the evaluation that fitted it ran in) in a file of an openlt that records it."""
    return (isinstance(value, dict) and set(value) - {"amp"} == {"checkpoint", "sha256"}
            and value.get("amp", "none") in TRAINED_AMPS and isinstance(value["checkpoint"], str)
            and bool(value["checkpoint"]) and isinstance(value["sha256"], str)
            and re.fullmatch(r"[0-9a-f]{64}", value["sha256"]) is not None)


def score_fitted_on(path: str | Path) -> dict | None:
    """The checkpoint record a fitted score's file was saved with (``{"checkpoint", "sha256"}``: see
    :func:`save_score`), or None for a file that records none (written by an older openlt). RunDirError naming the
    file when it is not a fitted-score file or the record is malformed."""
    try:
        with safe_open(str(Path(path)), framework="pt", device="cpu") as fh:
            meta = json.loads((fh.metadata() or {})["openlt"])
    except (SafetensorError, OSError, ValueError, KeyError, RuntimeError) as exc:
        raise RunDirError(f"{path} is not a fitted open-set score file ({exc})") from None
    fitted_on = meta.get("fitted_on") if isinstance(meta, dict) else None
    if fitted_on is not None and not fitted_on_ok(fitted_on):
        raise RunDirError(f"{path} is not a fitted open-set score file (malformed fitted_on: {fitted_on!r})")
    return fitted_on
