"""The summary table over several runs (e.g. seeds of one method): mean ± std of the band accuracies and the
open-set metrics, per group of runs (`openlt summary`, and the tables of `openlt bench`); std is the population
standard deviation (ddof=0).

Runs are averaged into one row only when they are different runs evaluated alike: the same shot-band rule, the
same class list, the same split files (the sha256 each metrics.json records, or for an older one its run's
split_manifest.json; a run recording neither is named in a note under the table: :func:`split_files`) and the same open-set decision (the
score, and a threshold chosen the same way); otherwise :func:`aggregate` refuses, naming two runs and what
differs. The same model twice in a row (given twice, a copy of its run, or two evaluations of one checkpoint: the
evaluated checkpoint's sha256 that metrics.json records) is refused too:
a row's spread is over seeds, not over re-evaluations. So are evaluations of different checkpoints (metrics.json's
"checkpoint": ``best`` of one run with ``last`` of another): a row compares one choice of weights. Runs of different recipes are refused as well: each run's
config.yaml (beside its metrics file) is compared with the row's first run's, every key but those of
:data:`RECIPE_IGNORED` (the seed, names, paths, devices; the training keys as the run's checkpoints record it
trained with them, with what a `--resume` changed part-way: :data:`RESUMED_KEY`, so a config.yaml edited after
training, or a run extended from 12 to 48 epochs, is not taken for a 48-epoch run), and the stage-1 run a stage-2 run started from
(``train.init_from``) likewise, as the stage-2 run's checkpoint recorded it when it trained (the stage-1 folder may
have moved since; an older run without the record is compared through that folder, and named in a note when it is
gone: :func:`stage1_unknown_note`); the refusal names the two runs and the first keys that differ (``train.epochs: 12 vs
48``). A metrics file without its run's config.yaml beside it is refused in a row of several runs: metrics.json
records no recipe, so nothing could be checked. Two runs of one recipe with the same seed are refused too: a
repeated seed is not an independent sample; for stage-2 runs only when their stage-1 runs' seeds agree as well
(:func:`_check_seeds`: a stage 2 with the default seed on each seed's stage-1 run is an independent sample). Evaluations with one open-set score under different options (`openlt
eval RUN eval.open_score=knn eval.knn_k=3` and `eval.knn_k=40`: metrics.json "open_score", :func:`score_options`) are refused like
different open-set decisions; what a score learnt from the data (a fitted threshold) may differ.
Refusing, not splitting the row, because a row is what its label says (the user's LABEL=RUN, a bench method): a
table whose rows silently became "plain (train.epochs=12)" and "plain (train.epochs=48)" would compare what nobody
asked for; give such runs labels of their own. A cell that fewer runs have than its row (a metric missing or null in some
metrics.json) says so: ``71.2 ± 0.3 (2/3)``.

The ± is the population standard deviation of a row's runs (numpy's default, ddof=0: divided by n, not n - 1); the
tables say so (:data:`STD_NOTE`). Rows on different data (another dataset, class list or split files: each row's
first run) are not refused, since a table may compare data sets on purpose, but their table says so in one line
(:func:`data_note`): their numbers are not comparable."""

from __future__ import annotations

import inspect
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from openlt.config import EXECUTION_KEYS, TRAINED_AMPS, flatten, read_json, read_yaml_mapping
from openlt.errors import ConfigError, RunDirError
from openlt.io import safetensors_header, sha256_file
from openlt.metrics import ShotBands
from openlt.metrics.closed import band_rule
from openlt.reporting.convergence import convergence_unchecked, convergence_warning
from openlt.run_folders import example_run, is_folder_of_runs

# (column, path of keys in metrics.json, scale to display units: 100 for a percentage, 1 for a [0, 1] number)
COLUMNS = (
    ("many", ("closed", "many"), 100), ("medium", ("closed", "medium"), 100), ("few", ("closed", "few"), 100),
    ("overall", ("closed", "overall"), 100), ("open many", ("open", "bands_with_rejection", "many"), 100),
    ("open medium", ("open", "bands_with_rejection", "medium"), 100),
    ("open few", ("open", "bands_with_rejection", "few"), 100), ("F", ("open", "f_measure"), 1),
    ("AUROC", ("open", "auroc"), 1), ("FPR@95", ("open", "fpr95"), 1),
)


def _get(metrics: dict, path: tuple[str, ...]):
    for key in path:
        if not isinstance(metrics, dict) or key not in metrics:
            return None
        metrics = metrics[key]
    return metrics


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)



def tagged_metrics(folder: Path) -> list[str]:
    """The names of a run folder's tagged metrics files (metrics-TAG.json), sorted."""
    return sorted(p.name for p in folder.glob("metrics-*.json") if p.is_file())


def missing_metrics(path: Path, command: str = "summary") -> str:
    """The one-line message of a run's metrics file `path` that does not exist, for `openlt COMMAND`: a file or a
    missing path given as a run; a folder of runs given as a run (the command's runs are listed instead); a run with
    only tagged evaluations (they are named, and how to give one); a folder that is no run; else how to evaluate the
    run."""
    folder = path.parent
    if folder.is_file():  # `openlt summary notes.txt`, or a run's metrics.jsonl
        return (f"{folder} is a file, not a run directory: give a run's folder, or its metrics.json / "
                f"metrics-TAG.json")
    if not folder.is_dir():
        return f"{folder} not found (no such run directory)"
    if path.name == "metrics.json" and is_folder_of_runs(folder):
        return (f"{folder} is a folder of runs, not a run (it has no config.yaml): give the runs themselves, e.g. "
                f"`openlt {command} {example_run(folder).parent / '*'}`")
    tagged = tagged_metrics(folder) if path.name == "metrics.json" else []
    if tagged:
        example = tagged[0][len("metrics-"):-len(".json")]
        how = (f"`openlt report {folder} --tag {example}`" if command == "report"
               else f"its file, e.g. `openlt summary {folder / tagged[0]}`")
        return (f"{path} not found: the run has no untagged evaluation, only tagged ones ({', '.join(tagged)}); "
                f"give one with {how}, or evaluate the run untagged (`openlt eval {folder}`)")
    if not (folder / "config.yaml").is_file():
        return f"{folder} is not a run directory (it has no config.yaml, nor runs in it): give a run's folder"
    return f"{path} not found (evaluate the run with `openlt eval {folder}`)"


def load_metrics(path: str | Path) -> dict:
    """A metrics JSON file of a run (metrics.json, metrics-TAG.json: the engine's ``Run.metrics_path``) as a
    dict. RunDirError naming the file when it is missing, not UTF-8 JSON (NaN / Infinity included), or not the
    shape `openlt eval` writes (:func:`metrics_problem`)."""
    path = Path(path)
    if not path.is_file():
        raise RunDirError(missing_metrics(path))
    metrics = read_json(path, "metrics file", RunDirError)
    problem = metrics_problem(metrics)
    if problem:
        raise RunDirError(f"{path} is not a metrics file of `openlt eval` ({problem}); evaluate the run again")
    manifest = read_manifest(path.parent / "split_manifest.json")  # read once: its class list, its data files
    problem = metrics_inconsistency(metrics) or manifest_mismatch(metrics, manifest)
    if problem:
        raise RunDirError(f"{path} contradicts {problem} (edited by hand?): its numbers cannot be shown; evaluate "
                          f"the run again (`openlt eval {path.parent}`)")
    metrics[SOURCE_KEY] = str(path)
    metrics[PACKED_KEY] = _packed_files(manifest)
    if metrics.get("split_files") is None:  # an older metrics.json: its run's split_manifest.json still records them
        metrics[MANIFEST_SPLITS_KEY] = _manifest_split_files(manifest)
    return metrics


def checkpoint_changed(metrics: dict, path: str | Path) -> str | None:
    """The one-line message for a metrics file `path` (read by :func:`load_metrics`) whose evaluated checkpoint has
    been replaced since (its sha256 then, metrics "checkpoint_sha256", and now: `openlt train --resume RUN
    --no-eval` trained on to a new best), or None: its numbers are another model's than the run's. Hashed only when
    the checkpoint file is newer than the metrics file; a file that records no checkpoint (an older openlt), a
    checkpoint that is gone, or a metrics file outside a run is not checked."""
    path = Path(path)
    name, then = metrics.get("checkpoint"), metrics.get("checkpoint_sha256")
    if not (isinstance(name, str) and name and "/" not in name and "\\" not in name and isinstance(then, str)):
        return None
    checkpoint = path.parent / "checkpoints" / f"{name}.safetensors"
    try:
        if checkpoint.stat().st_mtime_ns <= path.stat().st_mtime_ns:
            return None  # not written since the evaluation
        now = sha256_file(checkpoint)
    except OSError:
        return None
    if now == then:
        return None
    return (f"{path} was written by an evaluation of checkpoints/{checkpoint.name} (sha256 {then[:12]}), which has "
            f"changed since (sha256 {now[:12]} now: the run trained on after it): its numbers are not the run's; "
            f"evaluate it again (`openlt eval {path.parent}`, with the tag and overrides of a tagged file)")


