"""Evaluation of a run: closed-set top-1 overall and per shot band, open-set F-measure / AUROC / FPR95, and the
band accuracies with rejection (the OLTR paper's "open-set setting" columns).

:func:`evaluate_run` collects the model's outputs on val / test / open (from the feature cache for a decoupled
run), fits the open-set score where it learns from training outputs (OpenMax), takes the open-set decision
(:class:`~openlt.openset.Rejector`), and writes metrics.json, calibration.json, predictions.npz and the
reports; :func:`compute_metrics` is the arithmetic alone, on outputs already collected."""

from __future__ import annotations

import math

import numpy as np
import torch

from openlt.config import Config, build_config, to_dict
from openlt.data.build import DataBundle, prepare_data
from openlt.engine import distributed
from openlt.engine.precision import inference_amp
from openlt.engine.features import cached_head_outputs
from openlt.engine.inference import write_inference
from openlt.engine.checkpoint import load_checkpoint
from openlt.engine.manifest import check_open_decision, verify_manifest
from openlt.engine.run import Run
from openlt.engine.runtime import collect_outputs, make_loader, resolve_device, to_device
from openlt.io import write_json
from openlt.metrics import (ShotBands, confusion, ece_by_band, open_set_f_measure, open_set_metrics,
                            per_class_accuracy, shot_accuracy)
from openlt.models.model import OpenLTModel, build_model
from openlt.openset import (NotFittedError, OpenSetScore, Rejector, build_score, check_rejection_config, load_score,
                            parse_threshold, save_score)
from openlt.reporting import sample_table, save_samples
from openlt.reporting.run_report import write_reports


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
    return _clean(shot_accuracy(predictions(outputs), outputs["labels"].numpy(), train_counts, bands))


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


def run_decision(cfg: Config, outputs: dict[str, dict[str, torch.Tensor]], scorer: OpenSetScore) -> Rejector | None:
    """The evaluation's open-set decision (:func:`choose_rejector` on ``outputs["val"]``), or None for a
    closed-set evaluation (no open split) without validation images under `eval.open_threshold=auto`: nothing
    is rejected there, so no threshold is needed (an iNaturalist run). ConfigError for 'auto' with an open split
    and no validation split (refused before training by `check_open_decision`)."""
    if "open" not in outputs and "val" not in outputs and parse_threshold(cfg.eval.open_threshold) is None:
        return None
    return choose_rejector(cfg, outputs.get("val"), scorer)


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
        **open_set_f_measure(all_pred, all_labels),
        **open_set_metrics(open_score, open_score_unknown),
        "bands_with_rejection": shot_accuracy(known_pred, y, train_counts, bands),
        "open_rejected": float(np.mean(all_pred[len(y):] == -1)),
        "known_rejected": float(np.mean(known_pred == -1)),
        "n_open": int(len(open_pred)),
    }


def compute_metrics(cfg: Config, outputs: dict[str, dict[str, torch.Tensor]], train_counts: list[int],
                    class_names: list[str], scorer: OpenSetScore | None = None,
                    rejector: Rejector | None = None) -> dict:
    """All reported numbers from the outputs of val / test / open ("logits" (N, K) float, "labels" (N,) int64,
    ...); `scorer` is `eval.open_score`, already fitted where it needs to be (default: built from the config),
    and `rejector` the open-set decision on it (default: :func:`run_decision`; "calibration" is left out when
    there is none)."""
    bands = ShotBands.from_config(cfg.eval)
    scorer = scorer or unfitted_score(cfg)
    test = outputs["test"]
    open_score, pred = scorer.score(test).numpy(), predictions(test)
    y = test["labels"].numpy()
    k = len(class_names)
    if rejector is None:
        rejector = run_decision(cfg, outputs, scorer)
    band_of_class = bands.bands_of(train_counts)
    confidence = torch.softmax(test["logits"].float(), dim=1).max(dim=1).values.numpy()  # ECE is on the softmax
    metrics: dict = {
        "bands": {"rule": bands.describe(), "per_class": band_of_class, "many_above": bands.many_above,
                  "few_below": bands.few_below, "inclusive": bands.inclusive},
        "class_names": class_names,
        "train_counts": train_counts,
        "closed": shot_accuracy(pred, y, train_counts, bands),
        "per_class_accuracy": per_class_accuracy(pred, y, k).tolist(),
        "confusion_matrix": confusion(pred, y, k).tolist(),
        # none for a closed-set run without validation images: nothing to reject
        **({} if rejector is None else {"calibration": rejector.to_dict()}),
        "open_score": scorer.summary(),
        "ece": ece_by_band(confidence, pred == y, y, band_of_class),
    }
    if "val" in outputs:
        metrics["val"] = closed_metrics(outputs["val"], train_counts, bands)
    if "open" in outputs:
        unknown = (predictions(outputs["open"]), scorer.score(outputs["open"]).numpy())
        metrics["open"] = _open_metrics(rejector, (pred, open_score, y), unknown, train_counts, bands)
    return _clean(metrics)


