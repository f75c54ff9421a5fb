"""A stage 2's data, checked before any work: a decoupled stage 2 from a stage-1 run whose split folder moved
(the path's origin named; `data.split_dir=NEW` accepted when its files are the stage-1 run's by sha256), and an
OLTR stage 2 without the stage-1 run's data.* (the keys to pass named)."""

from __future__ import annotations

import json
import shutil

import pytest

from images import make_image_folder
from cli_ok import main_ok
from tiny_run import cli

REPORT_FIGURES = "unrasterized"  # tests/conftest.py: report.html figures built, not rendered (none is looked at)

COMMON = ["data.dataset=image-folder", "data.image_size=16", "model.backbone=resnet10", "train.epochs=1",
          "train.warmup_epochs=0"]


@pytest.fixture(scope="module")
def stage1(tmp_path_factory):
    """(root, the stage-1 run's path, its split folder moved away to root/moved)."""
    from openlt.cli import main

    root = tmp_path_factory.mktemp("stage2data")
    images = make_image_folder(root / "images", {"ant": 12, "bee": 9, "cat": 8, "eel": 4})
    assert main(["split", "--dataset", "image-folder", "--root", str(images), "--out", str(root / "split"),
                 "--profile", "none", "--open-classes", "eel", "--val-per-class", "2", "--test-per-class", "2"]) == 0
    main_ok(["train", "fmnist_lt/plain", *COMMON, f"data.root={images}", f"data.split_dir={root / 'split'}",
             f"out_dir={root / 'runs'}", "name=base", "--quiet"])
    run = next((root / "runs").glob("base-*"))
    shutil.move(root / "split", root / "moved")
    return root, run, root / "moved"


def test_decoupled_stage2_names_where_the_missing_split_folder_came_from(stage1, tmp_path, capsys):
    root, run, _ = stage1
    code, _, err = cli(capsys, "train", "fmnist_lt/decouple_crt", f"train.init_from={run}", f"out_dir={tmp_path / 'o'}")
    assert code == 2
    line = err.strip().splitlines()[-1]
    assert (f"train.init_from={run}: the stage-1 run's split folder {root / 'split'} is not found (data.split_dir of "
            f"{run / 'config.yaml'}: a decoupled stage 2 fits on the stage-1 run's data); if it moved, pass "
            f"data.split_dir=NEW_FOLDER") in line
    assert f"{run / 'split_manifest.json'}, checked by sha256" in line
    assert not (tmp_path / "o").exists()


def test_decoupled_stage2_accepts_a_moved_split_folder_with_the_same_files(stage1, tmp_path, capsys):
    root, run, moved = stage1
    code, _, err = cli(capsys, "train", "fmnist_lt/decouple_crt", f"train.init_from={run}", f"data.split_dir={moved}",
                       f"out_dir={tmp_path / 'o'}", "--quiet")
    assert code == 0, err
    crt = next((tmp_path / "o").glob("*-*"))
    from openlt.engine.run import Run

    assert Run(crt).config().data.split_dir == str(moved)
    assert json.loads((crt / "metrics.json").read_text())["split_files"]["train"] == \
        json.loads((run / "split_manifest.json").read_text())["files"]["train"]["sha256"]
    code, _, err = cli(capsys, "eval", crt)  # through the stage-1 run's feature cache, on the moved folder
    assert code == 0, err


def test_decoupled_stage2_refuses_a_moved_split_folder_with_other_files(stage1, tmp_path, capsys):
    _, run, moved = stage1
    edited = tmp_path / "edited"
    shutil.copytree(moved, edited)
    lines = (edited / "train.txt").read_text().splitlines()
    (edited / "train.txt").write_text("\n".join(lines[:-1]) + "\n")
    code, _, err = cli(capsys, "train", "fmnist_lt/decouple_crt", f"train.init_from={run}", f"data.split_dir={edited}",
                       f"out_dir={tmp_path / 'o'}")
    assert code == 2 and "is not the train split the run was trained on" in err
    assert not (tmp_path / "o").exists()


def test_oltr_stage2_without_the_stage1_data_is_refused_before_any_work(stage1, tmp_path, capsys):
    root, run, moved = stage1
    code, _, err = cli(capsys, "train", "fmnist_lt/oltr_stage2", f"train.init_from={run}", "train.epochs=1",
                       f"out_dir={tmp_path / 'o'}")
    assert code == 2
    assert (f"train.init_from={run}: a stage 2 that trains (model.classifier=meta_embedding) reads its own data.* and "
            f"must train on the stage-1 run's training split, but this config has data.dataset=fashion-mnist, no "
            f"data.split_dir: it would build a new split; pass the stage-1 run's data: data.dataset=image-folder "
            f"data.root={root / 'images'} data.split_dir={root / 'split'} data.image_size=16") in err
    assert not (tmp_path / "o").exists()
    # with the data passed (the moved copy of the split folder), it trains
    code, _, err = cli(capsys, "train", "fmnist_lt/oltr_stage2", f"train.init_from={run}", *COMMON,
                       f"data.root={root / 'images'}", f"data.split_dir={moved}", f"out_dir={tmp_path / 'o'}",
                       "--quiet", "--no-eval")
    assert code == 0, err
