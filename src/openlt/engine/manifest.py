"""A run's split manifest (split_manifest.json) as the proof that the run still sees the data it was trained on.

`train` writes the manifest once, when the run starts: the sha256 of every split file it reads (train, val,
test, open) and the class list (label order). Whatever uses the run's weights on its data again checks it with
:func:`verify_manifest` before any work: `openlt eval`, `openlt train --resume`, and `train.init_from` (OLTR
stage 2, decoupled stage 2 from a stage-1 run). After `openlt split --force` on the run's split folder, an edit
of a split file, or an edit of the run's config.yaml to other data, they refuse with one line naming the file
that changed, instead of evaluating with remapped classes or resuming on other images. Prediction reads no
split file and is not checked here.

Where the images are not files of an image folder but packed data files (CIFAR-10/100's pickled batches,
Fashion-MNIST's IDX files), the manifest also records their identity (``data_files``: the sha256 of each file,
taken when the data is loaded, `build.packed_data_files`), and the same commands refuse a data.root whose files
differ (other pixels, same labels and names), naming the file and data.root. A manifest written by an older openlt
has no such record and is taken as it is. An image folder's images are not fingerprinted: its split files' sha256
covers which images (paths and labels), and each listed image must be there.

:func:`check_open_decision` is the other check a run's data needs before training: an open split with
``eval.open_threshold=auto`` needs a validation split to choose the threshold on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from openlt.config import read_json
from openlt.data.build import DataBundle
from openlt.engine.run import Run
from openlt.errors import ConfigError, RunDirError
from openlt.openset import check_rejection_config, parse_threshold

SPLITS = ("train", "val", "test", "open")
DATA_KEYS = ("data.root", "data.open_root")  # where packed data files are read (split_manifest.json data_files)

# what to do, by the command that found the change
REMEDY = {
    "eval": "evaluate with the split files the run was trained on (restore them, or point data.split_dir at a copy "
            "of them), or train a new run on the new ones",
    "resume": "`--resume` continues only on the data the run started with: restore the split files (or undo the "
              "edit of the run's config.yaml), or start a new run",
    "init_from": "start from a stage-1 run trained on these split files, or restore the ones it was trained on",
    "features": "extract features with the split files the run was trained on (restore them, or point data.split_dir "
                "in the run's config.yaml at a copy of them)",
}


def read_run_manifest(run: Run) -> dict:
    """The run's split_manifest.json: ``{"class_names": [str, ...], "files": {split: {"sha256": str, "file": str,
    ...}}, ...}``. RunDirError naming the file when it is missing, not UTF-8 JSON, or not that shape."""
    path = run.manifest_file
    if not path.is_file():
        raise RunDirError(f"{path} is missing: the run directory is incomplete, so nothing shows which split files "
                          f"{run.path} was trained on")
    raw = read_json(path, "split manifest", RunDirError)
    problem = _manifest_problem(raw)
    if problem:
        raise RunDirError(f"{path} is not a split manifest written by openlt ({problem})")
    return raw



def _manifest_problem(raw: Any) -> str | None:
    """What is wrong with a parsed split manifest, or None."""
    if not isinstance(raw, dict):
        return f"a JSON {type(raw).__name__}, not an object"
    names, files = raw.get("class_names"), raw.get("files")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        return "class_names must be a non-empty list of strings"
    if not isinstance(files, dict) or "train" not in files:
        return "files must map each split (train, val, test, open) to its file and sha256"
    for split, info in files.items():
        if split not in SPLITS or not isinstance(info, dict) or not isinstance(info.get("sha256"), str):
            return f"files.{split} must be a split name with a sha256"
    packed = raw.get("data_files", {})  # absent: an older openlt, or an image folder
    if not isinstance(packed, dict):
        return "data_files must map data.root (data.open_root) to the packed files read there"
    for key, where in packed.items():
        listed = where.get("files") if isinstance(where, dict) else None
        if (key not in DATA_KEYS or not isinstance(listed, dict) or not isinstance(where.get("folder"), str)
                or not all(isinstance(info, dict) and isinstance(info.get("sha256"), str) for info in listed.values())):
            return f"data_files.{key} must be data.root or data.open_root with its folder and each file's sha256"
    return None


def verify_manifest(run: Run, data: DataBundle, use: str = "eval", *, splits: tuple[str, ...] = SPLITS,
                    source: str | None = None) -> None:
    """Check that `data` (the split files as they are now, parsed by `prepare_data`) is what `run` was trained
    on: each of `splits` read now with the sha256 the run's split_manifest.json records, none the run had gone,
    and the same class list, and the packed data files read through data.root (data.open_root when "open" is
    checked) with the sha256 it records, if it records them (:func:`_data_change`). `use` ("eval", "resume",
    "init_from") chooses what the message advises; `source` names the run as the user gave it (e.g.
    ``train.init_from=RUN``). A stage 2 started from `run` checks ``splits=("train",)``: its stage-1 weights depend
    on the training split, the classes and the training images, not on the other splits.

    Raises RunDirError (one line: the file that changed, what to do) on the first difference, and for a missing
    or malformed split_manifest.json. Reads nothing but that file (the hashes come with `data`)."""
    recorded = read_run_manifest(run)
    who = source or str(run.path)
    now = {split: data.manifest["files"][split] for split in SPLITS if split in data.entries}
    for split in splits:
        problem = _file_change(split, recorded["files"].get(split), now.get(split), data)
        if problem:
            raise RunDirError(f"{who}: {problem}; {REMEDY[use]}")
    if recorded["class_names"] != data.class_names:
        change = class_change(recorded["class_names"], data.class_names)
        raise RunDirError(f"{who}: the class list changed since the run was trained ({change}, from "
                          f"{class_source(data)}); {REMEDY[use]}")
    for key in DATA_KEYS if "open" in splits else DATA_KEYS[:1]:
        problem = _data_change(run, key, recorded.get("data_files", {}).get(key),
                               data.manifest.get("data_files", {}).get(key), data, use)
        if problem:
            raise RunDirError(f"{who}: {problem}")


# what to do when the packed data files (CIFAR batches, Fashion-MNIST IDX files) differ, by command; {key}: the
# config key that says where they are (data.root, data.open_root), {folder}: where the run read them, {run}: the run
DATA_REMEDY = {
    "eval": "point {key} to the data the run was trained on (it read {folder}: `openlt eval {run} {key}=FOLDER`), "
            "or train a new run on this data",
    "resume": "`--resume` continues only on the data the run started with: point {key} in {run}/config.yaml to it "
              "(it read {folder}), or start a new run",
    "init_from": "point {key} to the data the stage-1 run was trained on (it read {folder}), or start from a "
                 "stage-1 run trained on this data",
    "features": "point {key} in {run}/config.yaml to the data the run was trained on (it read {folder})",
}


def _data_change(run: Run, key: str, then: dict | None, now: dict | None, data: DataBundle, use: str) -> str | None:
    """How the packed files read through `key` differ between the run's split_manifest.json ``data_files`` (`then`,
    its shape checked by `_manifest_problem`) and the files read now (`now`: `build.packed_data_files`), or None.
    A manifest without the record (an older openlt, or an image folder: no packed files) is not checked."""
    if then is None:
        return None
    value = getattr(data.cfg.data, key.split(".", 1)[1])
    via = f"{key}={value}" if value is not None else f"{key} (unset)"
    remedy = DATA_REMEDY[use].format(key=key, folder=then["folder"], run=run.path)
    if now is None:
        return (f"the run read its images from the packed files in {then['folder']} ({key}), and {via} "
                f"reads none now; {remedy}")
    for stem, info in then["files"].items():
        sha = info["sha256"]
        current = now["files"].get(stem)
        if current is None:
            return f"{via}: {now['folder']} has no {stem}, which the run was trained with; {remedy}"
        if sha != current["sha256"]:
            return (f"{via}: {current['file']} is not the {stem} the run read when it was trained (sha256 {sha[:12]} "
                    f"then, {current['sha256'][:12]} now: other images); {remedy}")
    return None


def _file_change(split: str, then: dict | None, now: dict | None, data: DataBundle) -> str | None:
    """How one split differs between the run's manifest (`then`) and the files now (`now`), or None."""
    if then is None and now is None:
        return None
    if then is None:
        return (f"{data.split_path(split)} ({split} split) is not in the run's split manifest: the run was trained "
                f"without a {split} split")
    if now is None:
        path = data.split_path(split)
        where = "the config names none" if path is None else f"{path} is not there"
        return f"the run was trained with the {split} split {then.get('file', '?')}, and {where}"
    if then["sha256"] == now["sha256"]:
        return None
    changed = (f"{now['file']} changed since the run was trained" if then.get("file") == now["file"] else
               f"{now['file']} is not the {split} split the run was trained on ({then.get('file', '?')})")
    return f"{changed} (sha256 {then['sha256'][:12]} then, {now['sha256'][:12]} now)"


