"""`openlt summary` compares stage-2 runs' stage-1 recipes from what each stage-2 run recorded of its stage-1 run
when it trained (its checkpoint state's "stage1": config.yaml, sha256), so the check holds after the stage-1 folder
moved or was deleted (trial 14a D2); an older run without the record whose stage-1 run is gone is named in a note.
A repeated seed is refused only when the stage-1 runs' seeds agree too (trial 14a S3). Built from metrics.json,
config.yaml and header-only checkpoints (no training: tests/engine/test_stage1_record.py trains real ones)."""

from __future__ import annotations

import copy
import hashlib
import shutil
from pathlib import Path

import yaml

from summary_files import cli, write  # tests/helpers, on the path through conftest

CONFIG = {"name": "plain", "seed": 0, "out_dir": "/work/runs",
          "data": {"dataset": "fashion-mnist", "split_dir": "/work/splits/fmnist_lt"},
          "model": {"backbone": "resnet10"},
          "train": {"epochs": 12, "lr": 0.1, "init_from": None, "amp": "none"},
          "decouple": {"method": "none"}}
STAGE2 = {"decouple": {"method": "ncm"}, "train": {"epochs": 1}}


def metrics(run: str) -> dict:
    return {"run": f"/work/runs/{run}", "checkpoint_sha256": hashlib.sha256(run.encode()).hexdigest(),
            "bands": {"rule": "many > 100, medium 20-100, few < 20"}, "class_names": ["ant", "bee", "cat"],
            "closed": {"many": 0.9, "medium": 0.5, "few": 0.2, "overall": 0.6},
            "open": {"f_measure": 0.5, "auroc": 0.7, "fpr95": 0.4}}


def config(seed: int, epochs: int = 12, init_from: Path | None = None) -> dict:
    result = copy.deepcopy(CONFIG)
    result["seed"], result["train"]["epochs"] = seed, epochs
    if init_from is not None:
        result["decouple"]["method"], result["train"]["init_from"] = "ncm", str(init_from)
    return result


def stage1(folder: Path, name: str, seed: int, epochs: int = 12) -> Path:
    path = write(folder, name, metrics(name)).parent
    (path / "config.yaml").write_text(yaml.safe_dump(config(seed, epochs)))
    return path


def stage2(folder: Path, name: str, source: Path, seed: int = 0, record: bool = True) -> Path:
    """A decoupled run on `source` (stage-2 seed `seed`): with `record`, its checkpoint records the stage-1 run as
    stage1_record writes it (its config.yaml, sha256 of its checkpoint); without, as an older openlt wrote it."""
    import torch

    from openlt.engine.checkpoint import save_checkpoint

    path = write(folder, name, metrics(name)).parent
    (path / "config.yaml").write_text(yaml.safe_dump(config(seed, 1, source)))
    state = {"epoch": 0}
    if record:
        state["stage1"] = {"run": str(source), "checkpoint": "best",
                           "sha256": hashlib.sha256(str(source).encode()).hexdigest(),
                           "config": yaml.safe_load((source / "config.yaml").read_text()), "amp": "none"}
    save_checkpoint(path / "checkpoints" / "last.safetensors", torch.nn.Linear(2, 2), state=state)
    return path


def refused(args, capsys) -> str:
    code, out, err = cli(args, capsys)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err.strip()


def test_stage_one_recipes_are_compared_after_the_stage_one_runs_moved(tmp_path, capsys):
    """Trial 14a D2: NCM runs on stage-1 runs of 2 and 3 epochs were refused until one stage-1 run moved, then
    averaged with no note; the stage-2 runs' records keep the check without the stage-1 folders."""
    a, b = stage1(tmp_path, "plain-s1", 1, 2), stage1(tmp_path, "plain3-s2", 2, 3)
    x, y = stage2(tmp_path, "ncm-a", a), stage2(tmp_path, "ncm-b", b)
    assert "(train.init_from:train.epochs: 2 vs 3; " in refused([f"ncm={x}", f"ncm={y}"], capsys)
    shutil.move(b, tmp_path / "elsewhere")
    shutil.rmtree(a)
    assert "(train.init_from:train.epochs: 2 vs 3; " in refused([f"ncm={x}", f"ncm={y}"], capsys)


