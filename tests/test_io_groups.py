"""io.write_group run in a thread other than the main one (no signal handler can be installed there): Ctrl-C or
SIGTERM, raised in the main thread, ends the process while a daemon thread renames a group into place, and the
interpreter's exit waits for the group to be complete (io._wait_for_commits), so that a later command never reads
new files beside old ones; a group interrupted before its renames leaves every previous file. io.remove_file
removes its file with the group, or not at all."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from openlt.io import remove_file, write_group, write_text

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGTERM"), reason="needs POSIX signals")

FILES = [f"f{i}.txt" for i in range(6)]

# A daemon thread writes FILES as one group, each rename slowed down (MARKER created after the first one); the main
# thread waits with a SIGTERM handler that raises KeyboardInterrupt, as `openlt`'s does, and so ends the process.
# UNREGISTER=1 removes io's exit hook: the control that shows what the hook prevents.
GROUP_IN_A_THREAD = """
import atexit, os, signal, sys, threading, time
from pathlib import Path
import openlt.io as io
folder, marker = Path(sys.argv[1]), Path(sys.argv[2])
if os.environ.get("UNREGISTER") == "1":
    atexit.unregister(io._wait_for_commits)
real_replace = os.replace
def slow_replace(src, dst, **kwargs):
    real_replace(src, dst, **kwargs)
    marker.touch()
    time.sleep(0.3)
io.os.replace = slow_replace

def terminated(signum, frame):
    raise KeyboardInterrupt
signal.signal(signal.SIGTERM, terminated)

def write():
    with io.write_group():
        for name in %r:
            io.write_text(folder / name, "new")
try:  # (the signal may come while start() still waits for the thread: the thread renames before start returns)
    threading.Thread(target=write, daemon=True).start()
    time.sleep(60)
except KeyboardInterrupt:
    sys.exit(143)
""" % (FILES,)


def contents(folder: Path) -> list[str]:
    return [(folder / name).read_text() for name in FILES]


@pytest.mark.parametrize("hook", [True, False])
def test_a_signal_ending_the_process_never_leaves_a_group_of_another_thread_half_renamed(tmp_path, hook):
    for name in FILES:
        (tmp_path / name).write_text("old")
    marker = tmp_path / "renaming"
    proc = subprocess.Popen([sys.executable, "-c", GROUP_IN_A_THREAD, str(tmp_path), str(marker)],
                            env={**os.environ, "UNREGISTER": "0" if hook else "1"}, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGTERM)  # after the first of six renames (1.8 s in all)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert not list(tmp_path.glob(".*.tmp")) or not hook
    if hook:
        assert contents(tmp_path) == ["new"] * len(FILES)  # the exit waited for the whole group
    else:  # the control: without the hook the daemon thread is stopped half-way, which the hook prevents
        assert "old" in contents(tmp_path) and "new" in contents(tmp_path)


def test_an_interrupt_inside_a_group_in_a_thread_leaves_every_previous_file(tmp_path):
    import threading

    for name in FILES:
        (tmp_path / name).write_text("old")
    failed = []

    def write():
        try:
            with write_group():
                for name in FILES:
                    write_text(tmp_path / name, "new")
                    if name == FILES[3]:
                        raise KeyboardInterrupt
        except KeyboardInterrupt:
            failed.append(True)

    thread = threading.Thread(target=write)
    thread.start()
    thread.join()
    assert failed and contents(tmp_path) == ["old"] * len(FILES) and not list(tmp_path.glob(".*.tmp"))


def test_remove_file_goes_with_its_group(tmp_path):
    stale, kept = tmp_path / "calibration.json", tmp_path / "metrics.json"
    stale.write_text("stale")
    with pytest.raises(RuntimeError):
        with write_group():
            write_text(kept, "new")
            remove_file(stale)
            assert stale.read_text() == "stale"  # not before the group's renames
            raise RuntimeError("failed")
    assert stale.read_text() == "stale" and not kept.exists()
    with write_group():
        write_text(kept, "new")
        remove_file(stale)
        remove_file(tmp_path / "absent.json")  # nothing there: nothing to do
        assert stale.exists()
    assert not stale.exists() and kept.read_text() == "new"
