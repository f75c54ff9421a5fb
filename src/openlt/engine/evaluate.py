"""Evaluation of a run: closed-set top-1 overall and per shot band, open-set F-measure / AUROC / FPR95, and the
band accuracies with rejection (the OLTR paper's "open-set setting" columns).

:func:`evaluate_run` collects the model's outputs on val / test / open (from the feature cache for a decoupled
run), fits the open-set score where it learns from training outputs (OpenMax), takes the open-set decision
(:class:`~openlt.openset.Rejector`), and writes metrics.json, calibration.json, predictions.npz, confusion.npz and
the reports; :func:`compute_metrics` is the arithmetic alone, on outputs already collected.

Nothing here grows with K² or keeps every split's logits: each split's outputs are reduced to per-image arrays
(prediction, open-set score, top-5 classes and probabilities: :func:`split_record`) as soon as they are
collected, metrics.json holds per-class and per-band numbers and the top confusions, and the confusion matrix
is saved sparse in its own file."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
from collections.abc import Iterator

import numpy as np
import torch

from openlt.config import Config, build_config, explicit_keys, to_dict
from openlt.data.build import DataBundle, prepare_data
from openlt.engine import distributed
from openlt.engine.precision import check_amp, check_amp_override, inference_amp, precision_name
from openlt.engine.features import DTYPES, extract_features, head_outputs_on_cache, stage1_amp, stage1_cache
from openlt.engine.inference import checkpoint_identity, write_inference
from openlt.engine.override_scope import check_eval_overrides
from openlt.engine.checkpoint import load_checkpoint, recorded_amp, user_epoch
from openlt.engine.manifest import check_open_decision, verify_manifest
from openlt.engine.precheck import check_open_score_on_model
from openlt.engine.run import Run, check_tag
from openlt.engine.score_fit import fit_open_score
from openlt.engine.stage1_record import run_convergence, stage1_convergence
from openlt.engine.override_scope import check_data_folders
from openlt.engine.runtime import (batch_score_for, collect_outputs, command_device,
                                   heads_on_stage1_features, inference_loader, kept_for, score_fit_args, to_device,
                                   trained_config)
from openlt.errors import ConfigError, OpenLTError
from openlt.io import remove_file, remove_stale_temp, write_group, write_json
from openlt.metrics import (ShotBands, auroc_per_band, band_confusion, ece_by_band, open_set_f_measure,
                            open_set_metrics, per_class_accuracy, shot_accuracy, sparse_confusion, top_confusions)
from openlt.models.model import OpenLTModel, build_model
from openlt.openset import (NotFittedError, OpenSetScore, Rejector, build_score, check_rejection_config,
                            parse_threshold, save_score)
from openlt.openset.base import open_score_warning

TOP_CONFUSIONS = 50  # (true, predicted) pairs listed in metrics.json; the whole matrix is confusion.npz
from openlt.reporting import is_record, sample_table, save_confusion, save_samples, summarize_outputs
from openlt.reporting.run_report import samples_origin, write_reports


def predictions(outputs: dict[str, torch.Tensor]) -> np.ndarray:
    """(N,) int64 numpy array of closed-set predictions: the argmax of ``outputs["logits"]`` (N, K)."""
    return outputs["logits"].argmax(dim=1).numpy()


def _clean(value):
    """JSON-safe floats: NaN becomes None."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return None if math.isnan(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def closed_metrics(outputs: dict[str, torch.Tensor], train_counts: list[int], bands: ShotBands) -> dict:
    """:func:`openlt.metrics.shot_accuracy` of outputs ``"logits"`` (N, K) and ``"labels"`` (N,) int64, JSON-safe:
    ``"overall"`` the sample top-1 and ``"many"`` / ``"medium"`` / ``"few"`` the mean per-class top-1 of the band,
    fractions in [0, 1] (None without a tested class), plus the band sizes; bands from the K ``train_counts``.
    """
    return _clean(shot_accuracy(predictions(outputs), labels=outputs["labels"].numpy(), train_counts=train_counts,
                                bands=bands))


def unfitted_score(cfg: Config) -> OpenSetScore:
    """`eval.open_score` built from the config; one that must learn from training outputs (OpenMax) is refused
    here, since only `evaluate_run` collects those."""
    scorer = build_score(cfg.eval.open_score, cfg.eval)
    if scorer.requires_fit:
        raise NotFittedError(f"eval.open_score={cfg.eval.open_score} is fitted on the training split: evaluate the "
                             f"run with `openlt eval RUN eval.open_score={cfg.eval.open_score}` first")
    return scorer


