"""Nothing left behind by a command that fails (issue 14): `openlt train` that fails while preparing its data leaves
no out_dir it created, a failed CIFAR download no cache folder; and `openlt predict --output LINK` is refused (the
atomic write would replace the link, not write its target)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from openlt.data import cifar
from openlt.engine.run import new_folders, remove_empty
from openlt.errors import DataError

from images import make_image_folder
from synthetic_run import make_run
from tiny_run import cli  # tests/helpers

TINY = ["data.dataset=image-folder", "data.image_size=16", "model.backbone=resnet10", "train.epochs=1",
        "train.warmup_epochs=0", "train.batch_size=8", "eval.batch_size=8"]


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("no_junk") / "data", {"ant": 12, "bee": 10, "cat": 8, "dog": 8})


@pytest.mark.parametrize("out_dir", ["runsC", "a/b/runs"])
def test_train_failing_on_its_data_leaves_no_out_dir(images, tmp_path, capsys, monkeypatch, out_dir, single_thread):
    monkeypatch.chdir(tmp_path)
    code, out, err = cli(capsys, "train", "fmnist_lt/plain", *TINY, f"data.root={images}",
                         'data.split.open_classes=["zzz"]', f"out_dir={out_dir}")
    assert code == 2
    assert err.strip().splitlines()[-1] == ("openlt train: error: open class 'zzz' is not a class of this dataset; "
                                            "classes: ant, bee, cat, dog")
    assert list(tmp_path.iterdir()) == []  # neither runsC/ nor a/b/runs/ (nor a/)


def test_train_failing_on_its_data_keeps_an_out_dir_that_was_there(images, tmp_path, capsys, monkeypatch,
                                                                   single_thread):
    (tmp_path / "runs" / "old").mkdir(parents=True)
    (tmp_path / "empty").mkdir()
    for out_dir in ("runs", "empty"):
        code, _, _ = cli(capsys, "train", "fmnist_lt/plain", *TINY, f"data.root={images}",
                         'data.split.open_classes=["zzz"]', f"out_dir={tmp_path / out_dir}")
        assert code == 2
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == ["empty", "runs", "runs/old"]


def test_new_folders_and_remove_empty(tmp_path):
    (tmp_path / "a").mkdir()
    made = new_folders(tmp_path / "a" / "b" / "c")
    assert made == [tmp_path / "a" / "b" / "c", tmp_path / "a" / "b"]
    (tmp_path / "a" / "b" / "c").mkdir(parents=True)
    (tmp_path / "a" / "b" / "keep.txt").write_text("x")  # written meanwhile by someone else: b stays
    remove_empty(made)
    assert sorted(p.name for p in (tmp_path / "a").rglob("*")) == ["b", "keep.txt"]


@pytest.mark.parametrize("partial", [False, True])
def test_a_failed_cifar_download_leaves_no_cache_folder(tmp_path, monkeypatch, partial):
    import torchvision.datasets as tvd

    cache = tmp_path / "home" / ".cache" / "openlt"
    monkeypatch.setenv("OPENLT_CACHE", str(cache))

    def offline(root, train=True, download=False):
        os.makedirs(root, exist_ok=True)  # as torchvision's download_url does before it connects
        if partial:
            (Path(root) / "cifar-10-python.tar.gz").write_bytes(b"half an archive")
        raise OSError("Name or service not known")

    monkeypatch.setattr(tvd, "CIFAR10", offline)
    with pytest.raises(DataError, match=r"^cifar10 not found in .* and the download failed \(OSError: Name or "
                                        r"service not known\); give data.root"):
        cifar.locate("cifar10")
    assert list(tmp_path.iterdir()) == []  # not home/, .cache/, openlt/ nor cifar/


def test_a_failed_cifar_download_keeps_a_cache_that_was_there(tmp_path, monkeypatch):
    import torchvision.datasets as tvd

    (tmp_path / "openlt" / "cifar").mkdir(parents=True)
    (tmp_path / "openlt" / "cifar" / "cifar-10-python.tar.gz").write_bytes(b"someone else's")
    monkeypatch.setenv("OPENLT_CACHE", str(tmp_path / "openlt"))

    def offline(root, train=True, download=False):
        raise OSError("Name or service not known")

    monkeypatch.setattr(tvd, "CIFAR10", offline)
    with pytest.raises(DataError):
        cifar.locate("cifar10")
    assert (tmp_path / "openlt" / "cifar" / "cifar-10-python.tar.gz").read_bytes() == b"someone else's"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("no_junk_run")
    made, _ = make_run(root / "run")
    Image.fromarray(np.zeros((16, 16, 3), dtype=np.uint8)).save(root / "ant.png")
    return made, root / "ant.png"


@pytest.mark.parametrize("target_exists", [True, False])
def test_predict_refuses_a_symlink_output(run, tmp_path, capsys, target_exists, single_thread):
    made, image = run
    target, link = tmp_path / "target.txt", tmp_path / "po" / "link.csv"
    link.parent.mkdir()
    if target_exists:
        target.write_text("kept\n")
    link.symlink_to(target)
    code, out, err = cli(capsys, "predict", made.path, image, "--output", link)
    assert (code, out) == (2, "")
    assert err.strip() == (f"openlt predict: error: --output {link} is a symbolic link to {target}: the predictions "
                           f"would replace the link with a file and leave {target} as it is; write to {target} "
                           f"itself, or remove the link")
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_text() == "kept\n" if target_exists else not target.exists()