def class_change(then: list[str], now: list[str]) -> str:
    """How a run's class list changed from `then` (recorded) to `now` (two lists that differ), briefly: their
    lengths, else the first label that differs, e.g. "label 0 was 'ant', now 'bee'"."""
    if len(then) != len(now):
        return f"{len(then)} classes then, {len(now)} now"
    i = next(i for i, (a, b) in enumerate(zip(then, now)) if a != b)
    return f"label {i} was {then[i]!r}, now {now[i]!r}"


def label_difference(reference: list[str], given: list[str], given_where: str, reference_where: str) -> str:
    """How the class list `given` differs from `reference` (two lists that differ), briefly: their lengths, else the
    first label that differs, e.g. "label 0 is 'bee' in inference.json, 'ant' there"."""
    if len(reference) != len(given):
        return f"{len(given)} classes {given_where}, {len(reference)} {reference_where}"
    i = next(i for i, (a, b) in enumerate(zip(reference, given)) if a != b)
    return f"label {i} is {given[i]!r} {given_where}, {reference[i]!r} {reference_where}"


def class_source(data: DataBundle) -> str:
    """Where the class names come from: the class-name file, the split folder's manifest, or the train split."""
    if data.cfg.data.class_names:
        return f"the class-name file {data.cfg.data.class_names}"
    folder_manifest = Path(data.split_dir) / "manifest.json"
    return str(folder_manifest) if folder_manifest.is_file() else str(data.split_path("train"))


