"""The epoch log: metrics.jsonl always, TensorBoard scalars when tensorboard is installed."""

import json

import pytest

from openlt.engine import tracking
from openlt.engine.run import Run

from fake_writer import FakeWriter

RECORD = {"epoch": 1, "train_loss": 0.5, "train_acc": 0.7, "lr": 0.1, "time_s": 2.0,
          "val": {"many": 0.6, "medium": None, "few": 0.2, "overall": 0.4, "n_classes": {"many": 2}}}


def test_scalars_flatten_an_epoch_record():
    assert dict(tracking.scalars(RECORD)) == {"train/loss": 0.5, "train/accuracy": 0.7, "train/lr": 0.1,
                                              "time/epoch_s": 2.0, "val/many": 0.6, "val/few": 0.2, "val/overall": 0.4}


def test_every_epoch_goes_to_jsonl_and_to_the_writer(tmp_path, monkeypatch):
    writer = FakeWriter()
    made = {}
    monkeypatch.setattr(tracking, "tensorboard_writer", lambda log_dir, purge_step=None: made.update(
        log_dir=log_dir, purge_step=purge_step) or writer)
    log = tracking.EpochLog(Run(tmp_path), start_epoch=3)
    log.write(RECORD)
    log.close()
    assert [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [RECORD]
    assert ("val/many", 0.6, 1) in writer.scalars and writer.closed
    assert made == {"log_dir": tmp_path / "tensorboard", "purge_step": 4}  # resumed epochs are purged


def test_without_tensorboard_only_jsonl(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENLT_TENSORBOARD", "0")
    log = tracking.EpochLog(Run(tmp_path))
    assert log.writer is None
    log.write(RECORD)
    log.close()
    assert (tmp_path / "metrics.jsonl").is_file() and not (tmp_path / "tensorboard").exists()


def test_real_tensorboard_event_files(tmp_path, monkeypatch):
    pytest.importorskip("tensorboard")
    monkeypatch.delenv("OPENLT_TENSORBOARD", raising=False)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    log = tracking.EpochLog(Run(tmp_path))
    for epoch in (1, 2):
        log.write({**RECORD, "epoch": epoch})
    log.close()
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert {"train/loss", "train/lr", "val/many", "val/overall"} <= set(events.Tags()["scalars"])
    assert [e.step for e in events.Scalars("val/few")] == [1, 2]
