"""`python -m openlt ...`, `python -c CODE ...` and `python SCRIPT ...` processes forked from one Python that has
already imported openlt, torch, torchvision and scikit-learn (tests/helpers/fork_server.py), for the tests that
start real processes (kill them, race them, join them into a torchrun-style job): a fresh interpreter spends ~5
CPU-seconds importing those before it does anything, which was most of the time of those tests on two cores.

`Popen` and `run` take the arguments of subprocess's (the subset the tests use) and give a process with the same
interface: `pid` (the process itself, so `os.kill(proc.pid, ...)` reaches it; a zombie until waited for), `stdout`
/ `stderr` / `stdin`, `poll`, `wait`, `communicate`, `send_signal`, `kill`, `returncode` (negative: the signal that
ended it). The command runs as a fresh one would: the same command line (sys.argv, sys.path[0], a new `__main__`),
environment, working folder, umask, standard streams (buffered as PYTHONUNBUFFERED says), ignored signals, random
seeds (numpy's and torch's drawn anew) and exit status (an uncaught exception through sys.excepthook, exit 1; an
uncaught KeyboardInterrupt ends it by SIGINT; 120 when stdout cannot be flushed at the end). What differs, on
purpose: the modules above are imported before the command starts; Python's teardown at the end is skipped (a
file the command left open and unflushed loses what it buffered; objects' __del__ do not run at exit); the string
hash seed is the server's, the same in every command; the parent process is a waiter of the server's.

A command the server cannot stand in for runs as a real process (subprocess.Popen): another interpreter option
or module than `-m openlt`, thread settings (OMP_NUM_THREADS, MKL_NUM_THREADS) other than the server's, or any
PYTHON* variable other than the server's (but PYTHONUNBUFFERED): the interpreter and the thread libraries read
those once, when they start. Tests of start-up itself (what a command imports, the console script, a memory
peak) keep using subprocess.

The server is started once per test process (pytest-xdist worker) on first use and ends with it (it reads its
stdin, a pipe from the test process, until end of file)."""

from __future__ import annotations

import atexit
import io
import json
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

PIPE, STDOUT, DEVNULL = subprocess.PIPE, subprocess.STDOUT, subprocess.DEVNULL
THREADS = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}  # the server's, so its children's (MKL's: OMP's if unset)
SERVER = Path(__file__).with_name("fork_server.py")
# Signals a fresh process inherits when ignored (handled ones are reset to their default by exec).
SIGNALS = (signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2, signal.SIGALRM)
# A prefix that starts the command after it with SIGINT's default disposition (dist_env.py says why the tests need
# it); a forked command gets Python's KeyboardInterrupt handler instead, as the exec'd Python would install.
WITH_CTRL_C = [sys.executable, "-c", "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
               "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])"]

_server: subprocess.Popen | None = None
_server_path: Path | None = None
_server_started_env: dict[str, str] | None = None  # the environment the running server started with
_server_lock = threading.Lock()


def _server_socket() -> Path:
    global _server, _server_path, _server_started_env
    with _server_lock:
        if _server is None or _server.poll() is not None:
            path = Path(tempfile.mkdtemp(prefix="openlt-fork-")) / "server"
            _server_started_env = _server_env()
            _server = subprocess.Popen([sys.executable, str(SERVER), str(path)], stdin=PIPE, stdout=PIPE,
                                       env=_server_started_env, cwd=Path(__file__).parents[2])
            line = _server.stdout.readline()
            if line.strip() != b"ready":
                raise RuntimeError(f"the fork server did not start (exit {_server.wait()})")
            _server_path = path
            atexit.register(_stop_server, _server)
        return _server_path


def _server_env() -> dict[str, str]:
    return {**os.environ, **THREADS}