def choose_rejector(cfg: Config, val: dict[str, torch.Tensor] | None, scorer: OpenSetScore | None = None) -> Rejector:
    """The open-set decision `eval.open_threshold` asks for: a fixed number, or (auto) the threshold that keeps
    `eval.keep_known` of the known validation images, scored by `scorer` (default: `eval.open_score` built
    from the config). `val`: the validation outputs ("logits" (N, K) float, ...) or None. Never chosen with
    open or test data. Raises ConfigError for a bad setting or 'auto' without a validation split."""
    return Rejector.from_config(cfg.eval, scorer or unfitted_score(cfg), val)


def run_decision(cfg: Config, outputs: dict[str, dict], scorer: OpenSetScore) -> Rejector | None:
    """The evaluation's open-set decision (:func:`choose_rejector` on ``outputs["val"]``: a model's outputs or the
    record of :func:`split_record`, whose scores are used as they are), or None for a closed-set evaluation (no
    open split) under `eval.open_threshold=auto`, with or without validation images: nothing is rejected unless
    the user asks for a threshold (a number). ConfigError for 'auto' with an open split and no validation split
    (refused before training by `check_open_decision`)."""
    if "open" not in outputs and parse_threshold(cfg.eval.open_threshold) is None:
        return None
    val = outputs.get("val")
    if val is None or not is_record(val):
        return choose_rejector(cfg, val, scorer)
    check_rejection_config(cfg.eval)  # as Rejector.from_config, on the scores already computed
    threshold = parse_threshold(cfg.eval.open_threshold)
    if threshold is not None:
        return Rejector.fixed(cfg.eval.open_score, threshold)
    return Rejector.calibrate(cfg.eval.open_score, val["score"], cfg.eval.keep_known)


def split_record(outputs: dict[str, torch.Tensor], scorer: OpenSetScore, keep_logits: bool = False) -> dict[str, np.ndarray]:
    """One split's outputs ("logits" (N, K), "labels" (N,), ...) reduced to per-image numpy arrays: ``preds``,
    ``score`` (`scorer`, fitted where it must be), ``max_prob``, ``top_classes`` / ``top_probs`` (top 5),
    ``labels`` and, with `keep_logits`, ``logits`` (:func:`openlt.reporting.summarize_outputs`). A record is
    returned as it is."""
    if is_record(outputs):
        return outputs
    return summarize_outputs(outputs, scorer.score(outputs), keep_logits=keep_logits)


def _open_metrics(rejector: Rejector, known: tuple[np.ndarray, np.ndarray, np.ndarray],
                  unknown: tuple[np.ndarray, np.ndarray], train_counts: list[int], bands: ShotBands) -> dict:
    """metrics["open"]: `known` = (predictions, open scores, labels) of the test images, `unknown` =
    (predictions, open scores) of the open images, each (N,); the rejector turns predictions into -1s."""
    pred, open_score, y = known
    open_pred, open_score_unknown = unknown
    all_pred = rejector.decide(np.concatenate([pred, open_pred]), np.concatenate([open_score, open_score_unknown]))
    all_labels = np.concatenate([y, -np.ones(len(open_pred), dtype=y.dtype)])
    known_pred = all_pred[: len(y)]
    return {
        "threshold": rejector.threshold,
        **open_set_f_measure(all_pred, labels=all_labels),
        **open_set_metrics(open_score, open_score_unknown),
        "auroc_per_band": auroc_per_band(open_score, y, open_score_unknown, bands.bands_of(train_counts)),
        "bands_with_rejection": shot_accuracy(known_pred, labels=y, train_counts=train_counts, bands=bands),
        "open_rejected": float(np.mean(all_pred[len(y):] == -1)),
        "known_rejected": float(np.mean(known_pred == -1)),
        "n_open": int(len(open_pred)),
    }


