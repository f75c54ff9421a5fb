"""Which config keys `openlt eval` and `openlt identify` may override on a trained run (nothing heavy imported).

An evaluation may change where the run's data is now (the split manifest still checks that it is the same data),
how it is loaded, and where / in which precision the network runs; everything else (the model, its training, the
split names) describes the trained run, and an override of it would be silently meaningless. Light on purpose: the
command line checks these before torch loads (seconds); the library functions check them again for their callers."""

from __future__ import annotations

from openlt.errors import ConfigError

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