def eval_setup(run: Run, overrides: list[str] | None = None) -> tuple[Config, OpenSetScore]:
    """The run's saved config with `overrides` ("key=value" strings, e.g. "eval.open_score=energy") applied, and
    its (unfitted) `eval.open_score`. Checked before anything is loaded: a bad key or value, an unknown score or
    score option, an `eval.open_threshold` neither 'auto' nor a finite number are ConfigErrors."""
    return eval_config(run.config(), overrides)


def eval_config(cfg: Config, overrides: list[str] | None = None) -> tuple[Config, OpenSetScore]:
    """A run's config `cfg` with evaluation `overrides` ("key=value" strings) applied, and its (unfitted)
    `eval.open_score`: what `openlt eval` and a bench's `eval_of` method check before any work. ConfigError for a
    bad key or value, an unknown score or score option, a bad `eval.open_threshold` / `eval.keep_known`."""
    if overrides:
        cfg = build_config(base=to_dict(cfg), overrides=overrides)
    scorer = build_score(cfg.eval.open_score, cfg.eval)
    check_rejection_config(cfg.eval)
    return cfg, scorer


def evaluate_run(run: Run, checkpoint: str = "best", overrides: list[str] | None = None,
                 quiet: bool = False, device: str | None = None, tag: str | None = None) -> dict:
    """Evaluate a run's checkpoint on val / test / open; write metrics.json, calibration.json, the per-sample
    predictions.npz and report.md / report.html. A score that learns from training data (OpenMax) is first
    fitted on the train split's outputs (eval transform) and saved as open-score.safetensors.

    `overrides`: "key=value" strings applied to the run's config for this evaluation only; they are checked
    (`eval_setup`) before the model is loaded, and 'auto' without a validation split before any inference.
    With a `tag` (e.g. another open-set score), the results go to metrics-TAG.json, predictions-TAG.npz,
    report-TAG.md / .html (open-score-TAG.safetensors) and the run's own metrics and calibration stay as
    they were."""
    cfg, scorer = eval_setup(run, overrides)
    dev = distributed.setup(resolve_device(device or cfg.train.device))  # under torchrun: shard, gather, rank 0 writes
    amp = inference_amp(cfg.train.amp, dev)
    data = prepare_data(cfg, default_split_dir=run.splits_dir)
    verify_manifest(run, data, "eval")  # the split files and classes the run was trained on, before any work
    check_open_decision(cfg.eval, data)
    model, state = _load_model(run, checkpoint, dev, cfg, data)
    splits = [s for s in (("train",) if scorer.requires_fit else ()) + ("val", "test", "open") if s == "test" or data.has(s)]
    outputs = {}
    if cfg.decouple.method != "none":  # a decoupled run's body is its stage-1 run's: read that run's feature cache
        outputs = cached_head_outputs(cfg, model, splits, dev, quiet)
    for split in splits:
        if split not in outputs:
            loader = make_loader(data.dataset(split), cfg.eval.batch_size, cfg.data.workers, dev,
                                 pin_memory=cfg.data.pin_memory, shard=True)
            outputs[split] = collect_outputs(model, loader, dev, split, quiet, cfg.train.channels_last, amp)
    if scorer.requires_fit:
        scorer.fit(outputs.pop("train"))
        if distributed.is_main():
            save_score(run.open_score_path(tag), scorer)
    rejector = run_decision(cfg, outputs, scorer)
    metrics = compute_metrics(cfg, outputs, data.train_counts, data.class_names, scorer, rejector)
    metrics = {"run": str(run.path), "checkpoint": checkpoint, "epoch": state.get("epoch"), **metrics,
               "split_files": {split: data.manifest["files"][split]["sha256"] for split in data.entries}}
    if distributed.is_main():
        if tag is None and rejector is not None:
            rejector.save(run.calibration_file)
        if not run.inference_file.is_file():  # a run of an older openlt: described now, predict needs no data
            write_inference(run, data)
        write_json(run.metrics_path(tag), metrics)
        samples = sample_table(outputs, {split: scorer.score(outputs[split]) for split in ("test", "open") if split in outputs})
        save_samples(run.predictions_path(tag), samples)
        write_reports(run, metrics, samples, tag, ShotBands.from_config(cfg.eval))
    distributed.barrier()
    return metrics


def _load_model(run: Run, checkpoint: str, device: torch.device, cfg: Config, data: DataBundle) -> tuple[OpenLTModel, dict]:
    """The run's network for `data` (already checked against the run's manifest) with `checkpoint` loaded, on
    `device`; returns (model, the checkpoint's state). RunDirError for a missing, corrupt or foreign checkpoint."""
    model = build_model(cfg, data.num_classes, data.in_chans, data.image_size)
    state = load_checkpoint(run.checkpoint(checkpoint), model)
    return to_device(model, device, cfg.train.channels_last), state


def run_score(run: Run, name: str, cfg: Config) -> OpenSetScore:
    """The open-set score `name` for a run's model: built from the config, or for a fitted one (OpenMax) read
    from the open-score.safetensors its evaluation saved."""
    scorer = build_score(name, cfg.eval)
    if scorer.requires_fit:
        path = run.open_score_path()
        if not path.is_file():
            raise NotFittedError(f"open-set score {name!r} is fitted on the training split, and {path} is missing: "
                                 f"evaluate the run with `openlt eval {run.path} eval.open_score={name}` first")
        scorer = load_score(path)
    return scorer
