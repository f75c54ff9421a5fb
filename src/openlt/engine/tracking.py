"""The per-epoch training log: one JSON line per epoch in metrics.jsonl, always, and the same numbers as
TensorBoard scalars under RUN/tensorboard/ when the optional `tensorboard` package is installed
(`pip install 'openlt[tensorboard]'`; `OPENLT_TENSORBOARD=0` turns it off)."""

from __future__ import annotations

import os
from typing import Any, Iterator, Mapping

from openlt.engine.run import Run
from openlt.io import append_jsonl

SKIPPED = {"epoch", "n_classes", "n_classes_tested"}  # the step itself, and band sizes that never change
RENAMED = {"train_loss": "train/loss", "train_acc": "train/accuracy", "lr": "train/lr", "time_s": "time/epoch_s"}


def scalars(record: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, float]]:
    """(tag, value) for every number in an epoch record: train_loss -> train/loss, val.many -> val/many."""
    for key, value in record.items():
        if key in SKIPPED or value is None or isinstance(value, bool):
            continue
        name = f"{prefix}{RENAMED.get(key, key) if not prefix else key}"
        if isinstance(value, Mapping):
            yield from scalars(value, f"{name}/")
        elif isinstance(value, (int, float)):
            yield name, float(value)


def tensorboard_writer(log_dir: os.PathLike, purge_step: int | None = None):
    """A TensorBoard SummaryWriter, or None when tensorboard is not installed or OPENLT_TENSORBOARD=0."""
    if os.environ.get("OPENLT_TENSORBOARD", "1").lower() in {"0", "false", "no", "off"}:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter  # needs the tensorboard package
    except ImportError:
        return None
    return SummaryWriter(log_dir=str(log_dir), purge_step=purge_step)


class EpochLog:
    """`write(record)` appends the record to metrics.jsonl and, where available, to TensorBoard (step = epoch).

    Resuming after `start_epoch` epochs purges TensorBoard events of the epochs that are trained again."""

    def __init__(self, run: Run, start_epoch: int = 0) -> None:
        self.path = run.log_file
        self.writer = tensorboard_writer(run.tensorboard_dir, purge_step=start_epoch + 1 if start_epoch else None)

    def write(self, record: Mapping[str, Any]) -> None:
        """Append one epoch's record (a JSON-ready mapping with an ``"epoch"`` key, 1-based) to metrics.jsonl, and
        its numbers to TensorBoard at step ``record["epoch"]``, flushed at once.
        """
        append_jsonl(self.path, record)
        if self.writer is not None:
            for tag, value in scalars(record):
                self.writer.add_scalar(tag, value, global_step=record["epoch"])
            self.writer.flush()  # a crash loses no epoch that metrics.jsonl has

    def close(self) -> None:
        """Close the TensorBoard writer (if any); metrics.jsonl needs no closing. Safe to call twice."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None
