"""engine/identify_request.py: what `openlt identify` is asked to measure, checked from its options alone."""

import os
import subprocess
import sys

import pytest

from openlt.engine.identify_request import check_identify_options, check_list_file, check_list_files
from openlt.errors import ConfigError, DataError


def test_a_complete_request_passes(tmp_path):
    check_identify_options("p.txt", None, None, None, 1)
    check_identify_options(None, None, None, "pairs.txt", 65536)
    check_identify_options("p.txt", "g.txt", "d.txt", "pairs.txt", 8, str(tmp_path), str(tmp_path))


@pytest.mark.parametrize("args, error, message", [
    ((None, None, None, None, 8), ConfigError, r"give a probe list \(--probe\) and/or a pairs file \(--pairs\)"),
    ((None, "g.txt", None, "pairs.txt", 8), ConfigError, r"^--gallery needs a probe list \(--probe\): it adds"),
    ((None, None, "d.txt", "pairs.txt", 8), ConfigError, r"^--distractors needs a probe list"),
    ((None, "g.txt", "d.txt", "pairs.txt", 8), ConfigError, "^--gallery and --distractors need a probe list"),
    (("p.txt", None, None, None, 8, None, None, 0), ConfigError, r"--many-above must be >= 1 .*got 0"),
    (("p.txt", None, None, None, 8, ""), ConfigError, r"--root is an empty string \(an unset shell variable\?\)"),
    (("p.txt", None, "d.txt", None, 8, None, " "), ConfigError, r"--distractor-root is blank \(' '\) \(an unset"),
    (("", None, None, None, 8), ConfigError, "--probe is an empty string"),
    ((None, None, None, "", 8), ConfigError, "--pairs is an empty string"),
    (("p.txt", None, None, None, 8, None, "."), ConfigError, "--distractor-root .* needs --distractors"),
    (("p.txt", None, None, None, 0), ConfigError, "--chunk-size must be >= 1, got 0"),
    (("p.txt", None, None, None, 8, "/no/such/folder"), DataError, "--root /no/such/folder: no such folder"),
    (("p.txt", None, "d.txt", None, 8, None, "/no/such"), DataError, "--distractor-root /no/such: no such folder"),
])
def test_an_incomplete_or_impossible_request_is_refused_naming_the_option(args, error, message):
    with pytest.raises(error, match=message):
        check_identify_options(*args)


def test_a_file_given_as_root_is_no_folder(tmp_path):
    (tmp_path / "f").write_text("")
    with pytest.raises(DataError, match="--root .*: not a folder"):
        check_identify_options("p.txt", None, None, None, 8, str(tmp_path / "f"))


def test_a_path_behind_a_folder_it_may_not_enter_names_the_option(tmp_path, monkeypatch):
    """(Session 27, a fresh helper as user nobody: `[Errno 13] Permission denied: 'secret/p.txt'`.)"""
    def refuse(path, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(os, "stat", refuse)
    with pytest.raises(DataError, match=r"^--probe secret/p.txt: cannot be reached \(permission denied"):
        check_list_file("probe", "secret/p.txt")
    with pytest.raises(DataError, match=r"^--root secret/sub: cannot be reached \(permission denied"):
        check_identify_options("p.txt", None, None, None, 8, "secret/sub")


def test_a_list_file_given_with_a_trailing_slash_is_no_file(tmp_path):
    (tmp_path / "p.txt").write_text("a.png 0\n")
    with pytest.raises(DataError, match=r"--pairs .*p\.txt/: no such file \(the pairs file\)"):
        check_list_file("pairs", f"{tmp_path / 'p.txt'}/")


def test_a_folder_given_as_the_distractors_list_points_to_the_distractor_root(tmp_path):
    with pytest.raises(DataError, match="the folder its paths are relative to is --distractor-root$"):
        check_list_file("distractors", tmp_path)


def test_a_list_file_is_returned_when_it_is_a_readable_file(tmp_path):
    (tmp_path / "p.txt").write_text("a.png 0\n")
    assert check_list_file("probe", str(tmp_path / "p.txt")) == tmp_path / "p.txt"
    check_list_files({"probe": str(tmp_path / "p.txt"), "gallery": None, "distractors": None, "pairs": None})


@pytest.mark.parametrize("kind, make, message", [
    ("probe", lambda p: None, r"--probe .*p\.txt: no such file \(the probe list\)"),
    ("pairs", lambda p: p.mkdir(), r"--pairs .*: is a folder; --pairs takes a pairs file .*'path1 path2 same'"),
    ("gallery", lambda p: os.mkfifo(p), r"--gallery .*: not a regular file \(a pipe or a device\?\)"),
])
def test_a_list_file_that_is_missing_a_folder_or_a_pipe_is_refused_naming_the_option(tmp_path, kind, make, message):
    make(tmp_path / "p.txt")
    with pytest.raises(DataError, match=message):
        check_list_files({"probe": None, kind: str(tmp_path / "p.txt")})


def test_a_device_is_not_a_list_file():
    with pytest.raises(DataError, match="--distractors /dev/null: not a regular file"):
        check_list_file("distractors", "/dev/null")


def test_an_unreadable_list_file_is_refused(tmp_path, monkeypatch):
    (tmp_path / "p.txt").write_text("a.png 0\n")
    monkeypatch.setattr(os, "access", lambda path, mode: False)  # as chmod 000 for a user other than root
    with pytest.raises(DataError, match="--probe .*: cannot be read"):
        check_list_file("probe", tmp_path / "p.txt")


def test_importing_it_loads_nothing_heavy():
    code = ("import sys, openlt.engine.identify_request; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'numpy', 'PIL', 'sklearn'}))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "[]"
