"""`python -m openlt ...`, `python -c CODE ...` and `python SCRIPT ...` processes forked from one Python that has
already imported openlt, torch, torchvision and scikit-learn, for the tests that start real processes (kill them,
race them, join them into a torchrun-style job): a fresh interpreter spends ~5 CPU-seconds importing those before
it does anything, which was most of the time of those tests on two cores.

`Popen` and `run` take the arguments of subprocess's (the subset the tests use) and give a process with the same
interface: `pid` (the process itself, so `os.kill(proc.pid, ...)` reaches it), `stdout` / `stderr` / `stdin`,
`poll`, `wait`, `communicate`, `send_signal`, `kill`, `returncode` (negative: the signal that ended it). What the
process runs is what a fresh one would: the same command line (sys.argv, sys.path[0], `__main__`), environment,
working directory, standard streams (buffering as PYTHONUNBUFFERED says), signal dispositions and exit status (an
uncaught exception prints its traceback and exits 1, an uncaught KeyboardInterrupt ends it by SIGINT). What
differs: the modules above are imported before the command starts, and its parent process is a waiter of the
server's, not the test.

A command the server cannot stand in for runs as a real process (subprocess.Popen): another interpreter option
or module than `-m openlt`, or thread settings (OMP_NUM_THREADS, MKL_NUM_THREADS) other than the server's, which
the thread libraries read once, when they load. Tests of start-up itself (what a command imports, the console
script) keep using subprocess.

The server is started once per test process (pytest-xdist worker) on first use and ends with it (it reads its
stdin, a pipe from the test process, until end of file)."""

from __future__ import annotations

import atexit
import io
import json
import os
import select
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

PIPE, STDOUT, DEVNULL = subprocess.PIPE, subprocess.STDOUT, subprocess.DEVNULL
THREADS = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}  # the server's, so its children's (MKL's: OMP's if unset)
_CTRL_C = "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "  # dist_env.WITH_CTRL_C's code

# The server: imports what every command needs, then forks a waiter per request (a connection that carries the
# request and the three standard streams' descriptors). The waiter forks the command's process, says its pid, and
# reports how it ended. The command's process never returns into the server's code: it ends with os._exit.
_SERVER = r'''
import atexit, json, os, select, signal, socket, sys, threading, traceback
from openlt.cli import load_registries
load_registries()
import openlt.engine.train, openlt.engine.evaluate, openlt.engine.bench, openlt.engine.decouple  # noqa: F401
import openlt.engine.features, openlt.engine.predict, openlt.engine.export, openlt.reporting  # noqa: F401
import torch.distributed  # noqa: F401


def start_command(request, fds, listener, conn):
    listener.close()
    conn.close()
    if request["new_session"]:
        os.setsid()
    if request["ctrl_c"]:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
    for fd in set(fds):
        if fd > 2:
            os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    # The server's own streams now write to (read from) the descriptors above; buffered as a fresh Python's
    unbuffered = bool(os.environ.get("PYTHONUNBUFFERED"))
    sys.stdout.reconfigure(line_buffering=unbuffered or os.isatty(1), write_through=unbuffered)
    try:
        run_command(request["kind"], request["target"], request["args"])
        code = 0
    except SystemExit as stop:
        code = exit_status(stop.code)
    except KeyboardInterrupt:  # as Python: the traceback, then the process ends by SIGINT (exit status -2)
        traceback.print_exc()
        code = -signal.SIGINT
    except BaseException:
        traceback.print_exc()
        code = 1
    # What a fresh interpreter does at its end, but its teardown: that only frees memory (most of it shared with
    # the server, so each page would be copied first: ~1.5 s), as multiprocessing's forked processes do.
    threading._shutdown()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    if code == -signal.SIGINT:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    os._exit(code)


def run_command(kind, target, args):
    import builtins, runpy, types
    if kind == "module":
        sys.argv, sys.path[0] = ["-m", *args], os.getcwd()
        runpy.run_module(target, run_name="__main__", alter_sys=True)
    elif kind == "code":
        sys.argv, sys.path[0] = ["-c", *args], ""
        main = types.ModuleType("__main__")
        main.__builtins__ = builtins
        sys.modules["__main__"] = main
        exec(compile(target, "<string>", "exec"), main.__dict__)
    else:
        sys.argv, sys.path[0] = [target, *args], os.path.dirname(os.path.abspath(target))
        runpy.run_path(target, run_name="__main__")


def exit_status(code):
    """The exit status of SystemExit(code), as Python's: None is 0, a number itself, anything else printed, 1."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def wait_for_command(conn, request, fds, listener):
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    pid = os.fork()
    if pid == 0:
        start_command(request, fds, listener, conn)
    for fd in set(fds):
        os.close(fd)
    listener.close()
    conn.sendall(f"pid {pid}\n".encode())
    _, status = os.waitpid(pid, 0)
    conn.sendall(f"exit {os.waitstatus_to_exitcode(status)}\n".encode())
    os._exit(0)


def serve(path):
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the waiters are reaped by the kernel
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    print("ready", flush=True)
    while True:
        ready, _, _ = select.select([listener, sys.stdin], [], [])
        if sys.stdin in ready:  # the test process has ended (or closed our stdin)
            os._exit(0)
        conn, _ = listener.accept()
        message, fds, _, _ = socket.recv_fds(conn, 1 << 20, 3)
        while not message.endswith(b"\n"):
            message += conn.recv(1 << 20)
        if os.fork() == 0:
            wait_for_command(conn, json.loads(message), fds, listener)
        conn.close()
        for fd in set(fds):
            os.close(fd)


serve(sys.argv[1])
'''

