"""Evaluation: closed-set top-1 overall and per shot band, open-set F-measure / AUROC / FPR95, and the
band accuracies with rejection (the OLTR paper's "open-set setting" columns)."""

from __future__ import annotations

import math
import sys
from typing import Callable

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from openlt.config import Config
from openlt.data.build import DataBundle, prepare_data, shot_bands
from openlt.engine.checkpoint import load_checkpoint
from openlt.engine.run import Run
from openlt.errors import ConfigError
from openlt.io import write_json, write_text
from openlt.metrics import (ShotBands, confusion, open_set_f_measure, open_set_metrics, per_class_accuracy,
                            reject, shot_accuracy, threshold_at_tpr)
from openlt.models.model import OpenLTModel, build_model
from openlt.openset import open_score


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"train.device={name!r} but no CUDA device is available; use train.device=cpu or auto")
    return torch.device(name)


def to_device(model: torch.nn.Module, device: torch.device, channels_last: bool) -> torch.nn.Module:
    model.to(device)
    return model.to(memory_format=torch.channels_last) if channels_last else model


def batch_to(images: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    images = images.to(device, non_blocking=True)
    return images.contiguous(memory_format=torch.channels_last) if channels_last and images.dim() == 4 else images


def make_loader(dataset, batch_size: int, workers: int, device: torch.device, sampler=None, shuffle=False) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, shuffle=shuffle, num_workers=workers,
                      pin_memory=device.type == "cuda", persistent_workers=workers > 0, drop_last=False)


KEPT_OUTPUTS = ("logits", "reachability")  # what evaluation and the open-set scores read


@torch.no_grad()
def collect_outputs(model: OpenLTModel, loader: DataLoader, device: torch.device, desc: str = "eval",
                    quiet: bool = False, channels_last: bool = False) -> dict[str, torch.Tensor]:
    """Logits (and reachability, where the head gives it) and labels of every image (eval mode, no augmentation)."""
    model.eval()
    kept: dict[str, list[torch.Tensor]] = {}
    for images, targets in tqdm(loader, desc=desc, leave=False, disable=True if quiet else None, file=sys.stderr):
        out = model(batch_to(images, device, channels_last))
        for key in KEPT_OUTPUTS:
            if key in out:
                kept.setdefault(key, []).append(out[key].float().cpu())
        kept.setdefault("labels", []).append(targets)
    return {key: torch.cat(values) for key, values in kept.items()}


def predictions(outputs: dict[str, torch.Tensor]) -> np.ndarray:
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
    return _clean(shot_accuracy(predictions(outputs), outputs["labels"].numpy(), train_counts, bands))


def choose_threshold(cfg: Config, val: dict[str, torch.Tensor] | None) -> dict:
    """The rejection threshold on the open-set score: a fixed number, or (auto) the score that keeps
    `eval.keep_known` of the known validation images. Never chosen with open or test data."""
    spec = cfg.eval.open_threshold
    score = cfg.eval.open_score
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        return {"score": score, "threshold": float(spec), "source": "fixed (eval.open_threshold)"}
    if spec != "auto":
        raise ConfigError(f"eval.open_threshold must be 'auto' or a number, got {spec!r}")
    if val is None:
        raise ConfigError("eval.open_threshold=auto needs a validation split; give data.val_split or a number")
    known = open_score(score, val).numpy()
    return {"score": score, "threshold": threshold_at_tpr(known, cfg.eval.keep_known),
            "source": f"validation: keeps {cfg.eval.keep_known:.0%} of the known validation images"}


def compute_metrics(cfg: Config, outputs: dict[str, dict[str, torch.Tensor]], train_counts: list[int],
                    class_names: list[str]) -> dict:
    """All reported numbers from the outputs of val / test / open."""
    bands = shot_bands(cfg)
    test = outputs["test"]
    conf, pred = open_score(cfg.eval.open_score, test).numpy(), predictions(test)
    y = test["labels"].numpy()
    k = len(class_names)
    calibration = choose_threshold(cfg, outputs.get("val"))
    metrics: dict = {
        "bands": {"rule": bands.describe(), "per_class": bands.bands_of(train_counts)},
        "class_names": class_names,
        "train_counts": train_counts,
        "closed": shot_accuracy(pred, y, train_counts, bands),
        "per_class_accuracy": per_class_accuracy(pred, y, k).tolist(),
        "confusion_matrix": confusion(pred, y, k).tolist(),
        "calibration": calibration,
    }
    if "val" in outputs:
        metrics["val"] = closed_metrics(outputs["val"], train_counts, bands)
    if "open" in outputs:
        open_conf, open_pred = open_score(cfg.eval.open_score, outputs["open"]).numpy(), predictions(outputs["open"])
        t = calibration["threshold"]
        all_pred = reject(np.concatenate([pred, open_pred]), np.concatenate([conf, open_conf]), t)
        all_labels = np.concatenate([y, -np.ones(len(open_pred), dtype=y.dtype)])
        known_pred = all_pred[: len(y)]
        metrics["open"] = {
            "threshold": t,
            **open_set_f_measure(all_pred, all_labels),
            **open_set_metrics(conf, open_conf),
            "bands_with_rejection": shot_accuracy(known_pred, y, train_counts, bands),
            "open_rejected": float(np.mean(all_pred[len(y):] == -1)),
            "known_rejected": float(np.mean(known_pred == -1)),
            "n_open": int(len(open_pred)),
        }
    return _clean(metrics)


