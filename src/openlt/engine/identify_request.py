"""What `openlt identify` is asked to do, checked from its options alone (nothing heavy imported).

Light on purpose: the command line checks these before torch, torchvision and scikit-learn load (seconds), so
``openlt identify RUN`` without ``--probe`` or ``--pairs``, or with a list file that is not there, is said at once;
:func:`openlt.engine.identify.identify_run` checks the same for a library caller."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from openlt.errors import ConfigError, DataError

# each list option: what it takes, and its lines' form (for the messages)
LIST_FILES = {"probe": ("probe list", "'path identity' lines"),
              "gallery": ("gallery list", "'path identity' lines"),
              "distractors": ("distractors list", "'path -1' lines"),
              "pairs": ("pairs file", "'path1 path2 same' lines")}


def check_identify_options(probe: str | None, gallery: str | None, distractors: str | None, pairs: str | None,
                           chunk_size: int, root: str | None = None, distractor_root: str | None = None,
                           many_above: int = 20) -> None:
    """ConfigError for a request that names nothing to measure (neither ``probe`` nor ``pairs``), a gallery or
    distractor list without a probe list, ``distractor_root`` without ``distractors``, ``chunk_size`` < 1,
    ``many_above`` < 1 or an option given as an empty string (an unset shell variable: ``Path("")`` would be the
    current folder); DataError for a ``root`` / ``distractor_root`` that is not a folder. Errors name the
    command-line option. The list files themselves: :func:`check_list_file`."""
    given = {"--probe": probe, "--gallery": gallery, "--distractors": distractors, "--pairs": pairs,
             "--root": root, "--distractor-root": distractor_root}
    for option, value in given.items():
        if value is not None and not str(value).strip():
            empty = "an empty string" if not str(value) else f"blank ({str(value)!r})"
            raise ConfigError(f"{option} is {empty} (an unset shell variable?): give a file or folder, or leave "
                              f"{option} out")
    if probe is None and pairs is None:
        raise ConfigError("give a probe list (--probe) and/or a pairs file (--pairs)")
    if probe is None and (gallery is not None or distractors is not None):
        named = [option for option in ("--gallery", "--distractors") if given[option] is not None]
        verbs = ("need", "they add") if len(named) == 2 else ("needs", "it adds")
        raise ConfigError(f"{' and '.join(named)} {verbs[0]} a probe list (--probe): {verbs[1]} to the gallery that "
                          f"probes are matched against")
    if distractor_root is not None and distractors is None:
        raise ConfigError("--distractor-root is where the distractor list's paths are: it needs --distractors")
    for option, folder in (("--root", root), ("--distractor-root", distractor_root)):
        if folder is not None:
            mode = _mode(option, folder)
            if mode is None or not stat.S_ISDIR(mode):
                raise DataError(f"{option} {folder}: {'no such folder' if mode is None else 'not a folder'}")
    if chunk_size < 1:
        raise ConfigError(f"--chunk-size must be >= 1, got {chunk_size}")
    if many_above < 1:
        raise ConfigError(f"--many-above must be >= 1 (few-shot identities have 2 .. N training images), got "
                          f"{many_above}")


def check_list_file(kind: str, path: str | Path) -> Path:
    """``path`` as a Path when it is a readable regular file; DataError naming the option (``--KIND``, a key of
    :data:`LIST_FILES`) when it is missing, a folder (a folder of images is the usual slip: the option takes a text
    file listing them), not a regular file (a pipe such as ``<(cmd)``, a device: the file is read twice, once for
    its lines and once for its SHA-256 recorded with the result) or not readable."""
    what, lines = LIST_FILES[kind]
    option, mode = f"--{kind}", _mode(f"--{kind}", path)
    if mode is not None and stat.S_ISDIR(mode):
        root = "--distractor-root" if kind == "distractors" else "--root"
        raise DataError(f"{option} {path}: is a folder; {option} takes a {what} (a text file of {lines}); the "
                        f"folder its paths are relative to is {root}")
    if mode is None:
        raise DataError(f"{option} {path}: no such file (the {what})")
    if not stat.S_ISREG(mode):
        raise DataError(f"{option} {path}: not a regular file (a pipe or a device?): the {what} is read twice (its "
                        f"lines, then its SHA-256 for the result), so write it to a file first")
    if not os.access(path, os.R_OK):
        raise DataError(f"{option} {path}: cannot be read (permission denied)")
    return Path(path)


def _mode(option: str, path: str | Path) -> int | None:
    """``os.stat(path).st_mode`` (symbolic links followed) as the user typed ``path`` (``f.txt/`` is no file, as
    ``Path`` would make it); None when there is nothing there; DataError naming the option when a folder on the
    way cannot be entered."""
    try:
        return os.stat(os.fspath(path)).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return None
    except PermissionError:
        raise DataError(f"{option} {path}: cannot be reached (permission denied: a folder on its path cannot be "
                        f"entered)") from None
    except OSError as exc:  # a symbolic link loop, a name too long
        raise DataError(f"{option} {path}: {exc.strerror or exc}") from None


def check_list_files(files: dict[str, str | None]) -> None:
    """:func:`check_list_file` for each given file of ``files`` (``{"probe": path or None, ...}``)."""
    for kind, path in files.items():
        if path is not None:
            check_list_file(kind, path)
