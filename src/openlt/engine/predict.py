"""Prediction on image files: label, softmax confidence, and "unknown" when the run's open-set decision (its
:class:`~openlt.openset.Rejector`) rejects the image."""

from __future__ import annotations

from pathlib import Path

import torch

from openlt.config import Config
from openlt.data.build import DataBundle
from openlt.data.datasets import open_image
from openlt.engine.evaluate import choose_rejector, run_score
from openlt.engine.precision import autocast, inference_amp
from openlt.engine.run import Run
from openlt.engine.runtime import KEPT_OUTPUTS, batch_to, collect_outputs, load_run_model, make_loader, resolve_device
from openlt.errors import DataError
from openlt.models.model import OpenLTModel
from openlt.openset import OpenSetScore, Rejector, parse_threshold


def _open_image(path: Path, mode: str):
    if not path.is_file():
        raise DataError(f"image not found: {path}" if not path.exists() else f"not an image file: {path}")
    return open_image(path, mode)


def saved_rejector(run: Run, cfg: Config, threshold: float | None = None) -> Rejector | None:
    """The decision predict applies, read without the model: with `threshold`, that fixed threshold on the score
    the run was evaluated with (calibration.json's, or `eval.open_score` when there is none); without, the
    run's calibration.json, or None when the run has not been evaluated. A threshold that is not a finite
    number is a ConfigError, a malformed calibration.json a RunDirError naming it."""
    saved = Rejector.load(run.calibration_file) if run.calibration_file.is_file() else None
    if threshold is None:
        return saved
    return Rejector.fixed(cfg.eval.open_score if saved is None else saved.score, threshold, "fixed (--threshold)")


def calibrate_now(run: Run, cfg: Config, data: DataBundle, model: OpenLTModel, dev: torch.device, amp) -> Rejector:
    """A run not evaluated yet: choose its decision as `openlt eval` would (on the validation outputs, computed
    in the run's inference precision `amp`) and save it as calibration.json."""
    val = None
    if parse_threshold(cfg.eval.open_threshold) is None and data.has("val"):  # a fixed threshold needs no outputs
        loader = make_loader(data.dataset("val"), cfg.eval.batch_size, cfg.data.workers, dev)
        val = collect_outputs(model, loader, dev, "val", True, cfg.train.channels_last, amp)
    rejector = choose_rejector(cfg, val)
    rejector.save(run.calibration_file)
    return rejector


@torch.no_grad()
def _label(model: OpenLTModel, batch: torch.Tensor, names: list[str], scorer: OpenSetScore, rejector: Rejector,
           amp, dev: torch.device) -> list[dict]:
    """One batch (B, C, H, W) on `dev` -> B result dicts: the top class, its softmax confidence in [0, 1], the
    open score, and the rejector's decision (class_id -1 and label "unknown" when rejected)."""
    with autocast(amp, dev):
        raw = model(batch)
    out = {k: v.float().cpu() for k, v in raw.items() if k in KEPT_OUTPUTS}
    confidence, top = torch.softmax(out["logits"], dim=1).max(dim=1)
    open_score = scorer.score(out)
    decided = rejector.decide(top.numpy(), open_score.numpy()).tolist()
    return [{"label": names[c] if c >= 0 else "unknown", "class_id": c, "top_class": names[t], "confidence": prob,
             "score": rejector.score, "score_value": value, "threshold": rejector.threshold, "unknown": c < 0}
            for c, t, prob, value in zip(decided, top.tolist(), confidence.tolist(), open_score.tolist())]


def predict_images(run: Run, images: list[str], checkpoint: str = "best", threshold: float | None = None,
                   device: str | None = None, batch_size: int = 64) -> list[dict]:
    """Label image files with a run's model: one dict per image, in order ("image", "label" or "unknown",
    "class_id" (-1 when rejected), "top_class", "confidence" (softmax maximum), "score" / "score_value" (the
    open-set score and its value, higher = more known), "threshold", "unknown").

    `threshold`: a fixed threshold (calibration.json is then not needed); otherwise the run's calibration.json,
    chosen on validation now (and saved) when the run has not been evaluated. Raises DataError for a missing or
    unreadable image (all are read before any output), ConfigError / RunDirError as `saved_rejector`."""
    cfg = run.config()
    rejector = saved_rejector(run, cfg, threshold)  # a bad threshold or calibration file fails before any work
    dev = resolve_device(device or "auto")
    cfg, data, model, _ = load_run_model(run, checkpoint, dev, cfg)
    amp = inference_amp(cfg.train.amp, dev)  # the precision `openlt eval` chose the threshold in
    mode = "L" if data.in_chans == 1 else "RGB"
    pictures = [_open_image(Path(p), mode) for p in images]  # all read first: a bad file fails before any output
    if rejector is None:
        rejector = calibrate_now(run, cfg, data, model, dev, amp)
    scorer = run_score(run, rejector.score, cfg)  # a fitted score (OpenMax) is read from the run directory
    transform = data.transform(train=False)
    tensors = [transform(picture) for picture in pictures]
    model.eval()
    results = []
    for start in range(0, len(tensors), batch_size):
        batch = batch_to(torch.stack(tensors[start : start + batch_size]), dev, cfg.train.channels_last)
        labelled = _label(model, batch, data.class_names, scorer, rejector, amp, dev)
        results += [{"image": path, **r} for path, r in zip(images[start : start + batch_size], labelled)]
    return results