CONSISTENCY_TOLERANCE = 2e-3  # accuracies rounded to 3 decimals still agree; a hand edit of 0.1 points or more does not
BANDS = ("many", "medium", "few")


def metrics_inconsistency(metrics: dict) -> str | None:
    """The first number of a (shape-checked) metrics dict that the others contradict, in words ("itself: ..."), or
    None (trial 10 D5). Checked where they can be recomputed, cheaply, within :data:`CONSISTENCY_TOLERANCE`:
    bands.per_class against train_counts under the band rule (many_above / few_below / inclusive, when recorded),
    closed.n_classes against bands.per_class, each band's accuracy against the mean of its classes'
    per_class_accuracy, and closed.overall (a per-image mean of the per-class accuracies) within their range.
    Parts a file lacks (an older openlt, a lone table) are not checked."""
    bands, names = metrics["bands"], metrics["class_names"]
    per_class, counts = bands.get("per_class"), metrics.get("train_counts")
    per_class = per_class if isinstance(per_class, list) and len(per_class) == len(names) else None
    problem = _bands_problem(bands, per_class, counts) or open_inconsistency(metrics, per_class)
    if problem or per_class is None:
        return problem
    closed = metrics["closed"]
    n_classes = closed.get("n_classes")
    if isinstance(n_classes, dict):
        for band in BANDS:
            if type(n_classes.get(band)) is int and n_classes[band] != per_class.count(band):
                return (f"itself: closed.n_classes.{band} is {n_classes[band]}, bands.per_class names "
                        f"{per_class.count(band)} {band}-shot classes")
    accuracy = metrics.get("per_class_accuracy")
    if not (isinstance(accuracy, list) and len(accuracy) == len(names)
            and all(a is None or (_number(a) and 0 <= a <= 1) for a in accuracy)):
        return None
    return _accuracy_problem(closed, per_class, accuracy)


OPEN_RATES = ("f_measure", "precision", "recall", "auroc", "aupr_in", "aupr_out", "fpr95", "open_rejected",
              "known_rejected")  # metrics.json "open": fractions in [0, 1]
OPEN_COUNTS = ("tp", "fp", "fn", "n_open")  # and counts of images
OPEN_BANDS = (*BANDS, "overall")  # the keys of open.auroc_per_band and open.bands_with_rejection's numbers


def open_shape_problem(op: Any) -> str | None:
    """:func:`metrics_problem`'s check of metrics.json's "open" block (an object; None: a closed-set evaluation):
    each of :data:`OPEN_RATES` a finite number in [0, 1] or null (not measured: a short cell, as in :data:`COLUMNS`),
    each of :data:`OPEN_COUNTS` an integer >= 0, "threshold" a finite number (or null), "auroc_per_band" an object whose keys are the bands and "overall" and whose values
    are in [0, 1] or null (a band without known image), and so are the numbers of "bands_with_rejection". Keys a
    file lacks (an older openlt) are not checked."""
    if not isinstance(op, dict):
        return None
    for key in OPEN_RATES:
        if op.get(key) is not None and not (_number(op[key]) and 0 <= op[key] <= 1):
            return f"open.{key} must be a finite number in [0, 1] or null, got {op[key]!r}"
    for key in OPEN_COUNTS:
        if key in op and not (type(op[key]) is int and op[key] >= 0):
            return f"open.{key} must be a count (an integer >= 0), got {op[key]!r}"
    if op.get("threshold") is not None and not _number(op["threshold"]):
        return f"open.threshold must be a finite number or null, got {op['threshold']!r}"
    for key in ("auroc_per_band", "bands_with_rejection"):
        block = op.get(key)
        if key not in op:
            continue
        if not isinstance(block, dict):
            return f"open.{key} must be an object"
        if key == "auroc_per_band" and set(block) != set(OPEN_BANDS):
            return (f"open.auroc_per_band must have the keys {', '.join(OPEN_BANDS)}, got "
                    f"{', '.join(map(str, block)) or 'none'}")
        for band in OPEN_BANDS:
            value = block.get(band)
            if value is not None and not (_number(value) and 0 <= value <= 1):
                return f"open.{key}.{band} must be a finite number in [0, 1] or null, got {value!r}"
    return None


def open_inconsistency(metrics: dict, per_class: list | None) -> str | None:
    """:func:`metrics_inconsistency`'s check of the (shape-checked) "open" block against itself and the rest: the
    F-measure, precision and recall recomputed from tp / fp / fn, open_rejected from fn / n_open, the overall
    AUROC of auroc_per_band against auroc, a band's AUROC given for a band without class (bands.per_class),
    bands_with_rejection.n_classes against bands.per_class, the threshold against calibration's."""
    op = metrics.get("open")
    if not isinstance(op, dict):
        return None
    tp, fp, fn = (op.get(k) for k in ("tp", "fp", "fn"))
    if all(type(v) is int for v in (tp, fp, fn)):
        p = tp / (tp + fp) if tp + fp else 0.0
        r = tp / (tp + fn) if tp + fn else 0.0
        f = 2 * p * r / (p + r) if p + r else 0.0
        for key, value, how in (("precision", p, "tp / (tp + fp)"), ("recall", r, "tp / (tp + fn)"),
                                ("f_measure", f, "2PR / (P + R) of them")):
            if key in op and abs(op[key] - value) > CONSISTENCY_TOLERANCE:
                return f"itself: open.{key} is {op[key]:.4g}, but {how} is {value:.4g} (open.tp / fp / fn)"
        n_open = op.get("n_open")
        if type(n_open) is int and n_open and "open_rejected" in op \
                and abs(op["open_rejected"] - (1 - fn / n_open)) > CONSISTENCY_TOLERANCE:
            return (f"itself: open.open_rejected is {op['open_rejected']:.4g}, but {n_open - fn} of open.n_open = "
                    f"{n_open} open images were rejected (open.fn = {fn} accepted)")
    return _open_band_problem(metrics, op, per_class)


def _open_band_problem(metrics: dict, op: dict, per_class: list | None) -> str | None:
    """:func:`open_inconsistency`'s checks of the per-band numbers and the threshold."""
    per_band = op.get("auroc_per_band")
    if isinstance(per_band, dict):
        overall = per_band.get("overall")
        if _number(overall) and _number(op.get("auroc")) and abs(overall - op["auroc"]) > CONSISTENCY_TOLERANCE:
            return f"itself: open.auroc_per_band.overall is {overall:.4g}, but open.auroc is {op['auroc']:.4g}"
        for band in BANDS if per_class is not None else ():
            if per_band.get(band) is not None and band not in per_class:
                return (f"itself: open.auroc_per_band.{band} is {per_band[band]:.4g}, but bands.per_class names no "
                        f"{band}-shot class")
    n_classes = _get(metrics, ("open", "bands_with_rejection", "n_classes"))
    if isinstance(n_classes, dict) and per_class is not None:
        for band in BANDS:
            if type(n_classes.get(band)) is int and n_classes[band] != per_class.count(band):
                return (f"itself: open.bands_with_rejection.n_classes.{band} is {n_classes[band]}, bands.per_class "
                        f"names {per_class.count(band)} {band}-shot classes")
    given = _get(metrics, ("calibration", "threshold"))
    if _number(op.get("threshold")) and _number(given) and abs(op["threshold"] - given) > 1e-9 * max(1, abs(given)):
        return f"itself: open.threshold is {op['threshold']!r}, but calibration.threshold is {given!r}"
    return None


def _bands_problem(bands: dict, per_class: list | None, counts: Any) -> str | None:
    """:func:`metrics_inconsistency`'s band check: the band of each class recomputed from its training count."""
    edges = bands.get("many_above"), bands.get("few_below")
    if per_class is None or not isinstance(counts, list) or not all(type(e) is int for e in edges):
        return None
    try:
        rule = ShotBands(edges[0], edges[1], bool(bands.get("inclusive", False)))
    except ValueError as exc:
        return f"itself: bands many_above / few_below: {exc}"
    for i, (count, band) in enumerate(zip(counts, per_class)):
        if rule.band(count) != band:
            return (f"itself: bands.per_class[{i}] is {band!r}, but train_counts[{i}] = {count} is "
                    f"{rule.band(count)!r} under its rule ({rule.describe()})")
    return None