def _started_the_same(env: dict[str, str]) -> bool:
    """Whether `env` starts an interpreter as the server's did: the thread settings (MKL's: OMP's if unset) and
    every PYTHON* variable (hash seed, warnings, path, stream encoding...; PYTHONUNBUFFERED is set per command)."""
    threads = {"OMP_NUM_THREADS": env.get("OMP_NUM_THREADS"),
               "MKL_NUM_THREADS": env.get("MKL_NUM_THREADS") or env.get("OMP_NUM_THREADS")}
    server = _server_started_env if _server is not None and _server.poll() is None else _server_env()
    python = {k for k in (*env, *server) if k.startswith("PYTHON") and k != "PYTHONUNBUFFERED"}
    return threads == THREADS and all(env.get(k) == server.get(k) for k in python)


def _stop_server(server: subprocess.Popen) -> None:
    """End the server (end of file on its stdin) and wait for it."""
    for stream in (server.stdin, server.stdout):
        stream.close()
    server.wait()


def _request(args) -> dict | None:
    """What the server runs for command line `args` (kind, target, args, ctrl_c), or None: start it for real."""
    args = [str(a) for a in args]
    if len(args) < 2 or args[0] != sys.executable:
        return None
    ctrl_c = args[:3] == WITH_CTRL_C
    rest = args[3:] if ctrl_c else args[1:]
    if len(rest) >= 2 and rest[0] == "-m" and rest[1] == "openlt":
        return {"kind": "module", "target": "openlt", "args": rest[2:], "ctrl_c": ctrl_c}
    if len(rest) >= 2 and rest[0] == "-c":
        return {"kind": "code", "target": rest[1], "args": rest[2:], "ctrl_c": ctrl_c}
    if rest and not rest[0].startswith("-") and rest[0].endswith(".py"):
        return {"kind": "script", "target": rest[0], "args": rest[1:], "ctrl_c": ctrl_c}
    return None


def Popen(args, *, stdin=None, stdout=None, stderr=None, text=False, env=None, cwd=None, start_new_session=False):
    """subprocess.Popen(args, ...) of a Python command, forked from the server where it can stand in for it."""
    request = _request(args)
    env = dict(os.environ if env is None else env)
    if request is None or not _started_the_same(env):
        return subprocess.Popen(args, stdin=stdin, stdout=stdout, stderr=stderr, text=text, env=env, cwd=cwd,
                                start_new_session=start_new_session)
    return ForkedProcess(args, request, stdin, stdout, stderr, text, env, cwd, start_new_session)


