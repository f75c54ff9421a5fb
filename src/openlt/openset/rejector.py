"""The open-set decision: one threshold on one open-set score, "higher score = more known".

A :class:`Rejector` holds the score's name (``eval.open_score``), the threshold ``t`` and where ``t`` came
from. An image whose score is ``>= t`` keeps its predicted class; one below ``t`` (or with a NaN score) is
rejected as unknown, prediction ``-1`` (the OLTR paper's open-set rule, Liu et al. CVPR 2019, Sec. 4).

``t`` is either fixed (``eval.open_threshold`` a number, ``openlt eval|predict --threshold``) or calibrated
on the known *validation* images alone: the largest ``t`` that keeps ``eval.keep_known`` of them
(:func:`openlt.metrics.threshold_at_tpr`). Neither open nor test data ever choose it.

A run's decision is saved as ``calibration.json``: ``{"score": str, "threshold": float, "source": str}`` and, for a
threshold chosen on validation, ``"fitted_on": {"checkpoint": "best" | "last", "sha256": str}``: the checkpoint whose
validation scores chose it (a threshold chosen for one set of weights means nothing for another; the engine refuses
to apply it to a checkpoint of another sha256).
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from openlt.errors import ConfigError, DataError, RunDirError
from openlt.config import ConfigWarning, finite_number
from openlt.io import write_json
from openlt.metrics import reject, threshold_at_tpr
from openlt.metrics._checks import to_numpy
from openlt.openset.base import SCORES, OpenSetScore, Outputs, fitted_on_ok

__all__ = ["AUTO", "Rejector", "check_rejection_config", "check_threshold_range", "keep_known_text", "parse_threshold"]

AUTO = "auto"  # eval.open_threshold: calibrate on the known validation images
FIXED_SOURCE = "fixed (eval.open_threshold)"


def parse_threshold(spec: Any, option: str = "eval.open_threshold") -> float | None:
    """`eval.open_threshold` read: a finite number as a float, or None for 'auto'.

    A string holding a finite number ("1e-05": YAML 1.1 reads a float without a dot as a string) is that
    number. Raises ConfigError naming `option` for anything else (another string, a bool, NaN, +-inf)."""
    if isinstance(spec, str) and spec == AUTO:
        return None
    try:
        return finite_number(spec)
    except ConfigError:
        raise ConfigError(f"{option} must be 'auto' or a finite number, got {spec!r}") from None


def keep_known_text(keep_known: float) -> str:
    """`eval.keep_known` as the percentage a calibrated threshold's source names: ``95%``, ``99.9%``, ``95.4%``
    (10 significant digits, so that 0.954 is not shown, nor compared, as 0.95; ``:.0%`` wrote ``100%`` for 0.999)."""
    return f"{float(keep_known) * 100:.10g}%"


def check_threshold_range(score_name: str, threshold: float, option: str = "eval.open_threshold") -> None:
    """ConfigError naming `option` when a fixed `threshold` lies outside the range the score declares
    (`OpenSetScore.value_range`: msp, OpenMax and ODIN are probabilities in [0, 1]): above it every image would
    be rejected, below it none. A score without a declared range (energy, max_logit, ...) takes any number."""
    bounds = SCORES.get(score_name).value_range if score_name in SCORES else None
    if bounds is not None and not bounds[0] <= threshold <= bounds[1]:
        low, high = bounds
        raise ConfigError(f"{option} {_exact(threshold)} is outside the range of the open-set score {score_name} "
                          f"([{low:g}, {high:g}]): a threshold above {high:g} rejects every image, one below "
                          f"{low:g} none")


def _exact(value: float) -> str:
    """`value` as given, to its last digit (its shortest repr: 1.0000001, not 1 as :g rounds it), without a
    trailing '.0'."""
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text


def check_rejection_config(eval_cfg: Any, has_val: bool = True) -> None:
    """Refuse a bad `eval.open_threshold` before any work: neither 'auto' nor a finite number, or 'auto' with a
    `keep_known` outside (0, 1] or (`has_val` False) no validation split to calibrate on. `eval_cfg` is the
    config's `eval` section. Raises ConfigError naming the key. A fixed number outside the range of
    `eval.open_score` (:func:`check_threshold_range`, which predict's --threshold refuses) is a ConfigWarning:
    an evaluation may reject every image on purpose, but a slip (2 for 0.2, an energy threshold on msp) would
    otherwise give F = 0 without a word."""
    threshold = parse_threshold(eval_cfg.open_threshold)
    if threshold is not None:
        try:
            check_threshold_range(getattr(eval_cfg, "open_score", None), threshold)
        except ConfigError as exc:
            warnings.warn(f"{exc}; evaluated as set (give a number inside the range, or 'auto' to choose one on "
                          f"validation)", ConfigWarning, stacklevel=2)
        return
    keep = eval_cfg.keep_known
    if isinstance(keep, bool) or not isinstance(keep, (int, float)) or not 0.0 < keep <= 1.0:
        raise ConfigError(f"eval.keep_known must be in (0, 1] (the fraction of known validation images kept), "
                          f"got {keep!r}")
    if not has_val:
        raise ConfigError("eval.open_threshold=auto needs a validation split; give data.val_split or a number")


@dataclass(frozen=True)
class Rejector:
    """The open-set decision on one score: keep a prediction when ``score >= threshold``, else reject it.

    Attributes: ``score`` the open-set score's registered name (``eval.open_score``, "higher = more known"),
    ``threshold`` the float threshold in that score's units, ``source`` a one-line account of where the
    threshold came from (as reports print it), ``fitted_on`` None or, for a threshold chosen on validation, the
    checkpoint it was chosen with: ``{"checkpoint": name, "sha256": 64 hex digits}`` (set by the engine)."""

    score: str
    threshold: float
    source: str
    fitted_on: dict | None = None

    @property
    def calibrated(self) -> bool:
        """True when the threshold was chosen on a model's validation scores (it then belongs to those weights),
        False for a fixed one."""
        return not self.source.startswith("fixed")

    @classmethod
    def calibrate(cls, score_name: str, known_val_scores: Any, keep_known: float) -> "Rejector":
        """The largest threshold that keeps a fraction `keep_known` in (0, 1] of the known validation images.

        `known_val_scores`: (N,) scores of the known validation images (array or tensor, any float dtype; read
        as float64). Raises ValueError when they are empty, non-finite or `keep_known` is outside (0, 1]."""
        threshold = threshold_at_tpr(known_val_scores, keep_known)
        return cls(score_name, threshold,
                   f"validation: keeps {keep_known_text(keep_known)} of the known validation images")

    @classmethod
    def fixed(cls, score_name: str, threshold: float, source: str = FIXED_SOURCE,
              option: str = "eval.open_threshold") -> "Rejector":
        """A threshold given by the user (through `option`, as messages name it): a finite number (ConfigError
        naming `option` otherwise). Any number: `openlt eval` may set one past the score's range to reject every
        image; prediction checks the range (:func:`check_threshold_range`)."""
        try:
            value = finite_number(threshold)
        except ConfigError as exc:
            raise ConfigError(f"{option} {exc}") from None
        return cls(score_name, value, source)

    @classmethod
    def from_config(cls, eval_cfg: Any, scorer: OpenSetScore, val: Outputs | None) -> "Rejector":
        """The decision `eval.open_threshold` asks for: a fixed number, or ('auto') calibrated with `scorer`
        (the `eval.open_score`, fitted where it needs to be) on the validation outputs `val` ("logits" (N, K),
        ...). Raises ConfigError for a bad setting, or for 'auto' without a validation split."""
        check_rejection_config(eval_cfg, has_val=val is not None)
        threshold = parse_threshold(eval_cfg.open_threshold)
        if threshold is not None:
            return cls.fixed(eval_cfg.open_score, threshold)
        return cls.calibrate(eval_cfg.open_score, scorer.score(val).numpy(), eval_cfg.keep_known)

    def decide(self, predictions: Any, scores: Any) -> np.ndarray:
        """`predictions` (N,) integer class ids with -1 where the image's score is below the threshold.

        `scores`: (N,) this rejector's open-set score of the same images (numbers; +inf is kept, -inf rejected).
        Returns a new int64 array (:func:`openlt.metrics.reject`); raises ValueError for mismatched shapes or
        scores that are not numbers, DataError for NaN scores (naming how many): a score that is not a number
        says nothing about the image, and calling it "unknown" would hide a broken score."""
        s = to_numpy(scores)
        if s.dtype.kind == "f" and s.size:
            bad = np.isnan(s.reshape(len(s), -1)).any(axis=1) if s.ndim else np.isnan(s).reshape(1)
            if bad.any():
                raise DataError(f"Rejector.decide: scores hold NaN in {int(bad.sum())} of {bad.size} rows "
                                f"(first: row {int(np.argmax(bad))}); a NaN score is no decision")
        return reject(predictions, scores, self.threshold)

    def to_dict(self) -> dict:
        """``{"score", "threshold", "source"}`` (+ ``"fitted_on"`` when set): the content of calibration.json and of
        metrics' "calibration"."""
        out = {"score": self.score, "threshold": self.threshold, "source": self.source}
        return out if self.fitted_on is None else {**out, "fitted_on": dict(self.fitted_on)}

    def save(self, path: str | Path) -> None:
        """Write calibration.json atomically (WriteError when it cannot be written)."""
        write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> "Rejector":
        """Read a calibration.json; a missing, unreadable or malformed file is a RunDirError naming it."""
        path = Path(path)
        if not path.is_file():
            raise RunDirError(f"calibration file not found: {path} (evaluate the run with `openlt eval`)")
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            score, threshold, source = raw["score"], raw["threshold"], raw["source"]
            if not isinstance(score, str) or not isinstance(source, str):
                raise TypeError("score and source must be strings")
            if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not math.isfinite(threshold):
                raise TypeError(f"threshold must be a finite number, got {threshold!r}")
            fitted_on = raw.get("fitted_on")
            if fitted_on is not None and not fitted_on_ok(fitted_on):
                raise TypeError(f'fitted_on must be {{"checkpoint": NAME, "sha256": 64 hex digits[, "amp": '
                                f'none|bf16|fp16]}}, got {fitted_on!r}')
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise RunDirError(f"{path} is not a calibration file ({type(exc).__name__}: {exc})") from None
        return cls(score, float(threshold), source, fitted_on)

