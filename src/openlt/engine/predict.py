"""Prediction on image files: label, confidence, and "unknown" when the open-set rule rejects the image."""

from __future__ import annotations

from pathlib import Path

import torch

from openlt.data.datasets import open_image
from openlt.engine.evaluate import choose_threshold, run_score
from openlt.engine.runtime import KEPT_OUTPUTS, batch_to, collect_outputs, load_run_model, make_loader, resolve_device
from openlt.engine.precision import autocast, inference_amp
from openlt.engine.run import Run
from openlt.errors import DataError
from openlt.io import write_json


def _open_image(path: Path, mode: str):
    if not path.is_file():
        raise DataError(f"image not found: {path}" if not path.exists() else f"not an image file: {path}")
    return open_image(path, mode)


def predict_images(run: Run, images: list[str], checkpoint: str = "best", threshold: float | None = None,
                   device: str | None = None, batch_size: int = 64) -> list[dict]:
    dev = resolve_device(device or "auto")
    cfg, data, model, _ = load_run_model(run, checkpoint, dev)
    amp = inference_amp(cfg.train.amp, dev)  # the precision `openlt eval` chose the threshold in
    mode = "L" if data.in_chans == 1 else "RGB"
    pictures = [_open_image(Path(p), mode) for p in images]  # all read first: a bad file fails before any output
    calibration = run.calibration()
    if "threshold" not in calibration:  # not evaluated yet: choose it on validation now, as `eval` would
        val = None
        if data.has("val"):
            loader = make_loader(data.dataset("val"), cfg.eval.batch_size, cfg.data.workers, dev)
            val = collect_outputs(model, loader, dev, "val", True, cfg.train.channels_last, amp)
        calibration = choose_threshold(cfg, val)
        write_json(run.calibration_file, calibration)
    score_name = calibration.get("score", cfg.eval.open_score)
    scorer = run_score(run, score_name, cfg)  # a fitted score (OpenMax) is read from the run directory
    threshold = float(calibration["threshold"]) if threshold is None else threshold
    transform = data.transform(train=False)
    tensors = [transform(picture) for picture in pictures]
    results = []
    model.eval()
    with torch.no_grad():
        for start in range(0, len(tensors), batch_size):
            batch = batch_to(torch.stack(tensors[start : start + batch_size]), dev, cfg.train.channels_last)
            with autocast(amp, dev):
                raw = model(batch)
            out = {k: v.float().cpu() for k, v in raw.items() if k in KEPT_OUTPUTS}
            conf, pred = torch.softmax(out["logits"], dim=1).max(dim=1)
            scores = scorer.score(out)
            for path, c, p, s in zip(images[start : start + batch_size], conf.tolist(), pred.tolist(), scores.tolist()):
                known = s >= threshold
                results.append({"image": path, "label": data.class_names[p] if known else "unknown",
                                "class_id": p if known else -1, "top_class": data.class_names[p],
                                "confidence": c, "score": score_name, "score_value": s, "threshold": threshold,
                                "unknown": not known})
    return results