def confusion_summary(records: dict[str, dict[str, np.ndarray]], rejector: Rejector | None, band_of_class: list[str],
                      top: int = TOP_CONFUSIONS) -> dict:
    """metrics["confusion"], linear in the classes: the `top` most frequent (true, predicted) pairs of the test
    images (closed-set predictions) and the shot band x shot band counts of the decisions on the test and open
    images (after rejection when there is a `rejector`; rows many / medium / few / open, columns many / medium /
    few / rejected: :func:`openlt.metrics.band_confusion`). `records`: split -> :func:`split_record`."""
    test = records["test"]
    pred, y = test["preds"], test["labels"]
    if "open" in records:
        pred = np.concatenate([pred, records["open"]["preds"]])
        y = np.concatenate([y, -np.ones(len(records["open"]["preds"]), dtype=np.int64)])
    score = np.concatenate([records[s]["score"] for s in ("test", "open") if s in records])
    decided = pred if rejector is None else rejector.decide(pred, score)
    return {"top": top_confusions(test["preds"], labels=test["labels"], num_classes=len(band_of_class), n=top),
            "by_band": {**band_confusion(decided, labels=y, band_of_class=band_of_class),
                        "decisions": "closed-set predictions" if rejector is None else "after rejection"}}


def compute_metrics(cfg: Config, outputs: dict[str, dict], train_counts: list[int], class_names: list[str],
                    scorer: OpenSetScore | None = None, rejector: Rejector | None = None) -> dict:
    """All reported numbers from the outputs of val / test / open: a model's outputs ("logits" (N, K) float,
    "labels" (N,) int64, ...) or their records (:func:`split_record`, what `evaluate_run` passes); `scorer` is
    `eval.open_score`, already fitted where it needs to be (default: built from the config), and `rejector` the
    open-set decision on it (default: :func:`run_decision`; "calibration" is left out when there is none).
    Per-class lists and the confusion summary are O(K); no K x K matrix is built."""
    bands = ShotBands.from_config(cfg.eval)
    scorer = scorer or unfitted_score(cfg)
    records = {split: split_record(out, scorer) for split, out in outputs.items() if split in ("val", "test", "open")}
    test = records["test"]
    open_score, pred, y = test["score"], test["preds"], test["labels"]
    k = len(class_names)
    if rejector is None:
        rejector = run_decision(cfg, records, scorer)
    band_of_class = bands.bands_of(train_counts)
    metrics: dict = {
        "bands": {"rule": bands.describe(), "per_class": band_of_class, "many_above": bands.many_above,
                  "few_below": bands.few_below, "inclusive": bands.inclusive},
        "class_names": class_names,
        "train_counts": train_counts,
        "closed": shot_accuracy(pred, labels=y, train_counts=train_counts, bands=bands),
        "per_class_accuracy": per_class_accuracy(pred, labels=y, num_classes=k).tolist(),
        "confusion": confusion_summary(records, rejector, band_of_class),
        # none for a closed-set run without validation images: nothing to reject
        **({} if rejector is None else {"calibration": rejector.to_dict()}),
        "open_score": scorer.summary(),
        "ece": ece_by_band(test["max_prob"], pred == y, y, band_of_class),  # ECE is on the softmax
    }
    if "val" in records:
        metrics["val"] = shot_accuracy(records["val"]["preds"], labels=records["val"]["labels"],
                                       train_counts=train_counts, bands=bands)
    if "open" in records:
        unknown = (records["open"]["preds"], records["open"]["score"])
        metrics["open"] = _open_metrics(rejector, (pred, open_score, y), unknown, train_counts, bands)
        warning = open_score_warning(scorer, open_score, unknown[1])  # no spread: the AUROC is float rounding
        if warning:
            metrics["open"]["warning"] = warning
    return _clean(metrics)


def eval_setup(run: Run, overrides: list[str] | None = None, checkpoint: str = "best") -> tuple[Config, OpenSetScore]:
    """The run's saved config with `overrides` ("key=value" strings, e.g. "eval.open_score=energy") applied, and
    its (unfitted) `eval.open_score`. Checked before anything is loaded: a config.yaml edited since training in a
    key that defines the network (runtime :func:`trained_config`), a bad key or value, an unknown score or score
    option, an `eval.open_threshold` neither 'auto' nor a finite number are ConfigErrors; a data folder that is not
    there (the run's data moved) a DataError naming config.yaml's key and the override (runtime
    :func:`check_data_folders`)."""
    cfg, scorer = eval_config(trained_config(run, checkpoint, "eval"), overrides)
    check_data_folders(run, cfg, {item.split("=", 1)[0].strip() for item in overrides or []}, "eval")
    return cfg, scorer


