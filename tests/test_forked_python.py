"""tests/helpers/forked_python.py: a forked command behaves as the fresh `python ...` process it stands in for (the
tests that kill, race and join real openlt processes rely on it), and what it cannot stand in for runs for real."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import forked_python  # tests/helpers

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PROBE_VALUE": "x y"}
# What a fresh interpreter tells of itself: its command line, import path head, folder, environment and __main__.
SELF = ("import os, sys\nprint(sys.argv, repr(sys.path[0]), os.getcwd(), os.environ.get('PROBE_VALUE'), __name__, "
        "sorted(k for k in os.environ if k.startswith('PROBE')))\n")


@pytest.mark.parametrize("form", ["code", "script", "module"])
def test_a_command_sees_what_a_fresh_python_sees(tmp_path, form):
    script = tmp_path / "probe.py"
    script.write_text(SELF)
    work = tmp_path / "work"
    work.mkdir()
    command = {"code": [sys.executable, "-c", SELF, "a", "b c"], "script": [sys.executable, str(script), "a", "b c"],
               "module": [sys.executable, "-m", "openlt", "--version"]}[form]
    fresh = subprocess.run(command, capture_output=True, text=True, env=ENV, cwd=work, timeout=120)
    forked = forked_python.run(command, capture_output=True, text=True, env=ENV, cwd=work, timeout=120)
    assert not isinstance(forked_python.Popen(command, env=ENV, cwd=work, stdout=subprocess.DEVNULL),
                          subprocess.Popen)  # it was forked, not started
    assert (forked.returncode, forked.stdout, forked.stderr) == (fresh.returncode, fresh.stdout, fresh.stderr)
    assert fresh.returncode == 0 and fresh.stdout


@pytest.mark.parametrize("code,status", [("import sys; sys.exit(3)", 3), ("import sys; sys.exit('bye')", 1),
                                         ("raise ValueError('boom')", 1), ("raise KeyboardInterrupt", -2),
                                         ("import os, signal; os.kill(os.getpid(), signal.SIGTERM)", -15),
                                         ("import os; os._exit(7)", 7), ("pass", 0)])
def test_exit_status_and_last_words_are_a_fresh_pythons(code, status):
    fresh = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=120)
    forked = forked_python.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=120)
    assert forked.returncode == fresh.returncode == status
    assert forked.stderr.strip().splitlines()[-1:] == fresh.stderr.strip().splitlines()[-1:]


def test_pid_signals_stdin_and_a_line_at_a_time():
    proc = forked_python.Popen([sys.executable, "-c", "import sys, time\nprint(input().upper())\ntime.sleep(60)"],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                               env={**ENV, "PYTHONUNBUFFERED": "1"})
    try:
        proc.stdin.write("hello\n")
        proc.stdin.flush()
        assert proc.stdout.readline() == "HELLO\n"  # seen while it runs
        assert Path(f"/proc/{proc.pid}").exists() or sys.platform != "linux"
        assert proc.poll() is None
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(timeout=0.2)
        os.kill(proc.pid, signal.SIGKILL)  # the pid is the command's own process
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        proc.kill()


def test_communicate_times_out_then_returns_everything():
    proc = forked_python.Popen([sys.executable, "-c", "import sys, time\nprint('a', flush=True)\n"
                                "print('b', file=sys.stderr, flush=True)\ntime.sleep(2)\nprint('c')"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV)
    with pytest.raises(subprocess.TimeoutExpired):
        proc.communicate(timeout=0.1)
    out, err = proc.communicate(timeout=60)
    assert (sorted(out.split()), err, proc.returncode) == (["a", "b", "c"], None, 0)


def test_output_into_a_file_and_a_closed_pipe(tmp_path):
    with open(tmp_path / "log", "w") as fh:
        done = forked_python.run([sys.executable, "-c", "print('into the file')"], stdout=fh, env=ENV, timeout=60)
    assert done.returncode == 0 and (tmp_path / "log").read_text() == "into the file\n"
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:  # nobody reads: the command meets a broken pipe, as a fresh one would
        fresh = subprocess.run([sys.executable, "-c", "print('x' * 100000)"], stdout=write_end, stderr=subprocess.PIPE,
                               env=ENV, timeout=60)
        forked = forked_python.run([sys.executable, "-c", "print('x' * 100000)"], stdout=write_end,
                                   stderr=subprocess.PIPE, env=ENV, timeout=60)
    finally:
        os.close(write_end)
    assert forked.returncode == fresh.returncode != 0 and b"BrokenPipeError" in forked.stderr


def test_run_times_out_and_ends_the_command():
    started = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired):
        forked_python.run([sys.executable, "-c", "import time; time.sleep(60)"], env=ENV, timeout=0.5)
    assert time.monotonic() - started < 30


@pytest.mark.parametrize("command,env", [
    ([sys.executable, "-c", "pass"], {**ENV, "OMP_NUM_THREADS": "2"}),  # the thread libraries read it when loaded
    ([sys.executable, "-X", "utf8", "-c", "pass"], ENV),  # an interpreter option
    ([sys.executable, "-m", "json.tool", "--help"], ENV),  # another module than openlt
    (["true"], ENV),
])
def test_what_it_cannot_stand_in_for_runs_for_real(command, env):
    proc = forked_python.Popen(command, env=env, stdout=subprocess.DEVNULL)
    assert isinstance(proc, subprocess.Popen) and proc.wait(timeout=120) == 0