def _accuracy_problem(closed: dict, per_class: list, accuracy: list) -> str | None:
    """:func:`metrics_inconsistency`'s accuracy checks: band means and the overall range."""
    for band in BANDS:
        tested = [a for a, b in zip(accuracy, per_class) if b == band and a is not None]
        given = closed.get(band)
        expected = sum(tested) / len(tested) if tested else None
        if _number(given) and (expected is None or abs(given - expected) > CONSISTENCY_TOLERANCE):
            what = "has no tested class" if expected is None else f"averages {expected:.4g} in per_class_accuracy"
            return f"itself: closed.{band} is {given:.4g}, but that band {what}"
    tested = [a for a in accuracy if a is not None]
    overall = closed.get("overall")
    if _number(overall) and tested and not (min(tested) - CONSISTENCY_TOLERANCE <= overall
                                            <= max(tested) + CONSISTENCY_TOLERANCE):
        return (f"itself: closed.overall is {overall:.4g}, outside the per-class accuracies it averages "
                f"({min(tested):.4g} to {max(tested):.4g}, per_class_accuracy)")
    return None


def read_manifest(path: Path) -> dict | None:
    """A run's split_manifest.json as a dict; None when there is none, or one that cannot be read or is no JSON
    object (the commands that train or evaluate check it; a summary does not compare it)."""
    try:
        manifest = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def manifest_mismatch(metrics: dict, manifest: dict | None) -> str | None:
    """"the run's split_manifest.json: ..." when the metrics' class_names are not the class list of the run's
    split_manifest.json (beside the metrics file: :func:`read_manifest`), else None; no manifest: not compared."""
    recorded = manifest.get("class_names") if manifest is not None else None
    names = metrics["class_names"]
    if not isinstance(recorded, list) or recorded == names:
        return None
    return f"the run's split_manifest.json: its class_names ({_differs('class lists', names, recorded)})"


# set by load_metrics (never a key of metrics.json): the file a metrics dict was read from, whose folder holds the
# run's config.yaml (:func:`run_recipe`); a dict built otherwise (tests, older callers) is not compared on recipes
SOURCE_KEY = "_metrics_file"
# set by load_metrics too: the packed data files its split_manifest.json records (:func:`packed_data_files`), read
# with the file, so that tables that aggregate the runs again read no manifest
PACKED_KEY = "_packed_data_files"

# set by load_metrics too, for a metrics.json that records no "split_files" (an older openlt): the sha256 of each split
# file its run's split_manifest.json records (:func:`split_files`), or None when it records none either
MANIFEST_SPLITS_KEY = "_manifest_split_files"

# config keys that legitimately differ between seeds of one recipe, left out of the recipe comparison:
RECIPE_IGNORED = frozenset({
    "seed",  # what a row averages over (checked on its own: two runs of a row must not share it)
    "name",  # the run name prefix: a label, not a setting
    "out_dir",  # where the run directories were created (a run moved or trained elsewhere is the same run)
    # where the data, split files and class names are read from: their contents are compared through metrics.json
    # (the split files' sha256, the class list), so a moved dataset or split folder is the same data
    "data.root", "data.open_root", "data.split_dir", "data.class_names",
    # the stage-1 run a stage-2 run starts from: the same seed's run, so a different directory for every seed; its
    # own config.yaml is compared instead (keys "train.init_from:KEY")
    "train.init_from",
    # how fast, not what (config.EXECUTION_KEYS: the device, loader processes, page-locked memory, memory format)
    *EXECUTION_KEYS,
    # evaluation speed and what predictions.npz keeps, not the numbers
    "eval.batch_size", "eval.save_logits",
})  # (resuming, thread counts and other command-line flags / environment are not in config.yaml at all)
RECIPE_DEPTH = 4  # init_from levels followed (stage 1 <- stage 2 <- ...); a loop of edited configs stops here
# the recipe's entry, beside the config keys, that says which training keys a `--resume` changed part-way
RESUMED_KEY = "resumed with changes"


def trained_keys(flat: dict[str, Any]) -> dict[str, Any]:
    """The keys of a flattened config that say how a run trained, as its checkpoints record them (state "recipe",
    engine/train.py): the recipe's keys (:data:`RECIPE_IGNORED` left out) but evaluation's (``eval.*``: they may
    change after training), ``train.amp`` (the run's precision, recorded on its own as state "amp") and
    :data:`NOT_TRAINED_ON` (read by evaluation only: a resume that drops the open split changed no training)."""
    return {key: value for key, value in flat.items()
            if key not in RECIPE_IGNORED and not key.startswith("eval.") and key not in NOT_TRAINED_ON}


# recipe keys training never reads: the run's precision is state "amp" of its own; the open split is evaluation's
# (its images are compared by sha256 through metrics.json), so a `--resume` that changes it is no training change
NOT_TRAINED_ON = frozenset({"train.amp", "data.open_split"})


def resumes_text(resumed: Any) -> str:
    """The recipe's :data:`RESUMED_KEY` entry from a checkpoint's state "resumed" (a list of {"after_epoch": n,
    "changes": {key: [before, after]}}): ``after epoch 3: train.epochs 3 -> 6``, ``; ``-joined; ``none``."""
    parts = [f"after epoch {entry.get('after_epoch')}: {changes_text(entry['changes'])}"
             for entry in (resumed if isinstance(resumed, list) else [])
             if isinstance(entry, dict) and isinstance(entry.get("changes"), dict)]
    return "; ".join(parts) or "none"


def changes_text(changes: dict[str, Any]) -> str:
    """``train.epochs 3 -> 6, train.min_lr 0.0 -> 0.001`` of {key: [before, after]}."""
    return ", ".join(f"{key} {_show(pair[0])} -> {_show(pair[1])}" for key, pair in changes.items()
                     if isinstance(pair, list) and len(pair) == 2)


def _as_trained(flat: dict[str, Any], recipe: Any, resumed: Any) -> dict[str, Any]:
    """`flat` (a flattened config.yaml) with the training keys the run's checkpoint records it trained with (a
    config.yaml edited after training does not change them) and :data:`RESUMED_KEY`; `flat` as it is for a run
    of an older openlt, whose checkpoints record no "recipe"."""
    if not isinstance(recipe, dict):
        return flat
    return {**flat, **recipe, RESUMED_KEY: resumes_text(resumed)}


def run_recipe(metrics: dict) -> dict[str, Any] | None:
    """The recipe of the run a metrics dict (from :func:`load_metrics`) belongs to: the flattened config.yaml
    beside its metrics file without :data:`RECIPE_IGNORED`, plus its ``train.init_from`` run's recipe under
    ``"train.init_from:KEY"`` (:func:`run_lineage`: what the stage-2 run's checkpoint records of it, else that
    directory's config.yaml; nothing when neither is there: :func:`stage1_unknown`); None when the metrics file has no
    config.yaml beside it (a lone metrics file: refused in a row of several runs, :func:`check_comparable`).
    RunDirError naming a config.yaml that is not a YAML mapping."""
    lineage = run_lineage(metrics)
    return None if lineage is None else lineage.recipe()


def run_seed(metrics: dict) -> Any:
    """The ``seed`` of the run's config.yaml (:func:`run_recipe`'s file), or None when there is none."""
    source = metrics.get(SOURCE_KEY)
    flat = None if not isinstance(source, str) else _run_config(Path(source).parent)
    return None if flat is None else flat.get("seed")


STAGE1_PREFIX = "train.init_from:"  # a recipe's keys of the stage-1 run (one prefix per level)


@dataclass
class Lineage:
    """A run and the stage-1 runs it started from, as :func:`run_lineage` reads them: ``levels[0]`` the run's
    flattened config.yaml, ``levels[k]`` its k-th ``train.init_from`` run's (train.amp ``auto`` resolved to the
    precision it trained in: :func:`_trained_amp`), ``sha256[k]`` the sha256 of that run's checkpoint the stage 2
    recorded (None: not recorded; level 0 has none), ``unknown`` the ``train.init_from`` path whose recipe is
    unknown (neither recorded nor found: an older run whose stage-1 run moved), else None."""

    levels: list[dict[str, Any]]
    sha256: list[str | None]
    unknown: str | None = None

    def recipe(self) -> dict[str, Any]:
        """:func:`run_recipe`: every level's keys but :data:`RECIPE_IGNORED`, level k under k prefixes."""
        return {f"{STAGE1_PREFIX * k}{key}": value for k, level in enumerate(self.levels)
                for key, value in level.items() if key not in RECIPE_IGNORED}

    def seeds(self) -> list[Any]:
        """The seed of each level (None where its config has none): with the stage-1 runs' checkpoints, what
        identifies the randomness of a run (trial 14a S3)."""
        return [level.get("seed") for level in self.levels]


