"""engine/features.py: the feature cache's key holds the folder the split's image files are read from, so another
copy of the images under the same names (data.root pointing elsewhere) is never given the cached features."""

import copy
import logging
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from openlt.engine.features import load_features
from tiny_run import train_tiny_run

REPORT_FIGURES = "unrasterized"  # tests/conftest.py: report.html figures built, not rendered (none is looked at)


def test_another_copy_of_the_images_under_the_same_names_rebuilds_the_cache(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="openlt")
    run = train_tiny_run(tmp_path / "a", "train.amp=none")
    cfg = run.config()
    mine = load_features(run, ("train",), quiet=True)["train"]
    other = tmp_path / "copy"
    shutil.copytree(cfg.data.root, other)
    for path in other.rglob("*.png"):  # the same names, other pixels (as a resized or edited copy would have)
        Image.fromarray(255 - np.asarray(Image.open(path))).save(path)
    moved = copy.deepcopy(cfg)
    moved.data.root = str(other)
    caplog.clear()
    theirs = load_features(run, ("train",), cfg=moved, quiet=False)["train"]
    assert "stale, rebuilt" in caplog.text  # not "reused": the key names the image folder
    assert not np.allclose(theirs["features"].numpy(), mine["features"].numpy())
    caplog.clear()
    again = load_features(run, ("train",), quiet=False)["train"]  # the run's own folder: rebuilt again, the same
    assert "stale, rebuilt" in caplog.text
    np.testing.assert_allclose(again["features"].numpy(), mine["features"].numpy(), rtol=1e-6, atol=1e-6)
    caplog.clear()
    load_features(run, ("train",), cfg=copy.deepcopy(cfg), quiet=False)
    assert "reused" in caplog.text


def test_an_image_changed_in_place_rebuilds_the_cache(tmp_path, caplog):
    """An image file rewritten under its own name in the run's own folder (an edited or regenerated image): the
    cache held the old pixels' features, reused by `openlt eval` of a decoupled run (its numbers no longer those of
    the images on disk, while the stage-1 run's own eval read the new ones); the key holds each listed file's size
    and modification time, so the split's cache is rebuilt."""
    caplog.set_level(logging.INFO, logger="openlt")
    run = train_tiny_run(tmp_path / "a", "train.amp=none")
    cfg = run.config()
    mine = load_features(run, ("test",), quiet=True)["test"]
    path = Path(cfg.data.root) / (run.splits_dir / "test.txt").read_text().split()[0]  # the first test image
    Image.fromarray(255 - np.asarray(Image.open(path))).save(path)  # the same name, other pixels
    caplog.clear()
    again = load_features(run, ("test",), quiet=False)["test"]
    assert "stale, rebuilt" in caplog.text
    assert not np.allclose(again["features"][0].numpy(), mine["features"][0].numpy())
    np.testing.assert_allclose(again["features"][1:].numpy(), mine["features"][1:].numpy(), rtol=1e-5, atol=1e-5)
    caplog.clear()
    load_features(run, ("test",), quiet=False)
    assert "reused" in caplog.text
