"""CIFAR-10-LT / CIFAR-100-LT on small fake batches written in the real file format (tests/helpers/fake_cifar.py)."""

import json
import os
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
from fake_cifar import write_cifar10, write_cifar100

from openlt.cli import main
from openlt.config import SplitConfig, build_config
from openlt.data import cifar
from openlt.data.build import prepare_data
from openlt.data.cifar_lt import cifar_lt_counts, cifar_pool, default_split_config, make_cifar_lt_split
from openlt.data.splitfile import read_split_file
from openlt.errors import ConfigError, DataError

CONFIGS = Path(__file__).parents[2] / "configs"


@pytest.fixture(scope="module")
def c10(tmp_path_factory):
    return write_cifar10(tmp_path_factory.mktemp("cifar10_"), per_class=120, test_per_class=6)


@pytest.fixture(scope="module")
def c100(tmp_path_factory):
    return write_cifar100(tmp_path_factory.mktemp("cifar100_"), per_class=12, test_per_class=3)


def ldam_drw_selection(labels: np.ndarray, counts: list[int], seed: int = 0) -> list[np.ndarray]:
    """Cao et al.'s IMBALANCECIFAR10.gen_imbalanced_data, verbatim in its use of numpy's global RNG."""
    state = np.random.get_state()
    try:
        np.random.seed(seed)
        chosen = []
        for the_class, the_img_num in zip(np.unique(labels), counts):
            idx = np.where(labels == the_class)[0]
            np.random.shuffle(idx)
            chosen.append(idx[:the_img_num])
        return chosen
    finally:
        np.random.set_state(state)


# --- the profile ---------------------------------------------------------------------------------------

def test_counts_follow_the_formula_and_give_the_literature_totals():
    assert cifar_lt_counts(5000, 10, 100) == [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]
    assert sum(cifar_lt_counts(5000, 10, 100)) == 12406 and sum(cifar_lt_counts(500, 100, 100)) == 10847
    totals = {f: (sum(cifar_lt_counts(5000, 10, f)), sum(cifar_lt_counts(500, 100, f))) for f in (10, 50, 200)}
    assert totals == {10: (20431, 19573), 50: (13996, 12608), 200: (11203, 9502)}
    for n_max, c, imb in ((5000, 10, 0.1), (500, 100, 0.01), (500, 100, 0.005)):  # LDAM-DRW's own expression
        assert cifar_lt_counts(n_max, c, 1 / imb) == [int(n_max * (imb ** (i / (c - 1.0)))) for i in range(c)]


# --- reading the batches -------------------------------------------------------------------------------

def test_reads_batches_in_file_order_with_the_channel_layout(c10, c100):
    parts = cifar.load("cifar10", c10)
    train, test = parts["train"], parts["test"]
    assert train.images.shape == (1200, 3, 32, 32) and test.images.shape == (60, 3, 32, 32)
    first = pickle.load(open(c10 / "cifar-10-batches-py" / "data_batch_1", "rb"), encoding="bytes")
    assert train.labels[: len(first[b"labels"])].tolist() == first[b"labels"]
    row = first[b"data"][0]
    assert np.array_equal(train.images[0, 1].numpy().ravel(), row[1024:2048])  # plane 1 = the green values
    assert cifar.class_names("cifar10", c10)[:2] == ["airplane", "automobile"]
    assert cifar.load("cifar100", c100)["train"].images.shape == (1200, 3, 32, 32)
    assert cifar.class_names("cifar100", c100)[99] == "class99"


def test_root_may_be_the_batches_folder_itself(c10):
    assert cifar.locate("cifar10", c10 / "cifar-10-batches-py") == c10 / "cifar-10-batches-py"


def test_missing_root_or_batches_are_clear_errors(tmp_path):
    with pytest.raises(DataError, match="root does not exist"):
        cifar.locate("cifar10", tmp_path / "nowhere")
    (tmp_path / "cifar-100-python").mkdir()
    (tmp_path / "cifar-100-python" / "train").write_bytes(b"")
    with pytest.raises(DataError, match="missing test, meta"):
        cifar.locate("cifar100", tmp_path)


