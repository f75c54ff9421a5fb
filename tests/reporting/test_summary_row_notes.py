"""Trial 16 items 4 and 5: what `openlt summary` says under a table of rows that differ. Rows evaluated under
different shot-band rules (whose many / medium / few columns mean other things) get a note naming each row's rule,
and rows sharing one rule get that rule under the table; the "different data" note groups the rows that share their
data and names the difference (an absent split as absent, never `sha256 None`)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from summary_files import cli, write  # tests/helpers, on the path through conftest

# test_summary.py's metrics dict (the tests are no package)
_spec = importlib.util.spec_from_file_location("summary_tests_module", Path(__file__).with_name("test_summary.py"))
_summary_tests = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_summary_tests)
metrics = _summary_tests.metrics
RULE = "many > 100, medium 20-100, few < 20"  # test_summary.metrics's
OTHER_RULE = "many > 60, medium 11-60, few < 11"  # the same classes (120, 50, 10 images) in the same bands


def _other_bands(run: str) -> dict:
    m = metrics(run, few=0.3)
    m["bands"].update(rule=OTHER_RULE, many_above=60, few_below=11)
    return m


def test_rows_under_different_band_rules_get_a_note_naming_each_rule(tmp_path, capsys):
    a, b, c = (write(tmp_path, run, m) for run, m in (("s0", metrics("s0")), ("s1", _other_bands("s1")),
                                                       ("s2", metrics("s2"))))
    code, out, err = cli([f"a={a}", f"b={b}", f"c={c}"], capsys)
    assert code == 0, err
    assert (f"note: the rows use different shot-band rules (a, c: {RULE}; b: {OTHER_RULE}): their many / medium / few "
            f"columns are not comparable") in out, out
    assert "shot bands (every row)" not in out, out


def test_rows_sharing_a_band_rule_have_it_under_the_table(tmp_path, capsys):
    a, b = write(tmp_path, "s0", metrics("s0")), write(tmp_path, "s1", metrics("s1"))
    code, out, err = cli([f"a={a}", f"b={b}"], capsys)
    assert code == 0 and f"shot bands (every row): {RULE}" in out and "different shot-band" not in out, (out, err)


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
