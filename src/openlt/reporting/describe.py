"""Lines of text about an evaluated run beside its numbers, from its metrics dict (metrics.json) alone, shared by
report.md and report.html: the checkpoint's epoch as the console numbers it, what the open set is, and the
library versions, device and training time. No matplotlib here: the CLI imports it with the result table."""

from __future__ import annotations

from typing import Mapping


def checkpoint_epoch(metrics: Mapping) -> str:
    """The evaluated checkpoint's epoch as the console numbers it (1-based; metrics.json keeps the checkpoint's
    0-based counter), with the epochs trained when known: ``"epoch 11 of 12"``."""
    epoch = metrics.get("epoch")
    if not isinstance(epoch, int) or isinstance(epoch, bool):
        return "epoch ?"
    epochs = (metrics.get("training") or {}).get("epochs")
    return f"epoch {epoch + 1}" + (f" of {epochs}" if isinstance(epochs, int) and epochs > epoch else "")


def open_set_text(metrics: Mapping) -> str:
    """What the open (unknown) images are, in one line, or "" without an open split."""
    if "open" not in metrics:
        return ""
    n, names = metrics["open"].get("n_open"), metrics.get("open_class_names")
    images = f"{n} images" if isinstance(n, int) else "images"
    if isinstance(names, list) and names:
        return (f"open set: {images} of the {len(names)} held-out class{'es' if len(names) > 1 else ''} "
                + ", ".join(map(str, names)) + " (unknown to the model)")
    return f"open set: {images} of classes unknown to the model (the split does not name them)"


def environment_lines(metrics: Mapping) -> list[str]:
    """Library versions, the device and the training time that metrics.json records (none for an older file)."""
    env, training = metrics.get("environment") or {}, metrics.get("training") or {}
    lines = []
    versions = env.get("versions")
    if isinstance(versions, Mapping) and versions:
        lines.append("versions: " + ", ".join(f"{k} {v}" for k, v in versions.items())
                     + (f"; evaluated on {env['device']}" if env.get("device") else ""))
    seconds, epochs = training.get("time_s"), training.get("epochs")
    if isinstance(seconds, (int, float)):
        lines.append(f"training: {epochs} epoch{'s' if epochs != 1 else ''} in {_duration(seconds)} "
                     "(summed epoch times of metrics.jsonl)")
    return lines


def _duration(seconds: float) -> str:
    """``75`` -> ``"1 min 15 s"``; ``4000`` -> ``"1 h 06 min"``."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
