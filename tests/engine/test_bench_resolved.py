"""A bench reuses its own runs when its spec leaves a key unset that a run resolves when it starts (trial 9 D3):
data.image_size (an image folder of small images trains at their own size) and data.root (the split folder's
manifest.json names the images) are written resolved into the run's config.yaml, and the spec's unset value is
resolved the same way before the comparison. Resuming, re-running and --report-only reuse the run; images that
now resolve to another size are refused naming both values."""

import json
import shutil

import numpy as np
import pytest
from images import make_image_folder  # tests/helpers
from PIL import Image
from tiny_run import CLASSES, cli

from openlt.cli import main
from openlt.engine import bench as bench_module
from openlt.engine.bench import _check_same_config, load_bench
from openlt.engine.run import Run

REPORT_FIGURES = "unrasterized"  # tests/conftest.py: report.html figures built, not rendered (none is looked at)

TRAINING = ["data.dataset=image-folder", "model.backbone=resnet10", "train.epochs=1", "train.warmup_epochs=0",
            "train.batch_size=16", "eval.batch_size=64", "eval.many_above=30", "eval.few_below=15"]


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    """A one-method bench on a split folder of 16 px images, its spec setting neither data.root nor
    data.image_size, run once: (spec path, its run, the image folder)."""
    root = tmp_path_factory.mktemp("bench_resolved")
    images = make_image_folder(root / "images", CLASSES)
    split = root / "sp"
    code = main(
        ["split", "--dataset", "image-folder", "--root", str(images), "--out", str(split), "--profile", "none",
         "--open-classes", "1", "--val-per-class", "4", "--test-per-class", "4", "--seed", "0"])
    assert code == 0
    (root / "tiny.yaml").write_text("name: tiny\n")
    spec = root / "bench.yaml"
    spec.write_text(json.dumps({"name": "resolved", "seeds": [0], "out_dir": str(root / "out"),
                                "overrides": [f"data.split_dir={split}", *TRAINING],
                                "methods": [{"name": "a", "config": "tiny.yaml"}]}))
    code = main(["bench", str(spec), "--quiet"])
    assert code == 0
    (run,) = [Run(p) for p in (root / "out").iterdir() if p.is_dir()]
    return spec, run, images


def test_the_run_records_the_resolved_values_the_spec_leaves_unset(bench):
    _, run, images = bench
    cfg = run.config()
    assert cfg.data.image_size == 16 and cfg.data.root == str(images)


def test_running_the_bench_again_and_report_only_reuse_the_run(bench, capsys, monkeypatch):
    spec, run, _ = bench
    monkeypatch.setattr(bench_module, "train", lambda *a, **k: pytest.fail("trained again"))
    monkeypatch.setattr(bench_module, "evaluate_run", lambda *a, **k: pytest.fail("evaluated again"))
    for extra in ([], ["--report-only"]):
        code, out, err = cli(capsys, "bench", spec, *extra)
        assert code == 0, err
        assert f"[1/1] a seed 0: done ({run.path})" in out + err


def test_an_interrupted_run_is_resumable(bench):
    spec, run, _ = bench  # what _train_or_resume checks before continuing a run with a last checkpoint
    loaded = load_bench(spec)
    _check_same_config(loaded, loaded.methods[0], 0, run, finished=False)


def test_images_that_resolve_to_another_size_now_are_refused_naming_both(bench, capsys):
    spec, run, images = bench
    for path in sorted(images.rglob("*.png")):
        Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(path)
    try:
        code, out, err = cli(capsys, "bench", spec, "--report-only")
        assert code == 2
        line = err.strip()
        assert "\n" not in line and str(run.path) in line, err
        assert ("data.image_size: run 16, spec None (resolves to 20 now: the training images' size)" in line), err
    finally:
        make_image_folder(images, CLASSES)


def test_a_split_folder_that_is_gone_compares_with_what_the_run_resolved(bench, tmp_path):
    spec, run, _ = bench
    loaded = load_bench(spec)
    (split,) = [o.split("=", 1)[1] for o in loaded.overrides if o.startswith("data.split_dir=")]
    moved = tmp_path / "moved"
    shutil.move(split, moved)
    try:  # (the evaluation the bench runs then names the missing folder; the comparison does not fail)
        _check_same_config(loaded, loaded.methods[0], 0, run, finished=False)
    finally:
        shutil.move(moved, split)
