"""A run labels images from its own directory: what prediction reads, and nothing else.

* ``config.yaml``: the model (backbone, attention, head and its options);
* ``inference.json`` (:class:`InferenceSpec`, written by training): the class names, the input channels and
  size, and the evaluation transform as data (:func:`openlt.data.transforms.eval_transform_spec`);
* ``checkpoints/best.safetensors``: the weights (OLTR's centroids are weights of the meta-embedding head);
* ``calibration.json``: the open-set decision (:class:`~openlt.openset.Rejector`: score, threshold and how it was
  chosen), written by evaluation;
* ``open-score.safetensors``: a fitted open-set score's state (OpenMax's Weibull fits), written by evaluation;
* ``split_manifest.json``: only to tell, for a run never evaluated, whether it needs a threshold at all.

A threshold chosen on validation and a fitted score belong to the weights they were computed with: both record
the checkpoint's name and sha256 (``fitted_on``), and :func:`saved_decision` / :func:`saved_score` refuse them for a
checkpoint of another sha256 (``--checkpoint last`` after evaluating best, or best after training went on), naming
the `openlt eval` command that fits them for it. A run never evaluated is refused too, unless a threshold is given
or its evaluation would reject nothing (no open and no validation split): prediction never calibrates by itself.

No split file, image folder or data set is opened. inference.json is checked against the run's own record
before it is used (:func:`check_inference`: classes against split_manifest.json, input and transform against
config.yaml): a hand edit would name or preprocess every image wrongly without a word. A run trained before
inference.json existed is described from its data once (:func:`inference_spec` falls back to ``prepare_data``),
after checking that its split files still hold the classes its split_manifest.json records.
"""

from __future__ import annotations

import copy
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from openlt.config import Config
from openlt.data.build import (DataBundle, default_image_size, input_channels, prepare_data,
                               transform_family)
from openlt.data.transforms import FAMILIES, eval_transform, eval_transform_spec, normalisation
from openlt.engine.checkpoint import load_checkpoint
from openlt.engine.manifest import class_change, class_source, label_difference, read_run_manifest
from openlt.engine.run import Run
from openlt.engine.runtime import to_device
from openlt.errors import NotFittedError, OpenLTError, RunDirError
from openlt.io import sha256_file, write_json
from openlt.models.model import OpenLTModel, build_model
from openlt.openset import (OpenSetScore, Rejector, build_score, check_threshold_range, load_score, parse_threshold,
                            score_fitted_on)

FORMAT = "openlt-inference/1"
_LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class InferenceSpec:
    """What a trained model expects and what its outputs mean: ``classes`` (the K known class names in label
    order), ``in_chans`` and ``image_size`` (the network's input: (B, in_chans, image_size, image_size) float32),
    ``transform`` (the evaluation transform as JSON data: :func:`~openlt.data.transforms.eval_transform_spec`)
    and ``open_classes`` (the classes held out as the open set, for the record)."""

    classes: tuple[str, ...]
    in_chans: int
    image_size: int
    transform: dict
    open_classes: tuple[str, ...] = ()

    @property
    def num_classes(self) -> int:
        """K, the number of known classes (the logits' width)."""
        return len(self.classes)

    @property
    def mode(self) -> str:
        """The PIL mode images are converted to before the transform: "L" (1 channel) or "RGB"."""
        return self.transform["mode"]

    def image_transform(self):
        """The evaluation transform: a PIL image -> float32 (in_chans, image_size, image_size) tensor."""
        return eval_transform(self.transform)

    def to_dict(self) -> dict:
        """The content of inference.json (and of an export's openlt.json "classes" / "input" / "transform")."""
        return {"format": FORMAT, "classes": list(self.classes), "open_classes": list(self.open_classes),
                "in_chans": self.in_chans, "image_size": self.image_size, "transform": self.transform}

    @classmethod
    def from_data(cls, data: DataBundle) -> "InferenceSpec":
        """The description of a run's checked data (what training saw: its transform family, size, channels)."""
        mean, std = normalisation(data.cfg.data.dataset, data.in_chans, data.family)
        return cls(tuple(data.class_names), data.in_chans, data.image_size,
                   eval_transform_spec(data.family, data.image_size, mean, std),
                   tuple(data.manifest.get("open_class_names") or ()))

    @classmethod
    def from_dict(cls, raw: object, where: str | Path) -> "InferenceSpec":
        """Read and check an inference description (`where` names its file in errors): RunDirError naming the
        first bad key."""
        problem = _spec_problem(raw)
        if problem:
            raise RunDirError(f"{where} is not an inference description written by openlt: {problem}")
        return cls(tuple(raw["classes"]), raw["in_chans"], raw["image_size"], raw["transform"],
                   tuple(raw.get("open_classes") or ()))


