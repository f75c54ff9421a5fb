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


# ------------------------------------------------------------------ a fresh helper's review (session 25): the same
def test_stdout_that_cannot_be_flushed_at_the_end_is_exit_120_and_said():
    """Review 1: the final flush's failure was swallowed (exit 141 / 0 where Python exits 120 and says so)."""
    code = "import sys\nprint('x')\nsys.exit(141)"
    read_end, write_end = os.pipe()
    os.close(read_end)
    env = {k: v for k, v in ENV.items() if k != "PYTHONUNBUFFERED"}
    try:
        fresh, forked = (launch([sys.executable, "-c", code], stdout=write_end, stderr=subprocess.PIPE, text=True,
                                env=env, timeout=60) for launch in (subprocess.run, forked_python.run))
    finally:
        os.close(write_end)
    assert forked.returncode == fresh.returncode == 120
    assert "BrokenPipeError" in forked.stderr and "Exception ignored" in forked.stderr


def test_a_timeout_does_not_wait_for_a_grandchild_holding_the_pipe_and_keeps_the_partial_output():
    """Review 3: run(timeout) waited for the grandchild's end of the pipes (12 s) and lost what was read."""
    code = "import subprocess, time\nsubprocess.Popen(['sleep', '20'])\nprint('started', flush=True)\ntime.sleep(60)"
    started = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired) as caught:
        forked_python.run([sys.executable, "-c", code], capture_output=True, env=ENV, timeout=3)
    assert time.monotonic() - started < 15
    assert caught.value.stdout == b"started\n"


def test_every_command_draws_its_own_random_seeds():
    """Review 4: numpy's and torch's generators were the server's, the same in every command."""
    code = "import numpy, torch\nprint(numpy.random.rand(), torch.initial_seed(), torch.rand(1).item())"
    outs = {forked_python.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV,
                              timeout=60).stdout for _ in range(2)}
    assert len(outs) == 2


@pytest.mark.parametrize("name,value", [("PYTHONWARNINGS", "error"), ("PYTHONHASHSEED", "1"),
                                        ("PYTHONIOENCODING", "ascii"), ("PYTHONPATH", "/nowhere")])
def test_a_python_variable_read_at_start_up_runs_for_real(name, value):
    """Review 5: variables the interpreter reads when it starts were ignored by a forked command."""
    proc = forked_python.Popen([sys.executable, "-c", "pass"], env={**ENV, name: value}, stdout=subprocess.DEVNULL)
    assert isinstance(proc, subprocess.Popen) and proc.wait(timeout=120) == 0


@pytest.mark.parametrize("unbuffered", [True, False])
def test_buffering_is_the_commands_own(unbuffered):
    """Review 5: stdout's byte layer and stderr followed the server's PYTHONUNBUFFERED, not the command's."""
    code = ("import sys, time\nsys.stdout.buffer.write(b'bin\\n')\nsys.stderr.write('partial')\n"
            "print('end', end='')\ntime.sleep(3)")
    env = {**ENV, "PYTHONUNBUFFERED": "1"} if unbuffered else {k: v for k, v in ENV.items() if k != "PYTHONUNBUFFERED"}
    proc = forked_python.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env=env)
    with pytest.raises(subprocess.TimeoutExpired) as caught:
        proc.communicate(timeout=1.5)
    seen = (caught.value.stdout or b"", caught.value.stderr or b"")
    assert seen == ((b"bin\nend", b"partial") if unbuffered else (b"", b""))  # buffered: held (stderr by line)
    out, err = proc.communicate(timeout=60)  # flushed at the end either way
    assert (out, err) == (b"bin\nend", b"partial")


def test_umask_and_ignored_signals_are_the_test_process_now_not_when_the_server_started():
    """Review 6: the umask and ignored signals were fixed when the server started."""
    forked_python.run([sys.executable, "-c", "pass"], env=ENV, timeout=60)  # the server is up
    code = "import os, signal, time\nprint(oct(os.umask(0)), signal.getsignal(signal.SIGTERM) == signal.SIG_IGN, flush=True)\n" \
           "time.sleep(60)"
    old_mask, old_term = os.umask(0o077), signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        proc = forked_python.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=ENV)
    finally:
        os.umask(old_mask)
        signal.signal(signal.SIGTERM, old_term)
    try:
        assert proc.stdout.readline().split() == ["0o77", "True"]
        proc.terminate()
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(timeout=0.5)
    finally:
        proc.kill()
        proc.wait(timeout=30)
    again = forked_python.run([sys.executable, "-c", code.replace("time.sleep(60)", "")], capture_output=True,
                              text=True, env=ENV, timeout=60)
    assert again.stdout.split() == [oct(old_mask), "False"]


def test_a_relative_or_missing_working_folder_is_subprocess_s(tmp_path, monkeypatch):
    """Review 7: a relative cwd was taken from the server's folder, a missing one gave exit 1, not an error."""
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path)
    done = forked_python.run([sys.executable, "-c", "import os; print(os.getcwd())"], capture_output=True, text=True,
                             env=ENV, cwd="sub", timeout=60)
    assert done.stdout.strip() == str(tmp_path / "sub")
    with pytest.raises(FileNotFoundError):
        forked_python.Popen([sys.executable, "-c", "pass"], env=ENV, cwd=tmp_path / "nowhere")


def test_a_script_s_file_path_main_and_a_missing_script(tmp_path, monkeypatch):
    """Review 8, 9: __file__ relative, sys.path[0] of a linked script not resolved, __main__ gone at exit, a
    missing script exit 1 with a traceback (Python: 2, "can't open file")."""
    (tmp_path / "real").mkdir()
    script = tmp_path / "real" / "s.py"
    script.write_text("import atexit, sys\nX = 42\natexit.register(lambda: print(sys.modules['__main__'].X))\n"
                      "print(__file__, sys.path[0])\n")
    (tmp_path / "linked.py").symlink_to(script)
    monkeypatch.chdir(tmp_path)
    for name in ("linked.py", "real/s.py", "missing.py"):
        fresh, forked = (launch([sys.executable, name], capture_output=True, text=True, env=ENV, timeout=60)
                         for launch in (subprocess.run, forked_python.run))
        assert (forked.returncode, forked.stdout, forked.stderr) == (fresh.returncode, fresh.stdout, fresh.stderr)


def test_an_ended_command_is_a_zombie_until_waited_for():
    """Review 10: the command was reaped at once, so its pid could be reused before the test waited."""
    proc = forked_python.Popen([sys.executable, "-c", "pass"], env=ENV)
    deadline = time.monotonic() + 60
    while Path(f"/proc/{proc.pid}/stat").read_text().split()[2] != "Z":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.kill(proc.pid, 0)  # still there
    assert proc.wait(timeout=30) == 0
    deadline = time.monotonic() + 30
    while Path(f"/proc/{proc.pid}").exists():  # reaped once waited for
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_a_python_variable_set_after_the_server_started_runs_for_real(monkeypatch):
    """The comparison is with the environment the running server started with, not the test's present one."""
    forked_python.run([sys.executable, "-c", "pass"], env=ENV, timeout=60)  # the server is up
    monkeypatch.setenv("PYTHONWARNINGS", "error")
    proc = forked_python.Popen([sys.executable, "-c", "pass"], env={**os.environ, **forked_python.THREADS},
                               stdout=subprocess.DEVNULL)
    assert isinstance(proc, subprocess.Popen) and proc.wait(timeout=120) == 0
