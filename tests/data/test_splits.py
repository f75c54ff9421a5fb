import json

import numpy as np
import pytest

from openlt.config import SplitConfig
from openlt.data.splitfile import read_split_file, write_split_file
from openlt.data.splits import LabelledPool, make_split, profile_counts, write_split
from openlt.errors import ConfigError, DataError


def test_exp_profile_follows_the_formula():
    counts = profile_counts("exp", 8, 1280, 5)
    expected = [int(1280 * (5 / 1280) ** (i / 7)) for i in range(8)]
    assert counts == [max(5, c) for c in expected]
    assert counts[0] == 1280 and counts[-1] == 5
    assert all(a >= b for a, b in zip(counts, counts[1:]))


def test_exp_profile_populates_all_three_bands():
    counts = profile_counts("exp", 8, 1280, 5)
    assert sum(c > 100 for c in counts) == 4  # 1280, 579, 262, 118
    assert sum(20 <= c <= 100 for c in counts) == 2
    assert sum(c < 20 for c in counts) == 2


def test_pareto_profile_spans_range_and_puts_more_in_the_middle_than_exp():
    counts = profile_counts("pareto", 1000, 1280, 5, alpha=6)
    assert counts[0] == 1280 and counts[-1] == 5
    assert all(a >= b for a, b in zip(counts, counts[1:]))
    exp = profile_counts("exp", 1000, 1280, 5)
    medium = lambda cs: sum(20 <= c <= 100 for c in cs)  # noqa: E731
    assert medium(counts) > medium(exp)


def test_profile_errors():
    with pytest.raises(ConfigError):
        profile_counts("zipf", 5, 100, 5)
    with pytest.raises(ConfigError):
        profile_counts("exp", 5, 10, 50)


def pool(n_classes=6, per_class=300, separate_test=True):
    labels = np.repeat(np.arange(n_classes), per_class)
    items = [f"train/{i}" for i in range(len(labels))]
    test_labels = np.repeat(np.arange(n_classes), 50)
    return LabelledPool("toy", [f"c{i}" for i in range(n_classes)], items, labels,
                        [f"test/{i}" for i in range(len(test_labels))] if separate_test else None,
                        test_labels if separate_test else None)


def test_split_counts_follow_profile_and_open_classes_never_in_train():
    p = pool()
    cfg = SplitConfig(profile="exp", n_max=200, n_min=10, open_classes=2, val_per_class=10, seed=3)
    split = make_split(p, cfg)
    assert len(split.class_names) == 4 and len(split.open_class_names) == 2
    assert sorted(split.train_counts(), reverse=True) == profile_counts("exp", 4, 200, 10)
    open_ids = {p.class_names.index(n) for n in split.open_class_names}
    train_items = set(split.entries["train"][0])
    assert not any(int(p.labels[int(i.split("/")[1])]) in open_ids for i in train_items)
    # open split: every test image of the open classes, labelled -1
    open_items, open_labels = split.entries["open"]
    assert set(open_labels) == {-1} and len(open_items) == 2 * 50
    assert all(int(p.test_labels[int(i.split("/")[1])]) in open_ids for i in open_items)
    # val balanced and disjoint from train; test = the official test images of known classes
    val_items, val_labels = split.entries["val"]
    assert np.bincount(val_labels).tolist() == [10] * 4
    assert not train_items & set(val_items)
    assert np.bincount(split.entries["test"][1]).tolist() == [50] * 4


def test_same_seed_same_split_other_seed_other_split():
    cfg = SplitConfig(n_max=200, n_min=10, seed=1)
    a, b = make_split(pool(), cfg), make_split(pool(), cfg)
    assert a.entries == b.entries and a.open_class_names == b.open_class_names
    c = make_split(pool(), SplitConfig(n_max=200, n_min=10, seed=2))
    assert c.entries["train"] != a.entries["train"]


def test_open_classes_by_name_and_label_order():
    cfg = SplitConfig(n_max=200, n_min=10, open_classes=["c0", "c5"], order="label")
    split = make_split(pool(), cfg)
    assert split.open_class_names == ["c0", "c5"]
    assert split.class_names == ["c1", "c2", "c3", "c4"]
    assert split.train_counts() == profile_counts("exp", 4, 200, 10)  # label order: first known gets n_max


def test_unknown_open_class_is_a_config_error():
    with pytest.raises(ConfigError, match="not a class"):
        make_split(pool(), SplitConfig(open_classes=["zebra"]))


def test_single_pool_takes_test_from_the_pool_without_overlap():
    split = make_split(pool(separate_test=False), SplitConfig(n_max=200, n_min=10, test_per_class=20))
    tr, va, te = (set(split.entries[s][0]) for s in ("train", "val", "test"))
    assert not (tr & va) and not (tr & te) and not (va & te)
    assert np.bincount(split.entries["test"][1]).tolist() == [20] * 4


def test_write_split_files_and_manifest(tmp_path):
    p, cfg = pool(), SplitConfig(n_max=200, n_min=10)
    manifest = write_split(make_split(p, cfg), tmp_path, p, cfg)
    saved = json.loads((tmp_path / "manifest.json").read_text())
    assert saved == json.loads(json.dumps(manifest))
    assert saved["train_counts"] == make_split(p, cfg).train_counts()
    assert set(saved["files"]) == {"train", "val", "test", "open"}
    assert len(saved["files"]["train"]["sha256"]) == 64
    counts = saved["train_counts"]
    assert saved["bands"]["per_class"] == ["many" if c > 100 else "medium" if c >= 20 else "few" for c in counts]
    entries = read_split_file(tmp_path / "open.txt", allow_open=True)
    assert set(entries.labels) == {-1}


@pytest.mark.parametrize("text, message", [
    ("a.jpg\n", "expected 'relative/path label'"),
    ("a.jpg x\n", "not an integer"),
    ("a.jpg 7\n", "out of range"),
    ("a.jpg -1\n", "negative"),
    ("../etc/passwd 0\n", "inside the data root"),
    ("/abs/a.jpg 0\n", "inside the data root"),
    ("a.jpg 0\nb.jpg 1\na.jpg 0\n", "listed twice"),
    ("\n# only a comment\n", "lists no images"),
])
def test_bad_split_lines_name_file_and_line(tmp_path, text, message):
    path = tmp_path / "bad.txt"
    path.write_text(text)
    with pytest.raises(DataError, match=message) as info:
        read_split_file(path, num_classes=5)
    assert "bad.txt" in str(info.value)


def test_split_file_round_trip_with_spaces_in_paths(tmp_path):
    write_split_file(tmp_path / "s.txt", ["a b/c.jpg", "d.jpg"], [1, 0])
    entries = read_split_file(tmp_path / "s.txt")
    assert entries.items == ["a b/c.jpg", "d.jpg"] and entries.labels == [1, 0] and entries.lines == [1, 2]