def run_lineage(metrics: dict) -> Lineage | None:
    """:class:`Lineage` of the run a metrics dict (from :func:`load_metrics`) belongs to; None when its metrics file
    has no config.yaml beside it (or the dict was not read from a file). A stage-1 run's config is taken from what
    the stage-2 run's checkpoint records of it (its state's "stage1", written when it trained: the stage-1 folder
    may have moved or been deleted since, trial 14a D2), else from the ``train.init_from`` directory's config.yaml
    (a run of an older openlt); ``train.init_from`` levels are followed up to :data:`RECIPE_DEPTH`."""
    source = metrics.get(SOURCE_KEY)
    if not isinstance(source, str):
        return None
    run_dir = Path(source).parent
    flat = _run_config(run_dir)
    if flat is None:
        return None
    states = _run_states(run_dir)  # each checkpoint header read once a level
    state = _first_state(states)
    lineage = Lineage([_with_trained_amp(_as_trained(flat, state.get("recipe"), state.get("resumed")), states,
                                         None)], [None])
    record = _stage1_of(states)
    while len(lineage.levels) <= RECIPE_DEPTH:
        parent = lineage.levels[-1].get("train.init_from")
        if not (isinstance(parent, str) and parent):
            break
        config = record.get("config") if isinstance(record, dict) else None
        sha = record.get("sha256") if isinstance(record, dict) and isinstance(record.get("sha256"), str) else None
        if isinstance(config, dict):
            flat = _with_trained_amp(_as_trained(flatten(config), record.get("recipe"), record.get("resumed")),
                                     None, record.get("amp"))
            record = record.get("stage1")
        else:
            flat = _run_config(Path(parent))
            if flat is None:
                lineage.unknown = parent
                break
            states = _run_states(Path(parent))
            state = _first_state(states)
            flat = _as_trained(flat, state.get("recipe"), state.get("resumed"))
            flat, record = _with_trained_amp(flat, states, None), _stage1_of(states)
        lineage.levels.append(flat)
        lineage.sha256.append(sha)
    return lineage


def stage1_unknown(metrics: dict) -> str | None:
    """The ``train.init_from`` path of a stage-2 run whose stage-1 recipe is unknown (:class:`Lineage`
    ``unknown``: the run records none, from before openlt recorded it, and the stage-1 folder is gone or moved),
    else None: it was not compared with the row's other stage-1 recipes (:func:`stage1_unknown_note` says so)."""
    lineage = run_lineage(metrics)
    return None if lineage is None else lineage.unknown


def _with_trained_amp(flat: dict[str, Any], states: tuple[dict, dict] | None, recorded: Any) -> dict[str, Any]:
    """`flat` (a flattened config) with train.amp ``auto`` replaced by the precision the run trained in: what its
    checkpoints record (`states`: :func:`_run_states` of its folder; or `recorded`, what a stage 2 recorded of its
    stage-1 run, when `states` is None), else what auto meant before runs recorded it (:func:`_trained_amp`)."""
    if flat.get("train.amp") != "auto":
        return flat
    if states is None:
        amp = recorded if recorded in TRAINED_AMPS else _trained_amp(None, flat.get("train.device"))
    else:
        amp = _trained_amp(_amp_of(states), flat.get("train.device"))
    return {**flat, "train.amp": amp}


def _run_states(run_dir: Path) -> tuple[dict, dict]:
    """The states of a run's last and best checkpoints ({} for one that cannot be read): :func:`_first_state`,
    :func:`_stage1_of` and :func:`_amp_of` take what they need from them, last first."""
    return tuple(_checkpoint_state(run_dir / "checkpoints" / f"{name}.safetensors") for name in ("last", "best"))


def _first_state(states: tuple[dict, dict]) -> dict:
    """The last checkpoint's state, else the best one's ({} when neither can be read)."""
    return states[0] or states[1]


def _stage1_of(states: tuple[dict, dict]) -> dict | None:
    """What a stage-2 run's last (else best) checkpoint records of its stage-1 run (state "stage1":
    engine/stage1_record.stage1_record), or None: no such record (a stage-1 run, an older openlt) or no readable
    checkpoint."""
    return next((state["stage1"] for state in states if isinstance(state.get("stage1"), dict)), None)


def _amp_of(states: tuple[dict, dict]) -> str | None:
    """The precision (none | bf16 | fp16) the last (else best) checkpoint's state records, or None."""
    return next((state["amp"] for state in states if state.get("amp") in TRAINED_AMPS), None)


def _run_config(run_dir: Path) -> dict[str, Any] | None:
    """A run directory's config.yaml as {dotted key: value}, or None when it has none."""
    config = run_dir / "config.yaml"
    if not config.is_file():
        return None
    try:
        return flatten(read_yaml_mapping(config, "run config"))
    except ConfigError as exc:  # the checked reader's one line naming the file
        raise RunDirError(str(exc)) from None


def _trained_amp(recorded: str | None, device: Any) -> str:
    """The precision a run whose config.yaml says `train.amp: auto` trained in, as the recipe compares it: what its
    checkpoint records (`recorded`: :func:`_amp_of`), else what `auto` meant before runs recorded it (float32, bf16
    only on a device named cuda: precision.legacy_auto; a run on `device: auto` is taken for a CPU run). So a run
    written with `none` and one with `auto`, both float32, are one recipe, and a bf16 run is not averaged with them.
    `recorded` None: no checkpoint records it (what a stage 2 recorded of its stage-1 run records no precision)."""
    if recorded is not None:
        return recorded
    return "bf16" if isinstance(device, str) and device.startswith("cuda") else "none"


def recorded_run_amp(run_dir: Path) -> str | None:
    """The precision (none | bf16 | fp16) the run in `run_dir` trained in as its last (else best) checkpoint
    records it, or None: a run from before openlt recorded it, or one whose checkpoints cannot be read (loading
    them says why). `openlt bench` compares a spec's `train.amp: auto` with it too."""
    return _amp_of(_run_states(run_dir))


def _checkpoint_state(path: Path) -> dict:
    """The state of an openlt checkpoint's header (engine/checkpoint.py writes it: metadata "openlt" = JSON with
    "state"), read with safetensors alone (io.safetensors_header: no torch, no engine import); {} when the file is
    missing or unreadable (the checkpoint's own checks run wherever it is loaded)."""
    if not path.is_file():
        return {}
    try:
        state = json.loads(safetensors_header(path)[0].get("openlt", "{}")).get("state", {})
    except (OSError, ValueError, AttributeError):
        return {}
    return state if isinstance(state, dict) else {}


# config options whose value is a mapping of keys of the user's choosing: flattened, each key set is an entry of its
# own (train.loss_args.gamma) and an empty one the single entry {} (train.loss_args), so "a key one side lacks"
# would hide them; they are compared as one value
FREE_MAPPINGS = ("train.loss_args",)


def fold_free_mappings(recipe: dict[str, Any]) -> dict[str, Any]:
    """`recipe` (a flattened config or :func:`run_recipe`, stage-1 keys under ``train.init_from:`` prefixes) with
    the entries of each :data:`FREE_MAPPINGS` option folded into one mapping under its key, at its first entry's
    place: ``{"train.loss_args.gamma": 0.5}`` -> ``{"train.loss_args": {"gamma": 0.5}}``."""
    folded: dict[str, Any] = {}
    for key, value in recipe.items():
        tail = key.rpartition(":")[2]
        lead = key[:len(key) - len(tail)]
        mapping = next((m for m in FREE_MAPPINGS if tail == m or tail.startswith(m + ".")), None)
        if mapping is None:
            folded[key] = value
            continue
        entry = folded.setdefault(lead + mapping, {})
        if tail != mapping:
            entry[tail[len(mapping) + 1:]] = value
    return folded


def recipe_differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """``"KEY: A vs B"`` for each key whose values differ, in `a`'s order; a key one of them lacks (a config of an
    older openlt) is not compared. A :data:`FREE_MAPPINGS` option is compared whole (was: `train.loss_args` {} and
    {gamma: 0.5} were two different keys, neither compared, and summary averaged a focal run of gamma 2 with one of
    gamma 0.5: trial 19)."""
    a, b = fold_free_mappings(a), fold_free_mappings(b)
    return [f"{key}: {_show(value)} vs {_show(b[key])}" for key, value in a.items() if key in b and b[key] != value]