def eval_config(cfg: Config, overrides: list[str] | None = None) -> tuple[Config, OpenSetScore]:
    """A run's config `cfg` with evaluation `overrides` ("key=value" strings) applied, and its (unfitted)
    `eval.open_score`: what `openlt eval` and a bench's `eval_of` method check before any work. ConfigError for a
    key evaluation does not use (:func:`check_eval_overrides`), a bad key or value, an unknown score or score
    option, a bad `eval.open_threshold` / `eval.keep_known`."""
    if overrides:
        check_eval_overrides(overrides)
        cfg = build_config(base=to_dict(cfg), overrides=overrides)
    scorer = build_score(cfg.eval.open_score, cfg.eval)
    check_rejection_config(cfg.eval)
    return cfg, scorer


def evaluate_run(run: Run, checkpoint: str = "best", overrides: list[str] | None = None,
                 quiet: bool = False, device: str | None = None, tag: str | None = None, write: bool = True) -> dict:
    """Evaluate a run's checkpoint on val / test / open; write metrics.json, calibration.json, the per-sample
    predictions.npz, the sparse confusion.npz and report.md / report.html, and return the metrics dict. A score
    that learns from training data (OpenMax) is first fitted on the train split's outputs (eval transform) and
    saved as open-score.safetensors. A threshold chosen on validation and a fitted score record the checkpoint
    (name and sha256, ``fitted_on``) they belong to: predict and export use them only with those weights.

    One split's outputs are held at a time: each is reduced to its per-image record (:func:`split_record`) before
    the next is computed (every logit is kept only with `eval.save_logits`).
    `overrides`: "key=value" strings of evaluation settings (:func:`check_eval_overrides`) applied to the run's
    config for this evaluation only; they are checked (`eval_setup`) before the model is loaded, and 'auto'
    without a validation split before any inference.
    With a `tag` (e.g. another open-set score), the results go to metrics-TAG.json, predictions-TAG.npz,
    confusion-TAG.npz, report-TAG.md / .html (open-score-TAG.safetensors) and the run's own metrics and
    calibration stay as they were. With `write` False nothing is written: the metrics are only returned."""
    check_tag(tag)  # the one rule of the CLI, the API and the bench, before any work
    if distributed.joins_group():  # torchrun: every process joins the group first, then rank 0 alone takes the lock
        cfg, scorer = eval_setup(run, overrides, checkpoint)
        dev = _device(cfg, device)
        with _evaluating(run, write, checkpoint, tag):
            return _evaluate(run, checkpoint, quiet, tag, write, cfg, scorer, dev)
    with _evaluating(run, write, checkpoint, tag):  # one process: the lock before anything of the run is read
        cfg, scorer = eval_setup(run, overrides, checkpoint)
        return _evaluate(run, checkpoint, quiet, tag, write, cfg, scorer, _device(cfg, device))


def _device(cfg: Config, device: str | None) -> torch.device:
    """The evaluation's device (`device`, else train.device), the process group joined under torchrun."""
    return distributed.setup(command_device(device, cfg.train.device))


@contextlib.contextmanager
def _evaluating(run: Run, write: bool, checkpoint: str = "best", tag: str | None = None) -> Iterator[None]:
    """Rank 0 holds the run's lock (``Run.eval_lock``: refused while another process trains or evaluates it;
    a `train --resume` started meanwhile is refused) and a handle on its directory (``Run.watched``) for the
    whole evaluation. Under torchrun only rank 0 takes them, once the group is joined (train's rank 0 may still
    hold train.lock while the other ranks start to evaluate), and the others follow its decision: a refusal is
    the same one line on every rank (`distributed.held_by_main`). An evaluation that writes nothing (`write`
    False) only checks that no other process trains the run: it creates no train.lock (the run may be
    read-only). With the lock held, the temporary files that killed writers left in the run directory are
    removed (only those whose process is dead: :func:`openlt.io.stale_temporaries`). A run moved or deleted
    meanwhile stops the evaluation with one line (RunMovedError, :func:`_moved_check`), also when the move shows as
    another error first (a checkpoint or split file not found at the old path)."""
    if not write:
        with distributed.held_by_main(lambda: _not_training(run)):
            yield
        return
    with distributed.held_by_main(lambda: _locked_and_watched(run, checkpoint, tag)):
        yield


