"""A run's split manifest is checked wherever its weights meet its data again, and an open-set run must be able to
choose its threshold before it trains.

One table: a change to a trained run's data (re-split with --force, an edited split file, a removed split, an
edited class list, the run's config.yaml edited to other data) or a damaged split_manifest.json, through each
command that reads the run's data again (`openlt eval`, `train --resume`, `train.init_from` for a stage 2,
decoupled stage 2 from the run). Each must exit 2 with ONE line naming the changed file (or the manifest), no
traceback, and the run directory unchanged. Then the unchanged copy of the run is accepted (the table's
control), and the open-set threshold rules: refused before training, or a closed-set run that needs none.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Callable

import pytest

from images import make_image_folder
from cli_ok import main_ok
from openlt.cli import main

REPORT_FIGURES = "unrasterized"  # tests/conftest.py: report.html figures built, not rendered (none is looked at)

TINY = ["data.image_size=16", "model.backbone=resnet20", "train.epochs=1", "train.batch_size=8", "train.device=cpu",
        "eval.batch_size=64", "--quiet"]
SPLIT = ["--profile", "exp", "--n-max", "8", "--n-min", "4", "--val-per-class", "2", "--test-per-class", "2",
         "--open-classes", "eel", "--order", "label"]


def split_cmd(images: Path, out: Path, *extra: str) -> list[str]:
    return ["split", "--dataset", "image-folder", "--root", str(images), "--out", str(out), *SPLIT, *extra]


def cli(args: list, capsys) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def trained(tmp_path_factory, single_thread):
    """A split folder of `openlt split` and one run trained on it (1 epoch, evaluated), made once."""
    root = tmp_path_factory.mktemp("manifest")
    images = make_image_folder(root / "images", {"ant": 12, "bee": 10, "cat": 9, "eel": 6})
    assert main([str(a) for a in split_cmd(images, root / "split")]) == 0
    (root / "c.yaml").write_text("name: s1\n")
    main_ok(["train", str(root / "c.yaml"), "data.dataset=image-folder", f"data.root={images}",
             f"data.split_dir={root / 'split'}", f"out_dir={root / 'runs'}", *TINY])
    run = next((root / "runs").iterdir())
    return {"root": root, "images": images, "split": root / "split", "run": run}


class Env:
    """One case: copies of the trained run and of its split folder (the run's config.yaml points at the copy)."""

    def __init__(self, tmp: Path, trained: dict) -> None:
        self.tmp, self.images = tmp, trained["images"]
        self.split = tmp / "split"
        shutil.copytree(trained["split"], self.split)
        self.run = tmp / "run"
        shutil.copytree(trained["run"], self.run)
        self.config = self.run / "config.yaml"
        for path in (self.config, self.run / "split_manifest.json"):  # as if the run had been trained on the copy
            path.write_text(path.read_text().replace(str(trained["split"]), str(self.split)))
        assert f"split_dir: {self.split}" in self.config.read_text()
        (tmp / "s2.yaml").write_text("name: s2\n")

    def edit(self, name: str, change: Callable[[list[str]], list[str]]) -> None:
        path = self.split / name
        path.write_text("".join(f"{line}\n" for line in change(path.read_text().splitlines())))

    def edit_config(self, old: str, new: str) -> None:
        text = self.config.read_text()
        assert old in text, old
        self.config.write_text(text.replace(old, new))


# ---------------------------------------------------------------------------- changes to a run's data (kind: changed)
def resplit(env: Env) -> None:  # `openlt split --force` on the run's split folder, another seed
    assert main(split_cmd(env.images, env.split, "--seed", "1", "--force")) == 0


def class_names_swapped(env: Env) -> None:  # the split folder's manifest.json names the labels in another order
    path = env.split / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["class_names"][0], manifest["class_names"][1] = manifest["class_names"][1], manifest["class_names"][0]
    path.write_text(json.dumps(manifest))


def train_label_changed(env: Env) -> None:
    env.edit("train.txt", lambda lines: [lines[0].rsplit(" ", 1)[0] + " 2", *lines[1:]])


def drop_test_line(env: Env) -> None:
    env.edit("test.txt", lambda lines: lines[:-1])


def val_labels_swapped(env: Env) -> None:
    def swap(lines: list[str]) -> list[str]:
        (a, la), (b, lb) = lines[0].rsplit(" ", 1), lines[-1].rsplit(" ", 1)
        assert la != lb
        return [f"{a} {lb}", *lines[1:-1], f"{b} {la}"]
    env.edit("val.txt", swap)


def open_removed(env: Env) -> None:
    (env.split / "open.txt").unlink()


def val_removed(env: Env) -> None:
    (env.split / "val.txt").unlink()


def config_to_other_data(env: Env) -> None:  # the run's config.yaml edited to another split folder
    other = env.tmp / "other"
    assert main(split_cmd(env.images, other, "--seed", "2")) == 0
    env.edit_config(f"split_dir: {env.split}", f"split_dir: {other}")


def config_without_val(env: Env) -> None:
    env.edit_config("val_split: val.txt", "val_split: null")


# ------------------------------------------------------------------- damaged split_manifest.json (kind: manifest)
def manifest(write: Callable[[Path], None]) -> Callable[[Env], None]:
    def damage(env: Env) -> None:
        write(env.run / "split_manifest.json")
    return damage


def _without(key: str) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        data = json.loads(path.read_text())
        del data[key]
        path.write_text(json.dumps(data))
    return write


def _bad_sha(path: Path) -> None:
    data = json.loads(path.read_text())
    data["files"]["train"]["sha256"] = 5
    path.write_text(json.dumps(data))


DAMAGED = {
    "manifest-missing": (manifest(lambda p: p.unlink()), ("split_manifest.json is missing",)),
    "manifest-torn": (manifest(lambda p: p.write_text(p.read_text()[:40])), ("split_manifest.json", "not readable JSON")),
    "manifest-a-list": (manifest(lambda p: p.write_text("[1, 2]")), ("split_manifest.json", "a JSON list")),
    "manifest-no-class-names": (manifest(_without("class_names")), ("split_manifest.json", "class_names")),
    "manifest-no-files": (manifest(_without("files")), ("split_manifest.json", "files must map")),
    "manifest-sha-not-text": (manifest(_bad_sha), ("split_manifest.json", "files.train")),
}
CHANGED = {
    "split-force-other-seed": (resplit, ("train.txt", "changed since the run was trained", "sha256")),
    "class-names-swapped": (class_names_swapped, ("manifest.json", "lies in the class folder 'ant', but label 0 is 'bee'",
                                                  "the class names do not fit the split files")),
    "train-label-edited": (train_label_changed, ("train.txt, line 1", "lies in the class folder 'ant', but label 2")),
    "test-line-dropped": (drop_test_line, ("test.txt", "changed since the run was trained")),
    "val-labels-swapped": (val_labels_swapped, ("val.txt, line 1", "lies in the class folder")),
    "open-split-removed": (open_removed, ("trained with the open split", "open.txt is not there")),
    "val-split-removed": (val_removed, ("trained with the val split", "val.txt is not there")),
    "config-to-other-data": (config_to_other_data, ("other/train.txt", "is not the train split the run was trained on")),
    "config-val-split-null": (config_without_val, ("trained with the val split", "the config names none")),
}
REMEDY = {"eval": "evaluate with the split files the run was trained on", "resume": "`--resume` continues only on",
          "init_from": "start from a stage-1 run trained on these split files"}


def command(kind: str, env: Env) -> list:
    if kind == "eval":
        return ["eval", env.run, "--quiet"]
    if kind == "resume":
        return ["train", "--resume", env.run, "--quiet"]
    if kind == "init_from":  # a stage 2 (OLTR's, the stage-2 losses') on the same split folder
        return ["train", env.tmp / "s2.yaml", "data.dataset=image-folder", f"data.root={env.images}",
                f"data.split_dir={env.split}", f"train.init_from={env.run}", f"out_dir={env.tmp / 'runs'}", *TINY]
    return ["train", env.tmp / "s2.yaml", "decouple.method=ncm", f"train.init_from={env.run}",  # decoupled stage 2
            f"out_dir={env.tmp / 'runs'}", "train.device=cpu", "--quiet"]


# a stage 2 from the run (init_from) depends on the training split and the classes alone
INIT_FROM = ("split-force-other-seed", "class-names-swapped", "train-label-edited", "manifest-missing", "manifest-torn")
# edits that make the split folder contradict its images (a label or a name that is not the image's class folder)
# are refused by prepare_data before the run is compared, naming the file and line (data/splitcheck.py)
CONTRADICTS_ITS_IMAGES = ("class-names-swapped", "train-label-edited", "val-labels-swapped")
CASES = ([(kind, name) for kind in ("eval", "resume", "decoupled") for name in (*CHANGED, *DAMAGED)]
         + [("init_from", name) for name in INIT_FROM])


def snapshot(folder: Path) -> dict:
    """Every file of the run but train.lock (it names the last process that held the run: trained or evaluated it)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*")
            if p.is_file() and p.name != "train.lock"}


@pytest.mark.parametrize("kind, name", CASES, ids=[f"{k}-{n}" for k, n in CASES])
def test_a_changed_data_or_manifest_is_refused_with_one_line(kind, name, trained, tmp_path, capsys):
    env = Env(tmp_path, trained)
    change, expected = {**CHANGED, **DAMAGED}[name]
    change(env)
    before = snapshot(env.run)
    code, _, err = cli(command(kind, env), capsys)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    for text in expected:
        assert text in lines[0], (text, lines[0])
    if name in CHANGED and name not in CONTRADICTS_ITS_IMAGES:  # the change is named with what to do about it
        assert REMEDY["init_from" if kind in ("init_from", "decoupled") else kind] in lines[0], lines[0]
    assert snapshot(env.run) == before  # nothing rewritten (the manifest above all), nothing evaluated
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())  # no stage-2 run left


def test_the_table_covers_every_kind():
    assert len(CHANGED) >= 8 and len(DAMAGED) >= 5 and len(CASES) >= 40


def test_an_unchanged_copy_is_accepted_and_resume_keeps_the_manifest(trained, tmp_path, capsys):
    env = Env(tmp_path, trained)  # the table's control: the copy alone changes nothing the check looks at
    manifest_before = (env.run / "split_manifest.json").read_bytes()
    code, out, err = cli(["train", "--resume", env.run], capsys)
    assert code == 0 and "training already finished" in out, err
    assert (env.run / "split_manifest.json").read_bytes() == manifest_before
    (env.run / "metrics.json").unlink()
    code, _, err = cli(["eval", env.run, "--quiet"], capsys)
    assert code == 0, err
    metrics = json.loads((env.run / "metrics.json").read_text())
    recorded = json.loads(manifest_before)["files"]
    assert metrics["split_files"] == {split: info["sha256"] for split, info in recorded.items()}
    assert set(recorded) == {"train", "val", "test", "open"}


# ----------------------------------------------------- the open-set threshold, decided before training (kind: open)
@pytest.fixture(scope="module")
def no_val(tmp_path_factory, trained):
    """A split-file folder without a validation split (as iNaturalist's), with an open split."""
    folder = tmp_path_factory.mktemp("noval") / "split"
    folder.mkdir()
    for name in ("train.txt", "test.txt", "open.txt"):
        shutil.copy(trained["split"] / name, folder / name)
    return folder


def split_file_train(tmp: Path, trained: dict, split: Path, *extra: str) -> list:
    (tmp / "c.yaml").write_text("name: noval\n")
    return ["train", tmp / "c.yaml", "data.dataset=split-file", f"data.root={trained['images']}",
            f"data.split_dir={split}", f"out_dir={tmp / 'runs'}", *TINY, *extra]


@pytest.mark.parametrize("extra, missing", [
    ((), "val.txt does not exist"),
    (("data.val_split=null",), "data.val_split is null"),
    (("data.val_split=mine.txt",), "mine.txt does not exist"),
    (("eval.open_score=energy", "eval.keep_known=0.9"), "val.txt does not exist"),
], ids=["no-val-file", "val-split-null", "val-split-missing-file", "another-score"])
def test_an_open_split_with_auto_threshold_and_no_validation_is_refused_before_training(extra, missing, trained, no_val,
                                                                                       tmp_path, capsys):
    code, out, err = cli(split_file_train(tmp_path, trained, no_val, *extra), capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    for text in ("open.txt is an open split", missing, "eval.open_threshold=NUMBER", "data.val_split=FILE",
                 "data.open_split=null"):
        assert text in err, (text, err)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())  # refused before any run


def test_open_set_without_validation_runs_with_a_fixed_threshold(trained, no_val, tmp_path, capsys):
    code, _, err = cli(split_file_train(tmp_path, trained, no_val, "eval.open_threshold=0.5"), capsys)
    assert code == 0, err
    run = next((tmp_path / "runs").iterdir())
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["calibration"]["threshold"] == 0.5 and "open" in metrics and "val" not in metrics
    # a decoupled stage 2 from it with auto is refused before any feature is extracted
    (tmp_path / "s2.yaml").write_text("name: s2\n")
    code, _, err = cli(["train", tmp_path / "s2.yaml", "decouple.method=ncm", f"train.init_from={run}",
                        f"out_dir={tmp_path / 'stage2'}", "train.device=cpu", "--quiet"], capsys)
    assert code == 2 and "eval.open_threshold=NUMBER" in err and not (run / "features").exists(), err


def test_a_closed_set_run_without_validation_needs_no_threshold(trained, no_val, tmp_path, capsys):
    """iNaturalist's case: no validation and no open split. Training, evaluation, the report, tau-norm with one
    tau, and predict with --threshold all run; none writes a calibration."""
    code, _, err = cli(split_file_train(tmp_path, trained, no_val, "data.open_split=null"), capsys)
    assert code == 0, err
    run = next((tmp_path / "runs").iterdir())
    metrics = json.loads((run / "metrics.json").read_text())
    assert "calibration" not in metrics and "open" not in metrics and not (run / "calibration.json").exists()
    assert "no rejection threshold" in (run / "report.html").read_text()
    (tmp_path / "s2.yaml").write_text("name: s2\n")
    stage2 = ["train", tmp_path / "s2.yaml", "decouple.method=tau_norm", f"train.init_from={run}",
              f"out_dir={tmp_path / 'stage2'}", "train.device=cpu", "--quiet"]
    code, _, err = cli([*stage2, "decouple.taus=[0.5, 1.0]"], capsys)  # a grid needs validation to choose on
    assert code == 2 and "chooses tau on the validation split" in err
    code, out, err = cli([*stage2, "decouple.taus=[1.0]"], capsys)  # configs/inat2018/tau_norm.yaml's advice
    assert code == 0, err
    decoupled = next((tmp_path / "stage2").iterdir())
    details = json.loads((decoupled / "decouple.json").read_text())
    assert details["tau"] == 1.0 and details["tau_curve"] == [] and not (decoupled / "tau_curve.png").exists()
    assert "calibration" not in json.loads((decoupled / "metrics.json").read_text())
    image = str(next((trained["images"] / "ant").glob("*.png")))
    code, out, err = cli(["predict", run, image, "--threshold", "0.5", "--json"], capsys)
    assert code == 0 and json.loads(out)[0]["threshold"] == 0.5, err
    assert not (run / "calibration.json").exists()  # a fixed threshold needs no calibration


def _private_imports(path: Path) -> list[str]:
    """The names starting with '_' that `path` imports from another openlt module (ast: nothing is imported)."""
    import ast

    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("openlt"):
            found += [f"{node.module}.{alias.name}" for alias in node.names
                      if alias.name.startswith("_") and not alias.name.startswith("__")]
    return found


def test_the_engine_modules_that_describe_a_run_import_no_private_name():
    """engine/inference.py imported manifest's `_class_change` / `_class_source`, predict.py datasets'
    `_broken_link`: helpers another module uses are public (a name without '_', a docstring)."""
    import openlt.engine as engine
    from openlt.engine import manifest

    folder = Path(engine.__file__).parent
    for name in ("inference.py", "manifest.py", "predict.py", "export.py", "stage1_record.py"):
        assert _private_imports(folder / name) == [], name
    for helper in (manifest.class_change, manifest.class_source, manifest.label_difference):
        assert helper.__doc__ and not helper.__name__.startswith("_")
    # the messages are unchanged
    assert manifest.class_change(["ant", "bee"], ["bee", "ant"]) == "label 0 was 'ant', now 'bee'"
    assert manifest.class_change(["ant", "bee"], ["ant"]) == "2 classes then, 1 now"
