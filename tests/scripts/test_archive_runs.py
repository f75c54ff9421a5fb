"""scripts/archive_runs.py: the small record files of evaluated runs copied out of a bench folder."""

import json
from pathlib import Path

import pytest
from script_loader import load_script  # tests/helpers


@pytest.fixture(scope="module")
def archive_module():
    return load_script("archive_runs")


def _run(folder: Path, name: str, evaluated: bool = True) -> Path:
    run = folder / name
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "best.safetensors").write_bytes(b"weights")
    (run / "config.yaml").write_text("train: {epochs: 4}\n", encoding="utf-8")
    (run / "metrics.jsonl").write_text(json.dumps({"epoch": 1}) + "\n", encoding="utf-8")
    (run / "predictions.npz").write_bytes(b"big")
    if evaluated:
        (run / "metrics.json").write_text(json.dumps({"closed": {"overall": 0.5}}), encoding="utf-8")
        (run / "report.html").write_text("<html>", encoding="utf-8")
    return run


def test_copies_the_records_of_evaluated_runs_only(tmp_path, archive_module, capsys):
    source, dest = tmp_path / "runs", tmp_path / "results" / "study"
    _run(source, "plain_e4-s0-20261201-100000")
    _run(source, "plain_e4-s1-20261201-100001", evaluated=False)  # still training: left out
    (source / ".plain.bench.lock").write_text("1 on host", encoding="utf-8")
    assert archive_module.main([str(source), str(dest)]) == 0
    assert sorted(p.name for p in dest.iterdir()) == ["plain_e4-s0-20261201-100000"]
    kept = sorted(p.name for p in (dest / "plain_e4-s0-20261201-100000").iterdir())
    assert kept == [".archived", "config.yaml", "metrics.json", "metrics.jsonl"]  # no weights, predictions or report
    assert capsys.readouterr().out.strip() == str(dest / "plain_e4-s0-20261201-100000")


def test_a_second_archive_overwrites_a_re_evaluated_run(tmp_path, archive_module):
    source, dest = tmp_path / "runs", tmp_path / "kept"
    run = _run(source, "crt_e4-s0-20261201-100000")
    archive_module.archive(source, dest)
    (run / "metrics.json").write_text(json.dumps({"closed": {"overall": 0.7}}), encoding="utf-8")
    assert archive_module.archive(source, dest) == ["crt_e4-s0-20261201-100000"]
    assert json.loads((dest / run.name / "metrics.json").read_text())["closed"]["overall"] == 0.7


def test_refuses_a_destination_inside_the_source_or_a_missing_source(tmp_path, archive_module, capsys):
    source = tmp_path / "runs"
    run = _run(source, "plain_e4-s0-20261201-100000")
    assert archive_module.main([str(source), str(run / "sub")]) == 2
    assert "or inside it: give a folder of its own" in capsys.readouterr().err
    assert archive_module.main([str(source), str(source / "sub")]) == 2  # beside the runs (helper trial, session 28)
    assert archive_module.main([str(source), str(source)]) == 2
    assert archive_module.main([str(tmp_path / "nope"), str(tmp_path / "out")]) == 2
    assert "is not a folder" in capsys.readouterr().err
    assert not (run / "sub").exists() and not (source / "sub").exists()


def test_a_destination_that_holds_other_things_is_refused_before_anything_is_copied(tmp_path, archive_module,
                                                                                       capsys):
    """(Helper trial, session 28: archiving into an image folder put run folders among its classes, and the next
    `openlt split --root` failed on them.)"""
    source, images = tmp_path / "runs", tmp_path / "images"
    _run(source, "plain_e4-s0-20261201-100000")
    for name in ("ant", "bee", "cat", "dog"):
        (images / name).mkdir(parents=True)
        (images / name / "0.png").write_bytes(b"png")
    assert archive_module.main([str(source), str(images)]) == 2
    assert (f"{images} holds what is no archived run (ant, bee, cat and 1 more): give a new folder or an earlier "
            f"archive") in capsys.readouterr().err
    assert sorted(p.name for p in images.iterdir()) == ["ant", "bee", "cat", "dog"]
    kept = tmp_path / "kept"  # an earlier archive (and a hidden file) is fine
    assert archive_module.main([str(source), str(kept)]) == 0
    (kept / ".DS_Store").write_bytes(b"")
    _run(source, "crt_e4-s0-20261201-100000")
    assert archive_module.main([str(source), str(kept)]) == 0
    assert sorted(p.name for p in kept.iterdir()) == [".DS_Store", "crt_e4-s0-20261201-100000",
                                                      "plain_e4-s0-20261201-100000"]