def _show(value: Any) -> str:
    return "null" if value is None else str(value) if isinstance(value, (int, float, str)) else repr(value)


def metrics_problem(metrics: Any) -> str | None:
    """What makes a parsed metrics.json unusable, or None: it must be an object with "closed" (an object),
    "bands" (an object with the "rule" text) and "class_names" (strings); every number of :data:`COLUMNS` a
    finite number or null; "train_counts" (when given) one count per class; "split_files" (when given) split
    name -> sha256 text."""
    if not isinstance(metrics, dict):
        return f"a JSON {type(metrics).__name__}, not an object"
    if not isinstance(metrics.get("closed"), dict):
        return '"closed" must be an object'
    if not isinstance(metrics.get("bands"), dict) or not isinstance(metrics["bands"].get("rule"), str):
        return '"bands" must be an object with the band "rule"'
    names = metrics.get("class_names")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        return '"class_names" must be a list of strings'
    if "open" in metrics and not isinstance(metrics["open"], dict):
        return '"open" must be an object'
    problem = open_shape_problem(metrics.get("open"))
    if problem:
        return problem
    for _, keys, _ in COLUMNS:
        value = _get(metrics, keys)
        if value is not None and not _number(value):
            return f"{'.'.join(keys)} must be a finite number or null, got {value!r}"
    counts = metrics.get("train_counts")
    if counts is not None and not (isinstance(counts, list) and len(counts) == len(names)
                                   and all(type(c) is int and c >= 0 for c in counts)):
        return '"train_counts" must hold one count per class'
    files = metrics.get("split_files")
    if files is not None and not (isinstance(files, dict) and all(isinstance(v, str) for v in files.values())):
        return '"split_files" must map each split to its sha256'
    return None


def _run_name(metrics: dict, i: int, names: list[str] | None = None) -> str:
    if names is not None:
        return names[i]
    run = metrics.get("run")
    return Path(run).name if isinstance(run, str) and run else f"run {i + 1}"


def open_decision(metrics: dict) -> str | None:
    """The open-set decision an evaluation applied, in words: the score and how its threshold was set (``"msp,
    threshold validation: keeps 90% of the known validation images"``, ``"energy, threshold fixed at 2.5"``,
    ``"msp, nothing rejected"``); None for a metrics.json that records neither (not compared). Runs whose
    decisions differ are not one method's seeds. The threshold's value is compared only when it was fixed: chosen
    on validation, it differs from seed to seed by design."""
    calibration = metrics.get("calibration")
    score = _get(metrics, ("open_score", "name"))
    if not isinstance(calibration, dict):
        return None if score is None else f"{score}, nothing rejected"
    score = calibration.get("score", score)
    source = str(calibration.get("source", ""))
    rule = f"fixed at {calibration.get('threshold')!r}" if source.startswith("fixed") else source
    return f"{score}, threshold {rule}"


def _differs(what: str, a: Any, b: Any) -> str:
    """The first difference of two values of one of :data:`COMPARED`, in a few words."""
    if what == "split files":
        split = next(s for s in sorted(set(a) | set(b)) if a.get(s) != b.get(s))
        show = lambda h: "none" if h is None else h[:12]  # noqa: E731
        return f"{split}: sha256 {show(a.get(split))} vs {show(b.get(split))}"
    if what == "class lists":
        if len(a) != len(b):
            return f"{len(a)} vs {len(b)} classes"
        i = next(i for i, (x, y) in enumerate(zip(a, b)) if x != y)
        return f"label {i}: {a[i]!r} vs {b[i]!r}"
    return f"{a!r} vs {b!r}"


def split_files(metrics: dict) -> dict[str, str] | None:
    """The sha256 of each split file a run was evaluated on, {split: sha256}: metrics.json "split_files", else (an
    older metrics.json, trial 12 D1) what the run's split_manifest.json records (read by :func:`load_metrics`: the
    evaluation checked the split files against it); None when neither records them: unknown, so neither the same as
    another run's nor different (:func:`unknown_splits_note` says so)."""
    recorded = metrics.get("split_files")
    return recorded if recorded is not None else metrics.get(MANIFEST_SPLITS_KEY)


def _manifest_split_files(manifest: dict | None) -> dict[str, str] | None:
    """:func:`split_files` of a run's split_manifest.json (:func:`read_manifest`): its "files" {split: {"sha256"}},
    or None when it has none or they are not that shape."""
    files = manifest.get("files") if manifest is not None else None
    if not isinstance(files, dict) or not files:
        return None
    hashes = {split: info.get("sha256") if isinstance(info, dict) else None for split, info in files.items()}
    return hashes if all(isinstance(h, str) and h for h in hashes.values()) else None


# what must be the same for runs to be averaged: (in words, how to read it from a metrics dict; None: not recorded)
COMPARED = (("band rules", lambda m: band_rule(_get(m, ("bands", "rule")))),  # (an older file's wording: today's)
            ("class lists", lambda m: m.get("class_names")),
            ("split files", split_files), ("open-set decisions", open_decision),
            # the precision the evaluation ran in (metrics.json "amp"; an older file records none: not compared)
            ("precisions (train.amp of the evaluation)", lambda m: m.get("amp")))


def model_identity(metrics: dict) -> tuple[str, str] | None:
    """What makes two evaluations evaluations of one model: the evaluated checkpoint's sha256 (``"checkpoint_sha256"``,
    or the ``"fitted_on"`` of a threshold chosen on validation), else, for an older metrics.json, the run directory
    it names when that is an absolute path; None when it records neither (a relative path from an older openlt
    tells nothing: it depends on where `openlt eval` ran). ``("weights", sha256)`` or ``("run", path)``."""
    sha = metrics.get("checkpoint_sha256") or _get(metrics, ("calibration", "fitted_on", "sha256"))
    if isinstance(sha, str) and sha:
        return "weights", sha
    run = metrics.get("run")
    if isinstance(run, str) and Path(run).is_absolute():
        return "run", run
    return None


def check_comparable(label: str, runs: list[dict], names: list[str] | None = None) -> None:
    """Refuse to average `runs` (metrics dicts) into the row `label` when two are evaluations of the same model
    (:func:`model_identity`: the same weights, whatever directory they were copied to; runs of other weights are
    different runs, wherever and from whichever folder they were evaluated) or when they were evaluated under
    different band rules, class lists, split files or open-set decisions (:func:`open_decision`); a run that does
    not record one of them (an older metrics.json) is not compared on it; or when they were evaluated with one
    open-set score under different options (:func:`score_options`); or when they are runs of different
    recipes or share a seed (their config.yaml: :func:`run_recipe`, for dicts from :func:`load_metrics`; one
    without a config.yaml is refused). `names`
    (one per run, e.g. the paths the user gave) name the two runs of every refusal (default: the run directory's
    name, metrics.json's "run": a copied run is named by its original's). RunDirError naming two runs and what
    differs."""
    _check_checkpoints(label, runs, names)
    seen_models: dict[tuple[str, str], int] = {}
    for i, m in enumerate(runs):
        identity = model_identity(m)
        if identity is None:
            continue
        if identity in seen_models:
            first = seen_models[identity]
            what = (f"the same weights (checkpoint sha256 {identity[1][:12]}: one run, or a copy of it)"
                    if identity[0] == "weights" else f"the run {identity[1]}")
            raise RunDirError(f"cannot average {_run_name(runs[first], first, names)} and "
                              f"{_run_name(m, i, names)} into one row {label!r}: both are evaluations of {what} (a row "
                              f"averages different runs, e.g. seeds); give each its own label (LABEL=RUN) or leave "
                              f"one out")
        seen_models[identity] = i
    _check_recipes(label, runs, names)
    for what, read in COMPARED:
        seen = [(i, read(m)) for i, m in enumerate(runs) if read(m) is not None]
        for i, value in seen[1:]:
            first, other = seen[0]  # every run is compared with the first that records it
            if value != other:
                raise RunDirError(f"cannot average {_run_name(runs[first], first, names)} and "
                                  f"{_run_name(runs[i], i, names)} into one row {label!r}: they were evaluated under "
                                  f"different {what} "
                                  f"({_differs(what, other, value)}); give them different labels (LABEL=RUN) or "
                                  f"evaluate them alike")
    _check_score_options(label, runs, names)
    _check_packed_data(label, runs, names)


