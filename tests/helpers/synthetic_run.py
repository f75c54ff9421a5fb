"""A run directory as training leaves it (config.yaml, inference.json, checkpoints/best.safetensors), made
directly with random weights: for tests of what reads only the run directory (predict, export, the API)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from openlt.config import build_config
from openlt.data.transforms import IMAGENET_MEAN, IMAGENET_STD, eval_transform_spec
from openlt.engine.checkpoint import save_checkpoint
from openlt.engine.inference import InferenceSpec, checkpoint_identity
from openlt.engine.run import Run
from openlt.io import write_json
from openlt.models.model import build_model
from openlt.openset import Rejector

CLASSES = ("ant", "bee", "cat")
OLTR = ("model.attention=true", "model.classifier=meta_embedding")


def make_run(path: Path, overrides=(), calibration: bool = True) -> tuple[Run, torch.nn.Module]:
    """(the run, its model in eval mode): resnet10 on 3-channel 16 px images of CLASSES, seed 0; OLTR's
    centroids are drawn away from zero so that reachability varies; calibration.json keeps 90 % of 50 random
    msp values (fitted on checkpoints/best.safetensors) unless `calibration` is False."""
    # the config gives the input inference.json describes (prediction checks the one against the other)
    cfg = build_config(None, ["model.backbone=resnet10", "train.device=cpu", "data.dataset=image-folder",
                              "data.image_size=16", *overrides])
    spec = InferenceSpec(CLASSES, 3, 16, eval_transform_spec("small", 16, IMAGENET_MEAN, IMAGENET_STD), ("eel",))
    run = Run(path)
    run.checkpoints_dir.mkdir(parents=True)
    run.write_config(cfg)
    write_json(run.inference_file, spec.to_dict())
    torch.manual_seed(0)
    model = build_model(cfg, len(CLASSES), 3, 16)
    if "model.classifier=meta_embedding" in overrides:
        model.classifier.centroids.data.normal_()
    save_checkpoint(run.checkpoint("best"), model, None, {"epoch": 3})
    if calibration:  # as an evaluation of best writes it: with the checkpoint it was chosen for
        rejector = Rejector.calibrate("msp", torch.rand(50, generator=torch.Generator().manual_seed(1)).numpy(), 0.9)
        replace(rejector, fitted_on=checkpoint_identity(run, "best")).save(run.calibration_file)
    return run, model.eval()
