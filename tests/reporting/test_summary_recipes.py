"""`openlt summary` and the bench tables average only runs of one recipe with different seeds: each run's
config.yaml is compared with its row's first run's (`summary.RECIPE_IGNORED` left out), the stage-1 run a stage-2
run started from too; a different recipe or a repeated seed is one line naming both runs (exit 2 on the CLI)."""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path

import pytest
import yaml

from openlt.errors import RunDirError
from summary_files import cli, write  # tests/helpers, on the path through conftest
from openlt.reporting.bench_report import write_bench_results
from openlt.reporting.summary import RECIPE_IGNORED, aggregate, load_metrics, run_recipe


def metrics(run: str) -> dict:
    """A metrics.json as `openlt eval` writes it (the parts the tables read; tests/reporting/test_summary.py has the
    full story), of weights of its own."""
    return {"run": f"/work/runs/{run}", "checkpoint_sha256": hashlib.sha256(run.encode()).hexdigest(),
            "bands": {"rule": "many > 100, medium 20-100, few < 20"}, "class_names": ["ant", "bee", "cat"],
            "closed": {"many": 0.9, "medium": 0.5, "few": 0.2, "overall": 0.6},
            "open": {"f_measure": 0.5, "auroc": 0.7, "fpr95": 0.4}}




class Spec:
    name, seeds, paper, methods, path = "toy", [0, 1], None, [], "toy.yaml"

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir

CONFIG = {"name": "plain", "seed": 0, "out_dir": "/work/runs",
          "data": {"dataset": "fashion-mnist", "root": None, "split_dir": "/work/splits/fmnist_lt", "workers": 0,
                   "split": {"n_max": 1280, "seed": 0}},
          "model": {"backbone": "resnet10"},
          "train": {"epochs": 12, "lr": 0.1, "sampler": "instance", "loss_args": {}, "init_from": None,
                    "device": "auto"},
          "eval": {"open_score": "msp", "batch_size": 256}}