def test_the_record_is_the_stage_one_recipe_even_when_another_run_took_its_place(tmp_path, capsys):
    """The record is what the stage 2 started from: a run of another recipe copied to the stage-1 path since is
    not read instead."""
    a, b = stage1(tmp_path, "plain-s1", 1), stage1(tmp_path, "plain-s2", 2)
    x, y = stage2(tmp_path, "ncm-a", a), stage2(tmp_path, "ncm-b", b)
    (b / "config.yaml").write_text(yaml.safe_dump(config(2, 48)))  # another run in b's place
    code, out, err = cli([f"ncm={x}", f"ncm={y}"], capsys)
    assert code == 0 and "| ncm | 2 |" in out and "stage-1 recipe unknown" not in out, err


def test_an_older_run_without_the_record_whose_stage_one_run_is_gone_is_named_in_a_note(tmp_path, capsys):
    a, b = stage1(tmp_path, "plain-s1", 1), stage1(tmp_path, "plain-s2", 2)
    x, y = stage2(tmp_path, "ncm-a", a, seed=1), stage2(tmp_path, "ncm-b", b, seed=2, record=False)
    code, out, err = cli([f"ncm={x}", f"ncm={y}"], capsys)
    assert code == 0 and "stage-1 recipe unknown" not in out, err  # b is still there: compared through its folder
    (b / "config.yaml").write_text(yaml.safe_dump(config(2, 48)))
    assert "train.init_from:train.epochs: 12 vs 48" in refused([f"ncm={x}", f"ncm={y}"], capsys)
    shutil.rmtree(b)
    code, out, err = cli([f"ncm={x}", f"ncm={y}"], capsys)
    assert code == 0 and "| ncm | 2 |" in out, err
    notes = [line for line in out.splitlines() if "stage-1 recipe unknown" in line]
    assert notes == [f"note: stage-1 recipe unknown for {y} (row ncm, train.init_from {b}): its stage-1 run is not "
                     f"found and the run records none of it (trained before openlt recorded it), so nothing shows it "
                     f"started from a stage-1 run of the same recipe as the row's other runs (put the stage-1 run "
                     f"back at that path, or train the stage 2 again with this openlt)"], out
    code, out, err = cli([f"ncm={y}"], capsys)  # alone in its row: nothing to compare, no note
    assert code == 0 and "stage-1 recipe unknown" not in out, err


def test_a_repeated_stage_two_seed_on_stage_one_runs_of_other_seeds_is_averaged(tmp_path, capsys):
    """Trial 14a S3: NCM runs with the default stage-2 seed on stage-1 runs of seeds 1 and 2 are independent
    samples; on stage-1 runs of one seed (one recipe: the same sample twice) they are refused, naming both seeds."""
    a, b = stage1(tmp_path, "plain-s1", 1), stage1(tmp_path, "plain-s2", 2)
    again = stage1(tmp_path / "again", "plain-s1", 1)  # seed 1 trained again
    x, y, z = stage2(tmp_path, "ncm-a", a), stage2(tmp_path, "ncm-b", b), stage2(tmp_path, "ncm-c", again)
    code, out, err = cli([f"ncm={x}", f"ncm={y}"], capsys)
    assert code == 0 and "| ncm | 2 |" in out, err
    assert refused([f"ncm={x}", f"ncm={z}"], capsys) == (
        f"openlt summary: error: cannot average {x} and {z} into one row 'ncm': both were trained with seed 0, from "
        f"stage-1 runs of seed 1 (a repeated seed is not an independent sample: a row's spread is over seeds); leave "
        f"one out or give it its own label (LABEL=RUN)")
    shutil.rmtree(a), shutil.rmtree(b)  # the records alone tell the seeds apart
    code, out, err = cli([f"ncm={x}", f"ncm={y}"], capsys)
    assert code == 0 and "| ncm | 2 |" in out, err


def test_a_repeated_seed_whose_stage_one_run_is_unknown_is_refused_saying_so(tmp_path, capsys):
    a, b = stage1(tmp_path, "plain-s1", 1), stage1(tmp_path, "plain-s2", 2)
    x, y = stage2(tmp_path, "ncm-a", a), stage2(tmp_path, "ncm-b", b, record=False)
    code, out, err = cli([f"ncm={x}", f"ncm={y}"], capsys)
    assert code == 0 and "| ncm | 2 |" in out, err  # b found: seeds 1 and 2
    shutil.rmtree(b)
    assert refused([f"ncm={x}", f"ncm={y}"], capsys) == (
        f"openlt summary: error: cannot average {x} and {y} into one row 'ncm': both were trained with seed 0 (a "
        f"repeated seed is not an independent sample: a row's spread is over seeds); the stage-1 run of {y} is unknown "
        f"(train.init_from {b} is not found and {y} records none of it), so nothing shows they are different "
        f"samples; leave one out or give it its own label (LABEL=RUN)")
