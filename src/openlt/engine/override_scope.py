"""Which config keys `openlt eval` and `openlt identify` may override on a trained run, and whether the values
and the run's data folders hold (nothing heavy imported).

An evaluation may change where the run's data is now (the split manifest still checks that it is the same data),
how it is loaded, and where / in which precision the network runs; everything else (the model, its training, the
split names) describes the trained run, and an override of it would be silently meaningless. Light on purpose: the
command line checks these before torch loads (seconds); the library functions check them again for their callers."""

from __future__ import annotations

import shlex
from pathlib import Path

from openlt.config import Config, build_config, to_dict
from openlt.engine.run import Run
from openlt.errors import ConfigError, DataError

# what an evaluation may change besides eval.*
EVAL_KEYS = ("data.root", "data.open_root", "data.split_dir", "data.class_names", "data.workers", "data.pin_memory",
             "train.device", "train.amp", "train.channels_last")
# what `openlt identify RUN key=value` may change: as an evaluation, and eval.batch_size
IDENTIFY_KEYS = (*EVAL_KEYS, "eval.batch_size")


def _keys(overrides: list[str]) -> list[str]:
    """The keys of the well-formed ``key=value`` items (a malformed one is left to the config's own check);
    ConfigError when ``overrides`` is one string or holds something else than strings (a library caller's slip)."""
    if isinstance(overrides, (str, bytes)):
        raise ConfigError(f"overrides must be a list of 'key=value' strings, got one string {overrides!r}: pass "
                          f"[{overrides!r}]")
    for item in overrides:
        if not isinstance(item, str):
            raise ConfigError(f"overrides must be 'key=value' strings, got {item!r} ({type(item).__name__})")
    return [item.split("=", 1)[0].strip() for item in overrides if "=" in item]


def check_eval_overrides(overrides: list[str]) -> None:
    """Refuse an override outside what evaluation uses: ``eval`` / ``eval.*`` and :data:`EVAL_KEYS`. ConfigError,
    one line naming the key."""
    for key in _keys(overrides):
        if key != "eval" and not key.startswith("eval.") and key not in EVAL_KEYS:
            raise ConfigError(f"{key} is not an evaluation setting: an evaluation may override eval.* and "
                              f"{', '.join(EVAL_KEYS)}; the rest describes the trained run (train a new run to change "
                              f"it)")


def check_identify_overrides(overrides: list[str]) -> None:
    """Refuse an override outside :data:`IDENTIFY_KEYS`. ConfigError, one line naming the key."""
    for key in _keys(overrides):
        if key not in IDENTIFY_KEYS:
            raise ConfigError(f"{key} is not an identify setting: `openlt identify RUN key=value` may override "
                              f"{', '.join(IDENTIFY_KEYS)} (where the run's data is now and how it is read); the "
                              f"rest describes the trained run")


# the run's data folders evaluation and identification read, from config.yaml unless overridden
RUN_FOLDERS = ("data.split_dir", "data.root", "data.open_root")


def check_data_folders(run: Run, cfg: Config, given: set[str], command: str, why: str = "") -> None:
    """DataError, one line, when a folder of :data:`RUN_FOLDERS` in `cfg` (the run's config with the command's
    overrides) is not there: naming the override when the key is in `given` (the keys overridden), else
    RUN/config.yaml's key and how to say where the data is now (`openlt COMMAND RUN KEY=NEW_FOLDER`); `why`: what
    the command reads there, added to the message. ConfigError for an empty (null) data.root override: it would not
    mean the run's folder but the split manifest's root."""
    for key in RUN_FOLDERS:
        value = getattr(cfg.data, key.split(".", 1)[1])
        if value is None and key == "data.root" and key in given:  # not "the run's root": null, i.e. the manifest's
            raise ConfigError(f"data.root= (empty, null) is refused: give the folder of the run's images, "
                              f"data.root=FOLDER, or leave the override out to read them where {run.config_file} "
                              f"says")
        if value is not None and not str(value).strip():  # Path("") is the current folder: said, not read there
            said = f"the override {key}={value!r}" if key in given else f"{run.config_file}: {key}"
            raise ConfigError(f"{said} is an empty path (it would read the current folder): give the folder")
        if value is None or Path(value).expanduser().is_dir():
            continue
        if key in given:
            raise DataError(f"{key}={value}: no such folder")
        raise DataError(f"{run.config_file}: {key} {value} is not a folder; `openlt {command}` reads the run's data "
                        f"there{f' ({why})' if why else ''}: if the data moved, pass {key}=NEW_FOLDER (`openlt "
                        f"{command} {shlex.quote(str(run.path))} {key}=NEW_FOLDER ...`)")


# what identify reads in the run's data folders (its DataError says why they are needed)
IDENTIFY_READS = ("the training images' features are the templates, and no probe may be one of them; --root is only "
                  "where the lists' paths are")


def overridden_config(run: Run, overrides: list[str]) -> Config:
    """The run's config.yaml with `overrides` ("key=value" strings, keys already checked) applied: ConfigError, one
    line naming the override, for a bad value (``eval.batch_size=0``)."""
    cfg = run.config()
    return build_config(base=to_dict(cfg), overrides=overrides) if overrides else cfg


def check_run_overrides(run: Run, overrides: list[str], command: str, why: str = "") -> None:
    """The command line's early check of `openlt eval / identify RUN key=value ...` (before torch loads): each
    override's value (:func:`overridden_config`) and the run's data folders, as the command finds them
    (:func:`check_data_folders`); the command checks them again for library callers."""
    cfg = overridden_config(run, overrides)
    check_data_folders(run, cfg, {item.split("=", 1)[0].strip() for item in overrides}, command, why)