@contextlib.contextmanager
def _not_training(run: Run) -> Iterator[None]:
    run.check_not_training("evaluate")
    yield


@contextlib.contextmanager
def _locked_and_watched(run: Run, checkpoint: str = "best", tag: str | None = None) -> Iterator[None]:
    with run.eval_lock(), run.watched():
        remove_stale_temp(run.path, dead_only=True)  # a SIGKILLed evaluation's .metrics.json.PID-HOST.XXXX.tmp, ...
        try:
            yield
        except (OpenLTError, OSError):  # "checkpoint not found", a failed write: the run moved while it was used?
            _moved_check(run, checkpoint, tag)
            raise


def again_command(where, checkpoint: str = "best", tag: str | None = None) -> str:
    """The `openlt eval` command line that evaluates the run at `where` as this evaluation was asked to."""
    return (f"openlt eval {where}" + (f" --checkpoint {checkpoint}" if checkpoint != "best" else "")
            + (f" --tag {tag}" if tag is not None else ""))


def _moved_check(run: Run, checkpoint: str, tag: str | None) -> None:
    """RunMovedError when the run directory was moved or deleted during this evaluation (``Run.check_in_place``),
    naming the `openlt eval` command that evaluates it where it is now."""
    run.check_in_place("the evaluation's results", plural=True,
                       again=lambda where: again_command(where, checkpoint, tag))


def _evaluate(run: Run, checkpoint: str, quiet: bool, tag: str | None, write: bool, cfg: Config,
              scorer: OpenSetScore, dev: torch.device) -> dict:
    check_amp_override(cfg, dev)  # train.amp=fp16 on a CPU: refused as `openlt train` does
    data = prepare_data(cfg, default_split_dir=run.splits_dir)
    verify_manifest(run, data, "eval")  # the split files and classes the run was trained on, before any work
    check_open_decision(cfg.eval, data)
    model, state = _load_model(run, checkpoint, dev, cfg, data)
    using = checkpoint_identity(run, checkpoint)  # the weights the fitted score and a chosen threshold belong to
    check_open_score_on_model(scorer, model, data)  # head, feature width, classes, training images: before any image
    fit_args = score_fit_args(scorer, model)  # ViM / ReAct: the linear head (refused for another, before any work)
    amp = evaluation_amp(run, cfg, dev, state)  # the precision the run trained in (precision.py)
    using = {**using, "amp": amp}  # what a chosen threshold and a fitted score were computed with (predict: D6)
    outputs_of = _split_outputs(cfg, model, data, dev, quiet, scorer, amp)
    if scorer.requires_fit:
        # the training outputs are let go once the score is fitted; OpenMax never holds the N x K logits
        fit_open_score(scorer, outputs_of, model, dev, amp, fit_args)
    records = {split: split_record(outputs_of(split), scorer, cfg.eval.save_logits)
               for split in ("val", "test", "open") if split == "test" or data.has(split)}
    rejector = run_decision(cfg, records, scorer)
    if rejector is not None and rejector.calibrated:  # chosen on these weights' validation scores
        rejector = dataclasses.replace(rejector, fitted_on=using)
    metrics = compute_metrics(cfg, records, data.train_counts, data.class_names, scorer, rejector)
    metrics["confusion"]["file"] = run.confusion_path(tag).name
    metrics = {"run": str(run.path.resolve()), "checkpoint": checkpoint, "checkpoint_sha256": using["sha256"],
               "amp": amp, **checkpoint_epoch_fields(state), **metrics, "split_files": {split: data.manifest["files"][split]["sha256"] for split in data.entries},
               "data": evaluated_data(cfg, data.split_dir),
               **run_context(run, cfg, data, dev, state.get("stage1"))}
    if distributed.is_main() and write:
        _moved_check(run, checkpoint, tag)  # moved or deleted meanwhile: nothing written, none recreated
        with write_group():  # all of them or none: an interrupted write phase leaves the previous evaluation's
            if scorer.requires_fit:
                save_score(run.open_score_path(tag), scorer, fitted_on=using)
            _write_results(run, tag, cfg, data, metrics, records, rejector)
    distributed.barrier()
    return metrics


