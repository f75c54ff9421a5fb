"""Small file helpers: atomic writes (temp file in the same directory, then rename) and hashing."""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import os
import re
import signal
import socket
import tempfile
import threading
from pathlib import Path
from typing import Any, Iterator

from openlt.errors import WriteError

TEMP_SUFFIX = ".tmp"


def _write_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean "the bytes could not be written": OSError (disk full, permissions) and the error
    safetensors raises for the same I/O failures."""
    try:
        from safetensors import SafetensorError
    except ImportError:  # pragma: no cover - safetensors is a dependency
        return (OSError,)
    return (OSError, SafetensorError)


class TempRemovedError(WriteError):
    """The temporary file of a write vanished before it was renamed into place, its folder still there: another
    process removed it (not a permissions problem: writing again works)."""


def _vanished(temp: "_Temp", folder: Path) -> bool:
    """Whether `temp` is gone from the folder it was made in while that folder is still at `folder`."""
    if temp.fd is None:
        return False
    try:
        os.stat(temp.name, dir_fd=temp.fd, follow_symlinks=False)
    except FileNotFoundError:
        return _same_folder(folder, temp.fd)
    except OSError:
        return False
    return False


def _removed_error(path: Path, temp: "_Temp") -> TempRemovedError:
    return TempRemovedError(f"cannot write {path}: its temporary file {temp.name} was removed by another process "
                            f"while it was written (the folder is writable; the previous version, if any, is kept); "
                            f"write it again")


def _write_error(path: Path, exc: BaseException) -> WriteError:
    text = str(exc).strip()
    reason = getattr(exc, "strerror", None) or (text.splitlines()[0] if text else type(exc).__name__)
    return WriteError(f"cannot write {path}: {reason} (the previous version, if any, is kept)")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()


_KEPT: dict[str, int] = {}  # folder (absolute) -> how many blocks of :func:`never_recreated` hold it now
_KEPT_LOCK = threading.Lock()


@contextlib.contextmanager
def never_recreated(folder: str | os.PathLike) -> Iterator[None]:
    """Inside the block (any thread of this process), no :func:`atomic_path` write creates `folder` again when it
    is missing (a run directory moved or deleted while a command uses it: ``Run.watched``): a write into it or
    below it then fails (WriteError, "No such file or directory"), missing folders below it are still created."""
    key = os.path.abspath(folder)
    with _KEPT_LOCK:
        _KEPT[key] = _KEPT.get(key, 0) + 1
    try:
        yield
    finally:
        with _KEPT_LOCK:
            _KEPT[key] -= 1
            if not _KEPT[key]:
                del _KEPT[key]


def _make_parent(folder: Path, parents: bool) -> None:
    """Create `folder` (with its missing parents when `parents`), never a folder held by :func:`never_recreated`."""
    if folder.is_dir():
        return
    here = os.path.abspath(folder)
    with _KEPT_LOCK:
        kept = list(_KEPT)
    for root in kept:
        if (here == root or here.startswith(root.rstrip(os.sep) + os.sep)) and not os.path.isdir(root):
            raise FileNotFoundError(2, "No such file or directory (the folder was moved or deleted meanwhile and "
                                       "is not recreated)", root)
    folder.mkdir(parents=parents, exist_ok=True)


class _Temp:
    """A temporary file `.NAME.XXXX.tmp` made in the folder open as `fd` (a handle on the folder, not its name):
    removed there even when the folder was moved meanwhile (no temporary left in a moved run directory)."""

    def __init__(self, folder: Path, name: str) -> None:
        self.fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            made, tmp = tempfile.mkstemp(prefix=temp_prefix(name), suffix=TEMP_SUFFIX, dir=folder)
            os.close(made)
            self.name, self.path = os.path.basename(tmp), Path(tmp)
            if not _same_folder(folder, self.fd):  # moved between open and mkstemp: made elsewhere
                os.unlink(tmp)
                raise FileNotFoundError(2, "No such file or directory (the folder was moved meanwhile)", str(folder))
        except BaseException:
            os.close(self.fd)
            raise

    def replace(self, path: Path) -> None:
        """Rename it to `path` (its name: where it is meant to be; a folder moved away fails, ENOENT)."""
        os.replace(self.name, path, src_dir_fd=self.fd)

    def discard(self) -> None:
        """Remove it from the folder it was made in, wherever that folder is now; close the handle."""
        with contextlib.suppress(OSError):
            os.unlink(self.name, dir_fd=self.fd)
        self.close()

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _same_folder(folder: Path, fd: int) -> bool:
    try:
        now, held = os.stat(folder), os.fstat(fd)
    except OSError:
        return False
    return (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, parents: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it replaces `path`, on failure it is removed.

    Readers never see a half-written file, and a crash leaves the previous version in place.
    A failure to write (disk full, no permission) is a WriteError naming `path`. The folder of `path` is created
    when missing, with its missing parents unless `parents` is False (then only when its parent exists: a
    run directory moved away meanwhile is not recreated by a write into it), and never a folder that
    :func:`never_recreated` holds. The temporary file is removed from the folder it was made in even when that
    folder was moved meanwhile (a handle on the folder, not its name).
    """
    path = Path(path)
    try:
        _make_parent(path.parent, parents)
        temp = _Temp(path.parent, path.name)
    except OSError as exc:
        raise _write_error(path, exc) from exc
    try:
        yield temp.path
        os.chmod(temp.name, _FILE_MODE, dir_fd=temp.fd)  # mkstemp makes 0600; runs are meant to be read by others
        group = getattr(_GROUP, "pending", None)
        if group is None:
            temp.replace(path)
            temp.close()
        else:  # renamed with the rest of its group (write_group)
            group.append((temp, path))
    except BaseException as exc:
        removed = isinstance(exc, FileNotFoundError) and _vanished(temp, path.parent)
        temp.discard()
        if removed:
            raise _removed_error(path, temp) from exc
        if isinstance(exc, _write_errors()):
            raise _write_error(path, exc) from exc
        raise