def packed_data_files(metrics: dict) -> dict[str, dict[str, str]] | None:
    """The packed data files (CIFAR batches, Fashion-MNIST IDX files) a run read, from its split_manifest.json
    beside the metrics file, as :func:`load_metrics` read it: {"data.root" / "data.open_root": {file name: sha256}},
    or None when not recorded (an image folder, an older openlt, a metrics dict not read from a run)."""
    return metrics.get(PACKED_KEY)


def _packed_files(manifest: dict | None) -> dict[str, dict[str, str]] | None:
    """:func:`packed_data_files` of a run's split_manifest.json (:func:`read_manifest`)."""
    packed = manifest.get("data_files") if manifest is not None else None
    try:
        return {key: {name: info["sha256"] for name, info in where["files"].items()}
                for key, where in packed.items()} if isinstance(packed, dict) and packed else None
    except (AttributeError, KeyError, TypeError):
        return None


def _check_packed_data(label: str, runs: list[dict], names: list[str] | None) -> None:
    """RunDirError naming two runs of the row `label` whose packed data files differ (other pixels under the same
    split files and class names: trial 10 D6); runs that do not record them are not compared."""
    seen = [(i, packed_data_files(m)) for i, m in enumerate(runs)]
    seen = [(i, files) for i, files in seen if files is not None]
    for i, files in seen[1:]:
        first, other = seen[0]
        if files != other:
            key = next(k for k in sorted(set(files) | set(other)) if files.get(k) != other.get(k))
            raise RunDirError(f"cannot average {_run_name(runs[first], first, names)} and {_run_name(runs[i], i, names)} "
                              f"into one row {label!r}: they were trained and evaluated on different data files "
                              f"({key}: split_manifest.json data_files differ); give them different labels (LABEL=RUN)")


def folders_of(runs: list[dict], names: list[str] | None = None) -> list[str] | None:
    """When the runs of one row read their images from different folders (metrics.json "data": data.root /
    data.open_root) and nothing shows the folders hold the same images (no equal packed-file record): each run's
    "NAME: FOLDER", for :func:`folders_note`; else None. The split files (and so the image names) are the same
    (:func:`check_comparable`), but an image folder's pixels are not fingerprinted (trial 10 D6)."""
    roots = [(i, (m["data"].get("root"), m["data"].get("open_root"))) for i, m in enumerate(runs)
             if isinstance(m.get("data"), dict)]
    if len({root for _, root in roots}) < 2:
        return None
    packed = [packed_data_files(runs[i]) for i, _ in roots]
    if packed[0] is not None and all(files == packed[0] for files in packed):
        return None  # the same data files, read from other folders (a copy): the same images
    return [f"{_run_name(runs[i], i, names)}: {root}" + (f" (open {open_root})" if open_root else "")
            for i, (root, open_root) in roots]


def folders_note(rows: list[dict]) -> str:
    """The note under a table with rows whose runs read different image folders (:func:`folders_of`), or ""."""
    marked = [f"{md_cell(row['label'])} ({', '.join(row['folders'])})" for row in rows if row.get("folders")]
    if not marked:
        return ""
    return (f"note: rows averaging runs on different image folders, with the same split files: {'; '.join(marked)}; "
            f"nothing shows that the folders hold the same images (an RGB and a grayscale copy have the same file "
            f"names): if they differ, give each folder its own label")


# the `eval` keys that set an open-set score's options, by (score, parameter): metrics.json "open_score" records
# them under the score's own parameter names; a parameter no key sets (energy's temperature) is shown as
# "open_score.PARAMETER"
SCORE_OPTION_KEYS = {("knn", "k"): "eval.knn_k", ("vim", "dim"): "eval.vim_dim",
                     ("react", "percentile"): "eval.react_percentile", ("odin", "temperature"): "eval.odin_temperature",
                     ("odin", "eps"): "eval.odin_eps", ("openmax", "tail_size"): "eval.openmax_tail",
                     ("openmax", "alpha"): "eval.openmax_alpha", ("openmax", "distance"): "eval.openmax_distance"}


def score_options(metrics: dict) -> dict[str, Any] | None:
    """The configured options of the open-set score an evaluation used, ``{key: value}`` (keys of
    :data:`SCORE_OPTION_KEYS`, e.g. ``"eval.knn_k": 3``): the parameters of the registered score class (its
    constructor's arguments: what `eval.*` set) that metrics.json "open_score" records. What the score learnt or
    computed from the data beside them (ReAct's clipping threshold, ViM's alpha and dimension used, the training
    features KNN searched, the Mahalanobis class count) is not an option: it differs between runs by design. None
    when "open_score" names no score this openlt knows (an older or hand-made file: not compared); a key a file
    does not record (an older openlt) is left out."""
    recorded = metrics.get("open_score")
    name = recorded.get("name") if isinstance(recorded, dict) else None
    from openlt.openset import SCORES  # the registry (imported here: the tables need no torch until now)

    if not isinstance(name, str) or name not in SCORES:
        return None
    params = [p for p in inspect.signature(SCORES.get(name).__init__).parameters if p != "self"]
    return {SCORE_OPTION_KEYS.get((name, p), f"open_score.{p}"): recorded[p] for p in params if p in recorded}


def _check_score_options(label: str, runs: list[dict], names: list[str] | None) -> None:
    """RunDirError naming two runs of the row `label` evaluated with one open-set score under different options
    (:func:`score_options`: ``eval.knn_k: 3 vs 40``); each run is compared with the row's first run of its score
    (runs of different scores are refused as different open-set decisions before this)."""
    first_of: dict[str, tuple[int, dict[str, Any]]] = {}
    for i, m in enumerate(runs):
        options = score_options(m)
        if options is None:
            continue
        name = m["open_score"]["name"]
        if name not in first_of:
            first_of[name] = (i, options)
            continue
        first, reference = first_of[name]
        differs = recipe_differences(reference, options)
        if differs:
            keys = [k for k, v in reference.items() if k in options and options[k] != v and k.startswith("eval.")]
            settings = " ".join([f"eval.open_score={name}"] + [f"{k}={_show(reference[k])}" for k in keys])
            how = f"evaluate them alike (`openlt eval RUN {settings}`)" if keys else "evaluate them alike"
            raise RunDirError(f"cannot average {_run_name(runs[first], first, names)} and {_run_name(m, i, names)} "
                              f"into one row {label!r}: they were evaluated with different options of the open-set "
                              f"score {name} ({', '.join(differs)}); give them different labels (LABEL=RUN) or {how}")


def _check_checkpoints(label: str, runs: list[dict], names: list[str] | None = None) -> None:
    """RunDirError naming two runs of the row `label` (by `names`, as :func:`check_comparable`) and their
    checkpoints when they are evaluations of different checkpoints (metrics.json "checkpoint": best, last); a
    metrics.json without one is not compared."""
    seen = [(i, m.get("checkpoint")) for i, m in enumerate(runs) if isinstance(m.get("checkpoint"), str)]
    for i, checkpoint in seen[1:]:
        first, other = seen[0]
        if checkpoint != other:
            a, b = _run_name(runs[first], first, names), _run_name(runs[i], i, names)
            raise RunDirError(f"cannot average {a} and {b} into one row {label!r}: {a} is an evaluation of its "
                              f"checkpoint {other!r}, {b} of its checkpoint {checkpoint!r} (a row compares one choice "
                              f"of weights); evaluate them alike (`openlt eval RUN --checkpoint {other}`) or give them "
                              f"different labels (LABEL=RUN)")


SHOWN_DIFFERENCES = 3  # differing keys a refusal lists (then "and N more")
# where a recipe refusal's values come from (was "config.yaml KEY", though the training keys are the checkpoints')
RECIPE_SOURCE = "training keys from the runs' checkpoints where they record them, else config.yaml"


