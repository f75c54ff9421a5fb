"""A run is one directory: resolved config, split manifest, checkpoints, metrics logs, results, report.

A run can be resumed, re-evaluated and used for prediction from its directory alone.
"""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import errno
import json
import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeVar

from openlt.config import Config, build_config, dump_yaml, read_yaml_mapping, run_name_problem
from openlt.errors import ConfigError, OpenLTError, RunDirError, WriteError
from openlt.io import never_recreated, read_jsonl, temp_prefix, write_json, write_text, writer_dead
from openlt.run_folders import example_run

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: runs are not locked
    fcntl = None

STAGE_SUFFIX = ".new-run"  # OUT_DIR/.NAME.PID-HOST.XXXXXXXX.new-run: a run being prepared, renamed when complete
_STAGE_NAME = re.compile(r"\..*\.(?P<pid>\d+)-(?P<host>[0-9a-f]{6})\.[^.]+" + re.escape(STAGE_SUFFIX))
_STAGE_NAME_BYTES = 200  # of NAME in a staged run's name: with the rest, within a file name's 255 bytes
TAG = re.compile(r"[A-Za-z0-9_-]{1,100}")  # an evaluation's tag: metrics-TAG.json, report-TAG.md, ...
T = TypeVar("T")


def check_tag(tag: str | None, what: str = "tag") -> None:
    """Refuse a tag that is not 1 to 100 ASCII letters, digits, '-' or '_' (ConfigError naming `what`, e.g.
    "--tag"): the one rule of `openlt eval / report / identify --tag`, ``LoadedRun.evaluate(tag=...)`` and a
    bench's ``eval_of`` files, so that a tag never leaves the run directory ('../x'), never gives an odd file name
    ('x\\n', '') and means the same file everywhere. None (no tag) is fine."""
    if tag is not None and not (isinstance(tag, str) and TAG.fullmatch(tag)):
        raise ConfigError(f"{what} {tag!r}: use 1 to 100 ASCII letters, digits, '-' or '_'")


