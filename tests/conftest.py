"""Shared fixtures: tiny generated image folders and split files, so no test needs a download."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "helpers"))

from images import make_image_folder  # noqa: E402  (tests/helpers: importable from every test module)


@pytest.fixture(scope="module")
def single_thread():
    """One torch thread for a module of many tiny ops: less thread overhead, steadier when the CPU is shared."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    return make_image_folder(tmp_path / "images", {"ant": 60, "bee": 40, "cat": 30, "dog": 25, "eel": 25})


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """A module's folder holding the tiny image folder (images/, as `image_folder`) and a one-line config
    (tiny.yaml: ``name: tiny``) that the module's `openlt train` runs start from (tests/engine/test_run_lifecycle.py,
    test_crash_safety.py)."""
    root = tmp_path_factory.mktemp("workspace")
    make_image_folder(root / "images", {"ant": 60, "bee": 40, "cat": 30, "dog": 25, "eel": 25})
    (root / "tiny.yaml").write_text("name: tiny\n")
    return root
