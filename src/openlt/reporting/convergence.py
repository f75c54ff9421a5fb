"""Did a run's training finish? A warning when the model may be under-trained, read from the epoch log alone
(metrics.jsonl: one record per epoch, ``"epoch"`` 1-based, ``"val": {"overall": ...}`` on the epochs validated).

The rule (:func:`convergence`), on the overall validation top-1 of the validated epochs:

* the **best validation epoch** is the first epoch with the highest overall validation top-1 (the epoch whose
  checkpoint is ``best``: training keeps a new best only when it is strictly higher);
* validation accuracy is **still rising** when the last evaluation's overall top-1 is more than
  :data:`MIN_GAIN` (half a percentage point) above the mean of the (up to) :data:`WINDOW` evaluations before it;
* the **warning** is given when both hold and the best epoch is one of the last 10 % of the epochs trained
  (at least the last epoch: the last ``ceil(0.1 * epochs)`` epochs; 11 and 12 of 12).

No warning without validation, with a single evaluation, on a plateau (the last evaluation no better than the
ones before it) or when the best epoch came early.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

LAST_FRACTION = 0.1  # the best epoch in the last 10 % of the epochs ...
WINDOW = 3  # ... and the last evaluation above the mean of the 3 before it ...
MIN_GAIN = 0.005  # ... by more than half a point of overall top-1
RULE = (f"best validation epoch in the last {LAST_FRACTION:.0%} of the epochs and the last evaluation's overall "
        f"top-1 more than {100 * MIN_GAIN:.1f} points above the mean of the {WINDOW} evaluations before it")


def validation_curve(records: Sequence[Mapping]) -> list[tuple[int, float]]:
    """(epoch, overall validation top-1 in [0, 1]) of every record that has one, in log order."""
    curve = []
    for record in records:
        val = record.get("val")
        if isinstance(val, Mapping) and isinstance(val.get("overall"), (int, float)) and "epoch" in record:
            curve.append((int(record["epoch"]), float(val["overall"])))
    return curve


def convergence(records: Sequence[Mapping]) -> dict:
    """The convergence check of one run's epoch log (the records of metrics.jsonl): ``{"best_epoch"`` (1-based, as
    the console numbers epochs; None without validation), ``"epochs"`` (the last epoch logged), ``"still_rising"``
    (bool), ``"warning"`` (one sentence, or None), ``"rule"`` (the rule in words)``}`` (module docstring)."""
    epochs = max((int(r["epoch"]) for r in records if "epoch" in r), default=0)
    curve = validation_curve(records)
    out = {"best_epoch": None, "epochs": epochs, "still_rising": False, "warning": None, "rule": RULE}
    if not curve:
        return out
    best_epoch, best = curve[0]
    for epoch, acc in curve[1:]:
        if acc > best:
            best_epoch, best = epoch, acc
    out["best_epoch"] = best_epoch
    if len(curve) < 2:
        return out
    last_epoch, last = curve[-1]
    before = [acc for _, acc in curve[-1 - WINDOW:-1]]
    mean_before = sum(before) / len(before)
    out["still_rising"] = last - mean_before > MIN_GAIN
    late = best_epoch > epochs - max(1, math.ceil(LAST_FRACTION * epochs))
    if late and out["still_rising"]:
        out["warning"] = (f"the model may be under-trained: its best validation epoch is {best_epoch} of {epochs} "
                          f"and validation top-1 was still rising ({100 * last:.1f}% at epoch {last_epoch}, up from "
                          f"{100 * mean_before:.1f}% over the {_evaluations(len(before))} before); train longer "
                          f"(train.epochs) before comparing it")
    return out


def _evaluations(n: int) -> str:
    return "evaluation" if n == 1 else f"{n} evaluations"


def convergence_warning(metrics: Mapping) -> str | None:
    """The under-training warning a metrics dict (metrics.json) records, or None (none, or an older file)."""
    conv = metrics.get("convergence")
    warning = conv.get("warning") if isinstance(conv, Mapping) else None
    return warning if isinstance(warning, str) and warning else None
