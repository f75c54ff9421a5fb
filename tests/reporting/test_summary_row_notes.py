"""Trial 16 item 5: what `openlt summary` says under a table of rows that differ: the "different data" note groups
the rows that share their data and names the difference (an absent split as absent, never `sha256 None`)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from summary_files import cli, write  # tests/helpers, on the path through conftest

# test_summary.py's metrics dict (the tests are no package)
_spec = importlib.util.spec_from_file_location("summary_tests_module", Path(__file__).with_name("test_summary.py"))
_summary_tests = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_summary_tests)
metrics = _summary_tests.metrics


def test_the_different_data_note_groups_rows_sharing_their_data(tmp_path, capsys):
    other = metrics("s3")
    other.update(class_names=["ant", "bee", "cat", "dog"], train_counts=[120, 50, 10, 5])
    for i, m in enumerate([metrics("s0"), metrics("s1"), metrics("s2"), other]):
        write(tmp_path, f"s{i}", m)
    for i, dataset in enumerate(("fashion-mnist",) * 3 + ("cifar10",)):
        (tmp_path / f"s{i}" / "config.yaml").write_text(f"data:\n  dataset: {dataset}\n")
    code, out, err = cli([f"A={tmp_path / 's0'}", f"B={tmp_path / 's1'}", f"D={tmp_path / 's3'}",
                          f"C={tmp_path / 's2'}"], capsys)
    assert code == 0, err
    assert ("note: the rows are on different data (A, B, C: fashion-mnist (3 classes); D: cifar10 (4 classes)): their "
            "numbers are not comparable") in out, out


def test_an_absent_split_is_said_absent_never_sha256_none(tmp_path, capsys):
    closed = metrics("s1")
    closed["split_files"].pop("open")
    a, b, c = (write(tmp_path, run, m) for run, m in (("s0", metrics("s0")), ("s1", closed), ("s2", metrics("s2"))))
    code, out, err = cli([f"A={b}", f"B={a}", f"C={c}"], capsys)
    assert code == 0 and "None" not in out, out
    assert ("note: the rows are on different data (different split files: A: no open split; B, C: open sha256 "
            "dddddddddddd): their numbers are not comparable") in out, out
