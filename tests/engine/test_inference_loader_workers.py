"""An inference loader forks no more workers than it has batches, and Pillow's image plugins are imported in the
parent before any loader forks its workers (not once more in each worker)."""

import torch
from PIL import Image

from openlt.engine import runtime


class Items(torch.utils.data.Dataset):
    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return torch.zeros(3, 8, 8), i


def test_an_inference_loader_forks_no_more_workers_than_batches():
    cpu = torch.device("cpu")
    assert runtime.inference_loader(Items(20), 16, 8, cpu, 224).num_workers == 2  # 16 images a pass at 224 px
    assert runtime.inference_loader(Items(200), 16, 8, cpu, 224).num_workers == 8
    assert runtime.inference_loader(Items(16), 16, 8, cpu, 224).num_workers == 1
    assert runtime.inference_loader(Items(20), 16, 0, cpu, 224).num_workers == 0
    assert runtime.inference_loader(Items(0), 16, 8, cpu, 224).num_workers == 0


def test_image_plugins_are_imported_before_workers_fork(monkeypatch):
    runtime.preload_image_plugins.cache_clear()
    monkeypatch.setattr(Image, "_initialized", 0)
    runtime.make_loader(Items(4), 2, 0, torch.device("cpu"))
    assert Image._initialized == 0  # no workers: nothing to import ahead
    loader = runtime.make_loader(Items(4), 2, 2, torch.device("cpu"))
    assert Image._initialized >= 1 and "JPEG" in Image.OPEN and "PNG" in Image.OPEN
    assert [labels.tolist() for _, labels in loader] == [[0, 1], [2, 3]]
