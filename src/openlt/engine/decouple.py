"""Stage 2 of decoupled classifier learning (Kang et al., ICLR 2020) as an ordinary run.

`openlt train CONFIG train.init_from=STAGE1_RUN` with `decouple.method` = crt | lws | tau_norm | logit_adjust |
ncm keeps the stage-1 representation (backbone, attention, extra fc: copied exactly) and replaces only the
classifier head, fitted by the method registered under that name (:mod:`openlt.decoupling.methods`: what each
method does, and the contract they share). This module does the run around it: it loads the stage-1 features
(`openlt.engine.features`' cache, so no image passes through the backbone while the classifier learns; with
`decouple.features=augmented` cRT / LWS re-extract augmented features every epoch, as the paper does), builds
the stage-2 network, logs every epoch through :class:`openlt.engine.tracking.EpochLog` (metrics.jsonl, and
TensorBoard when installed), and writes decouple.json (plus tau_curve.png for tau_norm) and the checkpoints.
The result is a run like any other (checkpoint = stage-1 weights + the new head), so `openlt eval`,
`predict`, `summary` and benches treat it alike.
"""

from __future__ import annotations

import copy
import shutil
import time
from pathlib import Path
from functools import partial
from typing import Any, Callable

import torch
from torch import nn

from openlt.config import Config, EvalConfig, explicit_keys, flatten, stage2_head_problem, to_dict
from openlt.data.build import DataBundle, prepare_data
from openlt.decoupling import STAGE2_METHODS, Stage2Data, Stage2Hooks, Stage2Method, build_method
from openlt.engine.checkpoint import read_checkpoint, save_checkpoint
from openlt.engine.evaluate import closed_metrics
from openlt.engine.features import extract_features, extraction_amp, load_features
from openlt.engine.inference import write_inference
from openlt.engine.init_from import (check_stage1_free, check_stage1_split_dir, load_stage1_weights, model_weights,
                                     relocated_data)
from openlt.engine.manifest import check_open_decision, read_run_manifest, verify_manifest
from openlt.engine.precision import check_amp, precision_name
from openlt.engine.run import Run, open_run, saved_path
from openlt.engine.runtime import defining_config, make_loader, to_device, trained_recipe
from openlt.engine.stage1_record import stage1_config, stage1_note, stage1_record
from openlt.engine.tracking import EpochLog
from openlt.reporting.convergence import convergence_note
from openlt.errors import ConfigError, RunDirError
from openlt.io import remove_file, sha256_file, write_json
from openlt.metrics import ShotBands
from openlt.models.model import OpenLTModel, build_model

FEATURE_MODES = ("cache", "augmented")
KEEP = ("last", "best")


def adopt_representation(cfg: Config, source: Run, log: Callable[[str], None]) -> Config:
    """The stage-2 config gets the stage-1 run's data and model (the representation, and the features it fits
    on, are that run's); only the classifier changes, to the head the method fills. A data or model key the
    user set explicitly (`explicit_keys`: the config file named or an override) to another value than the
    stage-1 run's is refused (ConfigError, a line per key), never silently replaced, except where that data is
    now (`stage1_record.RELOCATION_KEYS`: data.root, data.open_root, data.split_dir, kept as set: the split files are
    checked against the stage-1 run's split_manifest.json by sha256, as `openlt eval` does); a value a `base:` chain
    gives is replaced with a note naming it. The loader settings (`HONOURED`) and the stage-2 head's options
    (`HEAD_OPTIONS`) stay the stage-2 config's. The shot bands are the stage-2 config's own when it sets them,
    else the stage-1 run's (`_adopt_bands`; a note either way when they differ). Returns the source config."""
    src = source.config()
    if src.decouple.method != "none":
        raise ConfigError(f"train.init_from must be a jointly trained (stage-1) run; {source.path} is itself a "
                          f"decoupled run (decouple.method={src.decouple.method})")
    if src.data.split_dir is None:  # the stage-1 run built its splits into its own directory
        src.data.split_dir = str(source.splits_dir)
    wanted = copy.deepcopy(src)  # the stage-1 run's data and model, with the head the method fills
    wanted.model.classifier = STAGE2_METHODS.get(cfg.decouple.method).head
    differ = _representation_differences(cfg, wanted)
    # where the stage-1 run's data is now (its split files are checked by its split manifest)
    relocated = {key: value for key, value in relocated_data(cfg).items() if key in differ}
    for key in relocated:
        log(f"note: {key}={relocated[key]}: the stage-1 run's data as it is now (its {key}={differ.pop(key)[1]}); "
            f"the split files are checked against {source.manifest_file}")
    _refuse_explicit(cfg, differ, source)
    differ.pop("model.classifier", None)  # (the method's head: no news)
    if differ:
        log(f"note: data and model settings are taken from the stage-1 run {source.path}: "
            + ", ".join(f"{key}={theirs} (this config: {mine})" for key, (mine, theirs) in differ.items()))
    kept = {key: _get(cfg, key) for key in (*HONOURED, *HEAD_OPTIONS)}
    cfg.data, cfg.model = wanted.data, wanted.model
    for key, value in {**kept, **relocated}.items():
        _set(cfg, key, value)
    _adopt_bands(cfg, src, source, log)
    return src