def check_open_decision(eval_cfg: Any, data: DataBundle) -> None:
    """Refuse, before any training or inference, an open-set run that cannot choose its rejection threshold: an
    open split with ``eval.open_threshold=auto`` and no validation split. A closed-set run (no open split) needs
    no threshold. Also checks the threshold settings themselves (`check_rejection_config`). ConfigError naming
    the keys to set."""
    if data.has("open") and not data.has("val") and parse_threshold(eval_cfg.open_threshold) is None:
        val = data.split_path("val")
        missing = "data.val_split is null" if val is None else f"{val} does not exist"
        raise ConfigError(f"{data.split_path('open')} is an open split, and eval.open_threshold=auto chooses the "
                          f"rejection threshold on a validation split, but {missing}: set eval.open_threshold=NUMBER "
                          f"(a fixed threshold on eval.open_score), or data.val_split=FILE, or data.open_split=null "
                          f"for a closed-set run")
    check_rejection_config(eval_cfg, has_val=True)


def check_training_data(cfg: Any, data: DataBundle, run: Run | None, resume: bool) -> None:
    """What `train` checks of its data before the first step: on `resume`, that the split files and classes are
    still the ones the run started on (:func:`verify_manifest`; the manifest is then kept, never rewritten),
    and that an open split can get its rejection threshold (:func:`check_open_decision`). `run` may be None for a
    run not created yet (then `resume` is False). RunDirError / ConfigError, one line."""
    if resume and run is not None:
        verify_manifest(run, data, "resume")
    check_open_decision(cfg.eval, data)