_server: subprocess.Popen | None = None
_server_path: Path | None = None
_server_lock = threading.Lock()


def _server_socket() -> Path:
    global _server, _server_path
    with _server_lock:
        if _server is None or _server.poll() is not None:
            path = Path(tempfile.mkdtemp(prefix="openlt-fork-")) / "server"
            env = {**os.environ, **THREADS}
            _server = subprocess.Popen([sys.executable, "-c", _SERVER, str(path)], stdin=PIPE, stdout=PIPE, env=env,
                                       cwd=Path(__file__).parents[2])
            line = _server.stdout.readline()
            if line.strip() != b"ready":
                raise RuntimeError(f"the fork server did not start (exit {_server.wait()})")
            _server_path = path
            atexit.register(_stop_server, _server)
        return _server_path


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
    ctrl_c = len(args) > 3 and args[1] == "-c" and args[2].startswith(_CTRL_C)
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
    threads = {"OMP_NUM_THREADS": env.get("OMP_NUM_THREADS"),
               "MKL_NUM_THREADS": env.get("MKL_NUM_THREADS") or env.get("OMP_NUM_THREADS")}
    if request is None or threads != THREADS:
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
        proc.communicate()
        raise
    if check and proc.returncode:
        raise subprocess.CalledProcessError(proc.returncode, args, out, err)
    return subprocess.CompletedProcess(args, proc.returncode, out, err)


class ForkedProcess:
    """A command run by the server: subprocess.Popen's interface (the part the tests use)."""

    def __init__(self, args, request, stdin, stdout, stderr, text, env, cwd, new_session):
        self.args, self.returncode, self._readers = args, None, None
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
        message = {**request, "env": env, "cwd": str(cwd or os.getcwd()), "new_session": bool(new_session)}
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
        self._conn.close()
        return self.returncode

    def communicate(self, input=None, timeout: float | None = None):
        deadline = None if timeout is None else time.monotonic() + timeout
        if self._readers is None:
            self._readers = {}
            if self.stdin is not None:
                self._start(None, self._feed, input)
            for name in ("stdout", "stderr"):
                if getattr(self, name) is not None:
                    self._start(name, self._drain, getattr(self, name))
        for thread, _ in self._readers.values():
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                raise subprocess.TimeoutExpired(self.args, timeout)
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
        chunks.append(stream.read())
        stream.close()

    def _joined(self, name):
        if name not in self._readers:
            return None
        return self._readers[name][1][0] if self._readers[name][1] else None

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