_GROUP = threading.local()  # .pending: [(temporary file (_Temp) or None, final path)] of the open write_group of this thread
_DEFERRED = {getattr(signal, name) for name in ("SIGINT", "SIGTERM") if hasattr(signal, name)}
_COMMITTING = threading.Condition()  # .active: the groups being renamed into place now, in any thread
_COMMITTING.active = 0


@contextlib.contextmanager
def write_group() -> Iterator[None]:
    """Write the files of one result as a group: every :func:`atomic_path` write inside the block (write_text,
    write_json, the npz and safetensors writers) goes to its temporary file, and all of them are renamed into
    place together when the block ends without an error (a :func:`remove_file` inside the block removes its file
    then too), with SIGINT / SIGTERM held back (blocked, delivered just after) for those few renames. An error,
    Ctrl-C or SIGTERM inside the block removes every temporary file and leaves all the previous versions: never a
    new metrics.json beside an old report.md. A file written in the block reads as its previous version until
    the block ends. A group inside a group joins the outer one.

    In another thread than the main one (where no signal handler can be installed) the renames are protected
    otherwise: Python runs signal handlers in the main thread only, so the renaming thread is never interrupted
    by them; and the interpreter's exit (the main thread ended by Ctrl-C or SIGTERM while a daemon thread renames)
    waits for a group being renamed to be complete (an atexit hook). Each file is whole in every case (one atomic
    rename each). What no process can hold back (SIGKILL; a SIGTERM that no Python handler catches, which kills
    at once whatever thread runs) may leave part of a group renamed, in any thread."""
    if getattr(_GROUP, "pending", None) is not None:
        yield
        return
    _GROUP.pending = pending = []
    try:
        yield
    except BaseException:
        _GROUP.pending = None
        for tmp, _ in pending:
            if tmp is not None:
                tmp.discard()
        raise
    _GROUP.pending = None
    _commit(pending)


def remove_file(path: str | os.PathLike) -> None:
    """Remove the file `path` (none there: nothing to do). Inside a :func:`write_group` it is removed with the
    group's renames, not before (a failed group leaves it); outside one, now. WriteError when it cannot be."""
    group = getattr(_GROUP, "pending", None)
    if group is not None:
        group.append((None, Path(path)))
        return
    _remove(Path(path))


