"""What a stage 2 records of the stage-1 checkpoint it started from (:func:`stage1_record`: a decoupled stage 2 and
one that trains, OLTR and the stage-2 baselines, alike), and the check that it is still there (issue 14): a decoupled run is evaluated on its stage-1 run's features, extracted with that run's checkpoint
as it is now, so another checkpoint copied in its place would be applied the old head without a word. Its own
module: runtime.trained_config runs the check, and engine/init_from.py builds on runtime.

Only what reads the stage-1 run needs the check (`openlt eval`: its feature cache). The stage-2 checkpoint holds the
whole network (the stage-1 body it was fitted on and the fitted head: decouple.train_decoupled saves the model's
full state dict), so predict, export and ``openlt.load_run``, which read that checkpoint alone, do not run it.

Also the stage-1 run's config as a stage 2 reads its features (:func:`stage1_config`): engine/features.py (the
cache a decoupled stage 2 fits on) and engine/init_from.py (OLTR's centroids from that cache) both need it."""

from __future__ import annotations

import copy
import json

from openlt.config import Config, read_yaml_mapping
from openlt.decoupling import STAGE2_METHODS
from openlt.engine.checkpoint import checkpoint_state
from openlt.engine.run import Run, open_run
from openlt.errors import ConfigError, RunDirError
from openlt.io import sha256_file
from openlt.reporting.convergence import (UNDER_TRAINED, convergence, convergence_unchecked, convergence_warning,
                                         planned_epochs)


def stage1_record(source: Run, checkpoint: str = "best") -> dict:
    """What a stage 2 records of the stage-1 checkpoint it started from (its checkpoint state's "stage1"): {"run":
    absolute path, "checkpoint": name, "sha256": hex, "config": the stage-1 run's config.yaml as a mapping, "amp":
    the precision its checkpoint records it trained in (None: an older run), "recipe" / "resumed": the training keys
    its last checkpoint records the run trained with and what a `--resume` changed part-way (absent for an older
    run; summary names the run by them), "convergence_warning": the run's under-training warning as its log says
    now, or None (absent when its log cannot be read: :func:`stage1_warning`), and "stage1":
    that run's own record when it is itself a stage 2}. The sha256 is what :func:`check_stage1_unchanged` compares; the config and amp
    are what `openlt summary` compares stage-2 runs' stage-1 recipes and seeds with (trial 14a D2), the warning what
    the stage 2's evaluation reports (:func:`stage1_convergence`): the stage-1 folder may have moved, been resumed
    or deleted since, the stage-2 run keeps them."""
    path = source.checkpoint(checkpoint)
    state = checkpoint_state(path)
    record = {"run": str(source.path.resolve()), "checkpoint": checkpoint, "sha256": sha256_file(path),
              "config": json.loads(json.dumps(read_yaml_mapping(source.config_file, "run config"), default=str)),
              "amp": state.get("amp")}
    # the run's recipe as summary reads it (its last checkpoint's, as the run trained to the end: trial 19 D7)
    last = source.checkpoint("last")
    trained = checkpoint_state(last) if checkpoint != "last" and last.is_file() else state
    for key in ("recipe", "resumed"):
        if key in trained:
            record[key] = trained[key]
    if isinstance(state.get("stage1"), dict):
        record["stage1"] = state["stage1"]
    record.update(stage1_warning(source, state))
    return record