def evaluation_amp(run: Run, cfg: Config, dev: torch.device, state: dict) -> str:
    """The precision an evaluation runs in (metrics.json "amp", calibration.json's fitted_on "amp"): the run's
    (precision.inference_amp: the one it trained in, where `dev` has it), or a `train.amp=` override. A decoupled
    stage 2 runs in the precision of the stage-1 features it reads (features.stage1_amp; its checkpoint's "amp"
    when that run is gone): an override that means another is refused, one line, not ignored (issue 14 D1).
    The override is read from `cfg` (`config.explicit_keys`: the run's config with the overrides applied)."""
    recorded = recorded_amp(state)
    amp = inference_amp(cfg.train.amp, dev, recorded)
    if cfg.decouple.method == "none":
        return amp
    cached = stage1_amp(cfg, dev)
    own = cached if cached is not None else inference_amp("auto", dev, recorded)
    given = explicit_keys(cfg).get("train.amp")  # "override 'train.amp=...'"
    if given and cfg.train.amp != "auto" and check_amp(cfg.train.amp, dev) != own:
        name = precision_name(own)
        source = (f"the features of its stage-1 run {cfg.train.init_from}, extracted in {name}" if cached is not None
                  else f"features extracted in {name} (its checkpoint records it)")
        raise ConfigError(f"{given}: {run.path} is a decoupled stage 2 whose classifier was fitted on "
                          f"{source}, and its evaluation reads them, so it evaluates in {name}; drop train.amp")
    return own


EPOCH_BASE = 1  # metrics.json "epoch" counts from 1 (as the log and the reports); an older file's from 0


def evaluated_data(cfg: Config, split_dir) -> dict:
    """metrics.json's ``"data"``: where an evaluation read its images and split files, as absolute paths (None for a
    setting left unset): ``"root"`` (data.root: the image folder, or where CIFAR / Fashion-MNIST files were read),
    ``"open_root"`` (data.open_root) and ``"split_dir"`` (the folder of the split files whose sha256 ``"split_files"``
    records). `openlt bench` compares it with the data it would evaluate a reused run on
    (``bench.source_differences``): an `openlt eval RUN data.root=ELSEWHERE` is not shown under the spec's method."""
    def absolute(path) -> str | None:
        return None if path is None else os.path.abspath(os.path.expanduser(str(path)))

    return {"root": absolute(cfg.data.root), "open_root": absolute(cfg.data.open_root), "split_dir": absolute(split_dir)}


def checkpoint_epoch_fields(state: dict) -> dict:
    """metrics.json's ``"epoch"`` of the evaluated checkpoint, 1-based as every epoch the user sees (the
    checkpoint's own counter counts from 0), and ``"epoch_base": 1`` that tells it from an older file's 0-based
    one (:func:`openlt.reporting.describe.user_epoch` reads both)."""
    return {"epoch": user_epoch(state), "epoch_base": EPOCH_BASE}


def _write_results(run: Run, tag: str | None, cfg: Config, data: DataBundle, metrics: dict, records: dict,
                   rejector: Rejector | None) -> None:
    """The files of an evaluation (see :func:`evaluate_run`); calibration.json only for the run's own (untagged),
    removed when this evaluation takes no open-set decision (an older one's would be stale).
    Called inside one :func:`openlt.io.write_group`: they are renamed into place together."""
    if tag is None and rejector is not None:
        rejector.save(run.calibration_file)
    elif tag is None:  # a closed-set evaluation: an older evaluation's decision would be stale (predict ignores it)
        remove_file(run.calibration_file)
    if not run.inference_file.is_file():  # a run of an older openlt: described now, predict needs no data
        write_inference(run, data)
    write_json(run.metrics_path(tag), metrics)
    save_confusion(run.confusion_path(tag), sparse_confusion(records["test"]["preds"], labels=records["test"]["labels"],
                                                             num_classes=data.num_classes))
    samples = sample_table(records)
    save_samples(run.predictions_path(tag), {**samples, **samples_origin(metrics)})  # its score and checkpoint
    write_reports(run, metrics, samples, tag, ShotBands.from_config(cfg.eval))


