"""Class names read from a CIFAR meta file are checked where they are read, as those of a class-name file or an
image folder are: UTF-8 text, not empty, one the outputs can hold, given once, no two alike (trial 8, D1-D3).
A run that draws its own split never names its staged folder (removed when the run fails) in an error."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
from fake_cifar import write_cifar10

from openlt.cli import main
from openlt.data import cifar
from openlt.errors import DataError

NAMES = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]


def _meta(root: Path) -> Path:
    return root / "cifar-10-batches-py" / "batches.meta"


def _with_names(root: Path, changes: dict[int, object], protocol: int = 2) -> Path:
    """write_cifar10's folder with label_names[i] replaced by changes[i]; returns root."""
    names = list(NAMES)
    for index, value in changes.items():
        names[index] = value
    with open(_meta(root), "wb") as fh:
        pickle.dump({b"num_cases_per_batch": 20, b"label_names": names, b"num_vis": 3072}, fh, protocol=protocol)
    return root


@pytest.fixture
def c10(tmp_path):
    return write_cifar10(tmp_path / "data", per_class=12, test_per_class=2)


BAD_NAMES = [
    ({3: "caf\xe9".encode("latin-1")}, r"class name 3 \(b'caf\\xe9'\) is not UTF-8 text$"),
    ({4: b"cat"}, r"class name 4 'cat' repeats class name 3: two classes would have one name \(in every report, "
                  r"and for --open-classes cat\)$"),
    ({2: b"unknown"}, r"class name 2 'unknown' cannot be a class name: 'unknown' \(any case\) is the name "
                      r"`openlt predict` gives an image rejected as unknown$"),
    ({2: b" Unknown "}, r"class name 2 ' Unknown ' cannot be a class name: 'unknown' \(any case\)"),
    ({2: b"a;b"}, r"class name 2 'a;b' cannot be a class name: ';' separates `openlt predict`'s top-k field"),
    ({7: b"a:b"}, r"class name 7 'a:b' cannot be a class name: ':' separates"),
    ({5: b"do\tg"}, r"class name 5 'do\\tg' cannot be a class name: the control character '\\t'"),
    ({5: b"do\x00g"}, r"class name 5 'do\\x00g' cannot be a class name: the control character '\\x00'"),
    ({2: b""}, r"class name 2 is empty \(''\): every class needs a name$"),
    ({2: b"   "}, r"class name 2 is empty \('   '\): every class needs a name$"),
    ({6: 17}, r"class name 6 is not text \(found int 17\)$"),
    ({4: b"Cat"}, r"class name 4 'Cat' and class name 3 'cat' differ only by case: they would be two classes that "
                  r"look alike$"),
    ({4: "cafe\u0301".encode(), 5: "caf\u00e9".encode()},
     r"class name 5 'caf.' and class name 4 'cafe.' differ only by Unicode normalisation \(code points "
     r"'cafe\\u0301' and 'caf\\xe9': NFC / NFD forms of one name\): they would be two classes that look alike$"),
    ({4: "\u0441at".encode()}, r"class name 4 'сat' and class name 3 'cat' differ only by letters of other scripts"),
]


@pytest.mark.parametrize("changes, message", BAD_NAMES)
def test_a_bad_class_name_in_the_meta_file_is_refused_naming_file_and_index(c10, changes, message):
    _with_names(c10, changes)
    with pytest.raises(DataError, match=r"^CIFAR meta file .*batches\.meta: " + message):
        cifar.class_names("cifar10", c10)