def _remove(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise WriteError(f"cannot remove {path}: {exc.strerror or exc}") from exc


def _commit(pending: list[tuple[_Temp | None, Path]]) -> None:
    """Rename every (temporary file, final path) of a group (remove the final path where there is no temporary
    file); in the main thread SIGINT / SIGTERM that arrive meanwhile are recorded and raised again once every
    file is in place (their handlers run then); in any thread the interpreter's exit waits for it
    (:func:`_wait_for_commits`)."""
    held: list[int] = []
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in _DEFERRED:
            previous[sig] = signal.signal(sig, lambda signum, frame: held.append(signum))
    with _COMMITTING:
        _COMMITTING.active += 1
    try:
        for i, (tmp, path) in enumerate(pending):
            if tmp is None:
                _remove(path)
                continue
            try:
                tmp.replace(path)
                tmp.close()
            except OSError as exc:
                removed = isinstance(exc, FileNotFoundError) and _vanished(tmp, path.parent)
                for rest, _ in pending[i:]:
                    if rest is not None:
                        rest.discard()
                raise (_removed_error(path, tmp) if removed else _write_error(path, exc)) from exc
    finally:
        with _COMMITTING:
            _COMMITTING.active -= 1
            _COMMITTING.notify_all()
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)
        for sig in dict.fromkeys(held):
            signal.raise_signal(sig)


COMMIT_WAIT_S = 60.0  # the longest the interpreter's exit waits for groups being renamed (a few renames each)


@atexit.register
def _wait_for_commits() -> None:
    """At the interpreter's exit (after the non-daemon threads ended, before daemon threads are stopped): wait
    for the groups other threads are renaming into place, so that an exit never stops one half-way."""
    with _COMMITTING:
        _COMMITTING.wait_for(lambda: _COMMITTING.active == 0, timeout=COMMIT_WAIT_S)


def _host_tag() -> str:
    return hashlib.sha256(socket.gethostname().encode("utf-8", "replace")).hexdigest()[:6]


def temp_prefix(name: str) -> str:
    """The start of the name of a temporary file or folder this process writes for `name`: ``.NAME.PID-HOST.``
    (HOST: 6 hex digits of a hash of the host name), so that a later process can tell one whose writer died (a
    SIGKILL mid-write: :func:`stale_temporaries`) from one a live process is writing."""
    return f".{name}.{os.getpid()}-{_host_tag()}."


_TEMP_NAME = re.compile(r"\.(?P<name>.+)\.(?P<pid>\d+)-(?P<host>[0-9a-f]{6})\.[^.]+\.(?:tmp|old)")


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except PermissionError:  # (another user's process)
        return True
    except (ProcessLookupError, OverflowError):
        return False
    return True


def writer_dead(pid: int, host: str) -> bool | None:
    """Whether the writer a name's PID-HOST tag (:func:`temp_prefix`) names is dead: True when it is of this host
    and its process is gone, False when that process runs, None when it is of another host (not known here)."""
    return None if host != _host_tag() else not _alive(pid)


def stale_temporaries(folder: str | os.PathLike, name: str | None = None) -> list[Path]:
    """The temporary files and folders (:func:`temp_prefix`: ``.NAME.PID-HOST.XXXX.tmp``, an export's ``.old``)
    directly in `folder` (of `name` only, when given) whose writer is dead: written on this host by a process
    that no longer runs. Those of a live process, of another host, and any other name are never listed."""
    found = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    host = _host_tag()
    for entry in entries:
        match = _TEMP_NAME.fullmatch(entry.name)
        if (match and match["host"] == host and (name is None or match["name"] == name)
                and not _alive(int(match["pid"]))):
            found.append(Path(entry.path))
    return found


def remove_stale_temp(folder: str | os.PathLike, dead_only: bool = False) -> list[Path]:
    """Delete the temporary files of writes that never finished (a process killed mid-write) under `folder`.

    Only names of the form `atomic_path` uses (`.NAME.XXXX.tmp`) are touched. Without `dead_only`, call it only
    when no other process can write into `folder` (never a run directory: an eval or a features extraction may
    write into a run while it is resumed); with `dead_only`, only those whose
    writer is known dead are removed (:func:`stale_temporaries`, in `folder` and its sub-folders), safe while
    other processes write there. Returns the files removed.
    """
    removed = []
    if dead_only:
        folders = [Path(folder), *(p for p in Path(folder).rglob("*") if p.is_dir() and not p.is_symlink())]
        candidates = [tmp for sub in folders for tmp in stale_temporaries(sub)]
    else:
        candidates = list(Path(folder).rglob(f".*{TEMP_SUFFIX}"))
    for tmp in candidates:
        if tmp.is_file() and not tmp.is_symlink():
            with contextlib.suppress(OSError):
                tmp.unlink()
                removed.append(tmp)
    return removed