def run_convergence(run: Run, cfg: Config) -> dict:
    """The under-training check (:func:`openlt.reporting.convergence.convergence`) of `run`'s epoch log against its
    planned epochs (:func:`~openlt.reporting.convergence.planned_epochs` of `cfg`, the run's config) and the epochs
    its last checkpoint records it trained: a run that trained them all is no stopped run when its log was cut or
    edited after (`openlt train --resume`, the stop warning's remedy, would find nothing to train), and such a log's
    curve is not judged. The planned epochs are those the last checkpoint records the run trained with (its
    "recipe": config.yaml may be edited after training) where it records them. A last checkpoint that is missing or
    cannot be read leaves the log to judge; a decoupled stage 2 (no planned epochs) is judged on its fit's log
    alone, and one whose log holds no validation curve by design is not judged: fitted in closed form (NCM, τ-norm:
    its one log record is no curve), or FSLwF (its base classifier's epochs are logged before the head is whole):
    its check then says so in ``"not_judged"``."""
    if cfg.decouple.method != "none" and not STAGE2_METHODS.get(cfg.decouple.method).validates_epochs:
        # said in metrics.json, so that a reader of it does not take the empty check for a check made (trial 24)
        return {**convergence([]), "not_judged": f"decouple.method={cfg.decouple.method} logs no validation curve "
                                                 f"to judge (by design)"}
    try:
        records = run.epochs_logged()
    except RunDirError as exc:  # a hand-edited line: the run is still evaluated, its curve not judged
        return {**convergence([]), "unchecked": f"its epoch log cannot be read ({exc})"}
    planned, trained = planned_epochs(cfg), None
    last = run.checkpoint("last")
    if planned is not None and last.is_file():
        try:
            state = checkpoint_state(last)
        except (RunDirError, OSError):
            state = {}
        done, recipe = state.get("epoch"), state.get("recipe")
        trained = done + 1 if _count(done) else None
        recorded = recipe.get("train.epochs") if isinstance(recipe, dict) else None
        planned = recorded if _count(recorded) and recorded > 0 else planned
    return convergence(records, None if trained is not None and trained >= planned else planned, trained,
                       cfg.train.epochs)


