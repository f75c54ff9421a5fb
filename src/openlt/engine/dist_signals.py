"""SIGTERM / Ctrl-C while a process waits for its peers inside PyTorch's C++ code (a collective, the join).

There, Python's signal handlers cannot run: a watchdog thread (`watch_signals`, started by
`distributed.setup`) ends the process with the usual ``openlt CMD: interrupted (SIGTERM | Ctrl-C)`` line (and
the run's `--resume` hint, `interrupt_note`) when the main thread does not come back to Python soon after a
SIGTERM or SIGINT: at once inside a marked wait for the other processes (`waiting_for_peers`), after a longer
grace elsewhere (DDP's gradient all-reduce inside backward). When the main thread does come back, its own
handler acts as always.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator

__all__ = ["interrupt_note", "waiting_for_peers", "watch_signals"]

_GRACE_WAITING_S = 1.0  # inside `waiting_for_peers` (a collective, the join): the main thread's time to react
_GRACE_STUCK_S = 10.0  # elsewhere (DDP's gradient all-reduce inside backward): this long without any Python progress
_state: dict[str, Any] = {"waiting": 0, "notes": [], "watching": False}


@contextmanager
def waiting_for_peers() -> Iterator[None]:
    """Marks a blocking wait for the other processes (a collective, the join): a SIGTERM / SIGINT arriving
    meanwhile ends the process from the watchdog when the main thread does not leave the wait at once."""
    _state["waiting"] += 1
    try:
        yield
    finally:
        _state["waiting"] -= 1


@contextmanager
def interrupt_note(note: Callable[[], str]) -> Iterator[None]:
    """Inside the block, the line the watchdog prints on a signal it has to act on ends with `note()` (a run's
    `--resume` hint), as the main thread's own interrupt message would."""
    _state["notes"].append(note)
    try:
        yield
    finally:
        _state["notes"].remove(note)


def _command() -> str:
    """`openlt CMD` as the CLI names itself in its messages (from sys.argv: the first non-option argument)."""
    words = [a for a in sys.argv[1:] if not a.startswith("-")]
    return f"openlt {words[0]}" if words else "openlt"


def watch_signals() -> None:
    """Start (once, from the main thread) the watchdog that sees SIGTERM / SIGINT through Python's wakeup file
    descriptor (written by the C-level handler even while the main thread is blocked in C++)."""
    if _state["watching"] or threading.current_thread() is not threading.main_thread():
        return
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    try:
        previous = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    except ValueError:
        previous = None
    if previous != -1:  # someone else uses it (or it cannot be set): leave it alone
        if previous is not None:
            signal.set_wakeup_fd(previous)
        os.close(read_fd), os.close(write_fd)
        return
    os.register_at_fork(after_in_child=_unwatch_in_child)  # a DataLoader worker's signals are its own
    _state["watching"] = True
    threading.Thread(target=_watchdog, args=(read_fd, threading.main_thread().ident), daemon=True,
                     name="openlt-signal-watchdog").start()


def _unwatch_in_child() -> None:
    _state["watching"] = False
    try:
        signal.set_wakeup_fd(-1)
    except ValueError:
        pass


def _watchdog(read_fd: int, main_ident: int | None) -> None:
    watched = {int(signal.SIGINT), int(signal.SIGTERM)}
    while True:
        try:
            data = os.read(read_fd, 64)
        except OSError:
            return
        if not data:
            return
        for signum in data:
            if signum in watched:
                _on_signal(signum, main_ident)


def _main_position(main_ident: int | None) -> tuple[int, int] | None:
    frame = sys._current_frames().get(main_ident) if main_ident is not None else None
    return None if frame is None else (id(frame), frame.f_lasti)


def _on_signal(signum: int, main_ident: int | None) -> None:
    """A SIGTERM / SIGINT reached the process: leave it to the main thread's handler when the main thread runs
    Python (it leaves the wait, or makes progress); else print the usual line and exit 130 / 143."""
    waiting = _state["waiting"] > 0
    position = _main_position(main_ident)
    end = time.monotonic() + (_GRACE_WAITING_S if waiting else _GRACE_STUCK_S)
    while time.monotonic() < end:
        time.sleep(0.05)
        if waiting and _state["waiting"] == 0:
            return
        if not waiting and _main_position(main_ident) != position:
            return
    how = "SIGTERM" if signum == signal.SIGTERM else "Ctrl-C"
    note = ""
    if _state["notes"]:
        try:
            note = f": {_state['notes'][-1]()}"
        except Exception:  # noqa: BLE001  (the note is a courtesy; the exit is what matters)
            note = ""
    try:
        sys.stdout.flush()
    except Exception:  # noqa: BLE001
        pass
    os.write(2, f"{_command()}: interrupted ({how}) while waiting for the other processes{note}\n".encode())
    os._exit(128 + int(signal.SIGTERM) if signum == signal.SIGTERM else 130)