def run_context(run: Run, cfg: Config, data: DataBundle, device: torch.device, stage1: dict | None = None) -> dict:
    """What a reader of metrics.json and the report asks beside the numbers: ``"open_class_names"`` (the held-out
    classes of the open split, when the split folder's manifest names them), ``"convergence"`` (the under-training
    check of the epoch log, against cfg's train.epochs and the epochs trained: :func:`run_convergence`; with
    "stage1" when the stage-1 run it starts from carries the warning: :func:`stage1_convergence` of `stage1`, what
    the evaluated checkpoint records of that run) and
    ``"environment"`` (library versions and the evaluation's device). The training time is the epoch log's
    (metrics.jsonl ``time_s``): not copied here, so that metrics.json stays the same for the same results."""
    context: dict = {}
    names = data.manifest.get("open_class_names")
    if data.has("open") and isinstance(names, list) and names and all(isinstance(n, str) for n in names):
        context["open_class_names"] = list(names)
    context["convergence"] = run_convergence(run, cfg)
    stage1 = stage1_convergence(cfg, stage1)  # a head on an unfinished stage-1 body is as unfinished a comparison
    if stage1 is not None:
        context["convergence"]["stage1"] = stage1
    context["environment"] = {"versions": library_versions(), "device": device_name(device)}
    return context


def library_versions() -> dict[str, str]:
    """The installed versions of openlt, torch, torchvision and numpy ("?" for one not installed as a package,
    e.g. openlt run from a source tree)."""
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for name in ("openlt", "torch", "torchvision", "numpy"):
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "?"
    versions["torch"] = torch.__version__  # with its build tag (+cu128, +cpu)
    return versions


def device_name(device: torch.device) -> str:
    """The device in words: ``cuda:0 (NVIDIA H200)``, ``cpu (2 threads)``, ``mps``."""
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    if device.type == "cpu":
        threads = torch.get_num_threads()
        return f"cpu ({threads} thread{'s' if threads != 1 else ''})"
    return str(device)


def _split_outputs(cfg: Config, model: OpenLTModel, data: DataBundle, dev: torch.device, quiet: bool,
                   scorer: OpenSetScore, amp: str):
    """A function (split, kept=None) -> that split's outputs (`kept`, default "logits", "labels", ...; "feature" when `scorer` needs_features,
    "model_score" of val / test / open when it needs_model): from the stage-1 run's feature cache for a decoupled
    run (while that run exists; not for ODIN, which needs the images), read once for every split and each split's
    features let go once its outputs are computed; else through the network (sharded under torchrun), in `amp`."""
    keep, batch_score = kept_for(scorer), batch_score_for(scorer, data)
    splits = [s for s in ("train",) * scorer.requires_fit + ("val", "test", "open") if s == "test" or data.has(s)]
    cache: dict = {"use": heads_on_stage1_features(cfg, scorer)}

    def outputs_of(split: str, kept: tuple[str, ...] | None = None) -> dict[str, torch.Tensor]:
        if cache["use"] and "features" not in cache:
            cache["features"] = stage1_cache(cfg, splits, dev, quiet)
        if cache["use"] and cache["features"] is not None and split in cache["features"]:
            cached = cache["features"].pop(split)
            if kept == ("feature",):  # the cached features themselves, not a copy (score_fit)
                return {"feature": cached["features"], "labels": cached["labels"]}
            return head_outputs_on_cache(model, cached, dev, kept or keep)
        loader = inference_loader(data.dataset(split), cfg.eval.batch_size, cfg.data.workers, dev, data.image_size,
                                  cfg.data.pin_memory)
        if cache["use"]:  # the stage-1 run is gone: its features through this run's body, as its cache holds them
            feats, labels = extract_features(model, loader, dev, f"features {split}", quiet, cfg.train.channels_last,
                                             amp)
            features = {"features": feats.to(DTYPES[cfg.decouple.cache_dtype]), "labels": labels}
            if kept == ("feature",):
                return {"feature": features["features"], "labels": labels}
            return head_outputs_on_cache(model, features, dev, kept or keep)
        return collect_outputs(model, loader, dev, split, quiet, cfg.train.channels_last, amp, kept or keep,
                               None if split == "train" else batch_score)

    return outputs_of


def _load_model(run: Run, checkpoint: str, device: torch.device, cfg: Config, data: DataBundle) -> tuple[OpenLTModel, dict]:
    """The run's network for `data` (already checked against the run's manifest) with `checkpoint` loaded, on
    `device`; returns (model, the checkpoint's state). RunDirError for a missing, corrupt or foreign checkpoint."""
    model = build_model(cfg, data.num_classes, data.in_chans, data.image_size)
    state = load_checkpoint(run.checkpoint(checkpoint), model)
    return to_device(model, device, cfg.train.channels_last), state