def test_says_so_when_nothing_is_evaluated(tmp_path, archive_module, capsys):
    _run(tmp_path / "runs", "plain_e4-s0-20261201-100000", evaluated=False)
    assert archive_module.main([str(tmp_path / "runs"), str(tmp_path / "out")]) == 0
    assert "no evaluated run" in capsys.readouterr().err


def test_a_second_archive_mirrors_the_runs_record_files(tmp_path, archive_module):
    """Trial 24 D2: a record file the run no longer has (a removed calibration, a renamed metrics-TAG.json) does
    not linger in DEST/RUN; a file that is no record (a note of one's own) is left."""
    source, dest = tmp_path / "runs", tmp_path / "kept"
    run = _run(source, "crt_e4-s0-20261201-100000")
    (run / "metrics-crt-old.json").write_text("{}", encoding="utf-8")
    archive_module.archive(source, dest)
    (dest / run.name / "NOTES.txt").write_text("mine", encoding="utf-8")
    (dest / run.name / "notes.yaml").write_text("mine too", encoding="utf-8")  # a record's suffix, not archived
    (run / "metrics-crt-old.json").rename(run / "metrics-crt-new.json")
    archive_module.archive(source, dest)
    assert sorted(p.name for p in (dest / run.name).iterdir()) == [
        ".archived", "NOTES.txt", "config.yaml", "metrics-crt-new.json", "metrics.json", "metrics.jsonl", "notes.yaml"]


def test_a_file_in_the_way_is_named_before_anything_is_copied(tmp_path, archive_module, capsys):
    """Trial 24 D3: DEST/RUN a file stopped the archive half-way, with the runs copied before it not listed."""
    source, dest = tmp_path / "runs", tmp_path / "kept"
    _run(source, "crt_e4-s0-20261201-100000")
    _run(source, "plain_e4-s0-20261201-100000")
    dest.mkdir()
    (dest / "plain_e4-s0-20261201-100000").write_text("", encoding="utf-8")
    assert archive_module.main([str(source), str(dest)]) == 2
    assert "plain_e4-s0-20261201-100000 is a file, not a run folder" in capsys.readouterr().err
    assert sorted(p.name for p in dest.iterdir()) == ["plain_e4-s0-20261201-100000"]  # nothing copied