# What a decoupled stage 2 keeps of its own config among the data and model keys: the loaders' settings and
# the options of the head the method fills; every other data / model key is the stage-1 run's.
HONOURED = ("data.workers", "data.pin_memory")
HEAD_OPTIONS = ("model.head.ncm_metric", "model.head.ncm_center", "model.head.scale", "model.head.squash")


def _representation_differences(cfg: Config, src: Config) -> dict[str, tuple]:
    """{dotted key: (stage-2 value, stage-1 value)} for the data and model keys a decoupled stage 2 takes from
    the stage-1 run `src` and has otherwise (paths compared absolute, as the run saved them)."""
    found = {}
    for key in flatten({"data": to_dict(src.data), "model": to_dict(src.model)}):
        if key in HONOURED or key in HEAD_OPTIONS:
            continue
        mine, theirs = _get(cfg, key), _get(src, key)
        if _comparable(key, mine) != _comparable(key, theirs):
            found[key] = (mine, theirs)
    return found


def _refuse_explicit(cfg: Config, differ: dict[str, tuple], source: Run) -> None:
    """ConfigError, one line per key, for the keys of `differ` the user set explicitly."""
    explicit = explicit_keys(cfg)
    lines = [f"{explicit[key]}: {key}={_shown(key, mine)} differs from the stage-1 run's {key}={theirs} "
             f"({source.path}): a decoupled stage 2 fits its classifier on the stage-1 run's features, so its data "
             f"and model are that run's; drop {key} to use the stage-1 run's, or train a stage-1 run with "
             f"{key}={mine} and start this stage 2 from it"
             if key != "model.classifier" else
             f"{explicit[key]}: model.classifier={mine}, {stage2_head_problem(cfg.decouple.method, mine)}"
             for key, (mine, theirs) in differ.items() if key in explicit]
    if lines:
        raise ConfigError("\n".join(lines))


def _shown(key: str, value: Any) -> str:
    """`value`, with the path it names when that is not how it was written (`names.txt (/abs/names.txt)`)."""
    saved = saved_path(key, value)
    return f"{value} ({saved})" if saved != value else f"{value}"


def _get(cfg: Any, key: str) -> Any:
    for part in key.split("."):
        cfg = getattr(cfg, part)
    return cfg


def _set(cfg: Any, key: str, value: Any) -> None:
    *path, last = key.split(".")
    setattr(_get(cfg, ".".join(path)) if path else cfg, last, value)


def _comparable(key: str, value: Any) -> Any:
    """A path setting as the run saves it (`run.saved_path`: data.class_names too); any other value as it is."""
    return saved_path(key, value)


BAND_KEYS = ("many_above", "few_below", "inclusive_bands")


