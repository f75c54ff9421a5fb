"""The scripts under scripts/ (not a package) loaded as modules, or run as processes, for their tests."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


def load_script(name: str) -> ModuleType:
    """scripts/NAME.py as a module named NAME (registered in sys.modules, so its dataclasses work)."""
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def run_script(name: str, **env: str) -> subprocess.CompletedProcess:
    """`python scripts/NAME.py` from the repository root with `env` added to the environment (one thread unless
    given): the finished process, its output as text; AssertionError with its stderr's end when it failed."""
    out = subprocess.run([sys.executable, str(SCRIPTS / f"{name}.py")], cwd=SCRIPTS.parent,
                         env={**os.environ, "OMP_NUM_THREADS": "1", **env}, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    return out
