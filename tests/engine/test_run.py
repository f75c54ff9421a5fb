"""The run directory's layout lives in `Run` alone: the names of every file, as the runs on disk have them."""

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from openlt.config import build_config
from openlt.engine.run import Run, new_run, open_run, publish_run, remove_stale_stages, staged_run
from openlt.errors import ConfigError, RunDirError
import forked_python  # tests/helpers


def test_every_path_of_a_run_directory(tmp_path):
    run = Run(tmp_path)
    names = {
        "config.yaml": run.config_file, "split_manifest.json": run.manifest_file, "metrics.jsonl": run.log_file,
        "tensorboard": run.tensorboard_dir, "calibration.json": run.calibration_file, "metrics.json": run.metrics_file,
        "report.md": run.report_file, "splits": run.splits_dir, "checkpoints": run.checkpoints_dir,
        "features": run.features_dir, "decouple.json": run.decouple_file, "tau_curve.png": run.tau_curve_file,
        "report.html": run.report_html_path(), "predictions.npz": run.predictions_path(),
        "open-score.safetensors": run.open_score_path(), "checkpoints/best.safetensors": run.checkpoint("best"),
        "features/val.safetensors": run.feature_cache("val"),
    }
    for name, path in names.items():
        assert path == tmp_path / name, name


def test_a_tag_names_the_files_of_an_extra_evaluation(tmp_path):
    run = Run(tmp_path)
    assert [p.name for p in (run.metrics_path("energy"), run.report_path("energy"), run.report_html_path("energy"),
                             run.predictions_path("energy"), run.open_score_path("energy"))] == [
        "metrics-energy.json", "report-energy.md", "report-energy.html", "predictions-energy.npz",
        "open-score-energy.safetensors"]
    assert run.metrics_path(None) == run.metrics_file and run.report_path(None) == run.report_file


def test_new_and_open_run(tmp_path):
    cfg = build_config(None, [f"out_dir={tmp_path}"])
    run = new_run(cfg, "x")
    assert run.checkpoints_dir.is_dir() and run.path.parent == tmp_path and run.path.name.startswith("x-")
    with pytest.raises(RunDirError, match="no config.yaml"):
        open_run(run.path)
    run.write_config(cfg)
    assert open_run(run.path) == run and open_run(str(run.path)).config().out_dir == str(tmp_path)
    with pytest.raises(RunDirError, match="not found"):
        open_run(Path(tmp_path) / "missing")


def test_a_folder_of_runs_is_named_as_one(tmp_path):
    """A bench's out_dir given as a run (`openlt report runs/table`): one of its runs is named, and the commands for
    a table of them (was: "not an openlt run directory (no config.yaml)" alone)."""
    cfg = build_config(None, [f"out_dir={tmp_path}"])
    new_run(cfg, "b").write_config(cfg)
    first = new_run(cfg, "a")
    first.write_config(cfg)
    with pytest.raises(RunDirError, match=re.escape(f"{tmp_path} is a folder of runs, not a run directory (no "
                                                    f"config.yaml of its own): give one of its runs (e.g. "
                                                    f"{first.path})")) as caught:
        open_run(tmp_path)
    assert "openlt bench SPEC --report-only" in str(caught.value) and "openlt summary" in str(caught.value)


def test_a_folder_of_bench_folders_is_named_as_one(tmp_path):
    """A folder of bench out_dirs given as a run (`openlt report runs`, runs/ holding runs/table/...): a run one
    level further down is named, and the table of its folder (was: "not an openlt run directory" alone); a run
    directly in the folder is named before one further down, and a folder without any run is not one."""
    (tmp_path / "empty" / "inner").mkdir(parents=True)
    with pytest.raises(RunDirError, match="is not an openlt run directory"):
        open_run(tmp_path / "empty")
    cfg = build_config(None, [f"out_dir={tmp_path / 'runs' / 'table'}"])
    run = new_run(cfg, "a")
    run.write_config(cfg)
    (tmp_path / "runs" / "aaa-notes").mkdir()
    with pytest.raises(RunDirError, match=re.escape(f"give one of its runs (e.g. {run.path}); a table of them: "
                                                    f"`openlt summary {tmp_path / 'runs' / 'table' / '*'}`")):
        open_run(tmp_path / "runs")
    cfg = build_config(None, [f"out_dir={tmp_path / 'runs'}"])
    near = new_run(cfg, "z")
    near.write_config(cfg)
    with pytest.raises(RunDirError, match=re.escape(f"(e.g. {near.path})")):
        open_run(tmp_path / "runs")


# ------------------------------------------------------------------ metrics.jsonl: torn last line, malformed lines
LINES = ['{"epoch": 1, "train_loss": 1.5}', '{"epoch": 2, "train_loss": 1.2}']


@pytest.mark.parametrize("torn", [b'{"epoch": 3, "train_lo', b'{"epoch": 3, "train_loss": 1.', b"\0\0\0\0\n",
                                  '{"epoch": 3, "é'.encode()[:-1], b'{"epoch": 3, "train_loss": 1.\n'])