def _count(value) -> bool:
    """Whether `value` is a whole number >= 0 (not a bool), as a checkpoint's epoch or recipe records one."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def stage1_warning(source: Run, state: dict) -> dict:
    """``{"convergence_warning": text or None, "convergence_unchecked": text or None}``: the under-training warning
    of the stage-1 run `source` as its epoch log and config.yaml say now (:func:`run_convergence`), or why its curve
    could not be judged (a 1 - 3 epoch run, no validation: its ``"unchecked"``); else, when `source` is itself a
    stage 2 (its checkpoint `state` records its own stage-1 run), that run's recorded ones; ``{}`` when its log or
    config cannot be read (the stage 2's evaluation then reads it)."""
    try:
        check = run_convergence(source, source.config())
    except (RunDirError, ConfigError, OSError):
        return {}
    warning, unchecked = check["warning"], check["unchecked"]
    upstream = state.get("stage1") if isinstance(state.get("stage1"), dict) else {}
    if warning is None and isinstance(upstream.get("convergence_warning"), str):
        reason = upstream["convergence_warning"].removeprefix(UNDER_TRAINED)
        warning = (f"{UNDER_TRAINED}it starts from the stage-1 run {upstream.get('run')}, which "
                   f"may be: {reason}")
    if warning is None and unchecked is None and isinstance(upstream.get("convergence_unchecked"), str):
        unchecked = f"it starts from the stage-1 run {upstream.get('run')}: {upstream['convergence_unchecked']}"
    return {"convergence_warning": warning, "convergence_unchecked": None if warning else unchecked}


def training_stage1_record(cfg: Config, state: dict | None) -> dict | None:
    """The "stage1" record (:func:`stage1_record` of its best checkpoint) a stage 2 that trains (`train.init_from`
    without decouple.method) keeps in its checkpoints: taken from the stage-1 run when the run starts, from its
    last checkpoint's `state` when it is resumed (None there: a run of an older openlt records none); None without
    train.init_from."""
    if not cfg.train.init_from:
        return None
    if state is not None:
        recorded = state.get("stage1")
        return recorded if isinstance(recorded, dict) else None
    return stage1_record(open_run(cfg.train.init_from), "best")


def check_stage1_unchanged(run: Run, cfg: Config, checkpoint: str = "best") -> None:
    """A decoupled stage-2 run is evaluated on its stage-1 run's features (that run's feature cache, extracted
    with its checkpoint as it is now): RunDirError, one line naming both runs, the recorded and current sha256
    and the remedy, when the stage-1 checkpoint the run's checkpoint records ("stage1": :func:`stage1_record`)
    changed since (another run copied in its place, training went on): the old head would be applied to another
    representation without a word. Passed: a run that is no decoupled stage 2, one without the record (an older
    openlt), or whose stage-1 run or checkpoint is gone (then evaluated through its own network)."""
    path = run.checkpoint(checkpoint)
    if not path.is_file():
        path = run.checkpoint("last")
    if cfg.decouple.method == "none" or not path.is_file():
        return
    recorded = checkpoint_state(path).get("stage1")
    if not isinstance(recorded, dict):
        return
    where = cfg.train.init_from or recorded.get("run")
    try:
        source = open_run(where)
    except (RunDirError, TypeError):
        return
    stage1 = source.checkpoint(recorded.get("checkpoint", "best"))
    if not stage1.is_file():
        return
    then, now = str(recorded.get("sha256")), sha256_file(stage1)
    if now == then:
        return
    raise RunDirError(f"{run.path} is a decoupled stage 2 (decouple.method={cfg.decouple.method}) fitted on the "
                      f"stage-1 run {source.path}'s checkpoints/{stage1.name} (sha256 {then[:12]}, recorded in "
                      f"{path}), but that checkpoint is now sha256 {now[:12]}: the stage-1 weights changed since, so "
                      f"this run's head would be applied to another representation; put the stage-1 run's "
                      f"checkpoint back, or train the stage 2 again from it (`openlt train CONFIG "
                      f"train.init_from={source.path}`)")


# The data keys that say where a stage-1 run's data is now, not what it is (as `openlt eval RUN data.split_dir=NEW`
# takes them): a decoupled stage 2 keeps the value set explicitly (its split files are then checked against the
# stage-1 run's split_manifest.json: the same files, by sha256), every other data key is the stage-1 run's.
RELOCATION_KEYS = ("data.root", "data.open_root", "data.split_dir")


def stage1_config(source: Run, cfg: Config) -> Config:
    """The stage-1 run's config with the data of `cfg` (a stage 2's: a decoupled one's adopted from it, or one
    that trains on the same split) where it says the data is now (:data:`RELOCATION_KEYS`): what its features are
    extracted with."""
    src = copy.deepcopy(source.config())
    for key in RELOCATION_KEYS:
        name = key.split(".", 1)[1]
        setattr(src.data, name, getattr(cfg.data, name))
    return src


def stage1_convergence(cfg: Config, recorded: dict | None = None) -> dict | None:
    """``{"run": path, "warning": text}`` when the stage-1 run a stage 2 starts from (cfg's train.init_from) carries
    the under-training warning, ``{"run": path, "unchecked": text}`` when its curve could not be judged (why), else
    None: no train.init_from, a stage 1 checked without a warning. The warning is the one
    the stage 2's checkpoint records (`recorded`: its state's "stage1", "convergence_warning": :func:`stage1_record`,
    taken when the stage 2 started from it), so it holds after the stage-1 run moved, was deleted, resumed for more
    epochs or had its log cut; a stage 2 of an older openlt (no such record) reads the stage-1 run's epoch log now
    (:func:`openlt.reporting.convergence.convergence` against its train.epochs; None when that run cannot be read:
    the stage 2's own checks speak of it). A head fitted on an unfinished body compares the classifiers on a body
    that is not done (issue 18)."""
    if not cfg.train.init_from:
        return None
    if not (isinstance(recorded, dict) and "convergence_warning" in recorded):
        try:
            recorded = stage1_warning(open_run(cfg.train.init_from), {})
        except RunDirError:
            return None
    for key, field in (("convergence_warning", "warning"), ("convergence_unchecked", "unchecked")):
        if isinstance(recorded.get(key), str) and recorded[key]:
            return {"run": str(cfg.train.init_from), field: recorded[key]}
    return None


def stage1_note(cfg: Config, recorded: dict | None) -> str | None:
    """The line a stage 2 (cfg's train.init_from) prints when it starts on a stage-1 run that may be under-trained,
    or whose curve could not be judged (:func:`stage1_convergence` of `recorded`, its "stage1" record), else None:
    the report says it too, but only after the stage 2 trained."""
    stage1 = stage1_convergence(cfg, recorded)
    if stage1 is None:
        return None
    metrics = {"convergence": {"stage1": stage1}}
    return convergence_warning(metrics) or convergence_unchecked(metrics)