@pytest.mark.parametrize("damage, message", [
    (lambda p: p.write_bytes(p.read_bytes()[:5000]), "cannot read CIFAR batch .*data_batch_3"),
    (lambda p: p.write_bytes(b"not a pickle"), "cannot read CIFAR batch .*data_batch_3"),
    (lambda p: pickle.dump({b"data": np.zeros((4, 100), np.uint8), b"labels": [0] * 4}, open(p, "wb")),
     r"data_batch_3: b'data' must be uint8 of shape \(N, 3072\)"),
    (lambda p: pickle.dump({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}, open(p, "wb")),
     r"data_batch_3: labels must lie in 0..9"),
    (lambda p: pickle.dump([1, 2], open(p, "wb")), "data_batch_3 is not a pickled dict"),
])
def test_corrupt_batches_name_the_file(tmp_path, damage, message):
    root = write_cifar10(tmp_path, per_class=5, test_per_class=1)
    damage(root / "cifar-10-batches-py" / "data_batch_3")
    with pytest.raises(DataError, match=message):
        cifar.load("cifar10", root)


class _Exploit:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_a_pickle_that_would_run_code_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    bad = tmp_path / "test_batch"
    bad.write_bytes(pickle.dumps({b"data": _Exploit(), b"labels": []}))
    with pytest.raises(DataError, match="refusing to load .*system"):
        cifar.read_batch(bad)
    assert not (tmp_path / "pwned").exists()


# --- the long-tailed split -----------------------------------------------------------------------------

@pytest.mark.parametrize("imbalance_factor", [10, 100])
def test_split_is_the_ldam_drw_training_set_plus_a_disjoint_validation(c10, imbalance_factor):
    pool = cifar_pool("cifar10", c10)
    cfg = SplitConfig(**{**vars(default_split_config("cifar10")), "n_max": 120, "val_per_class": 8,
                         "imbalance_factor": imbalance_factor})
    split = make_cifar_lt_split(pool, cfg)
    counts = cifar_lt_counts(120, 10, imbalance_factor)
    assert split.train_counts() == counts
    train_items, train_labels = split.entries["train"]
    expected = ldam_drw_selection(pool.labels, counts)
    for c in range(10):
        ours = sorted(int(item.split("/")[1]) for item, label in zip(train_items, train_labels) if label == c)
        assert ours == sorted(expected[c].tolist())
        assert all(pool.labels[i] == c for i in ours)
    val_items, val_labels = split.entries["val"]
    assert not set(val_items) & set(train_items)
    # every class with unused images gives 8; the head class trains on all 120 and has none left
    assert np.bincount(val_labels, minlength=10).tolist() == [0] + [8] * 9
    test_items, test_labels = split.entries["test"]
    assert len(test_items) == 60 and all(i.startswith("test/") for i in test_items)
    assert split.entries["open"] == ([], [])


def test_split_is_deterministic_and_the_seed_changes_the_selection(c10):
    pool = cifar_pool("cifar10", c10)
    cfg = SplitConfig(**{**vars(default_split_config("cifar10")), "n_max": 100})
    a, b = make_cifar_lt_split(pool, cfg), make_cifar_lt_split(pool, cfg)
    assert a.entries == b.entries
    cfg.seed = 1
    c = make_cifar_lt_split(pool, cfg)
    assert c.train_counts() == a.train_counts() and c.entries["train"] != a.entries["train"]


def test_held_out_classes_are_the_last_ones_and_the_known_are_relabelled(c100):
    pool = cifar_pool("cifar100", c100)
    cfg = SplitConfig(**{**vars(default_split_config("cifar100")), "n_max": 10, "val_per_class": 2,
                         "imbalance_factor": 10, "open_classes": 20})
    split = make_cifar_lt_split(pool, cfg)
    assert split.original_ids == list(range(80)) and split.open_class_names == [f"class{i}" for i in range(80, 100)]
    assert split.train_counts() == cifar_lt_counts(10, 80, 10)  # the profile runs over the 80 known classes
    open_items, open_labels = split.entries["open"]
    assert len(open_items) == 20 * 3 and set(open_labels) == {-1}
    assert all(pool.test_labels[int(i.split("/")[1])] >= 80 for i in open_items)
    assert max(split.entries["test"][1]) == 79 and len(split.entries["test"][0]) == 80 * 3


