"""Prediction on image files: label, confidence, and "unknown" when the open-set rule rejects the image."""

from __future__ import annotations

from pathlib import Path

import torch

from openlt.engine.evaluate import batch_to, choose_threshold, collect_outputs, load_run_model, make_loader, resolve_device
from openlt.engine.run import Run
from openlt.errors import DataError
from openlt.io import write_json


def _open_image(path: Path, mode: str):
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise DataError(f"image not found: {path}")
    try:
        with Image.open(path) as img:
            img.load()
            return img.convert(mode)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"corrupt or unreadable image {path}: {exc}") from None


def predict_images(run: Run, images: list[str], checkpoint: str = "best", threshold: float | None = None,
                   device: str | None = None, batch_size: int = 64) -> list[dict]:
    dev = resolve_device(device or "auto")
    cfg, data, model, _ = load_run_model(run, checkpoint, dev)
    if threshold is None:
        calibration = run.calibration()
        if "threshold" not in calibration:  # not evaluated yet: choose it on validation now, as `eval` would
            val = None
            if data.has("val"):
                loader = make_loader(data.dataset("val"), cfg.eval.batch_size, cfg.data.workers, dev)
                val = collect_outputs(model, loader, dev, "val", True, cfg.train.channels_last)
            calibration = choose_threshold(cfg, val)
            write_json(run.calibration_file, calibration)
        threshold = float(calibration["threshold"])
    mode = "L" if data.in_chans == 1 else "RGB"
    transform = data.transform(train=False)
    tensors = [transform(_open_image(Path(p), mode)) for p in images]  # all read first: fail before any output
    results = []
    model.eval()
    with torch.no_grad():
        for start in range(0, len(tensors), batch_size):
            batch = batch_to(torch.stack(tensors[start : start + batch_size]), dev, cfg.train.channels_last)
            probs = torch.softmax(model(batch)["logits"].float(), dim=1).cpu()
            conf, pred = probs.max(dim=1)
            for path, c, p in zip(images[start : start + batch_size], conf.tolist(), pred.tolist()):
                known = c >= threshold
                results.append({"image": path, "label": data.class_names[p] if known else "unknown",
                                "class_id": p if known else -1, "top_class": data.class_names[p],
                                "confidence": c, "threshold": threshold, "unknown": not known})
    return results
