"""A run records the identity of the packed data files its images come from (CIFAR's pickled batches,
Fashion-MNIST's IDX files: split_manifest.json ``data_files``, the sha256 of each file), and every command that
reads the run's data again checks it (engine/manifest.py `verify_manifest`, as for the split files).

One table: a data.root whose files hold other pixels (same labels, same class names: trial 8 D12, where
`openlt eval RUN data.root=OTHER` evaluated inverted CIFAR batches with exit 0) through `openlt eval`,
`train --resume` (the run's config.yaml edited to the other folder), a stage 2 (`train.init_from`) and a decoupled
stage 2. Each exits 2 with ONE line naming the file, data.root and what to do, the run directory unchanged. Then
the controls: an identical copy of the data elsewhere is accepted (CIFAR; Fashion-MNIST gunzipped: the IDX data is
what is fingerprinted), a run of an older openlt (no record) is accepted without a check, and a damaged record is
refused as any damaged split_manifest.json is.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import pickle
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from fake_cifar import write_cifar10
from cli_ok import main_ok
from openlt.cli import main

REPORT_FIGURES = "unrasterized"  # tests/conftest.py: report.html figures built, not rendered (none is looked at)

CONFIGS = Path(__file__).resolve().parents[2] / "src" / "openlt" / "configs"
TINY = ["data.workers=0", "train.epochs=1", "train.warmup_epochs=0", "train.batch_size=16", "eval.batch_size=64",
        "train.device=cpu", "--quiet"]
CIFAR_SPLIT = ["data.split.n_max=12", "data.split.imbalance_factor=10", "data.split.val_per_class=2"]


def cli(args: list, capsys) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def snapshot(folder: Path) -> dict:
    """Every file of the run but train.lock (it names the last process that held the run)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*")
            if p.is_file() and p.name != "train.lock"}


def invert_batch(path: Path) -> None:
    """Every pixel of one CIFAR batch 255 - x; labels (and every other key) unchanged."""
    with open(path, "rb") as fh:
        batch = pickle.load(fh, encoding="bytes")
    batch[b"data"] = 255 - batch[b"data"]
    with open(path, "wb") as fh:
        pickle.dump(batch, fh, protocol=2)


@pytest.fixture(scope="module")
def cifar(tmp_path_factory, single_thread):
    """Fake CIFAR-10 batches, copies with the test batch / a training batch inverted, and one run trained on them."""
    root = tmp_path_factory.mktemp("packed")
    data = write_cifar10(root / "c10", per_class=16, test_per_class=2)
    folders = {"same": root / "same", "test-pixels": root / "test_inv", "train-pixels": root / "train_inv"}
    for folder in folders.values():
        shutil.copytree(data, folder)
    invert_batch(folders["test-pixels"] / "cifar-10-batches-py" / "test_batch")
    invert_batch(folders["train-pixels"] / "cifar-10-batches-py" / "data_batch_2")
    main_ok(["train", str(CONFIGS / "cifar10_lt" / "ce.yaml"), f"data.root={data}", f"out_dir={root / 'runs'}",
             "name=c10", *CIFAR_SPLIT, *TINY])
    run = next((root / "runs").iterdir())
    return {"root": root, "data": data, "run": run, **folders}


def copy_run(cifar: dict, tmp: Path) -> Path:
    run = tmp / "run"
    shutil.copytree(cifar["run"], run)
    return run


def test_a_cifar_run_records_the_sha256_of_every_file_it_read(cifar):
    manifest = json.loads((cifar["run"] / "split_manifest.json").read_text())
    folder = cifar["data"] / "cifar-10-batches-py"
    recorded = manifest["data_files"]
    assert set(recorded) == {"data.root"} and recorded["data.root"]["folder"] == str(folder.resolve())
    files = recorded["data.root"]["files"]
    assert sorted(files) == sorted(["batches.meta", "test_batch", *(f"data_batch_{i}" for i in range(1, 6))])
    for name, info in files.items():
        assert info == {"file": str((folder / name).resolve()),
                        "sha256": hashlib.sha256((folder / name).read_bytes()).hexdigest()}


def resume_on(folder_key: str):
    def command(cifar: dict, run: Path, tmp: Path) -> list:  # the run's config.yaml edited to the other folder
        config = run / "config.yaml"
        text = config.read_text()
        assert f"root: {cifar['data']}\n" in text
        config.write_text(text.replace(f"root: {cifar['data']}\n", f"root: {cifar[folder_key]}\n"))
        return ["train", "--resume", run, "--quiet"]
    return command


def eval_on(folder_key: str):
    def command(cifar: dict, run: Path, tmp: Path) -> list:
        return ["eval", run, f"data.root={cifar[folder_key]}", "--tag", "other", "--quiet"]
    return command


