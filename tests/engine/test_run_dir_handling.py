"""Run directories moved, left half-written or unwritable (trial 14a D4, D5, D6, D7, S1, S4, S5) on one tiny stage-1
run and a decoupled (NCM) stage 2 of it: an evaluation of a run moved meanwhile says so and names `openlt eval NEW`
(train's final evaluation: `openlt train --resume NEW`) and recreates nothing; a SIGKILLed evaluation's and export's
temporaries are removed by the next one; `--resume` with the split folder gone names config.yaml's key and what to
do; `openlt features` refuses changed split files as eval does and says when the cache cannot be written, while a
stage 2 then goes on uncached; a decoupled run evaluates to the same numbers with its stage-1 run (its cache) gone;
a stage-1 run moved may be named anew in a stage 2's config.yaml for --resume when its checkpoint is the same."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from cli_ok import main_ok
from openlt_processes import ENV  # tests/helpers
from tiny_run import cli, train_with_cli
from openlt.engine.run import Run, RunMovedError
import forked_python  # tests/helpers

REPORT_FIGURES = "unrasterized"  # tests/conftest.py: report.html figures built, not rendered (none is looked at)

CONFIGS = Path(__file__).parents[2] / "configs" / "fmnist_lt"
TINY = ["data.dataset=image-folder", "data.image_size=16", "model.backbone=resnet10", "train.epochs=1",
        "train.batch_size=16", "train.lr=0.05", "eval.batch_size=64", "eval.many_above=30", "eval.few_below=15",
        "data.split.n_max=40", "data.split.n_min=8", "data.split.open_classes=[eel]", "data.split.val_per_class=4",
        "data.split.test_per_class=6", "data.split.order=label", "train.device=cpu", "train.amp=none",
        "data.workers=0"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, single_thread):
    """(the module's folder, a finished stage-1 run, an NCM stage 2 of it): each test copies what it changes."""
    root = tmp_path_factory.mktemp("rundirs")
    stage1 = train_with_cli(root, TINY)

    main_ok(["train", str(CONFIGS / "decouple_ncm.yaml"), f"train.init_from={stage1}", f"out_dir={root / 's2'}",
             "train.device=cpu", "--quiet"])
    return root, stage1, next((root / "s2").iterdir())


def copied(run: Path, where: Path) -> Path:
    shutil.copytree(run, where)
    return where


def one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


# ------------------------------------------------------------------------------------------------ D4: moved meanwhile
def test_an_evaluation_of_a_run_moved_meanwhile_names_openlt_eval_there_and_recreates_nothing(runs, tmp_path,
                                                                                                 monkeypatch, capsys):
    import openlt.engine.evaluate as evaluate

    run = copied(runs[1], tmp_path / "x")
    moved = tmp_path / "y"
    real = evaluate._write_results

    def move_then_write(*args, **kwargs):  # the move between the check and the writes (the trial's timing)
        os.rename(run, moved)
        return real(*args, **kwargs)

    monkeypatch.setattr(evaluate, "_write_results", move_then_write)
    code, _, err = cli(capsys, "eval", run, "--quiet", "--tag", "t1")
    assert code == 2
    assert one_line(err) == (f"openlt eval: error: the run directory {run} was moved to {moved} while it was in use; "
                             f"stopped: the evaluation's results were not written, nothing more was written "
                             f"(continue with `openlt eval {moved} --tag t1`)")
    assert not run.exists() and not list(moved.rglob("*.tmp")) and not (moved / "metrics-t1.json").exists()


def test_a_move_that_shows_as_a_missing_checkpoint_is_reported_as_the_move(runs, tmp_path, monkeypatch, capsys):
    import openlt.engine.evaluate as evaluate

    run = copied(runs[1], tmp_path / "x")
    moved = tmp_path / "y"
    real = evaluate._load_model

    def move_then_load(*args, **kwargs):
        os.rename(run, moved)
        return real(*args, **kwargs)

    monkeypatch.setattr(evaluate, "_load_model", move_then_load)
    code, _, err = cli(capsys, "eval", run, "--quiet")
    assert code == 2 and one_line(err).endswith(f"(continue with `openlt eval {moved}`)"), err
    assert not run.exists()


def test_the_final_evaluation_of_a_moved_run_names_train_resume_at_the_new_path(tmp_path):
    from openlt.engine.train import final_evaluation

    (tmp_path / "x").mkdir()
    run, moved = Run(tmp_path / "x"), tmp_path / "y"
    with pytest.raises(RunMovedError) as caught, run.watched(), final_evaluation(run):
        os.rename(run.path, moved)
        run.check_in_place("the evaluation's results", plural=True, again=lambda where: f"openlt eval {where}")
    assert str(caught.value) == (f"the run directory {run.path} was moved to {moved} while it was in use; stopped: "
                                 f"the evaluation's results were not written, nothing more was written (continue "
                                 f"with `openlt train --resume {moved}`)")


# ------------------------------------------------------------------------------------ D6: temporaries of killed ones
def test_a_sigkilled_evaluations_temporaries_are_removed_by_the_next_evaluation(runs, tmp_path, capsys):
    run = copied(runs[1], tmp_path / "x")
    proc = forked_python.Popen([sys.executable, "-c", "import sys, time\nfrom openlt.io import atomic_path\n"
                                "with atomic_path(sys.argv[1]) as tmp:\n    tmp.write_text('half')\n"
                                "    print(tmp, flush=True)\n    time.sleep(120)\n", str(run / "metrics.json")],
                               stdout=subprocess.PIPE, text=True, env=ENV)
    left = Path(proc.stdout.readline().strip())
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    (run / ".report.md.abc.tmp").write_text("an older openlt's: its writer is unknown, kept")
    assert left.is_file()
    code, _, err = cli(capsys, "eval", run, "--quiet")
    assert code == 0, err
    assert sorted(p.name for p in run.rglob("*.tmp")) == [".report.md.abc.tmp"]


def test_an_export_removes_the_staging_folders_of_killed_exports_to_the_same_place(runs, tmp_path, capsys):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    from openlt.io import temp_prefix

    tag = temp_prefix("b").split(".")[2].split("-")[1]
    stale = tmp_path / f".b.{dead.stdout.strip()}-{tag}.abcd1234.tmp"
    live = tmp_path / f".b.{os.getpid()}-{tag}.efgh5678.tmp"
    other = tmp_path / f".c.{dead.stdout.strip()}-{tag}.abcd1234.tmp"  # another bundle name's: left to an export there
    stale_old = tmp_path / f".b.{dead.stdout.strip()}-{tag}.ijkl9012.old"  # a previous bundle moved aside, then killed
    for folder in (stale, live, other, stale_old):
        folder.mkdir()
        (folder / "model.safetensors").write_bytes(b"x" * 10)
    code, _, err = cli(capsys, "export", runs[1], tmp_path / "b")
    assert code == 0, err
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["b", live.name, other.name])