def run(folder: Path, directory: str, seed: int = 0, **edits) -> Path:
    """A tiny evaluated run directory: metrics.json (weights of their own) and config.yaml with `edits` (dotted
    key -> value) applied."""
    config = copy.deepcopy(CONFIG)
    config["seed"] = seed
    for key, value in edits.items():
        *parents, last = key.split(".")
        node = config
        for part in parents:
            node = node[part]
        node[last] = value
    path = write(folder, directory, metrics(directory))
    (path.parent / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return path.parent


def refused(args, capsys) -> str:
    code, out, err = cli(args, capsys)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err.strip()


def test_different_epochs_are_refused_naming_both_runs_and_the_key(tmp_path, capsys):
    a, b = run(tmp_path, "e12", 0), run(tmp_path, "e48", 1, **{"train.epochs": 48})
    assert refused([f"plain={a}", f"plain={b}"], capsys) == (
        f"openlt summary: error: cannot average {a} and {b} into one row 'plain': they were trained with different "
        "recipes (train.epochs: 12 vs 48; training keys from the runs' checkpoints where they record them, else "
        "config.yaml); give them different labels (LABEL=RUN) or average runs of one "
        "recipe")
    code, out, err = cli([f"e12={a}", f"e48={b}"], capsys)  # rows of their own: fine
    assert code == 0 and "| e12 | 1 |" in out and "| e48 | 1 |" in out, err


def test_a_different_lr_and_several_keys_are_named_first_ones_first(tmp_path, capsys):
    a, b = run(tmp_path, "s0", 0), run(tmp_path, "s1", 1, **{"train.lr": 0.2})
    assert "(train.lr: 0.1 vs 0.2; " in refused([a, b], capsys)
    c = run(tmp_path, "s2", 2, **{"model.backbone": "resnet18", "train.epochs": 24, "train.lr": 0.05,
                                  "train.sampler": "class_balanced", "data.split.n_max": 640})
    err = refused([a, c], capsys)
    assert ("(data.split.n_max: 1280 vs 640, model.backbone: resnet10 vs resnet18, train.epochs: 12 vs "
            "24 and 2 more; ") in err, err


def test_a_repeated_seed_is_refused_naming_both_runs(tmp_path, capsys):
    a, b, c = run(tmp_path, "s0", 0), run(tmp_path, "s1", 1), run(tmp_path, "again", 0)
    assert refused([f"x={a}", f"x={b}", f"x={c}"], capsys) == (
        f"openlt summary: error: cannot average {a} and {c} into one row 'x': both were trained with seed 0 (a "
        "repeated seed is not an independent sample: a row's spread is over seeds); leave one out or give it its own "
        "label (LABEL=RUN)")


def test_seeds_of_one_recipe_are_averaged_as_before(tmp_path, capsys):
    runs = [run(tmp_path, f"s{seed}", seed, **{"data.split.seed": 0}) for seed in range(3)]
    code, out, err = cli([f"plain={r}" for r in runs], capsys)
    assert code == 0 and "| plain | 3 | 90.0 ± 0.0 |" in out, err


def test_runs_that_differ_only_in_paths_names_and_devices_are_averaged(tmp_path, capsys):
    """A run moved to another folder, trained on another machine (device, workers) or under another name prefix
    is the same recipe."""
    a = run(tmp_path, "s0", 0)
    b = run(tmp_path, "s1", 1, **{"out_dir": "/elsewhere/runs", "name": "plain_copy", "train.device": "cuda:1",
                                  "data.workers": 8, "data.split_dir": "/mnt/splits/fmnist_lt",
                                  "eval.batch_size": 1024})
    code, out, err = cli([f"x={a}", f"x={b}"], capsys)
    assert code == 0 and "| x | 2 |" in out, err
    assert {"seed", "name", "out_dir", "train.init_from", "train.device"} <= RECIPE_IGNORED
    assert not RECIPE_IGNORED & {"train.epochs", "train.lr", "data.split.seed", "model.pretrained", "train.amp"}


def test_stage_two_runs_are_compared_on_their_stage_one_runs_too(tmp_path, capsys):
    """cRT seeds start from the same seed's stage-1 run (train.init_from differs by design); a cRT seed on a
    12-epoch stage 1 and one on a 48-epoch stage 1 are different recipes."""
    s0, s1 = run(tmp_path, "plain-s0", 0), run(tmp_path, "plain-s1", 1)
    long1 = run(tmp_path, "plain48-s1", 1, **{"train.epochs": 48})
    crt = {"train.epochs": 10, "train.sampler": "class_balanced"}
    a = run(tmp_path, "crt-s0", 0, **crt, **{"train.init_from": str(s0)})
    b = run(tmp_path, "crt-s1", 1, **crt, **{"train.init_from": str(s1)})
    c = run(tmp_path, "crt48-s1", 1, **crt, **{"train.init_from": str(long1)})
    code, out, err = cli([f"crt={a}", f"crt={b}"], capsys)
    assert code == 0 and "| crt | 2 |" in out, err
    assert "(train.init_from:train.epochs: 12 vs 48; " in refused([f"crt={a}", f"crt={c}"], capsys)
    recipe = run_recipe(load_metrics(c / "metrics.json"))
    assert recipe["train.epochs"] == 10 and recipe["train.init_from:train.epochs"] == 48
    assert "train.init_from" not in recipe and "seed" not in recipe and "train.init_from:seed" not in recipe


def test_a_config_of_an_older_openlt_without_a_key_is_compared_on_what_it_records(tmp_path, capsys):
    a, b = run(tmp_path, "s0", 0), run(tmp_path, "s1", 1)
    config = yaml.safe_load((b / "config.yaml").read_text())
    del config["train"]["sampler"]  # a key an older openlt did not write
    (b / "config.yaml").write_text(yaml.safe_dump(config))
    code, out, err = cli([f"x={a}", f"x={b}"], capsys)
    assert code == 0 and "| x | 2 |" in out, err


def test_a_metrics_file_without_its_config_is_refused_in_a_row_of_several(tmp_path, capsys):
    """metrics.json records no recipe: without the run's config.yaml a plain run and a cRT run (or any two
    recipes) would be averaged unchecked (issue 14). Alone in its row it is shown."""
    plain = run(tmp_path, "plain-s0", 0)
    crt = run(tmp_path, "crt-s1", 1, **{"train.epochs": 10, "train.sampler": "class_balanced"})
    (crt / "config.yaml").unlink()  # e.g. a metrics.json copied out of its run directory
    assert refused([f"x={plain}", f"x={crt}"], capsys) == (
        f"openlt summary: error: cannot average {plain} and {crt} into one row 'x': {crt} has no config.yaml beside "
        f"its metrics file ({crt / 'config.yaml'} not found), so its recipe cannot be checked against the row's other "
        "runs; give the run directory as `openlt train` wrote it (config.yaml included) or give it its own label "
        "(LABEL=RUN)")
    lone = write(tmp_path, "lone", metrics("lone"), config=False)  # two lone files: nothing checked either
    err = refused([f"x={crt / 'metrics.json'}", f"x={lone}"], capsys)
    assert err.startswith(f"openlt summary: error: cannot average {crt / 'metrics.json'} and {lone} into one row "
                          f"'x': {crt / 'metrics.json'} has no config.yaml beside its metrics file"), err
    code, out, err = cli([f"plain={plain}", f"crt={crt}", f"lone={lone}"], capsys)  # rows of their own: fine
    assert code == 0 and "| plain | 1 |" in out and "| crt | 1 |" in out and "| lone | 1 |" in out, err
    with pytest.raises(RunDirError, match=r"cannot average plain-s0 and crt-s1 into one row 'x': crt-s1 has no "
                                          r"config\.yaml"):  # the bench tables: the same rule
        aggregate({"x": [load_metrics(plain / "metrics.json"), load_metrics(crt / "metrics.json")]})


def test_a_malformed_config_is_one_line_naming_it(tmp_path, capsys):
    a, b = run(tmp_path, "s0", 0), run(tmp_path, "s1", 1)
    (b / "config.yaml").write_text("- a list\n")
    err = refused([f"x={a}", f"x={b}"], capsys)
    assert str(b / "config.yaml") in err, err


def test_the_bench_report_refuses_mixed_recipes_before_writing(tmp_path):
    spec = Spec(tmp_path / "bench")
    spec.out_dir.mkdir()
    files = {"plain": [run(tmp_path, "s0", 0) / "metrics.json",
                       run(tmp_path, "s1", 1, **{"train.epochs": 48}) / "metrics.json"]}
    with pytest.raises(RunDirError, match=r"cannot average s0 and s1 into one row 'plain'.*train\.epochs: 12 vs 48"):
        write_bench_results(spec, files)
    assert not any(spec.out_dir.iterdir())
    files["plain"][1] = run(tmp_path, "s1b", 1) / "metrics.json"
    assert write_bench_results(spec, files)["markdown"].is_file()
    assert aggregate({"x": [metrics("a"), metrics("b")]})[0]["runs"] == 2  # dicts built in memory: as before


def _checkpoint_recording(run_dir: Path, amp: str | None) -> None:
    """checkpoints/last.safetensors of a tiny model whose state records the precision `amp` (None: no record, as
    checkpoints before session 9 wrote)."""
    import torch

    from openlt.engine.checkpoint import save_checkpoint

    save_checkpoint(run_dir / "checkpoints" / "last.safetensors", torch.nn.Linear(2, 2),
                    state={"epoch": 0} | ({"amp": amp} if amp else {}))


def test_train_amp_auto_is_compared_as_the_precision_the_run_trained_in(tmp_path, capsys):
    """`auto` meant float32 on every CPU before runs recorded their precision: a run saved with `none` and one
    with `auto` and no record are one recipe (the convergence bench mixes them); a run whose checkpoint records
    bf16 is not averaged with them, nor with one that records none."""
    old = run(tmp_path, "s0", 0, **{"train.amp": "none"})
    legacy = run(tmp_path, "s1", 1, **{"train.amp": "auto"})
    _checkpoint_recording(legacy, None)
    code, out, err = cli([f"x={old}", f"x={legacy}"], capsys)
    assert code == 0 and "| x | 2 |" in out, err
    recorded = run(tmp_path, "s2", 2, **{"train.amp": "auto"})
    _checkpoint_recording(recorded, "none")
    code, out, err = cli([f"x={old}", f"x={recorded}"], capsys)
    assert code == 0 and "| x | 2 |" in out, err
    bf16 = run(tmp_path, "s3", 3, **{"train.amp": "auto"})
    _checkpoint_recording(bf16, "bf16")
    code, out, err = cli([f"x={old}", f"x={bf16}"], capsys)
    assert code == 2 and "train.amp: none vs bf16" in err, err
    gpu = run(tmp_path, "s4", 4, **{"train.amp": "auto", "train.device": "cuda"})  # no record: auto was bf16 there
    code, out, err = cli([f"x={old}", f"x={gpu}"], capsys)
    assert code == 2 and "train.amp: none vs bf16" in err, err


def test_loss_args_set_in_one_run_and_not_in_another_are_different_recipes(tmp_path, capsys):
    """train.loss_args is a mapping of the user's keys: flattened, {} and {gamma: 0.5} were two different keys, neither
    compared, and a focal run of the default gamma was averaged with one of gamma 0.5 (trial 19)."""
    a = run(tmp_path, "g2", 0, **{"train.loss": "focal"})
    b = run(tmp_path, "g05", 1, **{"train.loss": "focal", "train.loss_args": {"gamma": 0.5}})
    assert "(train.loss_args: {} vs {'gamma': 0.5}; " in refused([f"x={a}", f"x={b}"], capsys)
    c = run(tmp_path, "g1", 2, **{"train.loss": "focal", "train.loss_args": {"gamma": 1.0}})
    assert "train.loss_args: {'gamma': 0.5} vs {'gamma': 1.0}" in refused([f"x={b}", f"x={c}"], capsys)
    d = run(tmp_path, "g05b", 3, **{"train.loss": "focal", "train.loss_args": {"gamma": 0.5}})
    code, out, err = cli([f"x={b}", f"x={d}"], capsys)  # the same loss_args: one recipe
    assert code == 0 and "| x | 2 |" in out, err
