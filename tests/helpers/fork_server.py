"""The server of tests/helpers/forked_python.py: `python fork_server.py SOCKET` imports what every openlt command
needs, then forks a waiter per request (a connection carrying the request and the command's three standard
streams), which forks the command's process, says its pid, reports how it ended (without reaping it: the
command stays a zombie until the test has read its end, as a child of subprocess does), then reaps it.

The command's process sets itself up as a fresh `python ...` would be (streams, signals, umask, working folder,
environment, __main__, sys.argv, sys.path[0], random seeds), runs, and ends with os._exit after what a fresh
interpreter does at its end but its teardown (non-daemon threads joined, atexit handlers, the standard streams
flushed, exit status 120 when stdout cannot be): the teardown only frees memory, mostly shared with the server,
so each page would be copied first (~1.5 s). Never returns into the server's code."""

from __future__ import annotations

import atexit
import io
import json
import os
import runpy
import select
import signal
import socket
import sys
import threading
import traceback
import types

from openlt.cli import load_registries

load_registries()
import openlt.engine.bench  # noqa: E402,F401  (what the commands import when they run)
import openlt.engine.decouple  # noqa: E402,F401
import openlt.engine.evaluate  # noqa: E402,F401
import openlt.engine.export  # noqa: E402,F401
import openlt.engine.features  # noqa: E402,F401
import openlt.engine.predict  # noqa: E402,F401
import openlt.engine.train  # noqa: E402,F401
import openlt.reporting  # noqa: E402,F401

HERE = os.path.abspath(__file__)
_RUNPY = runpy.__file__  # its frames, like the server's, are not the command's (left out of its traceback)
_KEPT: list = []  # the server's own stream objects: never collected, so never closing descriptors 0 - 2


def start_command(request: dict, fds: list[int], listener: socket.socket, conn: socket.socket) -> None:
    """The command's process: set up, run, end (os._exit, whatever happens)."""
    code = 1
    try:
        _set_up(request, fds, listener, conn)
        code = _run(request["kind"], request["target"], request["args"])
    except BaseException:  # noqa: BLE001  (a failure of the set-up itself: said, and the process ends)
        traceback.print_exc()
    finally:
        os._exit(code)


def _set_up(request: dict, fds: list[int], listener: socket.socket, conn: socket.socket) -> None:
    listener.close()
    conn.close()
    if request["new_session"]:
        os.setsid()
    os.umask(request["umask"])
    for number, ignored in request["signals"].items():  # a fresh process inherits ignored signals alone
        signum = int(number)
        if signum == signal.SIGINT:  # Python's own handler unless ignored
            signal.signal(signum, signal.SIG_IGN if ignored and not request["ctrl_c"] else signal.default_int_handler)
        else:
            signal.signal(signum, signal.SIG_IGN if ignored else signal.SIG_DFL)
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
    for fd in set(fds):
        if fd > 2:
            os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    _streams(bool(os.environ.get("PYTHONUNBUFFERED")))
    if "multiprocessing.process" in sys.modules:
        sys.modules["multiprocessing.process"].ORIGINAL_DIR = os.getcwd()
    import numpy
    import torch

    numpy.random.seed()  # from the system's entropy, as in a fresh process (Python's random is reseeded at fork)
    torch.seed()


def _streams(unbuffered: bool) -> None:
    """sys.stdin / stdout / stderr on descriptors 0 - 2, as Python makes them at start-up."""
    encoding = sys.stdout.encoding
    _KEPT.extend((sys.stdin, sys.stdout, sys.stderr))

    def stream(fd: int, mode: str, errors: str, line_buffering: bool) -> io.TextIOWrapper:
        raw = io.FileIO(fd, mode, closefd=False)
        buffered = raw if unbuffered and mode == "w" else (io.BufferedWriter(raw) if mode == "w"
                                                           else io.BufferedReader(raw))
        return io.TextIOWrapper(buffered, encoding=encoding, errors=errors, line_buffering=line_buffering,
                                write_through=unbuffered and mode == "w")

    sys.stdin = sys.__stdin__ = stream(0, "r", "strict", False)
    sys.stdout = sys.__stdout__ = stream(1, "w", "strict", not unbuffered and os.isatty(1))
    sys.stderr = sys.__stderr__ = stream(2, "w", "backslashreplace", not unbuffered)