def _fmt(value) -> str:
    return "  –  " if value is None else f"{100 * value:5.1f}"


def format_table(metrics: dict) -> str:
    """The result table as the field reports it (top-1 in %, F-measure in [0, 1])."""
    closed = metrics["closed"]
    lines = [f"shot bands: {metrics['bands']['rule']}  (classes: "
             + ", ".join(f"{b} {closed['n_classes'][b]}" for b in ("many", "medium", "few")) + ")",
             "                      many  medium    few  overall",
             "closed-set top-1    " + "  ".join(_fmt(closed[b]) for b in ("many", "medium", "few")) + f"   {_fmt(closed['overall'])}"]
    if "open" in metrics:
        op = metrics["open"]
        rej = op["bands_with_rejection"]
        lines.append("open-set top-1      " + "  ".join(_fmt(rej[b]) for b in ("many", "medium", "few")) + f"   {_fmt(rej['overall'])}")
        lines.append(f"open-set F-measure {op['f_measure']:.3f}   AUROC {op['auroc']:.3f}   FPR@95 {op['fpr95']:.3f}   "
                     f"({metrics['calibration']['score']} < {op['threshold']:.3f} -> unknown; {metrics['calibration']['source']})")
    return "\n".join(lines)


def load_run_model(run: Run, checkpoint: str = "best", device: torch.device | None = None,
                   cfg: Config | None = None) -> tuple[Config, DataBundle, OpenLTModel, dict]:
    """Rebuild a run's data description and model, and load one of its checkpoints."""
    cfg = cfg or run.config()
    data = prepare_data(cfg, run.path)
    model = build_model(cfg, data.num_classes, data.in_chans, data.image_size)
    state = load_checkpoint(run.checkpoint(checkpoint), model)
    to_device(model, device or torch.device("cpu"), cfg.train.channels_last)
    return cfg, data, model, state


def evaluate_run(run: Run, checkpoint: str = "best", overrides: Callable[[Config], None] | None = None,
                 quiet: bool = False, device: str | None = None, tag: str | None = None) -> dict:
    """Evaluate a run's checkpoint on val / test / open; write metrics.json, report.md, calibration.json.

    With a `tag` (e.g. another open-set score), the results go to metrics-TAG.json and report-TAG.md and
    the run's own metrics and calibration stay as they were."""
    cfg = run.config()
    if overrides:
        overrides(cfg)
    dev = resolve_device(device or cfg.train.device)
    cfg, data, model, state = load_run_model(run, checkpoint, dev, cfg)
    outputs = {}
    for split in ("val", "test", "open"):
        if split == "test" or data.has(split):
            loader = make_loader(data.dataset(split), cfg.eval.batch_size, cfg.data.workers, dev)
            outputs[split] = collect_outputs(model, loader, dev, split, quiet, cfg.train.channels_last)
    metrics = compute_metrics(cfg, outputs, data.train_counts, data.class_names)
    metrics = {"run": str(run.path), "checkpoint": checkpoint, "epoch": state.get("epoch"), **metrics}
    if tag is None:
        write_json(run.calibration_file, metrics["calibration"])
    write_json(run.metrics_path(tag), metrics)
    write_text(run.report_path(tag), report_markdown(run, metrics))
    return metrics


def report_markdown(run: Run, metrics: dict) -> str:
    rows = ["| class | train images | band | test top-1 (%) |", "|---|---:|---|---:|"]
    for name, n, band, acc in zip(metrics["class_names"], metrics["train_counts"], metrics["bands"]["per_class"],
                                  metrics["per_class_accuracy"]):
        rows.append(f"| {name} | {n} | {band} | {'–' if acc is None else f'{100 * acc:.1f}'} |")
    return (f"# openlt report: {run.path.name}\n\ncheckpoint: {metrics['checkpoint']} (epoch {metrics['epoch']})\n\n"
            f"```\n{format_table(metrics)}\n```\n\n## Per class\n\n" + "\n".join(rows) + "\n")