def test_an_export_note_has_one_prefix(tmp_path, caplog):
    """The CLI prints a warning as `openlt: warning: TEXT`: TEXT itself starts with no "note:" (S5)."""
    from types import SimpleNamespace

    from openlt.engine.export import bundle_amp

    rejector = SimpleNamespace(calibrated=True, fitted_on={"amp": "bf16"})
    with caplog.at_level(logging.WARNING):
        assert bundle_amp(Run(tmp_path), {"amp": "bf16"}, rejector)["threshold"] == "bf16"
    assert [r.getMessage()[:60] for r in caplog.records] == ["the bundle's network computes in float32, and calibration.js"]


# ------------------------------------------------------------------------------------------ D5: resume, split gone
def test_resume_with_the_split_folder_gone_names_config_yaml_and_how_to_point_it_elsewhere(runs, tmp_path, capsys):
    run = copied(runs[1], tmp_path / "x")
    split = tmp_path / "split"
    shutil.copytree(runs[1] / "splits", split)
    config = (run / "config.yaml").read_text()
    (run / "config.yaml").write_text(config.replace("split_dir: null", f"split_dir: {split}")
                                     if "split_dir: null" in config else config)
    assert f"split_dir: {split}" in (run / "config.yaml").read_text()
    moved = split.rename(tmp_path / "split-moved")
    code, _, err = cli(capsys, "train", "--resume", run, "--quiet", "--no-eval")
    assert code == 2
    assert one_line(err) == (f"openlt train: error: {run}/config.yaml: data.split_dir {split} is not a folder; `openlt "
                             f"train --resume` reads the run's data there: if it moved, set data.split_dir in "
                             f"{run}/config.yaml to the new folder (--resume takes no overrides; the split files "
                             f"there are checked against the run's split_manifest.json), then `openlt train --resume "
                             f"{run}` again")
    (run / "config.yaml").write_text((run / "config.yaml").read_text().replace(str(split), str(moved)))
    code, _, err = cli(capsys, "train", "--resume", run, "--quiet", "--no-eval")  # what the line says works
    assert code == 0, err


