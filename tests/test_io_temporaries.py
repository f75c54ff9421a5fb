"""openlt.io's temporaries (trial 14a D4, D6): a write into a folder held by `never_recreated` (a watched run
directory moved or deleted meanwhile) recreates nothing; a failed group removes its temporary files from the folder
they were made in, wherever it is now; temporaries carry their writer's PID and host, so that a later command
removes those of a killed writer (a real SIGKILLed process) and never one a live process is writing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from openlt_processes import ENV  # tests/helpers
from openlt.errors import WriteError
from openlt.io import (atomic_path, never_recreated, remove_stale_temp, stale_temporaries, temp_prefix, write_group,
                       write_json, write_text)
import forked_python  # tests/helpers

WRITER = """
import sys, time
from openlt.io import atomic_path
with atomic_path(sys.argv[1]) as tmp:
    tmp.write_text("half")
    print(tmp, flush=True)
    time.sleep(120)
"""


def writer(path: Path) -> tuple[subprocess.Popen, Path]:
    """A real process in the middle of an atomic write of `path`: (it, its temporary file)."""
    proc = forked_python.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True, env=ENV)
    return proc, Path(proc.stdout.readline().strip())


def test_a_write_into_a_folder_gone_meanwhile_recreates_nothing(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    with never_recreated(run):
        run.rename(tmp_path / "moved")
        with pytest.raises(WriteError, match=f"^cannot write {run}/metrics.json: No such file or directory"):
            write_json(run / "metrics.json", {})
        with pytest.raises(WriteError, match=f"^cannot write {run}/features/x: No such file"):
            write_text(run / "features" / "x", "x")
    assert not run.exists() and sorted(os.listdir(tmp_path / "moved")) == []
    write_text(run / "features" / "x", "x")  # outside the block: created as before
    assert (run / "features" / "x").read_text() == "x"


def test_a_group_whose_folder_moved_leaves_no_temporary_in_the_moved_folder(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.json").write_text("old")
    with never_recreated(run), pytest.raises(WriteError, match="cannot write"):
        with write_group():
            write_json(run / "metrics.json", {"new": 1})
            write_text(run / "report.md", "new")
            run.rename(tmp_path / "moved")
    assert sorted(os.listdir(tmp_path / "moved")) == ["metrics.json"]  # the old file only: no .*.tmp left
    assert (tmp_path / "moved" / "metrics.json").read_text() == "old" and not run.exists()


def test_temporaries_name_their_writer_and_only_dead_writers_ones_are_stale(tmp_path):
    assert temp_prefix("metrics.json").startswith(f".metrics.json.{os.getpid()}-")
    killed, dead_tmp = writer(tmp_path / "metrics.json")
    live, live_tmp = writer(tmp_path / "report.md")
    try:
        assert dead_tmp.name.startswith(f".metrics.json.{killed.pid}-") and dead_tmp.is_file()
        assert stale_temporaries(tmp_path) == []  # both writers alive
        os.kill(killed.pid, signal.SIGKILL)
        killed.wait()
        assert stale_temporaries(tmp_path) == [dead_tmp]
        assert stale_temporaries(tmp_path, "report.md") == []
        (tmp_path / ".x.tmp").write_text("not openlt's pattern")
        assert remove_stale_temp(tmp_path, dead_only=True) == [dead_tmp]
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted([".x.tmp", live_tmp.name])
    finally:
        live.kill()
        live.wait()


def test_an_interrupted_atomic_write_removes_its_temporary(tmp_path):
    with pytest.raises(KeyboardInterrupt), atomic_path(tmp_path / "a.json") as tmp:
        tmp.write_text("x")
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []
