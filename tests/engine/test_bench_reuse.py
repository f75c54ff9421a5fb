"""A bench reusing a finished stage-2 run (`init_from`) checks that it was started from this seed's stage-1 run
the bench uses now (trial 14a D1): a stage-2 run whose stage-1 run was deleted and trained again is deleted and
trained again (one line saying so; its eval_of files go with it), one whose stage-1 checkpoint changed too, one
from another intact stage-1 run is refused, and a copied out_dir is reused as it is."""

import json
import re
import shutil
from pathlib import Path

import pytest

from openlt.engine import bench as bench_module
from openlt.engine.bench import _stage1_mismatch, load_bench, run_bench
from openlt.engine.run import Run
from openlt.errors import ConfigError, RunDirError
from tiny_bench import bench_overrides, bench_root, run_bench_quietly  # tests/helpers

REPORT_FIGURES = "unrasterized"  # tests/conftest.py: report.html figures built, not rendered (none is looked at)

CONFIGS = Path(__file__).parents[2] / "configs" / "fmnist_lt"


def write_spec(root: Path, name: str, out_dir: Path, plain_overrides: list[str] | None = None) -> Path:
    spec = {"name": "reuse", "out_dir": str(out_dir), "seeds": [0],
            "overrides": bench_overrides(root),
            "methods": [{"name": "plain", "config": "tiny.yaml", "overrides": plain_overrides or []},
                        {"name": "ncm", "config": str(CONFIGS / "decouple_ncm.yaml"), "init_from": "plain"},
                        {"name": "ncm+ml", "eval_of": "ncm", "overrides": ["eval.open_score=max_logit"]}]}
    path = root / name
    path.write_text(json.dumps(spec))  # JSON is YAML
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory, single_thread):
    """(root, the spec, its out_dir) of the bench trained once: plain-s0, ncm-s0 from it, ncm+ml of ncm-s0."""
    root = bench_root(tmp_path_factory.mktemp("reuse"))
    spec = write_spec(root, "bench.yaml", root / "bench")
    run_bench_quietly(spec)
    return root, spec, root / "bench"


def one(folder: Path, name: str) -> Path:
    runs = sorted(folder.glob(f"{name}-s0-*"))
    assert len(runs) == 1, runs
    return runs[0]


def copied(trained, tmp_path: Path, *, own_stage1: bool) -> Path:
    """A copy of the trained out_dir; `own_stage1`: its ncm run's train.init_from names the copy's plain run (as
    if it had been trained there), else the original's."""
    _, _, original = trained
    out = tmp_path / "out"
    shutil.copytree(original, out)
    if own_stage1:
        config = one(out, "ncm") / "config.yaml"
        config.write_text(config.read_text().replace(str(original), str(out)))
    return out


def flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 1  # a tensor byte: the header (checkpoint_state) is unchanged, the sha256 not
    path.write_bytes(bytes(data))


def test_stage2_of_a_retrained_stage1_run_is_trained_again(trained, tmp_path):
    """Trial 14a D1: plain edited (refused), its runs deleted, the bench run again: plain trained anew, and the
    ncm run of the deleted plain run is no longer reused as `done` (it was, with the old row in results.md)."""
    root, _, _ = trained
    out = copied(trained, tmp_path, own_stage1=True)
    old_plain, old_ncm = one(out, "plain"), one(out, "ncm")
    assert (old_ncm / "metrics-ncm-ml.json").is_file()
    shutil.rmtree(old_plain)
    spec = write_spec(root, "edited.yaml", out, ["train.lr=0.02"])  # another plain recipe: other weights
    lines = []
    results = run_bench(load_bench(spec), quiet=True, log=lines.append)
    new_plain, new_ncm = one(out, "plain"), one(out, "ncm")
    assert new_plain != old_plain and new_ncm != old_ncm and not old_ncm.exists()
    said = [line for line in lines if "deleting it" in line]
    assert said == [f"[2/3] ncm seed 0: the run {old_ncm} was started from the plain run {old_plain}, which is gone: "
                    f"its results do not hold for this seed's stage-1 run; deleting it and training it again"]
    assert any(line == "[2/3] ncm seed 0: training decouple_ncm.yaml" for line in lines)
    assert Run(new_ncm).config().train.init_from == str(new_plain)
    assert results["ncm"] == [new_ncm / "metrics.json"]
    # the eval_of row of the stale run went with it: evaluated on the new run
    assert results["ncm+ml"] == [new_ncm / "metrics-ncm-ml.json"] and results["ncm+ml"][0].is_file()
    assert any(line.startswith("[3/3] ncm+ml seed 0: evaluating") for line in lines)

    # run again: everything reused, nothing said about stage 1
    lines = []
    run_bench(load_bench(spec), quiet=True, log=lines.append)
    assert [line.split(": ")[1].split(" ")[0] for line in lines if line.startswith("[")] == ["done"] * 3
    assert one(out, "ncm") == new_ncm


def test_a_copied_out_dir_is_reused(trained, tmp_path):
    """The same stage-1 weights (the ncm run's checkpoint records their sha256): reused, nothing trained."""
    root, _, _ = trained
    out = copied(trained, tmp_path, own_stage1=False)
    lines = []
    run_bench(load_bench(write_spec(root, "copy.yaml", out)), quiet=True, log=lines.append)
    assert [line.split(": ")[1].split(" ")[0] for line in lines if line.startswith("[")] == ["done"] * 3


def test_changed_stage1_checkpoint_and_another_stage1_run(trained, tmp_path):
    root, _, original = trained
    out = copied(trained, tmp_path, own_stage1=False)
    spec = load_bench(write_spec(root, "copy.yaml", out))
    ncm = [m for m in spec.methods if m.name == "ncm"][0]
    plain, stage2 = Run(one(out, "plain")), Run(one(out, "ncm"))
    sha = bench_module._recorded_stage1(stage2)["sha256"]
    assert _stage1_mismatch(spec, ncm, 0, stage2, plain) is None
    flip_last_byte(plain.checkpoint("best"))
    # the ncm run names the original plain run, intact: which stage-1 run is meant is the user's to say
    with pytest.raises(ConfigError) as exc:
        _stage1_mismatch(spec, ncm, 0, stage2, plain)
    assert str(exc.value) == (f"bench spec {spec.path}: method 'ncm' seed 0: the run {stage2.path} was started from "
                              f"the plain run {one(original, 'plain')}, not from this seed's plain run {plain.path} "
                              f"that the bench uses (both are there); delete the run folder that is not wanted or "
                              f"give the bench another out_dir")
    # started from this very run, whose checkpoint changed since: stale
    config = stage2.config_file
    config.write_text(config.read_text().replace(str(original), str(out)))
    why = _stage1_mismatch(spec, ncm, 0, stage2, plain)
    assert re.fullmatch(rf"was started from the plain run {re.escape(str(plain.path))}, whose checkpoints/best"
                        rf"\.safetensors changed since \(sha256 {sha[:12]} then, [0-9a-f]{{12}} now\)", why), why
    assert sha[:12] not in why.split("then, ")[1]


def test_stage2_without_record_compared_by_path(trained, tmp_path, monkeypatch):
    """A stage 2 that trains (OLTR, the stage-2 losses) records no stage-1 sha256: its train.init_from must be this
    seed's run, or a run folder of that name (an out_dir moved); gone: trained again."""
    root, _, original = trained
    out = copied(trained, tmp_path, own_stage1=False)
    spec = load_bench(write_spec(root, "copy.yaml", out))
    ncm = [m for m in spec.methods if m.name == "ncm"][0]
    plain, stage2 = Run(one(out, "plain")), Run(one(out, "ncm"))
    monkeypatch.setattr(bench_module, "_recorded_stage1", lambda run: {})
    assert _stage1_mismatch(spec, ncm, 0, stage2, plain) is None  # the same folder name: moved
    config = stage2.config_file
    gone = original / "plain-s0-20000101-000000"
    config.write_text(config.read_text().replace(str(one(original, "plain")), str(gone)))
    assert _stage1_mismatch(spec, ncm, 0, stage2, plain) == f"was started from the plain run {gone}, which is gone"


def test_report_only_refuses_a_stale_stage2_run(trained, tmp_path, capsys):
    from openlt.cli import main

    root, _, _ = trained
    out = copied(trained, tmp_path, own_stage1=True)
    old_plain, old_ncm = one(out, "plain"), one(out, "ncm")
    shutil.rmtree(old_plain)
    spec = write_spec(root, "copy.yaml", out)
    capsys.readouterr()
    assert main(["bench", str(spec), "--report-only", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"openlt bench: error: bench reuse: the run {old_ncm} was started from the plain run {old_plain}, "
                   f"which is gone: its results do not hold for this seed's stage-1 run; --report-only trains "
                   f"nothing: run `openlt bench {spec}` without it to train it again")
    assert old_ncm.is_dir()  # nothing deleted


def _record_epochs(path: Path, epochs: int) -> None:
    """Rewrite a checkpoint's recorded recipe (state "recipe", what summary names the run by) with train.epochs."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(path), "pt") as fh:
        meta = json.loads(fh.metadata()["openlt"])
        tensors = {key: fh.get_tensor(key) for key in fh.keys()}
    meta["state"]["recipe"]["train.epochs"] = epochs
    save_file(tensors, str(path), metadata={"openlt": json.dumps(meta)})


def test_stage2_of_a_longer_stage1_run_with_the_same_best_checkpoint_is_trained_again(trained, tmp_path, capsys):
    """Trial 15 #1: plain retrained with train.epochs=2 whose best checkpoint is the 1-epoch run's, bit for bit
    (warmup: its first epoch is the old run; here a copy of the old run's folder, its config.yaml and log
    edited): the ncm
    run records the same stage-1 sha256 and was reused, then the table refused ("different recipes
    (train.init_from:train.epochs: 1 vs 2); give them different labels (LABEL=RUN)") with every command. Now the
    bench compares the stage-1 config the ncm checkpoint records with this seed's plain run's, as summary does:
    stale, trained again, and the table is written."""
    import yaml

    from openlt.cli import main

    root, _, _ = trained
    out = copied(trained, tmp_path, own_stage1=True)
    old_plain, old_ncm = one(out, "plain"), one(out, "ncm")
    new_plain = out / "plain-s0-20990101-000000"
    shutil.copytree(old_plain, new_plain)
    shutil.rmtree(old_plain)
    config = yaml.safe_load((new_plain / "config.yaml").read_text())
    config["train"]["epochs"] = 2
    (new_plain / "config.yaml").write_text(yaml.safe_dump(config))
    log = new_plain / "metrics.jsonl"  # its second epoch, not better than the first (best stays epoch 1's)
    last = json.loads(log.read_text().splitlines()[-1])
    log.write_text(log.read_text() + json.dumps({**last, "epoch": 2}) + "\n")
    _record_epochs(new_plain / "checkpoints" / "last.safetensors", 2)  # as its last checkpoint would record it
    spec = write_spec(root, "longer.yaml", out, ["train.epochs=2"])
    lines = []
    results = run_bench(load_bench(spec), quiet=True, log=lines.append)
    said = [line for line in lines if "deleting it" in line]
    assert said == [f"[2/3] ncm seed 0: the run {old_ncm} was started from a plain run of another recipe than this "
                    f"seed's plain run {new_plain} (the stage-1 config its checkpoint records vs that run's "
                    f"config.yaml: train.epochs: 1 vs 2), though of the same checkpoints/best.safetensors: its "
                    f"results do not hold for this seed's stage-1 run; deleting it and training it again"]
    assert not old_ncm.exists() and one(out, "plain") == new_plain
    assert Run(one(out, "ncm")).config().train.init_from == str(new_plain)
    assert results["ncm"] == [one(out, "ncm") / "metrics.json"]
    capsys.readouterr()
    for extra in ([], ["--report-only"]):  # the table is written, reusing everything
        assert main(["bench", str(spec), "--quiet", *extra]) == 0
        assert "| ncm ‡ | 1 |" in capsys.readouterr().out
    assert (out / "results.md").is_file()


def test_a_row_refusal_gives_bench_advice(trained, tmp_path, capsys):
    """A bench row takes no labels: summary's refusal of a row (here the plain row of seeds 0 and 1, seed 1's
    folder a copy of seed 0's run with its seed edited: the same weights) names the two run folders and which to
    delete, never summary's `LABEL=RUN`."""
    import yaml

    from openlt.cli import main

    root, _, _ = trained
    out = copied(trained, tmp_path, own_stage1=True)
    plain = one(out, "plain")
    twin = out / plain.name.replace("plain-s0", "plain-s1")
    shutil.copytree(plain, twin)
    config = yaml.safe_load((twin / "config.yaml").read_text())
    config["seed"] = 1
    (twin / "config.yaml").write_text(yaml.safe_dump(config))
    spec = write_spec(root, "two.yaml", out)
    capsys.readouterr()
    assert main(["bench", str(spec), "--seeds", "0", "1", "--report-only", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "LABEL=RUN" not in err and "label" not in err
    assert err.startswith(f"openlt bench: error: bench reuse: cannot average {plain} and {twin} into one row "
                          f"'plain': both are evaluations of the same weights"), err
    assert err.endswith(f"; a bench row averages one method's runs over the spec's seeds: delete the run folder that "
                        f"does not belong ({plain} or {twin}) and run `openlt bench {spec}` again, which trains that "
                        f"method and seed again from the spec"), err


def test_a_record_without_weights_is_named_before_anything_starts_from_it(trained, tmp_path, monkeypatch):
    """Trial 24 D5: a stage-1 record copied without its checkpoints (scripts/archive_runs.py keeps none) counts as
    finished for the table; a stage 2 to train on it, or an eval_of row to evaluate on it, is refused with the run
    named and the remedy, not 'checkpoint not found' from deep inside training."""
    root, _, _ = trained
    out = copied(trained, tmp_path, own_stage1=True)
    monkeypatch.setattr(bench_module, "train", lambda *a, **k: pytest.fail("trained"))
    monkeypatch.setattr(bench_module, "evaluate_run", lambda *a, **k: pytest.fail("evaluated"))
    spec = write_spec(root, "records.yaml", out)
    # the ncm row's record without weights, its max_logit evaluation not made yet: the eval_of row is refused
    shutil.rmtree(one(out, "ncm") / "checkpoints")
    (one(out, "ncm") / "metrics-ncm-ml.json").unlink()
    with pytest.raises(RunDirError, match=re.escape(f"{one(out, 'ncm')} has no checkpoints/best.safetensors, and "
                                                    "ncm+ml seed 0 evaluates it: it is a record without weights")):
        run_bench(load_bench(spec), quiet=True, log=lambda line: None)
    # the plain row's record without weights and no ncm run yet: the stage 2 is refused, before a method listed
    # ahead of it is trained (trial 24b: it was trained first)
    shutil.rmtree(one(out, "ncm"))
    shutil.rmtree(one(out, "plain") / "checkpoints")
    raw = json.loads(spec.read_text())
    raw["methods"].insert(1, {"name": "other", "config": "tiny.yaml", "overrides": ["train.lr=0.02"]})
    spec.write_text(json.dumps(raw))
    with pytest.raises(RunDirError, match=rf"has no checkpoints/best\.safetensors, and ncm seed 0 starts from it: "
                                          rf".*move the run out of {re.escape(str(out))} and run the bench again"):
        run_bench(load_bench(spec), quiet=True, log=lambda line: None)