def run(args, *, input=None, capture_output=False, stdout=None, stderr=None, text=False, env=None, cwd=None,
        timeout=None, check=False) -> subprocess.CompletedProcess:
    """subprocess.run of a Python command, forked from the server where it can stand in for it."""
    if capture_output:
        stdout = stderr = PIPE
    proc = Popen(args, stdin=PIPE if input is not None else None, stdout=stdout, stderr=stderr, text=text, env=env,
                 cwd=cwd)
    try:
        out, err = proc.communicate(input, timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()  # not the pipes' end: a grandchild may hold them (as subprocess.run)
        raise
    if check and proc.returncode:
        raise subprocess.CalledProcessError(proc.returncode, args, out, err)
    return subprocess.CompletedProcess(args, proc.returncode, out, err)


class ForkedProcess:
    """A command run by the server: subprocess.Popen's interface (the part the tests use)."""

    def __init__(self, args, request, stdin, stdout, stderr, text, env, cwd, new_session):
        self.args, self.returncode, self._readers, self._text = args, None, None, text
        cwd = os.path.abspath(cwd or os.getcwd())
        if not os.path.isdir(cwd):  # subprocess says so in the test's process
            raise (NotADirectoryError if os.path.exists(cwd) else FileNotFoundError)(2, "No such directory", cwd)
        ends, close = [], []  # the child's three descriptors; the ones to close here once sent
        self.stdin, self.stdout, self.stderr = None, None, None
        for number, (spec, mode) in enumerate(((stdin, "r"), (stdout, "w"), (stderr, "w"))):
            if spec is STDOUT:
                ends.append(ends[1])
            elif spec is PIPE:
                read, write = os.pipe()
                mine, theirs = (write, read) if mode == "r" else (read, write)
                opened = io.open(mine, ("w" if mode == "r" else "r") + ("" if text else "b"),
                                 **({"encoding": None} if text else {"buffering": -1}))
                setattr(self, ("stdin", "stdout", "stderr")[number], opened)
                ends.append(theirs)
                close.append(theirs)
            elif spec is DEVNULL:
                fd = os.open(os.devnull, os.O_RDWR)
                ends.append(fd)
                close.append(fd)
            elif spec is None:
                ends.append(number)
            else:
                ends.append(spec if isinstance(spec, int) else spec.fileno())
        umask = os.umask(0o022)
        os.umask(umask)
        message = {**request, "env": env, "cwd": cwd, "new_session": bool(new_session), "umask": umask,
                   "signals": {int(s): signal.getsignal(s) == signal.SIG_IGN for s in SIGNALS}}
        self._conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._conn.connect(str(_server_socket()))
        socket.send_fds(self._conn, [json.dumps(message).encode() + b"\n"], ends)
        for fd in close:
            os.close(fd)
        self._said = b""
        said = self._line(None)
        if said[:1] != ["pid"]:
            raise RuntimeError(f"the fork server did not start {args}: {said}")
        self.pid = int(said[1])

    def _line(self, timeout: float | None) -> list[str] | None:
        """The server's next line (split), or None when none came within `timeout` seconds; [] at its end."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while b"\n" not in self._said:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not select.select([self._conn], [], [], left)[0]:
                return None
            got = self._conn.recv(4096)
            if not got:
                return []
            self._said += got
        line, self._said = self._said.split(b"\n", 1)
        return line.decode().split()

    def poll(self) -> int | None:
        return self.returncode if self.returncode is not None else self._exit(0)

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None and self._exit(timeout) is None:
            raise subprocess.TimeoutExpired(self.args, timeout)
        return self.returncode

    def _exit(self, timeout: float | None) -> int | None:
        said = self._line(timeout)
        if said is None:
            return None
        self.returncode = int(said[1]) if said[:1] == ["exit"] else -9  # [] : the waiter itself was killed
        try:  # reaped when wait returns, as subprocess's child (a pid check right after sees it gone)
            self._conn.sendall(b"reap\n")
            self._line(None)
        except OSError:
            pass
        self._conn.close()
        return self.returncode

    def communicate(self, input=None, timeout: float | None = None):
        deadline = None if timeout is None else time.monotonic() + timeout
        if self._readers is None:
            self._readers = {}
            if self.stdin is not None:
                self._start("stdin", self._feed, input)
            for name in ("stdout", "stderr"):
                if getattr(self, name) is not None:
                    self._start(name, self._drain, getattr(self, name))
        for thread, _ in self._readers.values():
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                out, err = (self._joined(name) for name in ("stdout", "stderr"))
                raise subprocess.TimeoutExpired(self.args, timeout, output=out, stderr=err)
        self.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return tuple(self._joined(name) for name in ("stdout", "stderr"))

    def _start(self, name, target, arg) -> None:
        chunks: list = []
        thread = threading.Thread(target=target, args=(arg, chunks), daemon=True)
        thread.start()
        self._readers[name] = (thread, chunks)

    def _feed(self, data, _chunks) -> None:
        try:
            if data:
                self.stdin.write(data)
            self.stdin.close()
        except BrokenPipeError:
            pass

    @staticmethod
    def _drain(stream, chunks) -> None:
        """Read `stream`'s descriptor to its end, chunk by chunk (a partial output for a timeout), as subprocess."""
        fd = stream.fileno()
        while chunk := os.read(fd, 32768):
            chunks.append(chunk)
        stream.close()

    def _joined(self, name):
        """What was read from stream `name` so far (text: decoded, newlines translated, as subprocess), or None."""
        if name not in self._readers:
            return None
        data = b"".join(self._readers[name][1])
        if not self._text:
            return data
        return data.decode(getattr(self, name).encoding, "strict").replace("\r\n", "\n").replace("\r", "\n")

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, signum)

    def terminate(self) -> None:
        self.send_signal(15)

    def kill(self) -> None:
        self.send_signal(9)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for stream in (self.stdin, self.stdout, self.stderr):
            if stream is not None and not stream.closed:
                stream.close()
        self.wait()
