"""What `openlt identify` is asked to do, checked from its options alone (no file read, nothing heavy imported).

Light on purpose: the command line checks these before torch, torchvision and scikit-learn load (seconds), so
``openlt identify RUN`` without ``--probe`` or ``--pairs`` is said at once; :func:`openlt.engine.identify.identify_run`
checks the same for a library caller."""

from __future__ import annotations

from pathlib import Path

from openlt.errors import ConfigError, DataError


def check_identify_options(probe: str | None, gallery: str | None, distractors: str | None, pairs: str | None,
                           chunk_size: int, root: str | None = None, distractor_root: str | None = None) -> None:
    """ConfigError for a request that names nothing to measure (neither ``probe`` nor ``pairs``), a gallery or
    distractor list without a probe list, ``distractor_root`` without ``distractors`` or ``chunk_size`` < 1;
    DataError for a ``root`` / ``distractor_root`` that is not a folder. Errors name the command-line option."""
    if probe is None and pairs is None:
        raise ConfigError("give a probe list (--probe) and/or a pairs file (--pairs)")
    if probe is None and (gallery is not None or distractors is not None):
        raise ConfigError("--gallery and --distractors need a probe list (--probe)")
    if distractor_root is not None and distractors is None:
        raise ConfigError("--distractor-root is where the distractor list's paths are: it needs --distractors")
    for option, folder in (("--root", root), ("--distractor-root", distractor_root)):
        if folder is not None and not Path(folder).is_dir():
            raise DataError(f"{option} {folder}: no such folder")
    if chunk_size < 1:
        raise ConfigError(f"--chunk-size must be >= 1, got {chunk_size}")
