"""Shared fixtures: tiny generated image folders and split files, so no test needs a download."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "helpers"))

from images import make_image_folder  # noqa: E402  (tests/helpers: importable from every test module)

# `make test` runs two xdist workers, a test file each at a time (--dist loadfile), handing out files in collection
# order. Alphabetically the longest files (real processes, a wheel build) come last and one worker ends up running
# them while the other idles: started first (longest-processing-time first), they overlap the many short files.
# The order only schedules; a file missing from this list runs in its usual place. Totals from `--durations`.
LONGEST_FILES_FIRST = (  # session 25, after forked_python.py: worker-seconds 62, 38, 31, 31, 28, 26, 26, 25, ...
    "tests/engine/test_ddp.py",
    "tests/test_packaging.py",
    "tests/engine/test_bench_concurrency.py",
    "tests/reporting/test_run_report.py",
    "tests/scripts/test_bench_scale.py",
    "tests/engine/test_distributed_peers.py",
    "tests/engine/test_end_to_end.py",
    "tests/engine/test_decouple.py",
    "tests/engine/test_predict.py",
    "tests/engine/test_run_lifecycle.py",
    "tests/engine/test_distributed_commands.py",
    "tests/engine/test_bench.py",
)
_ROOT = Path(__file__).resolve().parents[1]


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(LONGEST_FILES_FIRST)}

    def order(item) -> int:
        try:
            name = Path(item.fspath).resolve().relative_to(_ROOT).as_posix()
        except ValueError:
            return len(rank)
        return rank.get(name, len(rank))

    items.sort(key=order)  # stable: the tests of a file keep their order, the other files theirs


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


@pytest.fixture(scope="module", autouse=True)
def _report_figures(request):
    """A module that sets ``REPORT_FIGURES = "unrasterized"`` gets report.html figures that are built (every figure
    function runs on the run's data, the page and its captions are written as always) but inlined as a 1 x 1 PNG
    instead of rendered: the Agg rendering and constrained layout of a tiny run's ~8 figures cost more than its
    training and evaluation together, and such a module never looks at the pictures. Rendering is covered by
    tests/reporting and the end-to-end tests; figures written as files (save_png: tau_curve.png) are rendered."""
    if getattr(request.module, "REPORT_FIGURES", "rendered") != "unrasterized":
        yield
        return
    import io

    from PIL import Image

    from openlt.reporting import figures, html

    buf = io.BytesIO()
    Image.new("RGB", (1, 1), "white").save(buf, format="PNG")
    png, real = buf.getvalue(), html.figure

    def figure(fig, *args, **kwargs):
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(figures, "to_png", lambda fig, dpi=110: png)
            return real(fig, *args, **kwargs)

    figure.rendering = real  # what shared_run trains with, whichever module asks first
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(html, "figure", figure)
        yield


@pytest.fixture(scope="session")
def shared_run(tmp_path_factory):
    """shared_run(name, dest): `dest` as if tests/helpers/tiny_run.py's SHARED[name] had trained there
    (copy_as_trained_at), trained once per test session (under xdist, by the first worker that asks, the others
    waiting on a lock) instead of once per module, on one torch thread with report.html's figures rendered:
    modules that trained the very same runs each get their own copy, to change or delete."""
    import fcntl
    import os

    from tiny_run import SHARED, copy_as_trained_at

    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # the folder of every worker's basetemp: one per session

    def copy(name: str, dest: Path) -> Path:
        root = base / f"shared-{name}"
        with open(base / f"shared-{name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when closed, also by a worker that dies
            if not (base / f"shared-{name}.done").exists():
                _train_shared(SHARED[name], root)
                (base / f"shared-{name}.done").touch()
        return copy_as_trained_at(root, dest)

    return copy


def _train_shared(make, root: Path) -> None:
    import shutil

    import torch

    from openlt.reporting import html

    shutil.rmtree(root, ignore_errors=True)  # a try that failed
    root.mkdir()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with pytest.MonkeyPatch.context() as patch:  # a module's REPORT_FIGURES = "unrasterized" not applied
            patch.setattr(html, "figure", getattr(html.figure, "rendering", html.figure))
            make(root)
    finally:
        torch.set_num_threads(threads)
