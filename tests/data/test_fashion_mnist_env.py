"""$OPENLT_FASHION_MNIST (issue 14): when set, that folder or one line naming the variable and what is wrong --
never a silent fall back to Debian's copy or the cache; unset or empty, the usual places."""

import gzip
import struct

import numpy as np
import pytest

from openlt.cli import main
from openlt.data import fashion_mnist
from openlt.errors import DataError



def fake_fmnist(folder):
    """The four IDX files (.gz) of a 40 + 20 image Fashion-MNIST in `folder`."""
    folder.mkdir(parents=True)
    for part, n in (("train", 40), ("t10k", 20)):
        for kind, array in (("images-idx3", np.zeros((n, 28, 28))), ("labels-idx1", np.arange(n) % 10)):
            header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
            with gzip.open(folder / f"{part}-{kind}-ubyte.gz", "wb") as fh:
                fh.write(header + array.astype(np.uint8).tobytes())
    return folder


FIX = "point it at a folder of the four Fashion-MNIST IDX files, or unset it"


@pytest.fixture
def fallback(tmp_path, monkeypatch):
    """A complete copy where locate would otherwise fall back to (Debian's folder), so a fall back would succeed."""
    monkeypatch.setattr(fashion_mnist, "DEBIAN_DIR", fake_fmnist(tmp_path / "debian"))
    monkeypatch.setenv("OPENLT_CACHE", str(tmp_path / "cache"))
    return tmp_path / "debian"


def _partial(folder, *stems):
    folder.mkdir()
    for stem in stems:
        (folder / stem).write_bytes(b"")
    return folder


@pytest.mark.parametrize("case, says", [
    ("missing", "which does not exist"),
    ("a-file", "which is not a folder"),
    ("empty", "which lacks train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, "
              "t10k-labels-idx1-ubyte (as the file, .gz, or under FashionMNIST/raw/)"),
    ("partial", "which lacks train-labels-idx1-ubyte, t10k-labels-idx1-ubyte (as the file, .gz, or under "
                "FashionMNIST/raw/)"),
])
def test_a_set_variable_that_is_not_the_data_set_is_refused_not_passed_over(tmp_path, monkeypatch, capsys, fallback,
                                                                            case, says):
    value = {"missing": lambda: tmp_path / "nonexistent",
             "a-file": lambda: (tmp_path / "f.txt").write_text("x") and tmp_path / "f.txt",
             "empty": lambda: _partial(tmp_path / "fm"),
             "partial": lambda: _partial(tmp_path / "fm", "train-images-idx3-ubyte", "t10k-images-idx3-ubyte.gz"),
             }[case]()
    monkeypatch.setenv("OPENLT_FASHION_MNIST", str(value))
    message = f"$OPENLT_FASHION_MNIST is {str(value)!r}, {says}; {FIX}"
    with pytest.raises(DataError) as info:
        fashion_mnist.locate()
    assert str(info.value) == message
    monkeypatch.chdir(tmp_path)
    assert main(["split", "--dataset", "fashion-mnist", "--out", "s"]) == 2
    out, err = capsys.readouterr()
    assert err.strip().splitlines() == [f"openlt split: error: {message}"] and out == "", (out, err)
    assert not (tmp_path / "s").exists()


def test_a_set_variable_with_the_files_is_used_and_unset_or_empty_falls_back(tmp_path, monkeypatch, fallback):
    mine = fake_fmnist(tmp_path / "mine")
    monkeypatch.setenv("OPENLT_FASHION_MNIST", str(mine))
    assert fashion_mnist.locate() == mine
    monkeypatch.setenv("OPENLT_FASHION_MNIST", "")
    assert fashion_mnist.locate() == fallback
    monkeypatch.delenv("OPENLT_FASHION_MNIST")
    assert fashion_mnist.locate() == fallback


def test_an_explicit_root_is_used_whatever_the_variable_says(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENLT_FASHION_MNIST", str(tmp_path / "nonexistent"))
    assert fashion_mnist.locate(fake_fmnist(tmp_path / "root")) == tmp_path / "root"
