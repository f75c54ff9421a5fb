"""Trial 12 D6: a finished `openlt train` left RUN/train.lock behind, saying "PID on HOST / evaluating" (the final
evaluation took the lock last and nothing removed the file). The holder now removes train.lock as it releases the
lock; a killed process's file stays, free, and the next process takes it over (and removes it in turn)."""

import os

import pytest

from cli_ok import main_ok
from openlt.engine.run import Run
from openlt.errors import RunDirError
from tiny_run import tiny_overrides

REPORT_FIGURES = "unrasterized"  # tests/conftest.py: report.html figures built, not rendered (none is looked at)


def test_a_released_lock_leaves_no_file(tmp_path):
    run = Run(tmp_path / "run")
    run.path.mkdir()
    with run.lock():
        assert run.lock_file.read_text().splitlines() == [f"{os.getpid()} on {os.uname().nodename}", "training"]
        with run.eval_lock():  # this process's own training lock is enough: the file is not rewritten
            assert run.lock_file.read_text().splitlines()[1] == "training"
        assert run.lock_file.is_file()
    assert not run.lock_file.exists()
    with run.eval_lock():
        assert run.lock_file.read_text().splitlines()[1] == "evaluating"
    assert not run.lock_file.exists()
    assert sorted(p.name for p in run.path.iterdir()) == []


def test_a_killed_holders_file_is_taken_over_and_removed(tmp_path):
    run = Run(tmp_path / "run")
    run.path.mkdir()
    run.lock_file.write_text("999999 on elsewhere\nevaluating\n")  # its process was killed: the flock is free
    with run.lock():
        assert run.lock_file.read_text().splitlines()[1] == "training"
    assert not run.lock_file.exists()


def test_a_lock_on_a_file_its_holder_removed_is_retaken_on_the_new_file(tmp_path, monkeypatch):
    """A process that opened train.lock just before its holder removed it locks the file now at the path."""
    import openlt.engine.run as run_module

    run = Run(tmp_path / "run")
    run.path.mkdir()
    stale = open(run.lock_file, "a+", encoding="utf-8")  # the file a holder is about to remove
    opened = []
    real_open = open

    def racing_open(path, *args, **kwargs):
        if path == run.lock_file:
            opened.append(path)
            if len(opened) == 1:
                os.unlink(run.lock_file)  # its holder ended meanwhile and removed it
                return stale
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(run_module, "open", racing_open, raising=False)
    with run.lock():
        assert len(opened) == 2 and stale.closed  # the removed file let go, the one at the path locked
        assert run.lock_file.read_text().endswith("training\n")
    assert not run.lock_file.exists()


def test_another_holder_is_still_refused(tmp_path):
    import fcntl

    run = Run(tmp_path / "run")
    run.path.mkdir()
    with open(run.lock_file, "a+", encoding="utf-8") as other:  # another open file: flock conflicts as a process's
        other.write("4242 on host\ntraining\n")
        other.flush()
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(RunDirError, match="is being trained by process 4242 on host"):
            with run.eval_lock():
                pass
    assert run.lock_file.read_text() == "4242 on host\ntraining\n"  # the refused process removes nothing


def test_a_finished_train_an_eval_and_a_resume_leave_no_lock_file(tmp_path, single_thread):
    from openlt.cli import main

    (tmp_path / "tiny.yaml").write_text("name: tiny\n")
    main_ok(["train", str(tmp_path / "tiny.yaml"), *tiny_overrides(tmp_path, "train.device=cpu"),
             "--quiet", "--no-eval"])  # locked while staged, then published under its final name
    run = next((tmp_path / "runs").iterdir())
    assert (run / "checkpoints" / "best.safetensors").is_file() and not (run / "train.lock").exists()
    assert main(["eval", str(run), "--quiet"]) == 0
    assert (run / "metrics.json").is_file() and not (run / "train.lock").exists()
    main_ok(["train", "--resume", str(run), "--quiet"])  # finished and evaluated: nothing to do
    assert sorted(p.name for p in run.iterdir() if p.name.startswith("train")) == []


def test_a_run_folder_that_cannot_be_written_says_to_copy_the_run(tmp_path, monkeypatch):
    """(Session 27: `openlt eval RUN --tag x` as another user said `cannot create RUN/train.lock: Permission denied`
    and no more.)"""
    from openlt.engine import run as run_module
    from openlt.errors import WriteError

    run = Run(tmp_path / "run")
    run.path.mkdir()

    def refuse(path, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(run_module, "open", refuse, raising=False)  # as a folder of another user's
    with pytest.raises(WriteError, match=r"cannot create .*train.lock: Permission denied; the run's folder cannot be "
                                         r"written: copy the run somewhere writable \(cp -r\) and use the copy"):
        with run.eval_lock():
            pass
