"""Did a run's training finish? A warning when the model may be under-trained, read from the epoch log alone
(metrics.jsonl: one record per epoch, ``"epoch"`` 1-based, ``"val": {"overall": ...}`` on the epochs validated).

The rule (:func:`convergence`), on the overall validation top-1 of the validated epochs, warns when either holds:

1. **Still rising at the end** (issue 18's rule): the **best validation epoch** (the first epoch with the highest
   overall top-1: the ``best`` checkpoint's, as training keeps a new best only when strictly higher) is one of the
   last 10 % of the epochs (at least the last: the last ``ceil(0.1 * epochs)``; 11 and 12 of 12) and the last
   evaluation is above the one before it and more than :data:`MIN_GAIN` (half a point) above the mean of the (up
   to) :data:`WINDOW` evaluations before it.
2. **A large late gain**: the best of the second half's evaluations is more than :data:`LATE_GAIN` (5 points)
   above the best of the first half's (epochs ``<= epochs / 2``; at least :data:`MIN_HALF_EVALUATIONS` in each).
   Rule 1 alone misses the usual case of a decaying schedule: the cosine schedule's small last learning rates
   flatten the curve at the end of *every* budget, so a model stopped far too early still looks settled (on the
   embedded benchmark, the 12- and 24-epoch joint models, 20 and 10 points of validation top-1 below the 48-epoch
   ones, never met rule 1). A model that has converged gains a few points in its second half from the falling
   learning rate; one that is still learning gains more. The 5 points were chosen on the validation curves of
   configs/bench/fmnist_lt_convergence.yaml (docs/results.md, "Convergence study"): 12 and 24 epochs gained 6 - 10
   points, 48 and 96 epochs 3 and 2, 192 epochs 2.5 (1.9 - 3.1 by seed). The budget rule of that study found 96
   epochs one budget short (192 gained 2.5 points of best validation top-1) where this warning stayed silent: it
   catches a model stopped far too early, not one a doubling short. A schedule with a late step (train.milestones)
   gains more after its drop by design: rule 2 is a prompt to try a longer budget, not a proof.

No warning on a plateau or when the best epoch came early. Without validation, or with too few evaluations for
rule 2 (fewer than :data:`MIN_HALF_EVALUATIONS` in either half: a run of 1 - 3 epochs), the rules cannot judge the
curve: the check records why in ``"unchecked"`` and the report says the check was not made (no warning is not a
finished model there). A fit that logs no epoch (NCM, τ-norm: nothing trained) has nothing to check.

Before both rules, when the run's planned epochs (config.yaml train.epochs) are given: a run whose log stops before
them (killed, or stopped, and evaluated) is warned that it stopped after epoch N of its M, with or without
validation; the rules would judge its curve as if N were its budget.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

from openlt.config import Config

LAST_FRACTION = 0.1  # the best epoch in the last 10 % of the epochs ...
WINDOW = 3  # ... and the last evaluation above the mean of the 3 before it ...
MIN_GAIN = 0.005  # ... by more than half a point of overall top-1
LATE_GAIN = 0.05  # or the second half's best more than 5 points above the first half's (module docstring)
MIN_HALF_EVALUATIONS = 2  # evaluations each half needs for that comparison
UNDER_TRAINED = "the model may be under-trained: "  # every warning's opening; a stage 2 quotes its stage 1's rest
NOT_CHECKED = "the under-training check was not made: "  # the note's opening when the rules cannot judge a curve
RULE = (f"best validation epoch in the last {LAST_FRACTION:.0%} of the epochs and the last evaluation's overall "
        f"top-1 above the evaluation before it and more than {100 * MIN_GAIN:.1f} points above the mean of the (up "
        f"to) {WINDOW} evaluations before it; or the second half's best validation top-1 more than "
        f"{100 * LATE_GAIN:.0f} points above the first half's")


def validation_curve(records: Sequence[Mapping]) -> list[tuple[int, float]]:
    """(epoch, overall validation top-1 in [0, 1]) of every record that has one, in log order; a value that is not
    a finite number (NaN or Infinity in a hand-edited log, ``true``, text) is left out."""
    curve = []
    for record in records:
        val = record.get("val")
        acc = val.get("overall") if isinstance(val, Mapping) else None
        if isinstance(acc, (int, float)) and not isinstance(acc, bool) and math.isfinite(acc) and "epoch" in record:
            curve.append((int(record["epoch"]), float(acc)))
    return curve


def convergence(records: Sequence[Mapping], planned_epochs: int | None = None,
                trained_epochs: int | None = None, config_epochs: int | None = None) -> dict:
    """The convergence check of one run's epoch log (the records of metrics.jsonl): ``{"best_epoch"`` (1-based, as
    the console numbers epochs; None without validation), ``"epochs"`` (the last epoch logged), ``"still_rising"``
    (bool), ``"late_gain"`` (second half's best minus first half's, in [−1, 1]; None with too few evaluations),
    ``"warning"`` (one sentence, or None), ``"unchecked"`` (why the rules could not judge the curve, or None),
    ``"rule"`` (the rule in words)``}`` (module docstring).
    `planned_epochs`: the run's train.epochs, when its log is that of its training loop (not a decoupled stage 2's
    fit): a log that stops before them is warned as stopped. `trained_epochs`: the epochs the run's last
    checkpoint records it trained; a log that stops before them was cut or edited after training, and its curve is
    not judged (``"unchecked"`` says so: the rules would read it as a shorter run's), nor is one that goes past them
    or lists an epoch twice or out of order (edited, or another run's). `config_epochs`: config.yaml's train.epochs
    when `planned_epochs` is the checkpoint's record of them: a stopped run's remedy then names the edit."""
    epochs = max((int(r["epoch"]) for r in records if "epoch" in r), default=0)
    curve = validation_curve(records)
    out = {"best_epoch": None, "epochs": epochs, "still_rising": False, "late_gain": None, "warning": None,
           "unchecked": None, "rule": RULE}
    done = max(epochs, trained_epochs or 0)
    out["warning"] = _stop_warning(done, planned_epochs, config_epochs)
    disorder = _log_disorder(records, trained_epochs)
    if disorder:
        out["unchecked"] = None if out["warning"] else disorder
        return out
    if not curve:
        out["unchecked"] = _no_curve(epochs) if epochs and out["warning"] is None else None
        return out
    best_epoch, best = curve[0]
    for epoch, acc in curve[1:]:
        if acc > best:
            best_epoch, best = epoch, acc
    out["best_epoch"] = best_epoch
    if len(curve) < 2:
        out["unchecked"] = _too_few(len(curve), epochs) if out["warning"] is None else None
        return out
    last_epoch, last = curve[-1]
    before = [acc for _, acc in curve[-1 - WINDOW:-1]]
    mean_before = sum(before) / len(before)
    out["still_rising"] = last - mean_before > MIN_GAIN and last > before[-1]  # not level with the one before
    late = best_epoch > epochs - max(1, math.ceil(LAST_FRACTION * epochs))
    first = [acc for epoch, acc in curve if epoch <= epochs / 2]
    second = [acc for epoch, acc in curve if epoch > epochs / 2]
    if len(first) >= MIN_HALF_EVALUATIONS and len(second) >= MIN_HALF_EVALUATIONS:
        out["late_gain"] = max(second) - max(first)
    if out["warning"] is not None:  # stopped before its epochs (above): the rules would judge a shorter budget
        return out
    if late and out["still_rising"]:
        out["warning"] = (f"{UNDER_TRAINED}its best validation epoch is {best_epoch} of {epochs} "
                          f"and validation top-1 was still rising ({100 * last:.1f}% at epoch {last_epoch}, up from "
                          f"{100 * mean_before:.1f}% over the {_evaluations(len(before))} before); train longer "
                          f"(train.epochs) before comparing it")
    elif out["late_gain"] is not None and out["late_gain"] > LATE_GAIN + 1e-9:  # 5.0 points (8 of 160) is not more
        out["warning"] = (f"{UNDER_TRAINED}its best validation top-1 of the second half of its "
                          f"{epochs} epochs ({100 * max(second):.1f}%) is {100 * out['late_gain']:.1f} points above "
                          f"the first half's ({100 * max(first):.1f}%), more than the {100 * LATE_GAIN:.0f} a "
                          f"converged model gains from its falling learning rate; try a longer budget "
                          f"(train.epochs) before comparing it")
    if out["warning"] is None and out["late_gain"] is None:
        out["unchecked"] = _too_few(len(curve), epochs)
    return out


def _log_disorder(records: Sequence[Mapping], trained_epochs: int | None) -> str | None:
    """Why an epoch log is not the run's training curve (its curve is then not judged), or None: it stops before
    the epochs the last checkpoint records trained (`trained_epochs`; cut or deleted after training), goes past
    them, or lists an epoch twice or out of order (edited, or appended to from elsewhere)."""
    logged = [int(r["epoch"]) for r in records if "epoch" in r]
    epochs = max(logged, default=0)
    where = "its epoch log (metrics.jsonl)"
    if trained_epochs is not None and epochs < trained_epochs:
        return (f"{where} is missing or empty, its last checkpoint records {trained_epochs} epochs trained"
                if not logged else f"{where} stops at epoch {epochs}, its last checkpoint records {trained_epochs} "
                f"trained (the log was cut or edited after training)")
    if trained_epochs is not None and epochs > trained_epochs:
        return (f"{where} goes on to epoch {epochs}, its last checkpoint records {trained_epochs} trained (the log "
                f"was edited or belongs to another run, or the last checkpoint was replaced, e.g. by the best one)")
    disordered = next((b for a, b in zip(logged, logged[1:]) if b <= a), None)
    if disordered is not None:
        return f"{where} lists epoch {disordered} twice or out of order (the log was edited after training)"
    return None


def convergence_note(records: Sequence[Mapping]) -> str | None:
    """The one line a training command prints when its epoch log (`records`) ends: the warning, or why the check
    was not made (:data:`NOT_CHECKED`), or None."""
    check = convergence(records)
    return check["warning"] or (NOT_CHECKED + check["unchecked"] if check["unchecked"] else None)


def _stop_warning(done: int, planned_epochs: int | None, config_epochs: int | None = None) -> str | None:
    """The warning of a run whose training stopped after epoch `done` of its `planned_epochs`, or None; with the
    remedy that works when its config.yaml now says `config_epochs` (edited down: --resume would find it done)."""
    if planned_epochs is None or not 0 < done < planned_epochs:
        return None
    edited = (f"set train.epochs back to {planned_epochs} in its config.yaml (it says {config_epochs} now), then "
              if config_epochs is not None and config_epochs != planned_epochs else "")
    return (f"{UNDER_TRAINED}its training stopped after epoch {done} of its {planned_epochs} "
            f"(train.epochs; killed or stopped before the end); {edited}finish it with `openlt train --resume` on "
            f"the run before comparing it")


def _no_curve(epochs: int) -> str:
    return (f"no validation top-1 in the log of its {epochs} epoch{'s' * (epochs > 1)} (no validation split, or "
            f"train.eval_every longer than the run)")


def _too_few(evaluations: int, epochs: int) -> str:
    return (f"{evaluations} evaluation{'s' * (evaluations > 1)} of validation top-1 in {epochs} "
            f"epoch{'s' * (epochs > 1)}: the late-gain rule needs {MIN_HALF_EVALUATIONS} in each half of the epochs, "
            f"so the curve is not judged")


def _evaluations(n: int) -> str:
    return "evaluation" if n == 1 else f"{n} evaluations"


def planned_epochs(cfg: Config) -> int | None:
    """The epochs a run's epoch log should reach (its config's train.epochs), or None for a decoupled stage 2, whose
    fit logs its own epochs and is saved only when it ends: :func:`convergence`'s `planned_epochs`."""
    return cfg.train.epochs if cfg.decouple.method == "none" else None


def convergence_warning(metrics: Mapping) -> str | None:
    """The under-training warning a metrics dict (metrics.json) records, or None (none, or an older file): the
    run's own, else its stage-1 run's ("stage1": a stage 2's head on a body that may be unfinished)."""
    return next((text for kind, text in convergence_findings(metrics) if kind == "warning"), None)


def convergence_unchecked(metrics: Mapping) -> str | None:
    """The sentence a report shows when the under-training check could not judge a run's validation curve (no
    validation, too few evaluations: :func:`convergence`'s ``"unchecked"``), else its stage-1 run's ("stage1":
    ``"unchecked"``, a stage 2 on a body nobody could judge), or None: no warning there does not mean a finished
    model. None when there is a warning (:func:`convergence_warning` says more)."""
    findings = convergence_findings(metrics)
    if any(kind == "warning" for kind, _ in findings):
        return None
    return next((text for kind, text in findings if kind == "note"), None)


def convergence_findings(metrics: Mapping) -> list[tuple[str, str]]:
    """Everything a report says of how finished a run's training is, as ("warning" | "note", sentence): the run's
    own warning, else why its check was not made; then its stage-1 run's (a stage 2), the same way. Both when both
    hold (:func:`convergence_warning` and :func:`convergence_unchecked` give the one a table marks); [] for none,
    or a metrics file of an older openlt."""
    conv = metrics.get("convergence")
    if not isinstance(conv, Mapping):
        return []
    found = []
    if _text(conv.get("warning")):
        found.append(("warning", conv["warning"]))
    elif _text(conv.get("unchecked")):
        found.append(("note", NOT_CHECKED + conv["unchecked"]))
    stage1 = conv.get("stage1")
    if not isinstance(stage1, Mapping):
        return found
    if _text(stage1.get("warning")):
        found.append(("warning", f"the stage-1 run it starts from ({stage1.get('run')}) may be under-trained, and "
                                 f"with it the features this run is built on: "
                                 f"{stage1['warning'].removeprefix(UNDER_TRAINED)}"))
    elif _text(stage1.get("unchecked")):
        found.append(("note", f"{NOT_CHECKED}on the stage-1 run it starts from ({stage1.get('run')}), whose "
                              f"features this run is built on: {stage1['unchecked']}"))
    return found


def _text(value) -> bool:
    """Whether `value` is a non-empty string (a recorded warning or note; null, "" and other types are none)."""
    return isinstance(value, str) and bool(value)
