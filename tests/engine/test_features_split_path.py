"""engine/features.py: the feature cache's key names the split file by its real path, so one file named relative
to the working folder by one config and absolutely by another is one cache (session 23: a bench's relative
data.split_dir made OLTR's stage-2 centroids and the decoupled rows rebuild each other's cache on every row)."""

import copy
import logging
import os

from openlt.engine.features import load_features
from tiny_run import train_tiny_run


def test_a_relative_and_an_absolute_split_dir_share_the_cache(tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="openlt")
    run = train_tiny_run(tmp_path / "a", "train.amp=none")
    absolute, relative = copy.deepcopy(run.config()), copy.deepcopy(run.config())
    absolute.data.split_dir = str(run.splits_dir.resolve())
    monkeypatch.chdir(tmp_path)
    relative.data.split_dir = os.path.relpath(run.splits_dir.resolve(), tmp_path)
    assert not os.path.isabs(relative.data.split_dir)
    load_features(run, ("train",), cfg=absolute, quiet=True)
    caplog.clear()
    load_features(run, ("train",), cfg=relative, quiet=False)
    assert "reused" in caplog.text and "stale" not in caplog.text  # was: "stale, rebuilt" (the path as written)