def stage2_on(folder_key: str):
    def command(cifar: dict, run: Path, tmp: Path) -> list:  # a stage 2 that loads the run's weights
        return ["train", CONFIGS / "cifar10_lt" / "ce.yaml", f"data.root={cifar[folder_key]}",
                f"data.split_dir={run / 'splits'}", f"train.init_from={run}", f"out_dir={tmp / 'runs'}", *TINY]
    return command


def decoupled_on(folder_key: str):
    def command(cifar: dict, run: Path, tmp: Path) -> list:  # cRT on the run's representation
        return ["train", CONFIGS / "cifar10_lt" / "crt.yaml", f"data.root={cifar[folder_key]}",
                f"train.init_from={run}", f"out_dir={tmp / 'runs'}", *TINY]
    return command


# (command, data.root it reads, the file named, what the line advises)
CASES = {
    "eval-test-pixels": (eval_on("test-pixels"), "test_batch", "point data.root to the data the run was trained on"),
    "eval-train-pixels": (eval_on("train-pixels"), "data_batch_2", "point data.root to the data the run was trained on"),
    "resume-test-pixels": (resume_on("test-pixels"), "test_batch", "`--resume` continues only on the data the run "
                                                                   "started with: point data.root in"),
    "resume-train-pixels": (resume_on("train-pixels"), "data_batch_2", "`--resume` continues only on the data"),
    "init_from-train-pixels": (stage2_on("train-pixels"), "data_batch_2",
                               "point data.root to the data the stage-1 run was trained on"),
    "decoupled-train-pixels": (decoupled_on("train-pixels"), "data_batch_2",
                               "point data.root to the data the stage-1 run was trained on"),
}


@pytest.mark.parametrize("name", CASES)
def test_other_pixels_under_data_root_are_refused_with_one_line(name, cifar, tmp_path, capsys):
    command, file, remedy = CASES[name]
    run = copy_run(cifar, tmp_path)
    args = command(cifar, run, tmp_path)
    before = snapshot(run)
    code, _, err = cli(args, capsys)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    folder = cifar[name.split("-", 1)[1]]
    line = lines[0]
    assert f"data.root={folder}: {folder / 'cifar-10-batches-py' / file} is not the {file} the run read" in line, line
    assert "then" in line and "other images" in line and remedy in line, line
    assert str(cifar["data"] / "cifar-10-batches-py") in line, line  # where the run's data was: what to point at
    if name.startswith(("init_from", "decoupled")):
        assert line.startswith(f"openlt train: error: train.init_from={run}: "), line
    assert {k: v for k, v in snapshot(run).items() if k != "config.yaml"} == \
        {k: v for k, v in before.items() if k != "config.yaml"}  # nothing evaluated, nothing rewritten
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())  # no stage-2 run left


def test_the_same_files_elsewhere_are_accepted_with_the_same_scores(cifar, tmp_path, capsys):
    run = copy_run(cifar, tmp_path)
    code, _, err = cli(["eval", run, f"data.root={cifar['same']}", "--tag", "moved", "--quiet"], capsys)
    assert code == 0, err
    moved = json.loads((run / "metrics-moved.json").read_text())
    assert moved["closed"] == json.loads((run / "metrics.json").read_text())["closed"]
    code, _, err = cli(["train", CONFIGS / "cifar10_lt" / "ce.yaml", f"data.root={cifar['same']}",
                        f"data.split_dir={run / 'splits'}", f"train.init_from={run}", f"out_dir={tmp_path / 'runs'}",
                        *TINY], capsys)
    assert code == 0, err


def test_a_run_of_an_older_openlt_without_the_record_is_not_checked(cifar, tmp_path, capsys):
    run = copy_run(cifar, tmp_path)
    path = run / "split_manifest.json"
    manifest = json.loads(path.read_text())
    del manifest["data_files"]
    path.write_text(json.dumps(manifest))
    code, _, err = cli(["eval", run, f"data.root={cifar['test-pixels']}", "--tag", "inv", "--quiet"], capsys)
    assert code == 0, err  # as before the record existed: evaluated (other pixels: the old limitation)
    assert (run / "metrics-inv.json").is_file()
    assert "data_files" not in json.loads(path.read_text())  # the manifest is never rewritten


@pytest.mark.parametrize("damage, expected", [
    (lambda m: m.update(data_files=[1]), "data_files must map data.root"),
    (lambda m: m["data_files"]["data.root"]["files"]["test_batch"].update(sha256=5), "data_files.data.root"),
    (lambda m: m["data_files"]["data.root"].pop("folder"), "data_files.data.root"),
    (lambda m: m["data_files"].update({"data.other": m["data_files"]["data.root"]}), "data_files.data.other"),
], ids=["a-list", "sha-not-text", "no-folder", "unknown-key"])
def test_a_damaged_record_is_refused_as_a_damaged_manifest(damage, expected, cifar, tmp_path, capsys):
    run = copy_run(cifar, tmp_path)
    path = run / "split_manifest.json"
    manifest = json.loads(path.read_text())
    damage(manifest)
    path.write_text(json.dumps(manifest))
    code, _, err = cli(["eval", run, "--quiet"], capsys)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and f"{path} is not a split manifest written by openlt" in lines[0], err
    assert expected in lines[0], lines[0]


