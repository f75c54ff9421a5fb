"""One decoder for every image openlt reads (datasets.open_image): an image between PIL's decompression-bomb
warning and error limits gives one note naming the file, once per process, and never PIL's raw
DecompressionBombWarning, whether it is read by the split check, a training / evaluation DataLoader (every epoch,
every batch) or predict; above the error limit it is a DataError naming the file, not a traceback."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import pytest
import torch
from PIL import Image

from openlt.data import datasets
from openlt.data.datasets import FileImageLoader, SplitDataset, check_decodable, image_header_size, open_image
from openlt.data.splitfile import SplitEntries
from openlt.errors import DataError


@pytest.fixture
def folder(tmp_path, monkeypatch):
    """Three 16 x 16 images and one 20 x 20 image, with PIL's warning limit lowered to 300 pixels (error: 600)."""
    for name in ("a.png", "b.png", "c.png"):
        Image.new("RGB", (16, 16), "red").save(tmp_path / name)
    Image.new("RGB", (20, 20), "blue").save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 300)
    monkeypatch.setattr(datasets, "_NOTED_LARGE", set())
    return tmp_path


def notes(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == datasets.__name__]


def big_note(path: Path) -> str:
    return (f"note: {path} has 400 pixels, above PIL's warning limit of 300 (PIL.Image.MAX_IMAGE_PIXELS): it "
            f"decodes, but each read is slow and memory-hungry; consider resizing it")


def test_a_training_loader_names_a_large_image_once_and_passes_on_no_pil_warning(folder, caplog):
    items = ["a.png", "big.png", "b.png", "c.png"]
    entries = SplitEntries(folder / "train.txt", items, [0, 1, 0, 1], [1, 2, 3, 4])
    dataset = SplitDataset(entries, FileImageLoader(folder), lambda img: torch.zeros(1), checked=True)
    loader = torch.utils.data.DataLoader(dataset, batch_size=2, num_workers=0)
    caplog.set_level(logging.INFO, logger=datasets.__name__)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning (PIL's DecompressionBombWarning) would fail the read
        for _ in range(3):  # three epochs, two batches each
            assert sum(len(labels) for _, labels in loader) == 4
    assert notes(caplog) == [big_note(folder / "big.png")]


def test_the_split_check_and_then_predict_name_it_once_in_all(folder, caplog):
    caplog.set_level(logging.INFO, logger=datasets.__name__)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert image_header_size(folder / "big.png") == (20, 20)  # the input-size probe of prepare_data: no note
        check_decodable([folder / name for name in ("a.png", "big.png", "b.png")])
        assert open_image(folder / "big.png", "RGB").size == (20, 20)  # predict's read of the same file
    assert notes(caplog) == [big_note(folder / "big.png")]


def test_above_the_error_limit_every_reader_gives_a_data_error_naming_the_file(folder):
    Image.new("RGB", (25, 25)).save(folder / "bomb.png")  # 625 > 2 x 300
    entries = SplitEntries(folder / "test.txt", ["a.png", "bomb.png"], [0, 1], [1, 2])
    dataset = SplitDataset(entries, FileImageLoader(folder), None, checked=True)
    for read in (lambda: dataset[1], lambda: open_image(folder / "bomb.png"),
                 lambda: check_decodable([folder / "bomb.png"], ["test.txt, line 2"])):
        with pytest.raises(DataError, match="image too large: .*bomb.png has 625 pixels, above PIL's limit of 600"):
            read()


def test_a_listed_image_behind_a_folder_that_cannot_be_entered_is_named_with_its_line(tmp_path, monkeypatch):
    """(Session 27: `--root` of mode 000 gave a bare `[Errno 13] Permission denied: ...`.)"""
    import os

    entries = SplitEntries(tmp_path / "probe.txt", ["locked/a.png"], [0], [7])
    loader, real_stat = FileImageLoader(tmp_path), os.stat

    def refuse(path, *args, **kwargs):
        if "locked" in str(path):
            raise PermissionError(13, "Permission denied", str(path))
        return real_stat(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", refuse)  # as a folder of mode 000 for a user other than root
    with pytest.raises(DataError, match=r"probe.txt, line 7: image 'locked/a.png' under .*: permission denied"):
        loader.check(entries)
