"""openlt: open long-tailed recognition (OLTR, decoupled classifiers, baselines) with shot-band and open-set metrics.

The Python API: ``openlt.load_run(path)`` gives a trained run as a :class:`~openlt.engine.api.LoadedRun`
(``.predict(images)``, ``.features(images)``, ``.evaluate()``). It is imported on first use, so that
``import openlt`` stays light (torch is not imported until then).
"""

__version__ = "0.1.0"

from openlt.errors import OpenLTError  # noqa: E402

__all__ = ["LoadedRun", "OpenLTError", "__version__", "load_run"]

_API = ("LoadedRun", "load_run")


def __getattr__(name: str):
    """``openlt.load_run`` and ``openlt.LoadedRun``, imported from openlt.engine.api when first asked for."""
    if name in _API:
        from openlt.engine import api

        return getattr(api, name)
    raise AttributeError(f"module 'openlt' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