# ------------------------------------------------------------------------------------------------- Fashion-MNIST
def write_idx(path: Path, array: np.ndarray, gz: bool = True) -> None:
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with (gzip.open if gz else open)(path, "wb") as fh:
        fh.write(header + array.astype(np.uint8).tobytes())


def fake_fmnist(folder: Path, gz: bool = True, change_pixel: bool = False) -> Path:
    """A tiny copy of Fashion-MNIST's four IDX files: 40 training and 20 test images per class (always the same)."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gz else ""
    for part, n in (("train", 400), ("t10k", 200)):
        images = rng.integers(0, 256, (n, 28, 28))
        if change_pixel and part == "train":
            images[7, 3, 3] = 255 - images[7, 3, 3]  # one pixel of one training image
        write_idx(folder / f"{part}-images-idx3-ubyte{suffix}", images, gz)
        write_idx(folder / f"{part}-labels-idx1-ubyte{suffix}", np.arange(n) % 10, gz)
    return folder


@pytest.fixture(scope="module")
def fmnist(tmp_path_factory, single_thread):
    root = tmp_path_factory.mktemp("fm")
    data = fake_fmnist(root / "fm")
    main_ok(["train", str(CONFIGS / "fmnist_lt" / "plain.yaml"), f"data.root={data}", f"out_dir={root / 'runs'}",
             "data.split.n_max=10", "data.split.n_min=2", "data.split.val_per_class=2",
             "data.split.test_per_class=3", *TINY])
    return {"root": root, "data": data, "run": next((root / "runs").iterdir())}


def test_a_fashion_mnist_run_records_the_sha256_of_each_idx_file_s_data(fmnist):
    files = json.loads((fmnist["run"] / "split_manifest.json").read_text())["data_files"]["data.root"]["files"]
    assert sorted(files) == ["t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", "train-images-idx3-ubyte",
                             "train-labels-idx1-ubyte"]
    for stem, info in files.items():
        path = fmnist["data"] / f"{stem}.gz"
        assert info == {"file": str(path.resolve()), "sha256": hashlib.sha256(gzip.decompress(path.read_bytes())).hexdigest()}


def test_fashion_mnist_with_one_other_pixel_is_refused_and_a_gunzipped_copy_accepted(fmnist, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(fmnist["run"], run)
    other = fake_fmnist(tmp_path / "other", change_pixel=True)
    code, _, err = cli(["eval", run, f"data.root={other}", "--quiet"], capsys)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert (f"data.root={other}: {other / 'train-images-idx3-ubyte.gz'} is not the train-images-idx3-ubyte the run "
            f"read when it was trained") in lines[0], lines[0]
    assert f"point data.root to the data the run was trained on (it read {fmnist['data']}" in lines[0], lines[0]
    plain = fake_fmnist(tmp_path / "plain", gz=False)  # the same data, not gzipped
    code, _, err = cli(["eval", run, f"data.root={plain}", "--tag", "plain", "--quiet"], capsys)
    assert code == 0, err
    assert json.loads((run / "metrics-plain.json").read_text())["closed"] == \
        json.loads((run / "metrics.json").read_text())["closed"]


def test_what_is_recorded_for_each_kind_of_data(tmp_path, image_folder):
    from openlt.config import build_config
    from openlt.data.build import packed_data_files

    main_copy, open_copy = fake_fmnist(tmp_path / "fm"), fake_fmnist(tmp_path / "mnist", change_pixel=True)
    cfg = build_config(overrides=["data.dataset=fashion-mnist", f"data.open_root={open_copy}"])
    recorded = packed_data_files(cfg, str(main_copy))
    assert {key: where["folder"] for key, where in recorded.items()} == {"data.root": str(main_copy.resolve()),
                                                                        "data.open_root": str(open_copy.resolve())}
    assert (recorded["data.root"]["files"]["train-images-idx3-ubyte"]["sha256"]
            != recorded["data.open_root"]["files"]["train-images-idx3-ubyte"]["sha256"])
    assert (recorded["data.root"]["files"]["t10k-images-idx3-ubyte"]
            == {**recorded["data.open_root"]["files"]["t10k-images-idx3-ubyte"],
                "file": str((main_copy / "t10k-images-idx3-ubyte.gz").resolve())})
    for kind in ("image-folder", "split-file"):  # files of an image folder: not fingerprinted
        assert packed_data_files(build_config(overrides=[f"data.dataset={kind}"]), str(image_folder)) == {}