def _positive_int(value: object) -> bool:
    return type(value) is int and value > 0


def _numbers(value: object, n: int, positive: bool = False) -> bool:
    return (isinstance(value, list) and len(value) == n and all(
        type(v) in (int, float) and math.isfinite(v) and (v > 0 or not positive) for v in value))


def _transform_problem(t: object, in_chans: int, image_size: int) -> str | None:
    if not isinstance(t, dict):
        return "transform must be an object"
    size = [image_size, image_size]
    checks = (
        ("family", t.get("family") in FAMILIES, f"one of {', '.join(FAMILIES)}"),
        ("mode", t.get("mode") == ("L" if in_chans == 1 else "RGB"), "L for 1 channel, else RGB"),
        ("channels", t.get("channels") == in_chans, f"in_chans ({in_chans})"),
        ("resize", _positive_int(t.get("resize")) or (isinstance(t.get("resize"), list) and len(t["resize"]) == 2
                                                     and all(map(_positive_int, t["resize"]))), "a size or [H, W]"),
        ("crop", t.get("crop") is None or t.get("crop") == size, f"null or {size}"),
        ("size", t.get("size") == size, f"{size}"),
        ("mean", _numbers(t.get("mean"), in_chans), f"{in_chans} finite numbers"),
        ("std", _numbers(t.get("std"), in_chans, positive=True), f"{in_chans} positive numbers"),
    )
    for key, ok, expected in checks:
        if not ok:
            return f"transform.{key} must be {expected}, got {t.get(key)!r}"
    return None


def _spec_problem(raw: object) -> str | None:
    """What is wrong with an inference description, or None."""
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        return f"format must be {FORMAT!r}"
    classes = raw.get("classes")
    if not (isinstance(classes, list) and classes and all(isinstance(c, str) and c for c in classes)):
        return "classes must be a non-empty list of names"
    if len(set(classes)) != len(classes):
        return "classes must not repeat a name"
    if not isinstance(raw.get("open_classes", []), list):
        return "open_classes must be a list"
    for key in ("in_chans", "image_size"):
        if not _positive_int(raw.get(key)):
            return f"{key} must be a positive integer, got {raw.get(key)!r}"
    return _transform_problem(raw.get("transform"), raw["in_chans"], raw["image_size"])


def write_inference(run: Run, data: DataBundle) -> None:
    """Save inference.json, the description of `data` that prediction needs (atomic)."""
    write_json(run.inference_file, InferenceSpec.from_data(data).to_dict())


def read_inference(run: Run) -> InferenceSpec | None:
    """The run's inference.json, or None when it has none (a run of an older openlt); RunDirError naming the
    file when it is not UTF-8 JSON or not such a description."""
    path = run.inference_file
    if not path.is_file():
        return None
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise RunDirError(f"{path} is not readable JSON ({exc})") from None
    return InferenceSpec.from_dict(raw, path)


def inference_spec(run: Run, cfg: Config) -> InferenceSpec:
    """The run's inference description: its inference.json, checked against the run's own record
    (:func:`check_inference`), or for a run without one (trained by an older openlt) the description of its data,
    read once through ``prepare_data`` (its split files must be there), whose class list must be the one its
    split_manifest.json records (:func:`spec_from_data`). RunDirError, one line naming the file, otherwise."""
    spec = read_inference(run)
    if spec is None:
        return spec_from_data(run, cfg)
    check_inference(run, cfg, spec)
    return spec


