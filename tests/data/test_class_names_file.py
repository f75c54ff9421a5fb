"""A relative `data.class_names` names a file of the working directory, else one of the split folder
(data/build.py `_class_names`): when both exist with other contents it is refused, naming both (was: the working
directory's won without a word, though the split folder's was meant: trial 19)."""

from types import SimpleNamespace

import pytest

from openlt.data.build import _class_names
from openlt.errors import DataError


def cfg(value):
    return SimpleNamespace(data=SimpleNamespace(class_names=value))


@pytest.fixture
def folders(tmp_path, monkeypatch):
    work, split = tmp_path / "work", tmp_path / "split"
    work.mkdir()
    split.mkdir()
    monkeypatch.chdir(work)
    (split / "names.txt").write_text("ant\nbee\n")
    return work, split


def test_the_split_folders_file_alone(folders):
    assert _class_names(cfg("names.txt"), folders[1], 2) == ["ant", "bee"]


def test_the_working_directorys_file_alone_or_the_same(folders):
    work, split = folders
    (work / "names.txt").write_text("ant\nbee\n")  # the same contents: no doubt which
    assert _class_names(cfg("names.txt"), split, 2) == ["ant", "bee"]


def test_two_different_files_are_refused_naming_both(folders):
    work, split = folders
    (work / "names.txt").write_text("cat\ndog\n")
    with pytest.raises(DataError) as err:
        _class_names(cfg("names.txt"), split, 2)
    assert "names two different files" in str(err.value) and str(work / "names.txt") in str(err.value)
    assert str(split / "names.txt") in str(err.value)
    assert _class_names(cfg(str(work / "names.txt")), split, 2) == ["cat", "dog"]  # a path: that file