def test_count_form_holds_out_the_last_classes_as_a_number_does(c10, capsys):
    """`count:N` (issue 14: the unambiguous number among class folders named by numbers) is the number N here too:
    the last N classes, not N drawn at random; through `openlt split` it is read before the config."""
    pool = cifar_pool("cifar10", c10)
    split = make_cifar_lt_split(pool, SplitConfig(**{**vars(default_split_config("cifar10")), "n_max": 10,
                                                     "imbalance_factor": 2, "open_classes": "count:3"}))
    assert split.open_class_names == pool.class_names[7:]


@pytest.mark.parametrize("change, message", [
    ({"imbalance_factor": None}, "set data.split.imbalance_factor"),
    ({"n_max": 5000}, "n_max=5000 is more than the 120 training images"),
    ({"profile": "pareto"}, "exponential profile"),
    ({"open_classes": 10}, "hold out fewer than the 10 classes"),
    ({"n_max": 50}, "n_max must be at least the imbalance factor"),
])
def test_bad_split_settings_are_config_errors(c10, change, message):
    cfg = SplitConfig(**{**vars(default_split_config("cifar10")), "n_max": 100, **change})
    with pytest.raises(ConfigError, match=message):
        make_cifar_lt_split(cifar_pool("cifar10", c10), cfg)


def test_a_test_count_the_test_batch_cannot_give_is_refused(c10, tmp_path, capsys):
    """--test-per-class 7 of a test batch with 6 images a class (was: 6 taken without a word, the manifest saying 7,
    and an open class cut alike): refused naming the class and the option, as for an image folder or
    Fashion-MNIST; the count the batch holds is taken in full."""
    message = ("class 'airplane' has 6 test image(s) in the cifar10 test set, fewer than data.split.test_per_class "
               "(--test-per-class) 7 asks")
    cfg = SplitConfig(**{**vars(default_split_config("cifar10")), "n_max": 20, "imbalance_factor": 10,
                         "val_per_class": 2, "test_per_class": 7, "open_classes": 2})
    with pytest.raises(DataError, match=re.escape(message)):
        make_cifar_lt_split(cifar_pool("cifar10", c10), cfg)
    code = main(["split", "--dataset", "cifar10", "--root", str(c10), "--n-max", "20", "--imbalance-factor", "10",
                 "--test-per-class", "7", "--out", str(tmp_path / "s")])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1 and not (tmp_path / "s").exists()
    pool = cifar_pool("cifar10", c10)
    keep = np.flatnonzero(pool.test_labels != 9).tolist() + np.flatnonzero(pool.test_labels == 9)[1:].tolist()
    pool.test_items = [pool.test_items[i] for i in sorted(keep)]
    pool.test_labels = pool.test_labels[sorted(keep)]  # the open class 'truck' has 5 test images, the others 6
    cfg.test_per_class = 6
    with pytest.raises(DataError, match=re.escape("open class 'truck' has 5 image(s) in the cifar10 test set, fewer "
                                                  "than data.split.test_per_class (--test-per-class) 6 asks")):
        make_cifar_lt_split(pool, cfg)
    split = make_cifar_lt_split(cifar_pool("cifar10", c10), cfg)
    assert len(split.entries["test"][0]) == 6 * 8 and len(split.entries["open"][0]) == 6 * 2


# --- through the CLI and prepare_data ------------------------------------------------------------------

def test_openlt_split_writes_index_split_files(c10, tmp_path, capsys):
    out = tmp_path / "split"
    code = main(["split", "--dataset", "cifar10", "--root", str(c10), "--n-max", "120", "--imbalance-factor", "100",
                 "--val-per-class", "8", "--out", str(out)])
    text, err = capsys.readouterr()
    assert code == 0, err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["dataset"] == "cifar10" and manifest["train_counts"] == cifar_lt_counts(120, 10, 100)
    assert manifest["val_short_classes"] == {"airplane": 0} and "note: 1 class(es)" in text
    train = read_split_file(out / "train.txt")
    assert all(item.startswith("train/") for item in train.items) and len(train) == sum(manifest["train_counts"])
    assert not (out / "open.txt").exists()


