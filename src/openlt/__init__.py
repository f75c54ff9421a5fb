"""openlt: open long-tailed recognition (OLTR, decoupled classifiers, baselines) with shot-band and open-set metrics."""

__version__ = "0.1.0"

from openlt.errors import OpenLTError  # noqa: E402

__all__ = ["OpenLTError", "__version__"]