def _check_recipes(label: str, runs: list[dict], names: list[str] | None) -> None:
    """RunDirError naming two runs of the row `label` trained with different recipes (:func:`run_recipe`, the
    first differing keys with both values) or with the same seed. A run read from a metrics file (:func:`load_metrics`)
    without a config.yaml beside it is refused in a row of several runs: its recipe cannot be checked (metrics.json
    records none); dicts built otherwise (no :data:`SOURCE_KEY`) are not compared."""
    lineages = [run_lineage(m) for m in runs]
    recipes = [(i, None if lineage is None else lineage.recipe()) for i, lineage in enumerate(lineages)]
    if len(runs) > 1:  # a metrics file read from disk without its run's config.yaml: its recipe cannot be checked
        for i, m in enumerate(runs):
            if isinstance(m.get(SOURCE_KEY), str) and recipes[i][1] is None:
                pair = sorted((i, 1 if i == 0 else 0))  # in the row's order
                a, b = (_run_name(runs[j], j, names) for j in pair)
                lone = _run_name(m, i, names)
                raise RunDirError(f"cannot average {a} and {b} into one row {label!r}: {lone} has no config.yaml "
                                  f"beside its metrics file ({Path(m[SOURCE_KEY]).parent / 'config.yaml'} not found), so "
                                  f"its recipe cannot be checked against the row's other runs; give the run directory "
                                  f"as `openlt train` wrote it (config.yaml included) or give it its own label "
                                  f"(LABEL=RUN)")
    recipes = [(i, r) for i, r in recipes if r is not None]
    if not recipes:
        return
    first, reference = recipes[0]
    for i, recipe in recipes[1:]:
        differs = recipe_differences(reference, recipe)
        if differs:
            more = f" and {len(differs) - SHOWN_DIFFERENCES} more" if len(differs) > SHOWN_DIFFERENCES else ""
            raise RunDirError(f"cannot average {_run_name(runs[first], first, names)} and {_run_name(runs[i], i, names)}"
                              f" into one row {label!r}: they were trained with different recipes ("
                              f"{', '.join(differs[:SHOWN_DIFFERENCES])}{more}; {RECIPE_SOURCE}); give them "
                              f"different labels "
                              f"(LABEL=RUN) or average runs of one recipe")
    _check_seeds(label, runs, names, [(i, lineages[i]) for i, _ in recipes])


def _check_seeds(label: str, runs: list[dict], names: list[str] | None, lineages: list[tuple[int, Lineage]]) -> None:
    """RunDirError naming two runs of the row `label` (one recipe: :func:`_check_recipes`) whose randomness is the
    same: the same seed and, for stage-2 runs, stage-1 runs of the same seed (a repeated sample, not an independent
    one: the same config trained twice). A run's randomness is its seed with its stage-1 runs' (:meth:`Lineage.seeds`;
    a stage-1 run whose seed is unknown is compared by the checkpoint sha256 the stage 2 recorded), so two decoupled
    runs with the default stage-2 seed on stage-1 runs of seeds 1 and 2 are independent samples (trial 14a S3); a
    stage-1 run neither recorded nor found cannot be told apart: refused, saying so."""
    for n, (i, lineage) in enumerate(lineages):
        seed = lineage.levels[0].get("seed")
        if seed is None:
            continue
        for j, other in lineages[:n]:
            if other.levels[0].get("seed") != seed or not _same_stage1_randomness(other, lineage):
                continue
            a, b = _run_name(runs[j], j, names), _run_name(runs[i], i, names)
            stage1 = [other.levels[k].get("seed") for k in range(1, min(len(other.levels), len(lineage.levels)))]
            what = f"seed {seed}" + "".join(f", from stage-1 runs of seed {s}" for s in stage1 if s is not None)
            unknown = [(x, lin.unknown) for x, lin in ((a, other), (b, lineage)) if lin.unknown]
            why = "".join(f"; the stage-1 run of {x} is unknown (train.init_from {path} is not found and {x} "
                          f"records none of it), so nothing shows they are different samples" for x, path in unknown)
            raise RunDirError(f"cannot average {a} and {b} into one row {label!r}: both were trained with {what} (a "
                              f"repeated seed is not an independent sample: a row's spread is over seeds){why}; leave "
                              f"one out or give it its own label (LABEL=RUN)")


def _same_stage1_randomness(a: Lineage, b: Lineage) -> bool:
    """Whether the stage-1 runs of two runs (their :class:`Lineage` levels after the first) may be the same sample:
    False when some level's seeds differ (or, where a seed is unknown, the recorded checkpoint sha256s do); levels
    one of them does not know (a stage-1 run neither recorded nor found) cannot tell them apart."""
    for k in range(1, min(len(a.levels), len(b.levels))):
        seeds = a.levels[k].get("seed"), b.levels[k].get("seed")
        if None not in seeds:
            if seeds[0] != seeds[1]:
                return False
        elif None not in (a.sha256[k], b.sha256[k]) and a.sha256[k] != b.sha256[k]:
            return False
    return True


def aggregate(groups: dict[str, list[dict]], names: dict[str, list[str]] | None = None) -> list[dict]:
    """Per group: {"label", "runs", "cells": {column: (mean, std, n) in display units, or None}, "under_trained",
    "under_trained_runs", "data"}; std is the population standard deviation (ddof=0), ``n`` the number of the
    group's runs that have the number, ``under_trained`` the number whose metrics.json carries the convergence
    warning (:mod:`openlt.reporting.convergence`), ``under_trained_runs`` their names (`names`, else metrics.json
    "run"), ``unchecked`` / ``unchecked_runs`` the number and names of those whose curve (or stage-1 run's) the
    check could not judge, ``data`` :func:`data_of` the group's first run. RunDirError when a group's runs are not
    comparable (:func:`check_comparable`; `names`: label -> a name per run for its message)."""
    rows = []
    for label, runs in groups.items():
        check_comparable(label, runs, None if names is None else names.get(label))
        cells = {}
        for name, path, scale in COLUMNS:
            values = [v for v in (_get(m, path) for m in runs) if v is not None]
            cells[name] = (float(np.mean(values)) * scale, float(np.std(values)) * scale, len(values)) if values else None
        warned = [_run_name(m, i, None if names is None else names.get(label))
                  for i, m in enumerate(runs) if convergence_warning(m) is not None]
        unchecked = [_run_name(m, i, None if names is None else names.get(label))
                     for i, m in enumerate(runs) if convergence_unchecked(m) is not None]
        rows.append({"label": label, "runs": len(runs), "cells": cells,
                     "under_trained": len(warned), "under_trained_runs": warned,
                     "unchecked": len(unchecked), "unchecked_runs": unchecked,
                     "data": data_of(runs[0]) if runs else None,
                     "bands": band_rule(_get(runs[0], ("bands", "rule"))) if runs else None,
                     "folders": folders_of(runs, None if names is None else names.get(label)),
                     "unknown_splits": [_run_name(m, i, None if names is None else names.get(label))
                                        for i, m in enumerate(runs) if split_files(m) is None],
                     "unknown_stage1": _unknown_stage1(runs, None if names is None else names.get(label))})
    return rows


# what the ± of every summary and bench table is, said where the tables are printed
STD_NOTE = "± is the population standard deviation over a row's runs (ddof=0: divided by n, not n - 1)"


def data_of(metrics: dict) -> dict:
    """What data a run was evaluated on: {"dataset": data.dataset of its config.yaml (None when there is none),
    "classes": its class list, "split_files": split name -> sha256 (:func:`split_files`; None when unknown)}."""
    source = metrics.get(SOURCE_KEY)
    flat = _run_config(Path(source).parent) if isinstance(source, str) else None
    return {"dataset": None if flat is None else flat.get("data.dataset"),
            "classes": list(metrics.get("class_names") or []), "split_files": split_files(metrics)}


def data_note(rows: list[dict]) -> str:
    """One line when the rows of :func:`aggregate` are on different data (each row's first run: another dataset,
    class list or split files), grouping the rows that share their data and naming, per group, what differs
    (trial 16 item 5: ``A, B, C: fashion-mnist (3 classes); D: cifar10 (4 classes)``; a split one group lacks as
    ``no open split``); "" when they are on the same data (or one row). Split files that a row's run does not record
    (:func:`split_files`: None) are unknown, neither the same nor different (trial 12 D2): only known ones can
    differ, and an unknown one is shown as unknown (:func:`unknown_splits_note` names the run)."""
    data = [(row["label"], row.get("data")) for row in rows if row.get("data")]
    if len(data) < 2:
        return ""
    known = [d["split_files"] for _, d in data if d["split_files"] is not None]
    splits = [s for s in sorted(set().union(*known), key=_split_order) if len({k.get(s) for k in known}) > 1]
    if len({d["dataset"] for _, d in data}) > 1:
        what = _grouped((label, f"{d['dataset'] or 'unknown dataset'} ({len(d['classes'])} classes)")
                        for label, d in data)
    elif len({tuple(d["classes"]) for _, d in data}) > 1:
        what = "different class lists: " + _grouped(
            (label, f"{len(d['classes'])} classes ({', '.join(d['classes'][:3])}"
                    f"{', ...' if len(d['classes']) > 3 else ''})") for label, d in data)
    elif splits:
        what = "different split files: " + _grouped((label, _splits_shown(d["split_files"], splits)) for label, d in data)
    else:
        return ""
    return f"note: the rows are on different data ({what}): their numbers are not comparable"