@dataclass
class Run:
    """One run directory. Every path inside it is a property or method here, so that its layout is known in one
    place; a `tag` (e.g. another open-set score, ``openlt eval --tag``) names the files of an extra evaluation
    (metrics-TAG.json, report-TAG.md, ...) that leave the run's own results as they were."""

    path: Path

    def _tagged(self, stem: str, suffix: str, tag: str | None) -> Path:
        check_tag(tag)
        return self.path / f"{stem}{'' if tag is None else f'-{tag}'}{suffix}"

    @property
    def config_file(self) -> Path:
        """The resolved config the run was trained with."""
        return self.path / "config.yaml"

    @property
    def manifest_file(self) -> Path:
        """The description of the run's split files (hashes, classes, counts)."""
        return self.path / "split_manifest.json"

    @property
    def inference_file(self) -> Path:
        """inference.json: what prediction needs besides the weights (classes, input size and channels, the
        evaluation transform), so that a run labels images without its data (engine/inference.py)."""
        return self.path / "inference.json"

    @property
    def log_file(self) -> Path:
        """The per-epoch log, one JSON object a line."""
        return self.path / "metrics.jsonl"

    @property
    def lock_file(self) -> Path:
        """train.lock: held (flock) by the one process training the run; holds its PID and host."""
        return self.path / "train.lock"

    @property
    def tensorboard_dir(self) -> Path:
        """TensorBoard event files of the per-epoch log (when tensorboard is installed)."""
        return self.path / "tensorboard"

    @property
    def calibration_file(self) -> Path:
        """The open-set decision chosen by the run's evaluation (score, threshold, source)."""
        return self.path / "calibration.json"

    @property
    def metrics_file(self) -> Path:
        """The evaluation's numbers, metrics.json."""
        return self.metrics_path()

    @property
    def report_file(self) -> Path:
        """The markdown report, report.md."""
        return self.report_path()

    @property
    def splits_dir(self) -> Path:
        """Where the split files are built when the config gives no data.split_dir."""
        return self.path / "splits"

    @property
    def checkpoints_dir(self) -> Path:
        """checkpoints/ with best.safetensors and last.safetensors."""
        return self.path / "checkpoints"

    @property
    def features_dir(self) -> Path:
        """The feature cache (`openlt features`, decoupled stage 2)."""
        return self.path / "features"

    @property
    def decouple_file(self) -> Path:
        """What a decoupled stage 2 chose (method, tau, kept epoch, ...)."""
        return self.path / "decouple.json"

    @property
    def tau_curve_file(self) -> Path:
        """The validation top-1 per band against tau of tau-normalisation / logit adjustment."""
        return self.path / "tau_curve.png"

    def metrics_path(self, tag: str | None = None) -> Path:
        """The evaluation's numbers, metrics(-TAG).json."""
        return self._tagged("metrics", ".json", tag)

    def report_path(self, tag: str | None = None) -> Path:
        """The markdown report, report(-TAG).md."""
        return self._tagged("report", ".md", tag)

    def report_html_path(self, tag: str | None = None) -> Path:
        """The self-contained HTML report with the figures, report(-TAG).html."""
        return self._tagged("report", ".html", tag)

    def predictions_path(self, tag: str | None = None) -> Path:
        """The per-sample results the reports are drawn from, predictions(-TAG).npz."""
        return self._tagged("predictions", ".npz", tag)

    def confusion_path(self, tag: str | None = None) -> Path:
        """The test images' confusion matrix, sparse (scipy.sparse save_npz, compressed), confusion(-TAG).npz."""
        return self._tagged("confusion", ".npz", tag)

    def open_score_path(self, tag: str | None = None) -> Path:
        """A fitted open-set score (OpenMax), open-score(-TAG).safetensors."""
        return self._tagged("open-score", ".safetensors", tag)

    def identification_path(self, tag: str | None = None) -> Path:
        """Face identification / verification numbers (`openlt identify`), identification(-TAG).json."""
        return self._tagged("identification", ".json", tag)

    def checkpoint(self, name: str) -> Path:
        """checkpoints/NAME.safetensors (`best`, `last`)."""
        return self.checkpoints_dir / f"{name}.safetensors"

    def feature_cache(self, split: str) -> Path:
        """The cached features of one split (train, val, test, open)."""
        return self.features_dir / f"{split}.safetensors"

    def config(self) -> Config:
        """The run's saved config; RunDirError when it is missing, not YAML, or not readable by this version."""
        try:  # the checked reader: UTF-8, no duplicate keys (an edit that adds one), no aliases
            saved = read_yaml_mapping(self.config_file, "run config")
        except OpenLTError as exc:
            raise RunDirError(str(exc)) from None
        try:
            return build_config(base=saved)
        except OpenLTError as exc:
            # an edit by hand (a key of one stage set in another) or a config of another version
            raise RunDirError(f"{self.config_file}: {exc} (edited by hand, or written by another version of "
                              "openlt?)") from None

    def write_config(self, cfg: Config) -> None:
        """Save the resolved config as config.yaml (atomic), its paths absolute (:func:`absolute_paths`)."""
        write_text(self.config_file, dump_yaml(absolute_paths(cfg)))

    def write_manifest(self, manifest: dict) -> None:
        """Save the description of the run's split files (atomic)."""
        write_json(self.manifest_file, manifest)

    def calibration(self) -> dict:
        """The saved open-set calibration (score, threshold, source), or {} before the run is evaluated."""
        if not self.calibration_file.is_file():
            return {}
        return json.loads(self.calibration_file.read_text(encoding="utf-8"))

    def epochs_logged(self) -> list[dict]:
        """The per-epoch records of metrics.jsonl, oldest first ([] before the first epoch); a torn last line (a
        crash while it was written) is left out. RunDirError naming the file and line for any other bad line."""
        return self.read_log()[0]

    def read_log(self) -> tuple[list[dict], str | None]:
        """(the records of metrics.jsonl, a note when a torn last line was dropped, else None). Each record is a
        JSON object with a positive integer ``epoch``; RunDirError naming the file and line otherwise."""
        if not self.log_file.is_file():
            return [], None
        try:
            records, note = read_jsonl(self.log_file, "per-epoch log", RunDirError)
        except OSError as exc:
            raise RunDirError(f"cannot read {self.log_file}: {exc.strerror or exc}") from None
        for n, record in enumerate(records, start=1):
            epoch = record.get("epoch")
            if type(epoch) is not int or epoch < 1:
                raise RunDirError(f"{self.log_file}: record {n} has no positive integer 'epoch' (got {epoch!r})")
        return records, note

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the run's exclusive lock (flock on train.lock) while training it: one process at a time.

        RunDirError naming the process (PID and host) that holds it (training or evaluating the run). The lock
        goes with the process: it is released on exit, also a killed one's, and stays with the directory when it
        is renamed. train.lock is removed as the lock is released (a finished train or eval leaves none); a killed
        process's file stays behind, free, and is taken over by the next."""
        with self._held_lock(TRAINING, "train it"):
            yield

    @contextlib.contextmanager
    def eval_lock(self) -> Iterator[None]:
        """Hold the run's lock (the same flock on train.lock as :meth:`lock`) for an evaluation's whole length,
        so that a `openlt train --resume` started meanwhile is refused (naming this process) instead of changing
        the checkpoints and the calibration under it. RunDirError naming the process that trains (or evaluates)
        the run. A lock this process already holds (a caller that trains and then evaluates) is enough."""
        with self._held_lock(EVALUATING, "evaluate it"):
            yield

    @contextlib.contextmanager
    def _held_lock(self, activity: str, command: str) -> Iterator[None]:
        if fcntl is None:  # pragma: no cover
            yield
            return
        if not self.path.is_dir():  # (open() below would create nothing but fail with a less clear reason)
            raise RunDirError(f"run directory not found: {self.path} (moved or deleted?)")
        fh = self._locked_file(activity, command)
        if fh is None:  # this process holds it already (its own training)
            yield
            return
        with fh:
            info = os.fstat(fh.fileno())
            key = (info.st_dev, info.st_ino)
            fh.seek(0)
            fh.truncate()
            fh.write(f"{os.getpid()} on {socket.gethostname()}\n{activity}\n")
            fh.flush()
            try:  # a handle on the directory: it follows a staged run published, a run moved
                folder: int | None = os.open(self.path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
            except OSError:  # (the file then stays behind, free)
                folder = None
            _HELD.add(key)
            try:
                yield
            finally:  # removed while still held (a finished run keeps no train.lock); closing releases the lock
                _HELD.discard(key)
                _remove_lock_file(folder, self.lock_file.name, info)

    def _locked_file(self, activity: str, command: str) -> IO[str] | None:
        """train.lock opened and locked (flock, exclusive) by this process; None when this process holds it already
        and `activity` is EVALUATING. A holder removes the file as it releases it (:meth:`_held_lock`): a lock
        taken on a file no longer at the path is let go and the new file's taken instead. A lock held by a
        process whose record is not whole yet (:func:`_record`: it has just taken the lock) is tried again for up
        to TAKING_S before the refusal names whom the record names."""
        fh, text = _read_settled(lambda: self._try_lock(activity),
                                 lambda tried: tried[1] is None or _record(tried[1]) is not None)
        if text is not None:
            raise self._held_by_another(text, activity, command)
        return fh

    def _try_lock(self, activity: str) -> tuple[IO[str] | None, str | None]:
        """One try at :meth:`_locked_file`: (train.lock opened and locked, None); (None, None) when this process
        holds it already and `activity` is EVALUATING; (None, the file's text) when another process holds it."""
        while True:
            try:
                fh = open(self.lock_file, "a+", encoding="utf-8", errors="replace")
            except OSError as exc:
                remedy = ("; the run's folder cannot be written: copy the run somewhere writable (cp -r) and use the "
                          "copy" if isinstance(exc, PermissionError) or exc.errno == errno.EROFS else "")
                raise WriteError(f"cannot create {self.lock_file}: {exc.strerror or exc}{remedy}") from None
            info = os.fstat(fh.fileno())
            if activity == EVALUATING and (info.st_dev, info.st_ino) in _HELD:
                fh.close()
                return None, None
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                fh.seek(0)
                text = fh.read()
                fh.close()
                return None, text
            if _same_file(self.lock_file, info):
                return fh, None
            fh.close()  # its holder removed it as it ended: lock the file at the path now

    def _held_by_another(self, text: str, activity: str, command: str) -> RunDirError:
        """The refusal for the process (`text`: train.lock's lines) that holds the run's lock."""
        holder, what = _holder(text)
        if what == EVALUATING:
            return RunDirError(f"{self.path} is being evaluated by process {holder} (`openlt eval` or the final "
                               f"evaluation of `openlt train`); {command} once it has ended")
        if activity == EVALUATING:
            return RunDirError(f"{self.path} is being trained by process {holder}; {command} once training has "
                               f"ended (wait for it, or stop it and `openlt train --resume {self.path}` later)")
        return RunDirError(f"{self.path} is being trained by process {holder} (another `openlt train` or "
                           f"`--resume` of this run); wait for it to end, or stop it first")

    def check_not_training(self, command: str) -> None:
        """Refuse to `command` (e.g. "label images with") the run while another live process trains it (holds
        train.lock, :meth:`lock`): RunDirError naming that process (PID and host). Its checkpoints, log and
        calibration are still changing. The lock is only tested, not held; this process's own lock does not
        count, nor an evaluation's (:meth:`eval_lock`: it changes neither the weights nor, but in one atomic
        group, the calibration). A record not whole yet (:func:`_record`) is read again for up to TAKING_S: an
        evaluation just starting is not taken for a training, nor a training taking over a killed evaluation's
        file for that evaluation."""
        if fcntl is None or not self.lock_file.is_file():  # pragma: no cover - not POSIX
            return
        held = _read_settled(self._other_holder, lambda held: held is None or held[1] is not None)
        if held is None:
            return
        text, record = held
        holder, what = record or _holder(text)
        if holder.split(" ", 1)[0] == str(os.getpid()) or what == EVALUATING:
            return  # held by this process, or by an evaluation
        raise RunDirError(f"{self.path} is being trained by process {holder}; {command} it once training has "
                          f"ended (wait for it, or stop it and `openlt train --resume {self.path}` later)")

    def _other_holder(self) -> tuple[str, tuple[str, str] | None] | None:
        """One look at train.lock for :meth:`check_not_training`, its lock only tested: None when it is free, gone
        or unreadable (taken as free: the checks of the files that follow still apply) or held by this process (a
        caller that trains and then evaluates); else (its text, its :func:`_record`: None while its holder, which
        has just taken the lock, is writing it)."""
        try:
            fh = open(self.lock_file, encoding="utf-8", errors="replace")
        except OSError:
            return None
        with fh:
            info = os.fstat(fh.fileno())
            if (info.st_dev, info.st_ino) in _HELD:
                return None
            try:
                fcntl.flock(fh, fcntl.LOCK_SH | fcntl.LOCK_NB)
                return None  # free (closing the file releases this test lock)
            except OSError:
                text = fh.read()
        return text, _record(text)

    @contextlib.contextmanager
    def watched(self) -> Iterator[None]:
        """Keep the run directory open (a handle on it, not its name) inside the block, so that
        :meth:`check_in_place` can tell when it was moved or deleted meanwhile (``mv runs/x runs/y``)."""
        try:
            fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        except OSError as exc:
            raise RunDirError(f"cannot open the run directory {self.path}: {exc.strerror or exc}") from None
        self._dir_fd = fd
        try:
            with never_recreated(self.path):  # a write into it while it is gone fails: never a new empty folder
                yield
        finally:
            self._dir_fd = None
            os.close(fd)

    def check_in_place(self, what: str, *, plural: bool = False,
                       again: Callable[[Path], str] | None = None) -> None:
        """Inside :meth:`watched`: RunMovedError, one line, when the run directory is no longer at its path (moved,
        deleted, or another directory put there), saying `what` (a plural noun when `plural`) was not written and,
        when the system can tell where it went (Linux: /proc/self/fd), the command that continues there:
        `again(NEW_PATH)` (default `openlt train --resume NEW_PATH`); never recreates it. Outside
        :meth:`watched`: nothing."""
        fd = getattr(self, "_dir_fd", None)
        if fd is None:
            return
        held = os.fstat(fd)
        try:
            now = os.stat(self.path)
            if (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino):
                return
        except OSError:
            pass
        where = _current_path(fd) if held.st_nlink else None
        was = "were" if plural else "was"
        if where is not None and where != Path(os.path.abspath(self.path)):
            command = again(where) if again is not None else f"openlt train --resume {where}"
            raise RunMovedError(f"the run directory {self.path} was moved to {where} while it was in use; stopped: "
                                f"{what} {was} not written, nothing more was written (continue with `{command}`)",
                                where=where, command=command)
        raise RunMovedError(f"the run directory {self.path} was moved or deleted while it was in use; stopped: {what} "
                            f"{was} not written, nothing more was written and the directory is not recreated")


class RunMovedError(RunDirError):
    """The run directory is no longer where the process that uses it found it (:meth:`Run.check_in_place`);
    `where`: where it is now, None when deleted or unknown; `command`: the command its message names, which
    continues there (None without `where`)."""

    def __init__(self, message: str, where: Path | None = None, command: str | None = None) -> None:
        super().__init__(message)
        self.where, self.command = where, command


TRAINING, EVALUATING = "training", "evaluating"  # the second line of train.lock: what its holder does
_HELD: set[tuple[int, int]] = set()  # (device, inode) of the run locks this process holds


def _holder(text: str) -> tuple[str, str]:
    """(the "PID on HOST" of train.lock, what it does: TRAINING or EVALUATING; an older file: training)."""
    lines = text.strip().splitlines()
    holder = lines[0].strip() if lines and lines[0].strip() else "(unknown)"
    return holder, EVALUATING if len(lines) > 1 and lines[1].strip() == EVALUATING else TRAINING


TAKING_S = 1.0  # how long a reader of a held train.lock waits for its holder's record to be whole (:func:`_record`)
TAKING_POLL_S = 0.002


def _read_settled(read: Callable[[], T], settled: Callable[[T], bool]) -> T:
    """`read()` again, TAKING_POLL_S apart, while what it returns is not `settled` (a train.lock record not whole
    yet: its holder has just taken the lock, :func:`_record`), for up to TAKING_S from the first such read; what
    the last read returned, settled or not."""
    deadline: float | None = None
    while True:
        value = read()
        if settled(value):
            return value
        deadline = time.monotonic() + TAKING_S if deadline is None else deadline
        if time.monotonic() >= deadline:
            return value
        time.sleep(TAKING_POLL_S)


def _record(text: str) -> tuple[str, str] | None:
    """train.lock's record, ("PID on HOST", TRAINING or EVALUATING), when it is whole and its holder's; None while
    a process that has just taken the lock has not written it yet. The taker flocks the file, then truncates it
    and writes its two lines (:meth:`Run._held_lock`), so a reader of a held lock can meet: an empty file (a new
    one, or just truncated), a partly written record (no final newline, or not the two lines), or a killed
    holder's record, not yet truncated by the process that took the lock over (its PID, on this host, is no
    longer a live process). A caller reads again a moment later; an older file's one line is whole after a
    while only (:func:`_holder` then reads it as training)."""
    if not text.endswith("\n"):
        return None
    lines = text.splitlines()
    if len(lines) != 2 or lines[1] not in (TRAINING, EVALUATING):
        return None
    pid, on, host = lines[0].partition(" on ")
    if not on or not pid.isdigit() or not host:
        return None
    if host == socket.gethostname() and not _alive(int(pid)):
        return None
    return lines[0], lines[1]


def _alive(pid: int) -> bool:
    """Whether a process `pid` (> 0) runs on this machine (one of another user's counts)."""
    if pid == os.getpid():
        return True
    if pid <= 0:  # (os.kill would signal a process group)
        return False
    try:
        os.kill(pid, 0)
    except PermissionError:  # (another user's)
        return True
    except (ProcessLookupError, OverflowError):
        return False
    return True


def _same_file(path: Path | str, info: os.stat_result, folder: int | None = None) -> bool:
    """Whether `path` (relative to the directory open as `folder`, when given) is still the file of `info`."""
    try:
        now = os.stat(path, dir_fd=folder)
    except OSError:
        return False
    return (now.st_dev, now.st_ino) == (info.st_dev, info.st_ino)


def _remove_lock_file(folder: int | None, name: str, info: os.stat_result) -> None:
    """Remove the lock file `name` (fstat `info`) from the directory open as `folder` (where the run is now: a
    staged run published, a run moved, keeps its handle), unless another file is there; close `folder`."""
    if folder is None:
        return
    try:
        if _same_file(name, info, folder):
            os.unlink(name, dir_fd=folder)
    except OSError:  # (gone with its directory, or not removable: it stays behind, free)
        pass
    finally:
        os.close(folder)


def _current_path(fd: int) -> Path | None:
    """Where the directory open as `fd` is now (Linux /proc/self/fd), or None when unknown or deleted."""
    try:
        target = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return None
    if target.endswith(" (deleted)") or not os.path.isdir(target):
        return None
    return Path(target)


def run_prefix(cfg: Config, name: str | None = None) -> str:
    """The name a run directory starts with: `name` when given (``--name``), else the config's `name`.
    ConfigError unless it is one plain path component (no '/', NUL, '..'; not empty)."""
    prefix = cfg.name if name is None else name
    problem = run_name_problem(prefix)
    if problem:
        raise ConfigError(f"run name {problem}")
    return prefix


def _free_names(out_dir: Path, prefix: str) -> Iterator[Path]:
    """OUT_DIR/PREFIX-YYYYmmdd-HHMMSS, then -2, -3, ...: the names not taken yet."""
    base = out_dir / f"{prefix}-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"
    n = 1
    while True:
        path = base if n == 1 else base.with_name(f"{base.name}-{n}")
        if not path.exists():
            yield path
        n += 1


PATH_KEYS = (("data", "root"), ("data", "open_root"), ("data", "split_dir"), ("model", "pretrained"),
             ("train", "init_from"))


def absolute_paths(cfg: Config) -> Config:
    """A copy of `cfg` with its file and folder settings (data.root, open_root, split_dir, model.pretrained,
    train.init_from; data.class_names when it names a file from the working directory, not one inside the
    split folder) made absolute, so that a saved config works from any working directory."""
    cfg = copy.deepcopy(cfg)
    for section, key in (*PATH_KEYS, ("data", "class_names")):
        setattr(getattr(cfg, section), key, saved_path(f"{section}.{key}", getattr(getattr(cfg, section), key)))
    return cfg


def saved_path(key: str, value: Any) -> Any:
    """The value of the setting `key` as :func:`absolute_paths` saves it: a path of PATH_KEYS absolute (`~`
    expanded); data.class_names absolute when it names a file from the working directory (else it is a name
    inside the split folder, kept); any other value as it is."""
    if not isinstance(value, str):
        return value
    if tuple(key.split(".")) in PATH_KEYS:
        return os.path.abspath(os.path.expanduser(value))
    if key == "data.class_names" and not Path(value).is_absolute() and Path(value).is_file():
        return os.path.abspath(value)
    return value


def is_run_dir(folder: Path) -> bool:
    """Whether `folder` is an openlt run directory: its config.yaml beside its checkpoints/ or metrics.json (a
    project folder with a config.yaml of its own is none)."""
    return (folder / "config.yaml").is_file() and ((folder / "checkpoints").is_dir()
                                                   or (folder / "metrics.json").is_file())


def run_around(folder: str | Path) -> Path | None:
    """The run directory `folder` (a new run's out_dir, a bench's) is, or lies inside (resolved: also through a
    link), or None: runs made there would be files of that run, deleted or copied with it."""
    path = Path(folder).expanduser().resolve()
    return next((above for above in (path, *path.parents) if is_run_dir(above)), None)


def new_run(cfg: Config, name: str | None = None) -> Run:
    """A new run directory OUT_DIR/NAME-YYYYmmdd-HHMMSS (-2, -3, ... when taken) with its checkpoints folder;
    ConfigError for a name that is not a plain name, WriteError when it cannot be created."""
    path = next(_free_names(Path(cfg.out_dir), run_prefix(cfg, name)))
    try:
        Run(path).checkpoints_dir.mkdir(parents=True)
    except OSError as exc:
        raise WriteError(f"cannot create the run directory {path}: {exc.strerror or exc}") from None
    return Run(path)


def staged_run(cfg: Config, name: str | None = None) -> Run:
    """A hidden directory OUT_DIR/.NAME.PID-HOST.XXXXXXXX.new-run (with checkpoints/; PID-HOST: this process, as
    :func:`openlt.io.temp_prefix`; NAME cut to 200 bytes) to prepare a new run in; :func:`publish_run` gives it its
    name once it holds what `--resume` needs. ConfigError for a bad name, WriteError when it cannot be created."""
    out_dir, prefix = Path(cfg.out_dir), run_prefix(cfg, name)
    short = prefix.encode()[:_STAGE_NAME_BYTES].decode(errors="ignore")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        path = Path(tempfile.mkdtemp(prefix=temp_prefix(short), suffix=STAGE_SUFFIX, dir=out_dir))
        os.chmod(path, 0o777 & ~_umask())  # mkdtemp makes 0700; a run is meant to be read by others
        Run(path).checkpoints_dir.mkdir()
    except OSError as exc:
        raise WriteError(f"cannot create a run directory in {out_dir}: {exc.strerror or exc}") from None
    return Run(path)


def publish_run(stage: Run, cfg: Config, name: str | None = None) -> Run:
    """Rename the staged run to OUT_DIR/NAME-YYYYmmdd-HHMMSS (-2, ... when taken, also by a run published at the
    same moment) in one step; return it. WriteError when it cannot be renamed."""
    for path in _free_names(Path(cfg.out_dir), run_prefix(cfg, name)):
        try:
            os.rename(stage.path, path)
            return Run(path)
        except OSError as exc:
            if not path.exists():  # not a name taken meanwhile: a real failure
                raise WriteError(f"cannot create the run directory {path}: {exc.strerror or exc}") from None
    raise AssertionError("unreachable")  # pragma: no cover


def new_folders(folder: str | Path) -> list[Path]:
    """`folder` and the folders above it that do not exist yet, deepest first: what creating it would make (taken
    before a run directory is made in out_dir, so that :func:`remove_empty` leaves nothing when it fails)."""
    folder, missing = Path(os.path.abspath(folder)), []
    while not folder.exists() and not folder.is_symlink() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing


def remove_empty(folders: list[Path]) -> None:
    """Remove `folders` (:func:`new_folders`, deepest first) while they are empty: an out_dir this command
    created for a run that failed before it was kept."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:  # not empty (another run, another process) or gone: it and those above it stay
            return


def remove_stale_stages(out_dir: str | Path, min_age_s: float = 60.0) -> list[Path]:
    """Delete the staged runs (:func:`staged_run`) of processes that died before publishing them: at once those
    whose name's PID-HOST is a dead process of this host (:func:`openlt.io.writer_dead`), otherwise (another host,
    an older openlt's name) those older than `min_age_s`; never one whose lock is taken (a live process takes it at
    once and holds it), never a live process's. Returns what was removed."""
    removed = []
    for path in Path(out_dir).glob(f".*{STAGE_SUFFIX}"):
        tag = _STAGE_NAME.fullmatch(path.name)
        dead = None if tag is None else writer_dead(int(tag["pid"]), tag["host"])
        if dead is False:  # its process runs: it is preparing that run now
            continue
        try:
            if not path.is_dir() or (not dead and time.time() - path.stat().st_mtime < min_age_s):
                continue
        except OSError:  # removed meanwhile
            continue
        try:
            with Run(path).lock():
                shutil.rmtree(path, ignore_errors=True)
        except OpenLTError:  # a live process is preparing it
            continue
        removed.append(path)
    return removed


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def open_run(path: str | Path) -> Run:
    """An existing run directory; RunDirError when it is missing, a file (a run's config.yaml: its folder is
    named), an export bundle (`openlt export`: not a run), or holds no config.yaml."""
    path = Path(path)
    if path.is_file():
        folder = path.parent if (path.parent / "config.yaml").is_file() else None
        raise RunDirError(f"{path} is a file, not a run directory"
                          + (f" (give its folder {folder})" if folder is not None else ""))
    if not path.is_dir():
        raise RunDirError(f"run directory not found: {path}")
    run = Run(path)
    if not run.config_file.is_file():
        if (path / "openlt.json").is_file() and (path / "model.safetensors").is_file():  # engine/export.FILES
            raise RunDirError(f"{path} is an export bundle (`openlt export`: openlt.json, model.safetensors), not a "
                              f"run directory: give the run directory it was exported from (openlt.json's "
                              f"source.run); the bundle is for use without openlt (its openlt.json describes it)")
        example = example_run(path)  # e.g. a bench's out_dir, or a folder of them: what the user may have wanted
        if example is not None:
            raise RunDirError(f"{path} is a folder of runs, not a run directory (no {run.config_file.name} of its "
                              f"own): give one of its runs (e.g. {example}); a table of them: `openlt summary "
                              f"{example.parent / '*'}`, or a bench's `openlt bench SPEC --report-only`")
        raise RunDirError(f"{path} is not an openlt run directory (no {run.config_file.name})")
    check_utf8_path(path)
    return run


def check_utf8_path(path: Path) -> None:
    """RunDirError, one line, for a run directory whose path is not valid UTF-8 (a byte such as 0xff that the
    filesystem keeps as it is, Python as a surrogate): safetensors cannot open its checkpoints (which read as
    "corrupt") and its reports, metrics and JSON files cannot hold the path (trial 10 D16); refused once, here."""
    text = str(path)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        shown = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        raise RunDirError(f"the run directory path {shown} is not valid UTF-8: openlt cannot open its checkpoints "
                          f"(safetensors takes UTF-8 paths only) nor write the path into its reports; rename the "
                          f"folder (or the folders above it) to a UTF-8 name") from None