def _adopt_bands(cfg: Config, src: Config, source: Run, log: Callable[[str], None]) -> None:
    """The shot bands of a decoupled stage 2: the stage-2 config's own when it sets any of eval.many_above /
    few_below / inclusive_bands (all three kept together, so that they stay a checked rule), else the stage-1
    run's, as the representation's. Either way a difference from the stage-1 run's bands is said, never silent.
    Set: another value than the default, or any value given explicitly (`explicit_keys`), the default's too."""
    default, mine, theirs = EvalConfig(), _bands(cfg.eval), _bands(src.eval)
    if mine == theirs:
        return
    if mine != _bands(default) or any(f"eval.{key}" in explicit_keys(cfg) for key in BAND_KEYS):
        log(f"note: this stage 2's shot bands ({_describe_bands(cfg.eval)}) differ from those of the stage-1 run "
            f"{source.path} ({_describe_bands(src.eval)}); the two runs' band accuracies are not comparable")
        return
    for key in BAND_KEYS:
        setattr(cfg.eval, key, getattr(src.eval, key))
    log(f"note: shot bands taken from the stage-1 run {source.path}: {_describe_bands(src.eval)} (set "
        f"eval.many_above / eval.few_below to use others)")


def _bands(e: EvalConfig) -> tuple:
    return tuple(getattr(e, key) for key in BAND_KEYS)


def _describe_bands(e: EvalConfig) -> str:
    return f"many_above={e.many_above}, few_below={e.few_below}" + (", inclusive" if e.inclusive_bands else "")