_OLD_RUN = "has no inference.json (a run of an older openlt), so its classes and input are read from its split files"
_REWRITE = ("`openlt eval RUN` where they are writes inference.json once, and the run then needs no split file "
            "to label images")


def spec_from_data(run: Run, cfg: Config) -> InferenceSpec:
    """The description of a run without inference.json, from its split files as they are now (``prepare_data``),
    after checking that their class list is the one the run was trained with (its split_manifest.json): after
    `openlt split --force` in its split folder, labels would otherwise be named after other classes. A run
    without split_manifest.json cannot be checked (a warning says so). RunDirError naming the run, what changed
    and the remedy; also when the split files cannot be read."""
    recorded = read_run_manifest(run) if run.manifest_file.is_file() else None
    try:
        data = prepare_data(cfg, default_split_dir=run.splits_dir)
    except OpenLTError as exc:
        raise RunDirError(f"{run.path} {_OLD_RUN}, and these cannot be read: {exc}") from None
    if recorded is None:
        _LOG.warning("%s has neither inference.json nor %s: its class names are read from %s unchecked (the "
                     "split files it was trained on are not known)", run.path, run.manifest_file.name,
                     class_source(data))
        return InferenceSpec.from_data(data)
    if recorded["class_names"] != data.class_names:
        raise RunDirError(f"{run.path} {_OLD_RUN}, but the class list changed since the run was trained "
                          f"({class_change(recorded['class_names'], data.class_names)}, from {class_source(data)}; "
                          f"{run.manifest_file.name} records the run's): its labels would be named after other "
                          f"classes; restore the split files it was trained on (or point data.split_dir in "
                          f"{run.config_file} at a copy of them); {_REWRITE.replace('RUN', str(run.path))}")
    return InferenceSpec.from_data(data)


def expected_input(cfg: Config) -> tuple[int, int, dict]:
    """(in_chans, image_size, evaluation transform spec) that `cfg` (a run's config.yaml) gives its data, without
    reading it: as ``prepare_data`` chooses them (data.in_chans or the data set's; data.image_size, which
    training records when it chose the images' own size, or the data set's default; data.transform or, for auto,
    small up to data.build.SMALL_IMAGES px, else imagenet; the data set's normalisation): data.build's rules."""
    data = cfg.data
    in_chans = input_channels(data)
    size = data.image_size or default_image_size(data.dataset)
    family = transform_family(data.transform, size)
    mean, std = normalisation(data.dataset, in_chans, family)
    return in_chans, size, eval_transform_spec(family, size, mean, std)


def check_inference(run: Run, cfg: Config, spec: InferenceSpec) -> None:
    """Refuse an inference.json that does not describe the run it is in: its classes (names and order) against
    split_manifest.json's class_names (and open_classes against its open_class_names), its in_chans, image_size
    and transform against what config.yaml gives (:func:`expected_input`). A hand edit (classes reordered,
    another size or normalisation) would label every image without a word. RunDirError, one line naming
    inference.json, the key and both values. A run without split_manifest.json has its classes unchecked."""
    where = run.inference_file
    restore = (f"one of the two was edited since training: restore the edited one ({where.name} is written by "
               f"training; without it the run is described from its split files)")
    if run.manifest_file.is_file():
        manifest = read_run_manifest(run)
        names, opened = manifest["class_names"], manifest.get("open_class_names")
        if list(spec.classes) != names:
            what = label_difference(names, list(spec.classes), "in inference.json", "there")
            raise RunDirError(f"{where}: classes differ from class_names in {run.manifest_file} ({what}); {restore}")
        if isinstance(opened, list) and list(spec.open_classes) != opened:
            raise RunDirError(f"{where}: open_classes is {list(spec.open_classes)}, but {run.manifest_file} "
                              f"records {opened} (open_class_names); {restore}")
    in_chans, size, transform = expected_input(cfg)
    checks = [("in_chans", spec.in_chans, in_chans, "data.in_chans, data.dataset"),
              ("image_size", spec.image_size, size, "data.image_size, data.dataset")]
    checks += [(f"transform.{key}", spec.transform.get(key), value, "data.dataset, data.transform, data.image_size")
               for key, value in transform.items()]
    for key, then, now, keys in checks:
        if then != now:
            raise RunDirError(f"{where}: {key} is {json.dumps(then)}, but {run.config_file} gives {json.dumps(now)} "
                              f"({keys}); {restore}")


