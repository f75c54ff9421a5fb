"""summary.load_metrics reads a run's split_manifest.json once: the class list it checks and the packed data files
the tables compare (summary._check_packed_data, folders_of) come from that one read, however many times the runs
are aggregated (a bench report aggregates its groups once per table and figure)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from openlt.errors import RunDirError
from openlt.reporting.summary import aggregate, load_metrics, packed_data_files, summarize

# test_summary.py's metrics dict and its runs on image folders with recorded data files (the tests are no package)
_spec = importlib.util.spec_from_file_location("summary_tests_module", Path(__file__).with_name("test_summary.py"))
_summary_tests = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_summary_tests)


@pytest.fixture
def manifest_reads(monkeypatch) -> list[str]:
    """The split_manifest.json files read (Path.read_text), in order."""
    reads, read_text = [], Path.read_text

    def counting(self, *args, **kwargs):
        if self.name == "split_manifest.json":
            reads.append(str(self))
        return read_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", counting)
    return reads


def test_each_manifest_is_read_once_however_often_the_runs_are_aggregated(tmp_path, manifest_reads):
    same = {"train-images.gz": "1" * 64}
    paths = [_summary_tests._on(f"/copy{i}", f"p{i}", tmp_path, same) for i in range(2)]
    runs = [load_metrics(p) for p in paths]
    assert manifest_reads == [str(p.parent / "split_manifest.json") for p in paths]
    for _ in range(3):
        assert aggregate({"F": runs})[0]["folders"] is None  # the same data files in other folders: no note
    assert "different image folders" not in summarize({"F": runs})
    assert [packed_data_files(m) for m in runs] == [{"data.root": same}] * 2
    assert len(manifest_reads) == 2


def test_other_data_files_are_refused_from_the_manifests_read_at_load(tmp_path, manifest_reads):
    first = load_metrics(_summary_tests._on("/a", "s0", tmp_path, {"x.gz": "1" * 64}))
    other = load_metrics(_summary_tests._on("/b", "s1", tmp_path, {"x.gz": "2" * 64}))
    with pytest.raises(RunDirError, match=r"data\.root: split_manifest\.json data_files differ"):
        aggregate({"F": [first, other]})
    assert len(manifest_reads) == 2
    lone = load_metrics(_summary_tests._on("/c", "s2", tmp_path))  # no manifest: nothing recorded, nothing read
    assert packed_data_files(lone) is None and len(manifest_reads) == 2


@pytest.mark.parametrize("text", ["[1, 2]", "{not json", '{"class_names": "ant", "data_files": {"data.root": 3}}'])
def test_a_manifest_that_is_no_object_or_no_json_is_not_compared(tmp_path, text):
    path = _summary_tests._on("/a", "s0", tmp_path)
    (path.parent / "split_manifest.json").write_text(text)
    assert packed_data_files(load_metrics(path)) is None