def unmakeable_folder(path: str | os.PathLike) -> str | None:
    """Why the folder `path` (not there yet) cannot be created, naming what stands in the way: the nearest path
    at or above it that exists, a file (`afile/out`) or a folder this process cannot write into, or a symbolic link
    to nothing (`gone/out`); None when it can be made. Checked before the work whose output it is (`openlt split`
    reads every image first), where mkdir would only say `File exists`."""
    above = Path(path)
    while not above.exists() and not above.is_symlink() and above != above.parent:
        above = above.parent
    if above.is_symlink() and not above.exists():
        return f"{above} is a symbolic link to {os.readlink(above)}, which does not exist"
    if above.exists() and not above.is_dir():
        return f"{above} is a file, not a folder"
    if above.is_dir() and not os.access(above, os.W_OK | os.X_OK):
        return f"the folder {above} cannot be written into (permission denied or a read-only filesystem)"
    return None


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` as UTF-8 to ``path`` atomically (:func:`atomic_path`); WriteError when it cannot be written."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON (2 spaces, key order kept, final newline) to ``path`` atomically.

    WriteError when it cannot be written. Non-finite floats are written as ``NaN`` / ``Infinity`` (json's
    default, not strict JSON): callers that need strict JSON replace them first.
    """
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def append_jsonl(path: str | os.PathLike, obj: Any) -> None:
    """Append one JSON line and flush it to disk (metrics logs survive a crash up to the last line)."""
    try:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(obj) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        raise _write_error(Path(path), exc) from exc


def read_jsonl(path: str | os.PathLike, what: str, error: type[Exception]) -> tuple[list[dict], str | None]:
    """The JSON objects of a JSON-lines file, one a line (blank lines skipped), and a note, or None.

    A last line that is not complete JSON (a crash while it was appended: cut short, or not UTF-8) is dropped,
    and the note says so; any other line that is not a UTF-8 JSON object raises `error` naming `what`, the
    file and the line. A UTF-8 byte-order mark at the start (an editor's) is skipped, as in config files; CRLF line
    ends are read as LF. Nothing is rewritten. OSError (not wrapped) when the file cannot be read."""
    path = Path(path)
    data = path.read_bytes().removeprefix(b"\xef\xbb\xbf")
    lines = [(n, raw) for n, raw in enumerate(data.split(b"\n"), start=1) if raw.strip()]
    records: list[dict] = []
    for i, (lineno, raw) in enumerate(lines):
        try:
            record = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            if i == len(lines) - 1:
                return records, (f"{path}, line {lineno}: dropped a torn last line of the {what} (a crash while "
                                 f"it was written)")
            raise error(f"{path}, line {lineno}: not a line of the {what} ({_first_line(exc)})") from None
        if not isinstance(record, dict):
            raise error(f"{path}, line {lineno}: not a line of the {what} (a JSON {type(record).__name__}, "
                        f"not an object)")
        records.append(record)
    return records, None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """The SHA-256 of a file's bytes as 64 lowercase hex digits, read in ``chunk``-byte blocks (default 1 MiB);
    OSError (not wrapped) when the file cannot be read."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def safetensors_header(path: str | os.PathLike) -> tuple[dict[str, str], list[str]]:
    """The metadata ({} without any) and tensor names of the safetensors file at `path`, read from its header alone
    with safetensors (no tensor is loaded, no torch needed: reporting reads a checkpoint's header so too). OSError
    (not wrapped) when the file cannot be read; ValueError with safetensors' own words when it is not a safetensors
    file (a header too small, too large, cut short, ...)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="numpy") as fh:
            return fh.metadata() or {}, list(fh.keys())
    except SafetensorError as exc:
        raise ValueError(str(exc)) from None