def _run(kind: str, target: str, args: list[str]) -> int:
    """Run the command in a new __main__ and end as Python does: its exit status."""
    main = types.ModuleType("__main__")
    main.__builtins__ = __builtins__
    sys.modules["__main__"] = main  # kept to the end (atexit handlers, pickling)
    try:
        if kind == "module":
            sys.argv, sys.path[0] = ["-m", *args], os.getcwd()
            runpy._run_module_as_main(target)  # what `python -m` runs: in sys.modules["__main__"]
        elif kind == "code":
            sys.argv, sys.path[0] = ["-c", *args], ""
            exec(compile(target, "<string>", "exec"), main.__dict__)
        else:
            path = os.path.abspath(target)
            if not os.path.exists(path):
                print(f"{sys.executable}: can't open file {path!r}: [Errno 2] No such file or directory",
                      file=sys.stderr)
                return 2
            sys.argv, sys.path[0] = [target, *args], os.path.dirname(os.path.realpath(path))
            main.__file__ = path
            with open(path, "rb") as fh:
                source = fh.read()
            exec(compile(source, path, "exec"), main.__dict__)
        code = 0
    except SystemExit as stop:
        code = _exit_status(stop.code)
    except BaseException as exc:  # noqa: BLE001  (uncaught: sys.excepthook says it, without the server's frames)
        sys.excepthook(type(exc), exc, _without_server(exc.__traceback__))
        code = -signal.SIGINT if isinstance(exc, KeyboardInterrupt) else 1
    return _finish(code)


def _without_server(tb):
    while tb is not None and tb.tb_frame.f_code.co_filename in (HERE, _RUNPY):
        tb = tb.tb_next
    return tb


def _exit_status(code) -> int:
    """The exit status of SystemExit(code), as Python's: None is 0, a number itself, anything else printed, 1."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def _finish(code: int) -> int:
    """What Python does at its end but the teardown: threads joined, atexit handlers, streams flushed (exit 120
    when stdout cannot be); an uncaught KeyboardInterrupt ends the process by SIGINT."""
    try:
        threading._shutdown()
    except KeyboardInterrupt:
        print("Exception ignored on threading shutdown:", file=sys.stderr)
        traceback.print_exc()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        if stream is None or stream.closed:
            continue
        try:
            stream.flush()
        except Exception:  # noqa: BLE001  (as Python's flush of the standard streams at exit)
            if stream is sys.stdout:
                print(f"Exception ignored in: {stream!r}", file=sys.stderr)
                traceback.print_exc()
            code = 120
    if code == -signal.SIGINT:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    return code


def wait_for_command(conn: socket.socket, request: dict, fds: list[int], listener: socket.socket) -> None:
    """The waiter: start the command, say its pid, then its end once it has ended, and reap it once the test has
    read that (it says "reap", or its connection ends), then say so."""
    listener.close()
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    pid = os.fork()
    if pid == 0:
        start_command(request, fds, listener, conn)
    for fd in set(fds):
        os.close(fd)
    try:
        conn.sendall(f"pid {pid}\n".encode())
        ended = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)  # ended, not reaped: a zombie, as subprocess's
        code = ended.si_status if ended.si_code == os.CLD_EXITED else -ended.si_status
        conn.sendall(f"exit {code}\n".encode())
        conn.recv(4096)  # the test has read it ("reap", or its end): reaped before the test's wait returns
    finally:
        os.waitpid(pid, 0)
        try:
            conn.sendall(b"reaped\n")
        finally:
            os._exit(0)


def serve(path: str) -> None:
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


if __name__ == "__main__":
    serve(sys.argv[1])