@pytest.mark.parametrize("changes, message", BAD_NAMES[:4] + BAD_NAMES[4:5] + BAD_NAMES[8:9])
def test_openlt_split_refuses_it_before_writing_anything(c10, tmp_path, capsys, changes, message):
    _with_names(c10, changes)
    out = tmp_path / "splits"
    code = main(["split", "--dataset", "cifar10", "--root", str(c10), "--out", str(out), "--n-max", "10",
                 "--imbalance-factor", "5", "--val-per-class", "0"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and "internal error" not in err
    assert err.startswith(f"openlt split: error: CIFAR meta file {_meta(c10)}: ")
    assert not out.exists()


def test_open_classes_by_a_repeated_name_does_not_pick_one_of_two(c10, tmp_path, capsys):
    _with_names(c10, {4: b"cat"})
    out = tmp_path / "splits"
    code = main(["split", "--dataset", "cifar10", "--root", str(c10), "--out", str(out), "--n-max", "10",
                 "--imbalance-factor", "5", "--val-per-class", "0", "--open-classes", "cat"])
    err = capsys.readouterr().err
    assert code == 2 and "class name 4 'cat' repeats class name 3" in err and not out.exists()


def test_names_written_as_str_and_by_newer_protocols_still_read(c10):
    _with_names(c10, {3: "café", 4: "über"}, protocol=4)
    assert cifar.class_names("cifar10", c10)[3:5] == ["café", "über"]
    _with_names(c10, {3: "café".encode()}, protocol=0)
    assert cifar.class_names("cifar10", c10)[3] == "café"


def test_an_empty_name_in_a_protocol_2_pickle_is_read_as_empty_text_not_refused_as_code(c10):
    raw = _meta(_with_names(c10, {2: b""})).read_bytes()
    assert b"__builtin__\nbytes" in raw  # how Python 3 writes b'' at protocol 2
    with pytest.raises(DataError, match=r"class name 2 is empty"):
        cifar.class_names("cifar10", c10)


class _HugeBytes:
    def __reduce__(self):
        return (bytes, (10**12,))


def test_bytes_with_arguments_stays_refused(tmp_path):
    bad = tmp_path / "batches.meta"
    bad.write_bytes(pickle.dumps({b"label_names": [_HugeBytes()]}, protocol=2))
    with pytest.raises(DataError, match=r"refusing to load builtins\.bytes with arguments"):
        cifar.read_batch(bad)


TRAIN = ["data.split.n_max=10", "data.split.imbalance_factor=5", "data.split.val_per_class=0", "train.epochs=1",
         "train.warmup_epochs=0", "train.batch_size=16", "data.workers=0", "--quiet"]


def test_train_drawing_its_own_split_names_the_meta_file(c10, tmp_path, capsys):
    _with_names(c10, {2: b"unknown"})
    runs = tmp_path / "runs"
    code = main(["train", "cifar10_lt/ce", f"data.root={c10}", f"out_dir={runs}", "name=u", *TRAIN])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err == (f"openlt train: error: CIFAR meta file {_meta(c10)}: class name 2 'unknown' cannot be a class "
                   f"name: 'unknown' (any case) is the name `openlt predict` gives an image rejected as unknown\n")
    assert not runs.exists()


def test_an_error_about_a_runs_own_split_never_names_the_staged_folder(c10, tmp_path, capsys):
    runs = tmp_path / "runs"
    code = main(["train", "cifar10_lt/ce", f"data.root={c10}", f"out_dir={runs}", "name=o",
                 "data.split.open_classes=2", *TRAIN])
    err = capsys.readouterr().err
    assert code == 2, err
    assert ".new-run" not in err and str(runs) not in err
    assert err.startswith(f"openlt train: error: open.txt of the split this run drew from data.root={c10} (not kept) "
                          f"is an open split, and eval.open_threshold=auto chooses the rejection threshold on a "
                          f"validation split, but val.txt of the split this run drew from data.root={c10} (not kept) "
                          f"does not exist: ")
    assert not runs.exists()


def test_a_split_of_an_older_openlt_with_such_a_name_gets_a_remedy_for_cifar(c10, tmp_path, capsys):
    out = tmp_path / "splits"
    assert main(["split", "--dataset", "cifar10", "--root", str(c10), "--out", str(out), "--n-max", "10",
                 "--imbalance-factor", "5", "--val-per-class", "0"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["class_names"][2] = "unknown"  # as an older openlt wrote it from such a meta file
    (out / "manifest.json").write_text(json.dumps(manifest))
    capsys.readouterr()
    code = main(["train", "cifar10_lt/ce", f"data.root={c10}", f"data.split_dir={out}",
                 f"out_dir={tmp_path / 'runs'}", *TRAIN])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "rename its folder" not in err
    assert err.startswith(f"openlt train: error: split manifest {out / 'manifest.json'}: class 'unknown' cannot be a "
                          f"class name: ")
    assert err.endswith("; the name comes from cifar10's meta file (label names): fix it there and rerun "
                        "`openlt split`\n")
