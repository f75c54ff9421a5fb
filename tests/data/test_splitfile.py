"""data/splitfile.py's messages for the usual slips of a split file a user writes (session 27): a CSV-style header
line, commas between the columns, a negative label other than -1."""

import re

import pytest

from openlt.data.splitfile import read_split_file
from openlt.errors import DataError

HEADER = re.escape("(a header line? these files have none: remove it or make it a '#' comment)")


@pytest.mark.parametrize("text, kwargs, message", [
    ("path label\na.png 0\n", {}, f"line 1: label 'label' is not an integer {HEADER}"),
    ("# made by hand\n\nimage class\na.png 0\n", {}, f"line 3: label 'class' is not an integer {HEADER}"),
    ("a.png,0\n", {}, "line 1: expected 'relative/path label', got 'a.png,0'; the columns are separated by "
                      "whitespace, not commas"),
    ("a.png, 0\n", {}, "line 1: 'a.png, 0': the columns are separated by whitespace, not commas"),
    ("a.png 0\nb.png x\n", {}, "line 2: label 'x' is not an integer$"),  # not the first entry: no header hint
    ("a.png 0\nb.png 1.0\n", {}, "line 2: label '1.0' is not an integer$"),
    ("a.png -2\n", {"allow_open": True}, r"line 1: label -2 is negative \(-1 alone marks an image of no known class\)"),
    ("a.png -1\n", {}, r"line 1: label -1 is negative \(only the open split may use -1\)"),
    ("a.png 5\n", {"num_classes": 3}, r"line 1: label 5 is out of range for 3 classes \(0..2\)$"),
])
def test_a_slip_is_named_with_its_line_and_what_to_do(tmp_path, text, kwargs, message):
    path = tmp_path / "split.txt"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DataError, match=message):
        read_split_file(path, **kwargs)


def test_a_well_formed_file_reads_with_its_line_numbers(tmp_path):
    path = tmp_path / "split.txt"
    path.write_text("# a comment\na b.png 0\n\nc.png -1\n", encoding="utf-8")
    entries = read_split_file(path, allow_open=True)
    assert (entries.items, entries.labels, entries.lines) == (["a b.png", "c.png"], [0, -1], [2, 4])
