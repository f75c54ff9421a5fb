"""io.read_jsonl: the JSON-lines reader of metrics.jsonl (and the feature caches' logs)."""

from __future__ import annotations

import pytest

from openlt.io import read_jsonl


def test_a_byte_order_mark_and_crlf_are_read(tmp_path):
    """A metrics.jsonl saved by an editor with a UTF-8 BOM (was: line 1 "not a line of the per-epoch log", so the
    under-training check could not read it; helper trial, session 22) or CRLF line ends: the same records."""
    path = tmp_path / "metrics.jsonl"
    for data in (b'\xef\xbb\xbf{"epoch": 1}\n{"epoch": 2}\n', b'{"epoch": 1}\r\n{"epoch": 2}\r\n'):
        path.write_bytes(data)
        assert read_jsonl(path, "per-epoch log", ValueError) == ([{"epoch": 1}, {"epoch": 2}], None)


def test_a_bad_line_names_the_file_and_line_and_a_torn_last_line_is_dropped(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_bytes(b'{"epoch": 1}\n{garbage\n{"epoch": 3}\n')
    with pytest.raises(ValueError, match=r"metrics.jsonl, line 2: not a line of the per-epoch log"):
        read_jsonl(path, "per-epoch log", ValueError)
    path.write_bytes(b'{"epoch": 1}\n{"epo')
    records, note = read_jsonl(path, "per-epoch log", ValueError)
    assert records == [{"epoch": 1}] and "line 2: dropped a torn last line" in note