def test_a_link_to_the_archived_copy_is_skipped_and_the_rest_copied(tmp_path, archive_module, capsys):
    """Trial 24 D4: SRC/RUN a symlink to DEST/RUN ("are the same file") stopped the archive."""
    source, dest = tmp_path / "runs", tmp_path / "kept"
    archived = _run(dest, "crt_e4-s0-20261201-100000")
    source.mkdir()
    (source / archived.name).symlink_to(archived)
    _run(source, "ncm_e4-s0-20261201-100000")
    assert archive_module.main([str(source), str(dest)]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == str(dest.resolve() / "ncm_e4-s0-20261201-100000")
    assert f"{archived.name} is {dest.resolve() / archived.name} itself" in err
    assert (archived / "checkpoints" / "best.safetensors").is_file()  # the copy's own files untouched


def test_a_run_given_as_the_source_is_refused_with_its_parent_named(tmp_path, archive_module, capsys):
    run = _run(tmp_path / "runs", "crt_e4-s0-20261201-100000")
    assert archive_module.main([str(run), str(tmp_path / "kept")]) == 2
    assert f"is a run itself (it holds metrics.json): give the folder of runs it is in, e.g. {run.parent.resolve()}" \
        in capsys.readouterr().err
    assert not (tmp_path / "kept").exists()


@pytest.mark.parametrize("case, says", [
    ("link-elsewhere", "is a link (to "), ("dangling-link", "is a link (to "),
    ("folder-for-a-record", "metrics.json is a folder, where the record file goes"),
    ("link-for-a-record", "config.yaml is a link, where the record file goes"),
])
def test_whatever_is_in_the_way_is_refused_before_anything_is_copied(tmp_path, archive_module, capsys, case, says):
    """Trial 24b: a DEST/RUN link to another folder was written through (its files overwritten, its .json deleted
    as stale); a dangling link or a folder where metrics.json goes stopped the archive half-way or hid the record."""
    source, dest = tmp_path / "runs", tmp_path / "kept"
    _run(source, "crt_e4-s0-20261201-100000")
    run = _run(source, "plain_e4-s0-20261201-100000")
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "metrics-keep.json").write_text("{}", encoding="utf-8")
    target = dest / run.name
    dest.mkdir()
    if case == "link-elsewhere":
        target.symlink_to(victim)
    elif case == "dangling-link":
        target.symlink_to(tmp_path / "nowhere")
    elif case == "folder-for-a-record":
        (target / "metrics.json").mkdir(parents=True)
    else:
        target.mkdir()
        (target / "config.yaml").symlink_to(victim / "metrics-keep.json")
    assert archive_module.main([str(source), str(dest)]) == 2
    err = capsys.readouterr().err
    assert says in err and "nothing was copied" in err, err
    assert not (dest / "crt_e4-s0-20261201-100000").exists()
    assert sorted(p.name for p in victim.iterdir()) == ["metrics-keep.json"]
    assert (victim / "metrics-keep.json").read_text(encoding="utf-8") == "{}"


@pytest.mark.parametrize("what", ["metrics.json", "folder"])
def test_a_record_that_cannot_be_overwritten_is_named_before_anything_is_copied(tmp_path, archive_module, capsys,
                                                                                 monkeypatch, what):
    """Session 24's leftover: an immutable (chattr +i) DEST/RUN/metrics.json stopped the archive half-way, the runs
    before it copied. os.access is what tells (root passes mode bits; an immutable file or a read-only mount does
    not), patched here to say no for one path."""
    import os

    source, dest = tmp_path / "runs", tmp_path / "kept"
    _run(source, "crt_e4-s0-20261201-100000")
    run = _run(source, "plain_e4-s0-20261201-100000")
    archive_module.main([str(source), str(dest)])
    (dest / "crt_e4-s0-20261201-100000" / "metrics.json").write_text("{}", encoding="utf-8")
    locked = dest / run.name / ("metrics.json" if what == "metrics.json" else "")
    real_access = os.access
    monkeypatch.setattr(archive_module.os, "access",
                        lambda path, mode: False if Path(path) == locked else real_access(path, mode))
    capsys.readouterr()
    assert archive_module.main([str(source), str(dest)]) == 2
    err = capsys.readouterr().err
    assert f"{locked.resolve() if what == 'folder' else locked}" in err and "(permission)" in err, err
    assert "nothing was copied" in err
    assert (dest / "crt_e4-s0-20261201-100000" / "metrics.json").read_text(encoding="utf-8") == "{}"  # not yet copied


def test_a_run_whose_metrics_json_is_a_folder_is_left_out_with_a_note(tmp_path, archive_module, capsys):
    source, dest = tmp_path / "runs", tmp_path / "kept"
    odd = _run(source, "crt_e4-s0-20261201-100000", evaluated=False)
    (odd / "metrics.json").mkdir()
    _run(source, "ncm_e4-s0-20261201-100000")
    assert archive_module.main([str(source), str(dest)]) == 0
    assert f"{odd.resolve() / 'metrics.json'} is not a file: {odd.name} left out" in capsys.readouterr().err
    assert sorted(p.name for p in dest.iterdir()) == ["ncm_e4-s0-20261201-100000"]