def _source_linear(tensors: dict[str, torch.Tensor], source: Run, method: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    weight = tensors.get("model.classifier.fc.weight")
    if weight is None:
        raise ConfigError(f"decouple.method={method} re-uses the stage-1 linear classifier, but {source.path} has "
                          f"another head; use crt or ncm, or a stage-1 run with model.classifier=linear")
    return weight.float(), tensors.get("model.classifier.fc.bias")


def build_stage2_model(cfg: Config, data: DataBundle, tensors: dict[str, torch.Tensor]) -> OpenLTModel:
    """The stage-2 network: stage-1 weights everywhere but the head, loaded exactly."""
    model = build_model(cfg, data.num_classes, data.in_chans, data.image_size)
    load_stage1_weights(model, model_weights(tensors), cfg.train.init_from, head=False)
    return model


def stage1_features(cfg: Config, device: torch.device, quiet: bool) -> dict[str, dict[str, torch.Tensor]]:
    """The checked decoupling settings' stage-1 training and validation features (from its cache, or extracted
    into it). Under torchrun every process calls this (the extraction is sharded), then rank 0 alone trains.
    Checked here, on every process, before any feature is extracted: the stage-1 run's split files and classes
    are still the ones it was trained on (its split_manifest.json), the method has what it needs (a validation
    split), and an open split with eval.open_threshold=auto has a validation split to calibrate on."""
    method, mode = build_method(cfg), cfg.decouple.features
    if mode not in FEATURE_MODES:
        raise ConfigError(f"unknown decouple.features {mode!r}; known: {', '.join(FEATURE_MODES)}")
    if not cfg.train.init_from:
        raise ConfigError(f"decouple.method={method.name} needs train.init_from=STAGE1_RUN (the representation to keep)")
    if cfg.decouple.keep not in KEEP:
        raise ConfigError(f"unknown decouple.keep {cfg.decouple.keep!r}; known: {', '.join(KEEP)}")
    source = open_run(cfg.train.init_from)
    check_stage1_free(source, cfg.train.init_from)  # (a --resume too: its features come from that run)
    adopted = copy.deepcopy(cfg)
    adopt_representation(adopted, source, lambda line: None)
    check_stage1_split_dir(adopted, source, relocated_data(cfg))  # moved: where the path came from, what to pass
    data = prepare_data(adopted, default_split_dir=source.splits_dir)
    verify_manifest(source, data, "init_from", source=f"train.init_from={cfg.train.init_from}")
    method.check(has_val=data.has("val"))
    check_counts = getattr(method, "check_counts", None)  # a method that needs classes of some band (FSLwF)
    if check_counts is not None:
        check_counts(data.train_counts, ShotBands.from_config(adopted.eval))
    check_open_decision(adopted.eval, data)
    stage2_amp(cfg, source, stage1_config(source, adopted), device)  # an explicit train.amp against the features'
    return load_features(source, ("train", "val"), dtype=cfg.decouple.cache_dtype, device=str(device), quiet=quiet,
                         cfg=stage1_config(source, adopted))


def stage2_amp(cfg: Config, source: Run, source_cfg: Config, device: torch.device) -> str:
    """The precision of a decoupled stage 2 of `source` (`source_cfg`: its config where the stage 2 says its data is
    now): the precision its features are extracted in on `device` (features.extraction_amp: the one the stage-1 run
    trained in), recorded in the stage-2 checkpoints ("amp") so that eval, predict, export, summary and bench see
    it (issue 14 D1). A train.amp of the stage 2 other than auto that means another precision is refused (one line
    naming where it was set), never ignored: the features are the stage-1 run's, extracted once in its precision."""
    amp = extraction_amp(source, source_cfg, device)
    if cfg.train.amp != "auto" and check_amp(cfg.train.amp, device) != amp:
        where = explicit_keys(cfg).get("train.amp", "train.amp")
        raise ConfigError(f"{where}: train.amp={cfg.train.amp}, but a decoupled stage 2 fits on the features of its "
                          f"stage-1 run {source.path}, extracted in {precision_name(amp)} (the precision that run "
                          f"trained in), so it runs in {precision_name(amp)}; drop train.amp (or set auto), or start "
                          f"from a stage-1 run trained in {precision_name(check_amp(cfg.train.amp, device))}")
    return amp


def train_decoupled(cfg: Config, run: Run, quiet: bool, log: Callable[[str], None], device: torch.device,
                    feats: dict[str, dict[str, torch.Tensor]] | None = None) -> Run:
    """Stage 2 on the frozen stage-1 representation (`feats`: `stage1_features(cfg, ...)`, computed when None):
    the registered method (`decouple.method`) fits the head on the features; the run gets the stage-1 body with
    that head (checkpoints best = last), decouple.json and one metrics.jsonl record per epoch (TensorBoard too,
    when installed). Uses no collective: under torchrun rank 0 alone runs it."""
    started = time.time()
    if feats is None:
        feats = stage1_features(cfg, device, quiet)
    method = build_method(cfg)
    source = open_run(cfg.train.init_from)
    adopt_representation(cfg, source, log)
    amp = stage2_amp(cfg, source, stage1_config(source, cfg), device)  # the features' precision, recorded below
    data = prepare_data(cfg, default_split_dir=run.splits_dir)
    _write_run_inputs(run, cfg, data, source)
    stage1 = stage1_record(source, "best")  # what the run is fitted on (check_stage1_unchanged)
    if note := stage1_note(cfg, stage1):  # the report says it too, but only after the fit
        log(f"note: {note}")
    tensors, _ = read_checkpoint(source.checkpoint("best"))
    model = build_stage2_model(cfg, data, tensors)
    inputs = stage2_data(cfg, data, feats, tensors, source, method)
    validate = partial(_val_metrics, feats.get("val"), data.train_counts, inputs.bands)
    remove_file(run.log_file)  # the fit starts at epoch 1 (again, on --resume): no earlier try's records kept
    shutil.rmtree(run.tensorboard_dir, ignore_errors=True)
    epoch_log = EpochLog(run)
    try:
        hooks = Stage2Hooks(device=device, validate=validate, on_epoch=partial(_log_epoch, epoch_log, cfg.train.epochs, log),
                            epoch_features=_augmented_features(cfg, data, tensors, device, quiet, method, amp),
                            log=log)
        log(f"decoupled stage 2: {method.name} on the {tuple(inputs.train_x.shape)} training features of {source.path}")
        fitted = method.fit(inputs, hooks)
        model.classifier.load_state_dict(fitted.state)  # the fitted head into the stage-2 network
        final_val = validate(model.classifier)
        if not method.epochwise:  # nothing trained epoch by epoch: one record for the log
            epoch_log.write({"epoch": 1, **({"val": final_val} if final_val else {})})
    finally:
        epoch_log.close()
    if method.validates_epochs and (note := convergence_note(run.epochs_logged())):  # as train's end of training says
        log(f"note: {note}")
    details = {"method": method.name, "source_run": str(source.path), "features": cfg.decouple.features,
               "cache_dtype": cfg.decouple.cache_dtype, "train_features": list(inputs.train_x.shape), **fitted.details}
    if method.plots_tau_curve:
        _report_tau(details, run, log)
    details["seconds"] = round(time.time() - started, 2)
    write_json(run.decouple_file, details)
    state = {"epoch": details.get("kept_epoch", cfg.train.epochs) - 1 if method.epochwise else 0,
             "val_overall": None if final_val is None else final_val["overall"],
             "config": defining_config(cfg, data.class_names),  # what eval / predict / export find unchanged
             "stage1": stage1,  # the stage-1 checkpoint the head fits (eval refuses another: issue 14)
             "amp": amp,  # the precision of its features (stage2_amp): what eval, predict and export run in
             "recipe": trained_recipe(cfg)}  # what it was fitted with: summary names it by this, not config.yaml
    save_checkpoint(run.checkpoint("best"), model, None, state)
    save_checkpoint(run.checkpoint("last"), model, None, state)
    log(f"stage 2 ({method.name}) done in {details['seconds']:.1f}s")
    return run


def _write_run_inputs(run: Run, cfg: Config, data: DataBundle, source: Run) -> None:
    """The stage 2's split manifest (with the stage-1 run it starts from: check_stage2_source, so that a resume fits
    the same one again; on --resume the run's split files are checked to be the ones it was fitted on instead),
    config.yaml and inference.json."""
    if run.manifest_file.exists():
        verify_manifest(run, data, "resume")
    else:
        best = source.checkpoint("best")
        run.write_manifest({**data.manifest, STAGE1_KEY: {"run": str(source.path.resolve()),
                                                          "sha256": sha256_file(best)}})
    run.write_config(cfg)
    write_inference(run, data)


def _report_tau(details: dict, run: Run, log: Callable[[str], None]) -> None:
    """τ-norm's chosen τ in the log, and its validation curve drawn when there was one."""
    if not details["tau_curve"]:
        log(f"tau = {details['tau']:g} (fixed: decouple.taus has one value and there is no validation split)")
        return
    log(f"tau = {details['tau']:g} (best validation top-1 over {len(details['tau_curve'])} values; "
        f"curve in {run.tau_curve_file})")
    _plot_tau_curve(details["tau_curve"], details["tau"], run, log)


STAGE1_KEY = "stage1_run"  # split_manifest.json of a decoupled stage 2: {"run": path, "sha256": its best checkpoint's}


def check_stage2_source(run: Run, cfg: Config) -> None:
    """Before `--resume` fits a decoupled stage 2 again (no decouple.json yet): its config.yaml's train.init_from
    (`cfg`) must be a folder (RunDirError, one line: the key, RUN/config.yaml and what to do when the stage-1 run
    moved), and the same stage-1 run it was started from, judged by the sha256 of the best checkpoint its
    split_manifest.json records at creation (ConfigError naming both runs: train.init_from edited since). A run
    of an older openlt records none: only the folder is checked."""
    value = cfg.train.init_from
    folder = Path(value).expanduser() if value else None
    recorded = read_run_manifest(run).get(STAGE1_KEY) if run.manifest_file.is_file() else None
    was = f" (it was started from {recorded['run']})" if isinstance(recorded, dict) else ""
    if folder is None or not folder.is_dir():
        raise RunDirError(f"{run.config_file}: train.init_from {value} is not a folder{was}; `openlt train --resume` "
                          f"fits this stage 2 on that stage-1 run: if it moved, set train.init_from in "
                          f"{run.config_file} to its new folder (--resume takes no overrides; its best checkpoint is "
                          f"checked by sha256 against the one this run started from), then `openlt train --resume "
                          f"{run.path}` again")
    if not isinstance(recorded, dict) or not isinstance(recorded.get("sha256"), str):
        return
    best = Run(folder).checkpoint("best")
    now = sha256_file(best) if best.is_file() else None
    if now != recorded["sha256"]:
        found = f"sha256 {now[:12]}" if now else "no best checkpoint"
        raise ConfigError(f"{run.config_file}: train.init_from {value} is not the stage-1 run this stage 2 was "
                          f"started from ({recorded['run']}, best checkpoint sha256 {recorded['sha256'][:12]}; "
                          f"{value} has {found}): --resume fits the same stage-1 run again; set train.init_from in "
                          f"{run.config_file} back to that run (or its new folder), or start a new stage 2 with "
                          f"`openlt train` and train.init_from={value}")


def stage2_data(cfg: Config, data: DataBundle, feats: dict[str, dict[str, torch.Tensor]],
                tensors: dict[str, torch.Tensor], source: Run, method: Stage2Method) -> Stage2Data:
    """What `method` fits on: the cached features, the run's class counts and bands, and the stage-1 linear
    classifier when the method re-uses it (ConfigError when the stage-1 run has another head)."""
    weight = bias = None
    if method.reuses_stage1_head:
        weight, bias = _source_linear(tensors, source, method.name)
    val = feats.get("val")
    return Stage2Data(train_x=feats["train"]["features"], train_y=feats["train"]["labels"],
                      num_classes=data.num_classes, train_counts=data.train_counts, bands=ShotBands.from_config(cfg.eval),
                      val_x=None if val is None else val["features"], val_y=None if val is None else val["labels"],
                      weight=weight, bias=bias)


def _val_metrics(val: dict[str, torch.Tensor] | None, train_counts: list[int], bands, head: nn.Module) -> dict | None:
    """The closed-set validation metrics of a head on the cached validation features (None without them)."""
    if val is None:
        return None
    with torch.no_grad():  # float16 cached features computed on in float32 (the head's dtype)
        logits = head(val["features"].to(_device_of(head), torch.float32)).float().cpu()
    return closed_metrics({"logits": logits, "labels": val["labels"]}, train_counts, bands)


def _log_epoch(epoch_log: EpochLog, epochs: int, log: Callable[[str], None], epoch: int, loss: float, lr: float,
               acc: dict | None) -> None:
    """One trained epoch: a metrics.jsonl record (and TensorBoard scalars) and a progress line."""
    record = {"epoch": epoch + 1, "train_loss": loss, "lr": lr}
    if acc is not None:
        record["val"] = acc
    epoch_log.write(record)
    log(f"epoch {epoch + 1:3d}/{epochs}  loss {loss:.3f}" +
        ("" if acc is None else "  val " + " ".join(f"{b} {_pct(acc[b])}" for b in ("many", "medium", "few", "overall"))))


def _augmented_features(cfg: Config, data: DataBundle, tensors: dict[str, torch.Tensor], device: torch.device,
                        quiet: bool, method: Stage2Method, amp: str = "none") -> Callable[[int], torch.Tensor] | None:
    """decouple.features=augmented, for a method trained epoch by epoch: every epoch's (N, D) float32 training
    features re-extracted through the frozen stage-1 network with the training augmentation, as the paper
    does, in `amp` (the cached features' precision: :func:`stage2_amp`); None otherwise (the cached features
    serve every epoch)."""
    if cfg.decouple.features != "augmented" or not method.epochwise:
        return None
    aug_model = to_device(build_stage2_model(cfg, data, tensors), device, cfg.train.channels_last)
    loader = make_loader(data.dataset("train", train=True), cfg.eval.batch_size, cfg.data.workers, device)
    return partial(_augmented_epoch, aug_model, loader, cfg, device, quiet, amp)


def _augmented_epoch(model: OpenLTModel, loader, cfg: Config, device: torch.device, quiet: bool, amp: str,
                     epoch: int) -> torch.Tensor:
    torch.manual_seed(cfg.seed * 1_000_003 + epoch)  # augmentation draws depend on (seed, epoch)
    return extract_features(model, loader, device, f"augmented features {epoch + 1}", quiet,
                            cfg.train.channels_last, amp)[0]


def _device_of(module: nn.Module) -> torch.device:
    """Where a head's parameters (or, for NCM, its buffers) live."""
    for tensor in (*module.parameters(), *module.buffers()):
        return tensor.device
    return torch.device("cpu")


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def _plot_tau_curve(curve: list[dict], tau: float, run: Run, log: Callable[[str], None]) -> None:
    """Validation top-1 per band against tau (the paper's Fig. 3-style trade-off), saved as tau_curve.png through
    the report figures' own writer (``figures.save_png``: the same renderer and warning filter, atomic)."""
    try:
        from openlt.reporting.figures import save_png, tau_curve
    except ImportError:
        log("note: matplotlib is not installed; the tau curve is in decouple.json only")
        return
    save_png(tau_curve(curve, tau), run.tau_curve_file, dpi=120)