def _splits_shown(files: dict[str, str] | None, splits: list[str]) -> str:
    """The sha256 (first 12 digits) of each of `splits` in `files`, ``no SPLIT split`` for one it lacks;
    ``split files unknown`` when `files` is None."""
    if files is None:
        return "split files unknown"
    return ", ".join(f"{s} sha256 {files[s][:12]}" if files.get(s) else f"no {s} split" for s in splits)


def _grouped(described: Iterable[tuple[str, str]]) -> str:
    """``A, C: what; B: other``: the labels of rows described alike joined, in the order of their first row."""
    groups: dict[str, list[str]] = {}
    for label, what in described:
        groups.setdefault(what, []).append(md_cell(label))
    return "; ".join(f"{', '.join(labels)}: {what}" for what, labels in groups.items())


def bands_note(rows: list[dict]) -> str:
    """The shot-band rule of the rows of :func:`aggregate` (every metrics.json records one, `metrics_problem`; a
    row's runs share it, :func:`check_comparable`): ``shot bands (every row): RULE`` under a table whose rows share
    it, else a note naming each row's rule (trial 16 item 4: the many / medium / few columns then count other
    classes). "" for no row."""
    rules = [(row["label"], row.get("bands")) for row in rows]
    if len({rule for _, rule in rules}) == 1:
        return f"shot bands (every row): {rules[0][1]}"
    if not rules:
        return ""
    return (f"note: the rows use different shot-band rules ({_grouped(rules)}): their many / medium / few columns "
            f"are not comparable")


SPLIT_ORDER = ("train", "val", "test", "open")


def _split_order(split: str) -> tuple[int, str]:
    return (SPLIT_ORDER.index(split) if split in SPLIT_ORDER else len(SPLIT_ORDER), split)


def unknown_splits_note(rows: list[dict]) -> str:
    """The note under a table of more than one run naming the runs whose split files are unknown (:func:`split_files`:
    neither their metrics.json nor their split_manifest.json records them; trial 12 D1), or "": they were not checked
    against the other runs' split files (an older run stays usable, but nothing shows it is on the same split)."""
    unknown = [f"{md_cell(run)} (row {md_cell(row['label'])})" for row in rows for run in row.get("unknown_splits") or ()]
    if not unknown or sum(row["runs"] for row in rows) < 2:
        return ""
    return (f"note: split files unknown for {', '.join(unknown)}: neither its metrics.json nor its run's "
            f"split_manifest.json records their sha256, so nothing shows it is on the same split files as the other "
            f"runs (evaluate it again with this openlt to record them)")


def _unknown_stage1(runs: list[dict], names: list[str] | None) -> list[tuple[str, str]]:
    """(name, train.init_from path) of each run of a row of several whose stage-1 recipe is unknown
    (:func:`stage1_unknown`), for :func:`stage1_unknown_note`; [] for a row of one run (nothing to compare)."""
    if len(runs) < 2:
        return []
    unknown = [(i, stage1_unknown(m)) for i, m in enumerate(runs)]
    return [(_run_name(runs[i], i, names), path) for i, path in unknown if path]


def stage1_unknown_note(rows: list[dict]) -> str:
    """The note under a table naming the stage-2 runs of a row of several whose stage-1 recipe is unknown (trial 14a
    D2: the run records none, trained before openlt recorded it, and its train.init_from folder is gone or moved),
    or "": their stage-1 runs were not compared with the row's others (a recipe that differs would be refused)."""
    unknown = [f"{md_cell(run)} (row {md_cell(row['label'])}, train.init_from {md_cell(path)})"
               for row in rows for run, path in row.get("unknown_stage1") or ()]
    if not unknown:
        return ""
    return (f"note: stage-1 recipe unknown for {', '.join(unknown)}: its stage-1 run is not found and the run records "
            f"none of it (trained before openlt recorded it), so nothing shows it started from a stage-1 run of the "
            f"same recipe as the row's other runs (put the stage-1 run back at that path, or train the stage 2 again "
            f"with this openlt)")


def table_notes(rows: list[dict]) -> list[str]:
    """The lines under a table of :func:`aggregate`'s rows: what ± is, then the notes that apply: the different-data
    note, the runs whose split files are unknown, the stage-2 runs whose stage-1 recipe is unknown, the different
    image folders, the under-trained footnote."""
    return [note for note in (STD_NOTE, bands_note(rows), data_note(rows), unknown_splits_note(rows),
                              stage1_unknown_note(rows), folders_note(rows), under_trained_note(rows),
                              unchecked_note(rows)) if note]


UNDER_TRAINED_MARK = "†"
UNCHECKED_MARK = "‡"  # a run the under-training check could not judge: no warning there is no finished model


def marked_label(row: dict) -> str:
    """A row's label, followed by :data:`UNDER_TRAINED_MARK` when any of its runs may be under-trained and by
    :data:`UNCHECKED_MARK` when the check could not judge one of them."""
    marks = (UNDER_TRAINED_MARK if row.get("under_trained") else "") + (UNCHECKED_MARK if row.get("unchecked") else "")
    return f"{row['label']} {marks}" if marks else row["label"]


def md_cell(text: str) -> str:
    """`text` made safe as one markdown table cell (trial 10 D7): ``\\`` and ``|`` escaped (a label cannot end or
    split its cell), and a character that is not printable (a line break, a tab, ESC) written as its Python escape
    (``\\n``): a row stays one line."""
    text = text.replace("\\", "\\\\").replace("|", "\\|")
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def under_trained_note(rows: list[dict]) -> str:
    """The footnote of the rows marked by :func:`marked_label` ("" when none is)."""
    return _footnote(rows, "under_trained", f"{UNDER_TRAINED_MARK} may be under-trained",
                     "the best validation epoch is in the last 10% of the epochs and validation top-1 was still "
                     "rising, or the second half's best validation top-1 is more than 5 points above the first half's, "
                     "or its training stopped before train.epochs, or that of the stage-1 run it starts from "
                     "(metrics.json \"convergence\"; each run's report says which); train longer before comparing")


def unchecked_note(rows: list[dict]) -> str:
    """The footnote of the rows :func:`marked_label` marks as not checked ("" when none is)."""
    return _footnote(rows, "unchecked", f"{UNCHECKED_MARK} the under-training check was not made",
                     "its validation curve, or that of the stage-1 run it starts from, could not be judged (a run of "
                     "1 - 3 epochs, no validation, an edited epoch log: metrics.json \"convergence\" \"unchecked\"; "
                     "each run's report says why); no warning there does not mean a finished model")


def _footnote(rows: list[dict], key: str, opening: str, reason: str) -> str:
    """"OPENING: LABEL (k/n runs: names); ...: REASON" over the rows with a count under `key` (under_trained,
    unchecked; the runs named by `key`_runs where the row has them), or "" when no row has one."""
    marked = [f"{row['label']} ({row[key]}/{row['runs']} runs"
              + (f": {', '.join(row[f'{key}_runs'])})" if row.get(f"{key}_runs") else ")")
              for row in rows if row.get(key)]
    return f"{opening}: {'; '.join(marked)}: {reason}" if marked else ""


def format_cell(cell: tuple[float, float, int] | None, column: str, runs: int | None = None) -> str:
    """"mean ± std" (population std, ddof=0) of an aggregated cell (the mean alone for one run; "–" for none), 1
    decimal for a percentage column, 3 for a [0, 1] one; " (n/runs)" follows when fewer than the row's `runs` have the number."""
    if cell is None:
        return "–"
    mean, std, n = cell
    digits = 1 if dict((c, s) for c, _, s in COLUMNS)[column] == 100 else 3
    text = f"{mean:.{digits}f} ± {std:.{digits}f}" if n > 1 else f"{mean:.{digits}f}"
    return text + (f" ({n}/{runs})" if runs is not None and n < runs else "")


def summarize(groups: dict[str, list[dict]], names: dict[str, list[str]] | None = None) -> str:
    """A markdown table, one row per group of runs (mean ± population std, ddof=0, over the group's runs; `names` as
    :func:`aggregate`), then :func:`table_notes`: what ± is, a note when the rows are on different data, the
    under-trained footnote."""
    header = "| method | runs | " + " | ".join(name for name, _, _ in COLUMNS) + " |"
    rows = [header, "|---|---:|" + "---:|" * len(COLUMNS)]
    aggregated = aggregate(groups, names)
    for row in aggregated:
        cells = [format_cell(row["cells"][name], name, row["runs"]) for name, _, _ in COLUMNS]
        rows.append(f"| {md_cell(marked_label(row))} | {row['runs']} | " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n\n" + "\n".join(table_notes(aggregated))
