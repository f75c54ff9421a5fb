"""The tiny bench the bench tests train once per module (tests/engine/test_bench_concurrency.py,
test_bench_reuse.py): tiny_run's TINY run on the CPU without loader workers, on a folder of 5 classes (eel the open
class) under the module's root beside a config of its name only (tiny.yaml)."""

from __future__ import annotations

from pathlib import Path

from images import make_image_folder
from tiny_run import TINY

BENCH_TINY = [*TINY, "train.device=cpu", "data.workers=0"]
BENCH_CLASSES = {"ant": 50, "bee": 33, "cat": 23, "dog": 18, "eel": 10}


def bench_root(root: Path) -> Path:
    """`root` with images/ (BENCH_CLASSES) and tiny.yaml (``name: tiny``), which a spec's methods start from."""
    make_image_folder(root / "images", BENCH_CLASSES)
    (root / "tiny.yaml").write_text("name: tiny\n")
    return root


def bench_overrides(root: Path, *extra: str) -> list[str]:
    """A spec's overrides: the images of bench_root(`root`), BENCH_TINY, then `extra`."""
    return [f"data.root={root / 'images'}", *BENCH_TINY, *extra]


def run_bench_quietly(spec: Path) -> None:
    """The bench of the spec file `spec` run (trained and evaluated), nothing printed."""
    from openlt.engine.bench import load_bench, run_bench

    run_bench(load_bench(spec), quiet=True, log=lambda line: None)