def build_run_model(run: Run, cfg: Config, spec: InferenceSpec, checkpoint: str = "best",
                    device: torch.device | None = None) -> tuple[OpenLTModel, dict]:
    """The run's network (`cfg.model`, sized by `spec`) with checkpoints/CHECKPOINT.safetensors loaded, on
    `device` (default CPU), in eval mode; returns (model, the checkpoint's state: epoch, ...). model.pretrained
    is not read again: the checkpoint holds every weight. RunDirError for a missing or mismatched checkpoint."""
    cfg = copy.deepcopy(cfg)
    cfg.model.pretrained = None
    model = build_model(cfg, spec.num_classes, spec.in_chans, spec.image_size)
    state = load_checkpoint(run.checkpoint(checkpoint), model)
    to_device(model, device or torch.device("cpu"), cfg.train.channels_last)
    return model.eval(), state


def checkpoint_identity(run: Run, checkpoint: str) -> dict:
    """``{"checkpoint": name, "sha256": hex}`` of the run's checkpoints/CHECKPOINT.safetensors: what a calibration
    or a fitted score records as the weights it was computed with. RunDirError when the file is missing."""
    path = run.checkpoint(checkpoint)
    if not path.is_file():
        raise RunDirError(f"checkpoint not found: {path}")
    return {"checkpoint": checkpoint, "sha256": sha256_file(path)}


def eval_command(run: Run, checkpoint: str) -> str:
    """The `openlt eval` command line that evaluates (and fits the decision of) `checkpoint`."""
    return f"`openlt eval {run.path}" + ("`" if checkpoint == "best" else f" --checkpoint {checkpoint}`")


def check_fitted_on(run: Run, file: Path, fitted_on: dict | None, using: dict) -> None:
    """Refuse `file` (calibration.json, open-score.safetensors) when it was fitted on another checkpoint than
    `using` (:func:`checkpoint_identity`): RunDirError naming both and the `openlt eval` command that refits it.
    A file that records none (an older openlt's) is used with a warning."""
    if fitted_on is None:
        _LOG.warning("%s does not record the checkpoint it was fitted on (written by an older openlt); it is used "
                     "for checkpoints/%s.safetensors as it is; %s records it", file, using["checkpoint"],
                     eval_command(run, using["checkpoint"]))
        return
    if fitted_on["sha256"] == using["sha256"]:
        return
    then, now = fitted_on["sha256"][:12], using["sha256"][:12]
    ckpt = f"checkpoints/{using['checkpoint']}.safetensors"
    what = (f"{ckpt} changed since {file.name} was fitted on it (sha256 {then} then, {now} now)"
            if fitted_on["checkpoint"] == using["checkpoint"] else
            f"{file.name} was fitted on checkpoints/{fitted_on['checkpoint']}.safetensors (sha256 {then}), not on "
            f"{ckpt} (sha256 {now})")
    raise RunDirError(f"{run.path}: {what}; fit it for {ckpt} with {eval_command(run, using['checkpoint'])}")


def needs_decision(run: Run) -> bool:
    """Whether the run's evaluation chooses a rejection threshold under eval.open_threshold=auto: when its split
    manifest records an open split (a closed-set run rejects nothing unless asked for a number, with or without
    validation images). A run without a readable manifest is taken to need one."""
    if not run.manifest_file.is_file():
        return True
    return "open" in read_run_manifest(run)["files"]


