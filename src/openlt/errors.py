"""Exceptions a user can cause. The CLI prints their message and exits non-zero, without a traceback."""


class OpenLTError(Exception):
    """Base of every error that is the user's to fix (bad config, bad data, bad run directory)."""


class ConfigError(OpenLTError):
    """An unknown config key, a value of the wrong type, or an unknown registered name."""


class DataError(OpenLTError):
    """A missing root, a missing or corrupt image, a malformed split line, a label out of range."""


class RunDirError(OpenLTError):
    """A directory that is not an openlt run, or a checkpoint that is missing, corrupt or foreign."""


class TrainingError(OpenLTError):
    """Training cannot go on (for instance a non-finite loss)."""


class WriteError(OpenLTError):
    """An output file could not be written (disk full, no permission, read-only folder); the previous
    version of the file, if any, is kept (writes are atomic)."""


class NotFittedError(OpenLTError):
    """Something that learns from data first (an NCM or tau-norm classifier, the OpenMax score) was used
    before its `fit`."""
