import gzip
import struct

import numpy as np
import pytest

from openlt.data import fashion_mnist
from openlt.errors import DataError


def write_idx(path, array):
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + array.astype(np.uint8).tobytes())


def fake_fmnist(folder, n_train=40, n_test=20):
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for part, n in (("train", n_train), ("t10k", n_test)):
        write_idx(folder / f"{part}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        write_idx(folder / f"{part}-labels-idx1-ubyte.gz", np.arange(n) % 10)
    return folder


def test_reads_idx_files_into_tensors(tmp_path):
    parts = fashion_mnist.load(fake_fmnist(tmp_path / "fm"))
    assert parts["train"].images.shape == (40, 28, 28) and parts["test"].labels.tolist() == [i % 10 for i in range(20)]


def test_truncated_idx_is_a_clear_error(tmp_path):
    folder = fake_fmnist(tmp_path / "fm")
    with gzip.open(folder / "train-images-idx3-ubyte.gz", "rb") as fh:
        data = fh.read()
    with gzip.open(folder / "train-images-idx3-ubyte.gz", "wb") as fh:
        fh.write(data[:1000])
    with pytest.raises(DataError, match="train-images-idx3-ubyte"):
        fashion_mnist.load(folder)


def test_missing_root_and_missing_files(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        fashion_mnist.locate(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="lacks the IDX files"):
        fashion_mnist.locate(tmp_path / "empty")


@pytest.mark.skipif(not (fashion_mnist.DEBIAN_DIR / "train-images-idx3-ubyte.gz").is_file(),
                    reason="Debian's dataset-fashion-mnist is not installed")
def test_default_embedded_split_matches_the_benchmark_definition():
    from openlt.config import SplitConfig
    from openlt.data.datasets import fashion_mnist_pool
    from openlt.data.splits import make_split, profile_counts

    split = make_split(fashion_mnist_pool(), SplitConfig())
    assert len(split.class_names) == 8 and len(split.open_class_names) == 2
    assert sorted(split.train_counts(), reverse=True) == profile_counts("exp", 8, 1280, 5)
    assert len(split.entries["test"][0]) == 8 * 1000 and len(split.entries["open"][0]) == 2 * 1000
    assert len(split.entries["val"][0]) == 8 * 20