def saved_decision(run: Run, cfg: Config, using: dict, threshold: float | None = None,
                 option: str = "--threshold") -> Rejector | None:
    """The open-set decision to apply with the checkpoint `using` (:func:`checkpoint_identity`), without data:

    * `threshold` given: that fixed threshold on calibration.json's score (or `eval.open_score`), refused
      (ConfigError naming `option`) outside the range the score declares (msp: [0, 1]);
    * else the run's calibration.json, when it was fitted on `using` (else RunDirError: :func:`check_fitted_on`),
      but not a threshold chosen on validation for a run without an open split (an older openlt's; its
      evaluation now rejects nothing: :func:`needs_decision`);
    * else a number in `eval.open_threshold` (fixed, as evaluation would apply it);
    * else None when the run's evaluation would reject nothing (:func:`needs_decision`);
    * else RunDirError: the run was never evaluated; the message names `openlt eval` and `option`.

    ConfigError for a threshold that is not a finite number, RunDirError for a malformed calibration.json. A warning
    when config.yaml's `eval.open_score` is not calibration.json's score (edited after the run's evaluation)."""
    saved = Rejector.load(run.calibration_file) if run.calibration_file.is_file() else None
    if saved is not None and saved.calibrated and not needs_decision(run):
        saved = None  # a closed-set run: nothing is rejected unless a threshold is asked for
    if saved is not None and saved.score != cfg.eval.open_score:  # config.yaml edited after the run's evaluation
        _LOG.warning(f"{run.config_file}: eval.open_score is {cfg.eval.open_score}, but the run's own decision "
                     f"({run.calibration_file}) scores {saved.score}: {saved.score} is used; `openlt eval "
                     f"{run.path}` makes {cfg.eval.open_score} the run's own")
    if threshold is not None:  # inside the score's range: past it every image, or none, would be "unknown"
        rejector = Rejector.fixed(cfg.eval.open_score if saved is None else saved.score, threshold,
                                  f"fixed ({option})", option)
        check_threshold_range(rejector.score, rejector.threshold, option)
        return rejector
    if saved is not None:
        if saved.calibrated:
            check_fitted_on(run, run.calibration_file, saved.fitted_on, using)
        return saved
    fixed = parse_threshold(cfg.eval.open_threshold)
    if fixed is not None:
        return Rejector.fixed(cfg.eval.open_score, fixed)
    if not needs_decision(run):
        return None
    given = f"{option} T" if option.startswith("--") else f"{option}=T"
    tagged = sorted(p.name for p in run.path.glob("metrics-*.json"))  # `eval --tag` chooses no threshold to predict
    if tagged and not run.metrics_file.is_file():
        raise RunDirError(f"{run.path} has no {run.calibration_file.name}: it has no untagged evaluation, only tagged "
                          f"ones ({', '.join(tagged)}), which choose no threshold for prediction; choose it on "
                          f"validation with {eval_command(run, using['checkpoint'])} (no --tag), or give a fixed one "
                          f"({given})")
    raise RunDirError(f"{run.path} has no {run.calibration_file.name}: it was never evaluated, so no rejection "
                      f"threshold was chosen; choose it on validation with {eval_command(run, using['checkpoint'])}, "
                      f"or give a fixed one ({given})")


def saved_score(run: Run, name: str, cfg: Config, using: dict | None = None) -> OpenSetScore:
    """The open-set score `name` of a run: built from the config (`eval` options), or for a fitted one (OpenMax)
    read from the open-score.safetensors its evaluation saved (NotFittedError when there is none). With `using`
    (:func:`checkpoint_identity`), a fitted score of another checkpoint is a RunDirError (:func:`check_fitted_on`)."""
    scorer = build_score(name, cfg.eval)
    if scorer.requires_fit:
        path = run.open_score_path()
        if not path.is_file():
            raise NotFittedError(f"open-set score {name!r} is fitted on the training split, and {path} is missing: "
                                 f"evaluate the run with `openlt eval {run.path} eval.open_score={name}` first")
        if using is not None:
            check_fitted_on(run, path, score_fitted_on(path), using)
        scorer = load_score(path)
    return scorer