# ------------------------------------------------------------------------------- S1, D7: `openlt features`, the cache
def test_features_refuses_changed_split_files_as_eval_does(runs, tmp_path, capsys):
    run = copied(runs[1], tmp_path / "x")
    test_file = run / "splits" / "test.txt"
    test_file.write_text("".join(test_file.read_text().splitlines(keepends=True)[1:]))  # one line fewer
    before = {p.name: p.stat().st_mtime_ns for p in (run / "features").iterdir()}  # (the stage 2's cache)
    code, _, err = cli(capsys, "features", run, "--quiet", "--force")
    assert code == 2 and {p.name: p.stat().st_mtime_ns for p in (run / "features").iterdir()} == before
    line = one_line(err)
    assert line.startswith(f"openlt features: error: {run}: ") and "test" in line
    assert line.endswith("extract features with the split files the run was trained on (restore them, or point "
                         "data.split_dir in the run's config.yaml at a copy of them)"), line


def read_only_features(monkeypatch):
    """Every write of a feature cache file fails as on a read-only file system (the tests run as root)."""
    import errno

    import openlt.engine.features as features

    real = features.atomic_path

    def refused(path, *args, **kwargs):
        if Path(path).parent.name == "features":
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(features, "atomic_path", refused)


def test_features_on_a_read_only_run_is_one_line_naming_the_cache(runs, tmp_path, capsys, monkeypatch):
    run = copied(runs[1], tmp_path / "x")
    shutil.rmtree(run / "features", ignore_errors=True)
    read_only_features(monkeypatch)
    code, _, err = cli(capsys, "features", run, "--quiet")
    assert code == 2
    assert one_line(err) == (f"openlt features: error: cannot write the feature cache {run}/features of the run {run}: "
                             f"Read-only file system; make that folder writable, or copy the run to a writable "
                             f"folder and run `openlt features` on the copy")


def test_a_stage2_from_a_read_only_stage1_run_goes_on_without_caching(runs, tmp_path, capsys, monkeypatch):
    stage1 = copied(runs[1], tmp_path / "s1")
    shutil.rmtree(stage1 / "features", ignore_errors=True)
    read_only_features(monkeypatch)
    code, _, err = cli(capsys, "train", CONFIGS / "decouple_ncm.yaml", f"train.init_from={stage1}",
                       f"out_dir={tmp_path / 's2'}", "train.device=cpu", "--quiet")
    assert code == 0, err
    notes = [line for line in err.splitlines() if "cannot be written" in line]
    assert notes == [f"openlt: warning: the feature cache {stage1}/features of the stage-1 run {stage1} cannot be "
                     f"written (Read-only file system): its features are extracted for this command alone, not cached "
                     f"(extracted again next time; the results are the same). Make that folder writable to cache "
                     f"them"], err
    assert not list((stage1 / "features").glob("*.safetensors"))


# --------------------------------------------------------------------------- S4: the same numbers, stage 1 gone or not
def test_a_decoupled_run_evaluates_the_same_with_its_stage1_run_gone(runs, tmp_path, capsys):
    root, stage1, stage2 = runs
    for dtype in ("float32", "float16"):
        s1 = copied(stage1, tmp_path / f"s1-{dtype}")
        code, _, err = cli(capsys, "train", CONFIGS / "decouple_ncm.yaml", f"train.init_from={s1}",
                           f"out_dir={tmp_path / f's2-{dtype}'}", "train.device=cpu",
                           f"decouple.cache_dtype={dtype}", "--quiet")
        assert code == 0, err
        s2 = next((tmp_path / f"s2-{dtype}").iterdir())
        with_cache = json.loads((s2 / "metrics.json").read_text())
        moved = s1.rename(tmp_path / f"s1-{dtype}-moved")
        code, _, err = cli(capsys, "eval", s2, f"data.split_dir={moved / 'splits'}", "--quiet")
        assert code == 0, err
        without = json.loads((s2 / "metrics.json").read_text())
        for key in ("closed", "open", "calibration", "per_class_accuracy"):
            assert without[key] == with_cache[key], (dtype, key)


