"""The Config a decoupling test builds its stage-2 method from (tests/decoupling/)."""

from __future__ import annotations

from openlt.config import Config


def stage2_config(method: str, epochs: int = 3, **decouple) -> Config:
    """Config(seed=3) with decouple.method=`method` and the other `decouple` keys given, trained for `epochs`
    epochs, batches of 8, lr 0.1."""
    cfg = Config(seed=3)
    cfg.decouple.method = method
    cfg.train.epochs, cfg.train.batch_size, cfg.train.lr = epochs, 8, 0.1
    for key, value in decouple.items():
        setattr(cfg.decouple, key, value)
    return cfg