def test_a_torn_last_log_line_is_dropped_with_a_note(tmp_path, torn):
    """Cut short (with or without its newline), zero-filled (a crash of the file system), cut in a character."""
    run = Run(tmp_path)
    run.log_file.write_bytes(("\n".join(LINES) + "\n").encode() + torn)
    records, note = run.read_log()
    assert [r["epoch"] for r in records] == [1, 2] and run.epochs_logged() == records
    assert note and "line 3" in note and "torn" in note and str(run.log_file) in note


@pytest.mark.parametrize("bad, found", [
    ('{"epoch": 1, "train_lo', "line 1: not a line of the per-epoch log"),  # torn, but not the last line
    ("[1, 2]", "line 1: not a line of the per-epoch log (a JSON list"),
    ("\xff\xfe{}", "line 1: not a line of the per-epoch log"),  # not UTF-8
    ('{"train_loss": 1.0}', "record 1 has no positive integer 'epoch'"),
    ('{"epoch": "1"}', "record 1 has no positive integer 'epoch'"),
    ('{"epoch": 0}', "record 1 has no positive integer 'epoch'"),
])
def test_a_malformed_log_line_before_the_last_is_an_error_naming_file_and_line(tmp_path, bad, found):
    run = Run(tmp_path)
    data = (bad + "\n" + "\n".join(LINES) + "\n").encode("latin-1")
    run.log_file.write_bytes(data)
    with pytest.raises(RunDirError, match=re.escape(found)) as err:
        run.epochs_logged()
    assert str(run.log_file) in str(err.value) and "\n" not in str(err.value)
    assert run.log_file.read_bytes() == data  # nothing rewritten


def test_a_log_with_blank_lines_and_crlf_reads_whole(tmp_path):
    run = Run(tmp_path)
    run.log_file.write_text(LINES[0] + "\r\n\r\n" + LINES[1] + "\r\n")
    assert run.read_log() == ([{"epoch": 1, "train_loss": 1.5}, {"epoch": 2, "train_loss": 1.2}], None)


# ------------------------------------------------------------------ the lock, staged runs, run names
def test_one_process_at_a_time_holds_a_run_and_the_other_is_told_who(tmp_path):
    run = Run(tmp_path)
    with run.lock():
        assert run.lock_file.read_text().split()[0] == str(os.getpid())
        with pytest.raises(RunDirError, match=f"being trained by process {os.getpid()} on "):
            with Run(tmp_path).lock():  # another open file description: refused, as another process would be
                pass
    with run.lock():  # released when the first one ended
        pass


HOLD_LOCK = """
import sys, time
from pathlib import Path
from openlt.engine.run import Run
with Run(Path(sys.argv[1])).lock():
    print("locked", flush=True)
    time.sleep(600)
"""


