"""A CIFAR meta file's class name that mixes Latin letters with look-alike letters of another script inside one
word ('сat', its first letter Cyrillic) gets the warning an image folder's class folder gets (issue 14: one
function, datasets.warn_mixed_scripts): one line naming the meta file, the name, the letter and its code points,
once per process; the names are read as they are (a warning, not a refusal); a name of one other script alone
('Москва') or accented Latin is not warned about."""

from __future__ import annotations

import logging
import pickle
from pathlib import Path

import pytest
from fake_cifar import write_cifar10

from openlt.cli import main
from openlt.data import cifar

NAMES = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
CYR_C = "\u0441"  # Cyrillic small es: looks like Latin 'c'


def _meta(root: Path) -> Path:
    return root / "cifar-10-batches-py" / "batches.meta"


def _with_names(root: Path, changes: dict[int, bytes]) -> Path:
    names = [changes.get(i, n) for i, n in enumerate(NAMES)]
    with open(_meta(root), "wb") as fh:
        pickle.dump({b"num_cases_per_batch": 20, b"label_names": names, b"num_vis": 3072}, fh, protocol=2)
    return root


@pytest.fixture
def c10(tmp_path):
    return write_cifar10(tmp_path / "data", per_class=12, test_per_class=2)


def _warning(meta: Path, name: str, letters: str, code_points: str) -> str:
    return (f"CIFAR meta file {meta}: the class name {name!r} mixes Latin letters with letters of another script "
            f"that look like Latin ones inside one word ({letters}; code points {code_points}); rename it if that is "
            f"a slip")


def test_a_mixed_script_name_is_warned_about_once_naming_the_meta_file(c10, caplog):
    _with_names(c10, {3: f"{CYR_C}at".encode()})
    with caplog.at_level(logging.WARNING, logger="openlt"):
        assert cifar.class_names("cifar10", c10)[3] == f"{CYR_C}at"  # read as it is
        cifar.class_names("cifar10", c10)
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warned == [_warning(_meta(c10), f"{CYR_C}at", f"Cyrillic '{CYR_C}' U+0441 looks like 'c'", "'\\u0441at'")]


def test_greek_inside_a_latin_word_and_two_words_are_named(c10, caplog):
    _with_names(c10, {5: "d\u03bfg".encode(), 7: f"sea {CYR_C}\u0430t horse".encode()})  # Greek omicron, Cyrillic a
    with caplog.at_level(logging.WARNING, logger="openlt"):
        cifar.class_names("cifar10", c10)
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warned == [_warning(_meta(c10), "d\u03bfg", "Greek '\u03bf' U+03BF looks like 'o'", "'d\\u03bfg'"),
                      _warning(_meta(c10), f"sea {CYR_C}\u0430t horse",
                               f"Cyrillic '{CYR_C}' U+0441 looks like 'c', Cyrillic '\u0430' U+0430 looks like 'a'",
                               "'sea \\u0441\\u0430t horse'")]


def test_names_of_one_other_script_and_accented_latin_are_not_warned_about(c10, caplog):
    _with_names(c10, {2: "\u041c\u043e\u0441\u043a\u0432\u0430".encode(), 4: "caf\xe9".encode(), 6: "\u03b1\u03b2".encode()})
    with caplog.at_level(logging.WARNING, logger="openlt"):
        cifar.class_names("cifar10", c10)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_openlt_split_prints_the_warning_once_and_writes_the_split(c10, tmp_path, capsys):
    _with_names(c10, {3: f"{CYR_C}at".encode()})
    out = tmp_path / "splits"
    code = main(["split", "--dataset", "cifar10", "--root", str(c10), "--out", str(out), "--n-max", "10",
                 "--imbalance-factor", "5", "--val-per-class", "0"])
    err = capsys.readouterr().err
    assert code == 0, err
    expected = _warning(_meta(c10), f"{CYR_C}at", f"Cyrillic '{CYR_C}' U+0441 looks like 'c'", "'\\u0441at'")
    assert err.count("warning") == 1 and f"openlt: warning: {expected}\n" in err
    assert (out / "train.txt").is_file()
