"""trial 12 D1 / D2: a metrics.json of an older openlt records no "split_files"; `openlt summary` takes them from the
run's split_manifest.json (the sha256 of every split file), and says so in a note when neither records them (the run
stays usable). Across rows (the "different data" note) the same rule: an unknown record is neither the same nor
different, it is shown as unknown."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from openlt.reporting.summary import load_metrics, split_files
from summary_files import cli, write  # tests/helpers, on the path through conftest

# test_summary.py's metrics dict (the tests are no package)
_spec = importlib.util.spec_from_file_location("summary_tests_module", Path(__file__).with_name("test_summary.py"))
_summary_tests = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_summary_tests)
metrics, SHA = _summary_tests.metrics, _summary_tests.SHA
OTHER = {"train": "1" * 64, "val": "2" * 64, "test": "3" * 64, "open": "4" * 64}  # another split of the same classes


def older(tmp_path: Path, run: str, manifest: dict | None) -> Path:
    """An older run's metrics.json (no "split_files", no "data") with, unless None, a split_manifest.json recording
    the sha256 `manifest` of each split file."""
    m = metrics(run)
    del m["split_files"]
    path = write(tmp_path, run, m)
    if manifest is not None:
        files = {split: {"file": f"splits/{split}.txt", "sha256": h, "lines": 3} for split, h in manifest.items()}
        (path.parent / "split_manifest.json").write_text(json.dumps({"class_names": m["class_names"], "files": files}))
    return path


def test_an_older_metrics_file_is_compared_on_its_manifests_split_files(tmp_path, capsys):
    a = write(tmp_path, "s0", metrics("s0"))
    other = older(tmp_path, "s1", OTHER)
    assert split_files(load_metrics(other)) == OTHER
    code, out, err = cli([a, other], capsys)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1, err
    assert ("into one row 'runs': they were evaluated under different split files (open: sha256 dddddddddddd vs "
            "444444444444)") in err, err
    code, out, err = cli([other, a], capsys)  # whichever comes first
    assert code == 2 and "different split files (open: sha256 444444444444 vs dddddddddddd)" in err, err
    same = older(tmp_path, "s2", SHA)
    code, out, err = cli([a, same], capsys)
    assert code == 0 and "| runs | 2 |" in out and "note: split files unknown" not in out, (out, err)
    code, out, err = cli([f"x={a}", f"x={same}", f"y={other}"], capsys)  # trial 12 D1's x=A x=old/C y=C, now refused
    assert code == 0 and "different data" in out, (out, err)


def test_a_run_recording_its_split_files_nowhere_is_named_in_a_note_and_stays_usable(tmp_path, capsys):
    a = write(tmp_path, "s0", metrics("s0"))
    lost = older(tmp_path, "s1", None)
    assert split_files(load_metrics(lost)) is None
    code, out, err = cli([a, lost], capsys)
    assert code == 0 and "| runs | 2 |" in out, err
    assert out.strip().splitlines()[-1] == (
        f"note: split files unknown for {lost} (row runs): neither its metrics.json nor its run's split_manifest.json "
        f"records their sha256, so nothing shows it is on the same split files as the other runs (evaluate it again "
        f"with this openlt to record them)")
    code, out, err = cli([lost], capsys)  # one run alone: nothing to compare it with, no note
    assert code == 0 and "note: split files unknown" not in out, out


@pytest.mark.parametrize("text", ['{"files": {"train": {"file": "train.txt"}}}', '{"files": []}', "[1]"])
def test_a_manifest_without_usable_hashes_leaves_the_split_files_unknown(tmp_path, text):
    path = older(tmp_path, "s1", SHA)
    (path.parent / "split_manifest.json").write_text(text)
    assert split_files(load_metrics(path)) is None


def test_rows_with_an_unknown_record_are_not_called_different(tmp_path, capsys):
    """trial 12 D2: `a=A c=old/A2` said "different split files: a: train sha256 ..., c: train sha256 None"."""
    a = write(tmp_path, "s0", metrics("s0"))
    copy = older(tmp_path, "s1", SHA)  # the same split, recorded by the manifest only
    code, out, err = cli([f"a={a}", f"c={copy}"], capsys)
    assert code == 0 and "different data" not in out and "unknown" not in out, out
    lost = older(tmp_path, "s2", None)  # recorded nowhere: unknown, not different
    code, out, err = cli([f"a={a}", f"c={lost}"], capsys)
    assert code == 0 and "different data" not in out and "sha256 None" not in out, out
    assert f"note: split files unknown for {lost} (row c)" in out, out
    moved = metrics("s3")
    moved["split_files"]["train"] = "f" * 64
    d = write(tmp_path, "s3", moved)
    code, out, err = cli([f"a={a}", f"c={lost}", f"d={d}"], capsys)
    assert code == 0 and ("note: the rows are on different data (different split files: a: train sha256 "
                          "aaaaaaaaaaaa; c: split files unknown; d: train sha256 ffffffffffff): their numbers are not "
                          "comparable") in out, out


def test_the_different_data_note_names_the_split_that_differs(tmp_path, capsys):
    a = write(tmp_path, "s0", metrics("s0"))
    other = older(tmp_path, "s1", {**SHA, "test": "e" * 64})  # only the test split differs, read from the manifest
    code, out, err = cli([f"a={a}", f"b={other}"], capsys)
    assert code == 0 and ("different split files: a: test sha256 cccccccccccc; b: test sha256 eeeeeeeeeeee" in out), out