# ------------------------------------------------------------------------ S5: a moved stage-1 run named anew, --resume
def test_resume_takes_a_moved_stage1_run_named_anew_when_its_checkpoint_is_the_same(runs, tmp_path, capsys):
    root, stage1, stage2 = runs
    s1 = copied(stage1, tmp_path / "s1")
    code, _, err = cli(capsys, "train", CONFIGS / "decouple_ncm.yaml", f"train.init_from={s1}",
                       f"out_dir={tmp_path / 's2'}", "train.device=cpu", "--quiet", "--no-eval")
    assert code == 0, err
    s2 = next((tmp_path / "s2").iterdir())
    config = s2 / "config.yaml"
    moved = s1.rename(tmp_path / "s1-moved")
    config.write_text(config.read_text().replace(f"init_from: {s1}\n", f"init_from: {moved}\n")
                      .replace(f"{s1}/splits", f"{moved}/splits"))  # (its split folder is in the stage-1 run)
    assert f"init_from: {moved}\n" in config.read_text()
    code, out, err = cli(capsys, "train", "--resume", s2, "--quiet")
    assert code == 0, err
    twin = copied(moved, tmp_path / "s1-copy")  # a copy named while the original stays (session 27): the same weights
    config.write_text(config.read_text().replace(f"init_from: {moved}\n", f"init_from: {twin}\n")
                      .replace(f"{moved}/splits", f"{twin}/splits"))
    code, out, err = cli(capsys, "eval", s2, "--quiet", "--tag", "twin")
    assert code == 0 and moved.is_dir(), err
    config.write_text(config.read_text().replace(f"init_from: {twin}\n", f"init_from: {moved}\n")
                      .replace(f"{twin}/splits", f"{moved}/splits"))
    other = copied(stage1, tmp_path / "other")  # another stage-1 checkpoint: still refused
    from safetensors.torch import load_file, save_file

    ckpt = other / "checkpoints" / "best.safetensors"
    tensors = load_file(ckpt)
    first = next(iter(tensors))
    tensors[first] = tensors[first] + 1
    save_file(tensors, str(ckpt), metadata={"format": "openlt-checkpoint/1"})
    config.write_text(config.read_text().replace(f"init_from: {moved}\n", f"init_from: {other}\n")
                      .replace(f"{moved}/splits", f"{other}/splits"))
    moved.rename(tmp_path / "s1-gone")
    code, out, err = cli(capsys, "eval", s2, "--quiet")
    assert code == 2 and f"set train.init_from back to {s1}" in one_line(err), (out, err)


def test_a_new_run_inside_a_run_directory_is_refused_before_any_work(tmp_path):
    """`openlt train out_dir=RUN/sub` made a run inside another run's folder (deleted or copied with it; session
    24): refused, naming the run, as a bench's out_dir there is. A project folder with a config.yaml of its own is
    no run."""
    from openlt.config import build_config
    from openlt.engine.train import train
    from openlt.errors import ConfigError

    run = tmp_path / "runs" / "plain-s0-20260101-000000"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("name: plain\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=f"out_dir {run / 'sub'} is inside the run directory {run}: "):
        train(build_config(None, [f"out_dir={run / 'sub'}"]), quiet=True)
    assert not (run / "sub").exists()
    link = tmp_path / "link"
    link.symlink_to(run)
    for out_dir in (run, link):  # the run itself, also through a link (trial 24c: a run made inside it)
        with pytest.raises(ConfigError, match=f"out_dir {out_dir} is the run directory {run}: "):
            train(build_config(None, [f"out_dir={out_dir}"]), quiet=True)
    assert sorted(p.name for p in run.iterdir()) == ["checkpoints", "config.yaml"]
    from openlt.engine.run import run_around

    (tmp_path / "config.yaml").write_text("name: project\n", encoding="utf-8")
    assert run_around(tmp_path / "runs" / "new") is None and run_around(run / "a" / "b") == run


def test_an_unmoved_stage1_run_is_not_hashed(tmp_path, monkeypatch):
    """stage1_moved_to with the init_from the run recorded (the usual case: every evaluation, predict and export of
    a decoupled run asks) reads no checkpoint; a copy at another path is hashed and taken when its sha256 is the
    recorded one (session 27's review: accepting copies had made it hash the stage-1 checkpoint every time)."""
    from openlt.engine import runtime

    (tmp_path / "s1" / "checkpoints").mkdir(parents=True)
    (tmp_path / "s1" / "checkpoints" / "best.safetensors").write_bytes(b"weights")
    (tmp_path / "copy").symlink_to(tmp_path / "s1")
    hashed = []
    monkeypatch.setattr("openlt.io.sha256_file", lambda path: hashed.append(path) or "abc")
    state = {"stage1": {"checkpoint": "best", "sha256": "abc"}}
    assert not runtime.stage1_moved_to(str(tmp_path / "s1"), str(tmp_path / "s1"), state) and hashed == []
    assert not runtime.stage1_moved_to(str(tmp_path / "s1"), f"{tmp_path}/./s1/", state) and hashed == []
    assert not runtime.stage1_moved_to(str(tmp_path / "s1"), str(tmp_path / "copy"), state) and hashed == []
    (tmp_path / "twin" / "checkpoints").mkdir(parents=True)
    (tmp_path / "twin" / "checkpoints" / "best.safetensors").write_bytes(b"weights")
    assert runtime.stage1_moved_to(str(tmp_path / "s1"), str(tmp_path / "twin"), state) and len(hashed) == 1
