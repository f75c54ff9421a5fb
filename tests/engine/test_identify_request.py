"""engine/identify_request.py: what `openlt identify` is asked to measure, checked from its options alone."""

import subprocess
import sys

import pytest

from openlt.engine.identify_request import check_identify_options
from openlt.errors import ConfigError, DataError


def test_a_complete_request_passes(tmp_path):
    check_identify_options("p.txt", None, None, None, 1)
    check_identify_options(None, None, None, "pairs.txt", 65536)
    check_identify_options("p.txt", "g.txt", "d.txt", "pairs.txt", 8, str(tmp_path), str(tmp_path))


@pytest.mark.parametrize("args, error, message", [
    ((None, None, None, None, 8), ConfigError, r"give a probe list \(--probe\) and/or a pairs file \(--pairs\)"),
    ((None, "g.txt", None, "pairs.txt", 8), ConfigError, "--gallery and --distractors need a probe list"),
    ((None, None, "d.txt", "pairs.txt", 8), ConfigError, "--gallery and --distractors need a probe list"),
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
    with pytest.raises(DataError, match="--root .*: no such folder"):
        check_identify_options("p.txt", None, None, None, 8, str(tmp_path / "f"))


def test_importing_it_loads_nothing_heavy():
    code = ("import sys, openlt.engine.identify_request; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'numpy', 'PIL', 'sklearn'}))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "[]"
