"""Lines of text about an evaluated run beside its numbers, from its metrics dict (metrics.json) alone, shared by
report.md and report.html: the checkpoint's epoch as the console numbers it, what the open set is, and the
library versions, device and training time. No matplotlib here: the CLI imports it with the result table."""

from __future__ import annotations

import math
from typing import Callable, Mapping, Sequence


def user_epoch(metrics: Mapping) -> int | None:
    """The evaluated checkpoint's epoch, 1-based as the training log and the console number it, or None when the
    metrics dict records none: ``"epoch"`` as it is when ``"epoch_base"`` is 1 (what `openlt eval` writes now),
    plus one for an older metrics.json (no ``"epoch_base"``), which kept the checkpoint's 0-based counter."""
    epoch = metrics.get("epoch")
    if not isinstance(epoch, int) or isinstance(epoch, bool):
        return None
    return epoch if metrics.get("epoch_base") == 1 else epoch + 1


def checkpoint_epoch(metrics: Mapping) -> str:
    """The evaluated checkpoint's epoch (:func:`user_epoch`, 1-based) with the epochs trained when known:
    ``"epoch 11 of 12"``."""
    epoch = user_epoch(metrics)
    if epoch is None:
        return "epoch ?"
    epochs = (metrics.get("convergence") or {}).get("epochs")  # the last epoch logged
    return f"epoch {epoch}" + (f" of {epochs}" if isinstance(epochs, int) and epochs >= epoch else "")


def open_set_text(metrics: Mapping, shown: Callable[[str], str] = str) -> str:
    """What the open (unknown) images are, in one line, or "" without an open split; each class name as
    `shown(name)` (report.md's Markdown escape; report.html escapes the whole line)."""
    if "open" not in metrics:
        return ""
    n, names = metrics["open"].get("n_open"), metrics.get("open_class_names")
    images = f"{n} images" if isinstance(n, int) else "images"
    if isinstance(names, list) and names:
        return (f"open set: {images} of the {len(names)} held-out class{'es' if len(names) > 1 else ''} "
                + ", ".join(shown(str(name)) for name in names) + " (unknown to the model)")
    return f"open set: {images} of classes unknown to the model (the split does not name them)"


def environment_lines(metrics: Mapping, history: Sequence[Mapping] | None = None) -> list[str]:
    """The library versions, device and precision that metrics.json records (none for an older file) and the training time
    of the epoch log `history` (metrics.jsonl: the sum of its epochs' ``time_s``)."""
    env = metrics.get("environment") or {}
    lines = []
    versions = env.get("versions")
    if isinstance(versions, Mapping) and versions:
        lines.append("versions: " + ", ".join(f"{k} {v}" for k, v in versions.items())
                     + (f"; evaluated on {env['device']}" if env.get("device") else ""))
    amp = metrics.get("amp")  # the precision the evaluation ran in (none for an older file)
    if isinstance(amp, str):
        lines.append("precision: evaluated in " + ("float32" if amp == "none" else f"{amp} autocast")
                     + f" (train.amp {amp})")
    times = [r["time_s"] for r in history or [] if isinstance(r.get("time_s"), (int, float))]
    if times:
        epochs = len(history)
        lines.append(f"training: {epochs} epoch{'s' if epochs != 1 else ''} in {_duration(sum(times))} "
                     "(the epoch times of metrics.jsonl)")
    return lines


def _duration(seconds: float) -> str:
    """``75`` -> ``"1 min 15 s"``; ``4000`` -> ``"1 h 06 min"``."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def threshold_text(value: float) -> str:
    """A rejection threshold as printed: the fewest digits that give the same decisions, never a rounded value
    that crosses a score (``msp < 1.000`` for 0.99999475 would reject every image). A value that is a float32
    (chosen on validation among the float32 scores): the shortest text that reads back as that float32; any other
    value (e.g. fixed by the user): the shortest text that reads back as that float (Python's repr). Used by
    report.md's result table, report.html's header and its figures' threshold labels."""
    import numpy as np  # (imported when a threshold is printed: the CLI imports this module with the result table)

    value = float(value)
    as_float32 = np.float32(value)
    if math.isfinite(value) and float(as_float32) == value:
        return repr(float(str(as_float32)))  # numpy's shortest float32 digits, as a Python float's text
    return repr(value)