def test_a_lock_held_by_another_process_is_refused_and_freed_when_it_dies(tmp_path):
    holder = forked_python.Popen([sys.executable, "-c", HOLD_LOCK, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunDirError, match=f"process {holder.pid} on "):
            with Run(tmp_path).lock():
                pass
    finally:
        holder.kill()
        holder.wait()
    with Run(tmp_path).lock():  # a killed process holds nothing
        pass


def test_a_staged_run_gets_its_name_only_when_published(tmp_path):
    cfg = build_config(None, [f"out_dir={tmp_path}", "name=tiny"])
    stage = staged_run(cfg)
    assert stage.path.parent == tmp_path and stage.path.name.startswith(f".tiny.{os.getpid()}-") and stage.checkpoints_dir.is_dir()
    (stage.path / "config.yaml").write_text("x")
    run = publish_run(stage, cfg)
    assert not stage.path.exists() and re.fullmatch(r"tiny-\d{8}-\d{6}", run.path.name)
    assert (run.path / "config.yaml").read_text() == "x"



def test_a_name_taken_while_publishing_moves_on_to_the_next(tmp_path, monkeypatch):
    """Two runs published in the same second under one name: the rename onto a taken name fails, the next is used."""
    import openlt.engine.run as run_module

    cfg = build_config(None, [f"out_dir={tmp_path}", "name=tiny"])
    stage, real_rename, tried = staged_run(cfg), os.rename, []

    def rename(src, dst):
        tried.append(Path(dst).name)
        if len(tried) == 1:  # another process publishes its run under this name first
            Path(dst).mkdir()
            (Path(dst) / "config.yaml").write_text("theirs")
        return real_rename(src, dst)

    monkeypatch.setattr(run_module.os, "rename", rename)
    run = publish_run(stage, cfg)
    assert len(tried) == 2 and run.path.name == tried[1] and tried[1] != tried[0]
    assert (tmp_path / tried[0] / "config.yaml").read_text() == "theirs" and run.checkpoints_dir.is_dir()


STAGER = """
import sys
from openlt.config import build_config
from openlt.engine.run import staged_run
print(staged_run(build_config(None, [f"out_dir={sys.argv[1]}", "name=kk"])).path, flush=True)
sys.stdin.readline()
"""


def test_stale_staged_runs_are_removed_and_live_ones_kept(tmp_path):
    """A staged run names its process (.NAME.PID-HOST.XXXX.new-run, trial 15 item 5): a SIGKILLed process's is removed
    at once, a live process's never (even old, its lock free); an untagged one (an older openlt's) when old and free."""
    import signal

    procs = [forked_python.Popen([sys.executable, "-c", STAGER, str(tmp_path)], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, text=True) for _ in range(2)]
    try:
        killed, live = procs
        dead_stage, live_stage = (Path(p.stdout.readline().strip()) for p in procs)
        assert dead_stage.name.startswith(f".kk.{killed.pid}-") and dead_stage.name.endswith(".new-run")
        os.kill(killed.pid, signal.SIGKILL)
        killed.wait()
        untagged_old, untagged_young = tmp_path / ".kk-abcdefgh.new-run", tmp_path / ".kk-ijklmnop.new-run"
        for folder in (untagged_old, untagged_young):
            folder.mkdir()
        old = time.time() - 3600
        for folder in (untagged_old, live_stage):
            os.utime(folder, (old, old))
        assert sorted(remove_stale_stages(tmp_path)) == sorted([dead_stage, untagged_old])  # the dead one: young
        assert live_stage.is_dir() and untagged_young.is_dir() and not dead_stage.exists()
    finally:
        for p in procs:
            p.kill()


@pytest.mark.parametrize("name", ["../../x", "/abs/x", "a/b", "x\0y", "", " ", ".", "..", "a\\b", " x"])
def test_a_run_name_that_is_not_one_plain_name_is_refused(tmp_path, name):
    cfg = build_config(None, [f"out_dir={tmp_path}"])
    for make in (new_run, staged_run):
        with pytest.raises(ConfigError, match="run name must be a plain name"):
            make(cfg, name)
    assert not any(tmp_path.iterdir())


def test_a_run_name_on_the_command_line_is_refused_before_any_work(tmp_path, capsys):
    from openlt.cli import main

    for name in ["../../x", str(tmp_path / "abs"), "x\0y", ""]:
        code = main(["train", "no-such-config.yaml", f"out_dir={tmp_path / 'runs'}", "--name", name])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and err[0].startswith("openlt train: error: --name must be a plain name")
    assert not any(tmp_path.iterdir())


# ------------------------------------------------------------------ nothing exists before the boundary is passed
def _not_called(what):
    def fail(*args, **kwargs):
        raise AssertionError(f"{what} was called before the data passed its checks")
    return fail


def test_split_files_are_checked_before_any_directory_is_created(tmp_path, monkeypatch):
    """data.split_dir: a bad test.txt (an image that is missing) is refused before the run is even staged."""
    import openlt.engine.train as train_module
    from images import make_image_folder  # tests/helpers
    from openlt.errors import DataError

    images = make_image_folder(tmp_path / "images", {"ant": 6, "bee": 6}, size=8)
    split = tmp_path / "split"
    split.mkdir()
    (split / "train.txt").write_text("ant/000.png 0\nant/001.png 0\nbee/000.png 1\nbee/001.png 1\n")
    (split / "test.txt").write_text("ant/002.png 0\nbee/099.png 1\n")
    monkeypatch.setattr(train_module, "staged_run", _not_called("staged_run"))
    cfg = build_config(None, ["data.dataset=split-file", f"data.root={images}", f"data.split_dir={split}",
                              "data.val_split=null", "data.open_split=null", f"out_dir={tmp_path / 'runs'}",
                              "train.device=cpu", "model.backbone=resnet20"])
    with pytest.raises(DataError, match=r"test.txt, line 2.*bee/099.png"):
        train_module.train(cfg, quiet=True, log=lambda line: None)
    assert not (tmp_path / "runs").exists()


def test_split_files_of_its_own_are_built_and_checked_before_the_run_appears(tmp_path, monkeypatch):
    """No data.split_dir: a profile the folders cannot fill is refused while the run is still staged (hidden);
    it is removed and nothing is published."""
    import openlt.engine.train as train_module
    from images import make_image_folder
    from openlt.errors import OpenLTError

    images = make_image_folder(tmp_path / "images", {"ant": 6, "bee": 3}, size=8)
    monkeypatch.setattr(train_module, "publish_run", _not_called("publish_run"))
    cfg = build_config(None, ["data.dataset=image-folder", f"data.root={images}", f"out_dir={tmp_path / 'runs'}",
                              "data.split.n_max=20", "data.split.n_min=2", "data.split.open_classes=0",
                              "data.split.test_per_class=1", "data.split.val_per_class=1",  # the profile refuses
                              "train.device=cpu", "model.backbone=resnet20"])
    with pytest.raises(OpenLTError, match="'ant' has"):
        train_module.train(cfg, quiet=True, log=lambda line: None)
    assert not (tmp_path / "runs").exists()  # nor the out_dir it created for the run (issue 14)