def test_openlt_split_errors_are_one_line(tmp_path, capsys):
    code = main(["split", "--dataset", "cifar100", "--root", str(tmp_path / "none"), "--out", str(tmp_path / "s")])
    assert code == 2 and "cifar100 root does not exist" in capsys.readouterr().err
    code = main(["split", "--dataset", "image-folder", "--root", str(tmp_path), "--open-root", str(tmp_path),
                 "--out", str(tmp_path / "s")])
    assert code == 2 and "--open-root is for --dataset cifar10" in capsys.readouterr().err


def test_an_image_folder_as_the_open_set(c10, tmp_path):
    from PIL import Image

    ood = tmp_path / "ood"
    for i, sub in enumerate(["svhn", "svhn", "svhn", "lsun/deep", "lsun/deep"]):  # any depth, any size
        (ood / sub).mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (40, 48), (i * 40, 0, 0)).save(ood / sub / f"{i}.png")
    cfg = build_config(CONFIGS / "cifar10_lt" / "ce.yaml",
                       [f"data.root={c10}", f"data.open_root={ood}", "data.split.n_max=100"])
    data = prepare_data(cfg, default_split_dir=tmp_path / "run" / "splits")
    assert data.image_size == 32 and data.in_chans == 3 and data.family == "small"
    assert data.manifest["open_root"] == str(ood.resolve())
    opened = data.dataset("open")
    assert len(opened) == 5 and opened[0][0].shape == (3, 32, 32) and opened[0][1] == -1
    image, label = data.dataset("train", train=True)[0]
    assert image.shape == (3, 32, 32) and image.dtype.is_floating_point and label == 0


def test_every_cifar_config_loads():
    paths = sorted(CONFIGS.glob("cifar*/*.yaml"))
    assert len(paths) >= 22
    for path in paths:
        cfg = build_config(path)
        assert cfg.data.dataset in ("cifar10", "cifar100") and cfg.model.backbone == "resnet32", path
    ce = build_config(CONFIGS / "cifar10_lt" / "ce.yaml")
    assert (ce.train.epochs, ce.train.batch_size, ce.train.lr, ce.train.weight_decay) == (200, 128, 0.1, 2e-4)
    assert (ce.train.warmup_epochs, ce.train.milestones, ce.train.step_gamma) == (5, [160, 180], 0.01)
    ldam = build_config(CONFIGS / "cifar100_lt" / "ldam_drw.yaml")
    assert ldam.model.classifier == "normed_linear" and ldam.train.loss_args["drw_epoch"] == 160
    assert build_config(CONFIGS / "cifar100_lt" / "lws.yaml").decouple.method == "lws"


@pytest.mark.parametrize("config", ["ce.yaml", "ldam_drw.yaml"])
def test_one_tiny_training_run_through_the_cli(config, tmp_path, capsys, single_thread):
    root = write_cifar10(tmp_path / "data", per_class=16, test_per_class=2)
    code = main(["train", str(CONFIGS / "cifar10_lt" / config), f"data.root={root}", f"out_dir={tmp_path / 'runs'}",
                 "data.workers=0", "data.split.n_max=12", "data.split.imbalance_factor=10",
                 "data.split.val_per_class=2", "train.epochs=1", "train.batch_size=16", "eval.batch_size=64", "--quiet"])
    out, err = capsys.readouterr()
    assert code == 0, err
    run = next((tmp_path / "runs").iterdir())
    metrics = json.loads((run / "metrics.json").read_text())
    assert 0.0 <= metrics["closed"]["overall"] <= 1.0 and len(metrics["per_class_accuracy"]) == 10
    manifest = json.loads((run / "split_manifest.json").read_text())
    assert manifest["train_counts"] == cifar_lt_counts(12, 10, 10)
    assert "resnet32" in out
