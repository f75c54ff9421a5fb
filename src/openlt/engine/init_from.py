"""Stage 2 of OLTR (and of decoupled training): start from a stage-1 run's best weights.

The backbone must match exactly; other modules take every tensor whose name and shape match. A
meta-embedding head gets its hallucinator from the stage-1 linear classifier (as the public code) and its
centroids as the per-class means of the features over the training split (one pass, eval mode, no
augmentation, no re-sampling).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from openlt.data.build import DataBundle
from openlt.engine import distributed
from openlt.engine.checkpoint import read_checkpoint
from openlt.engine.runtime import batch_to, make_loader
from openlt.engine.run import open_run
from openlt.errors import RunDirError
from openlt.models.model import OpenLTModel


@torch.no_grad()
def class_means(model: OpenLTModel, data: DataBundle, device: torch.device, batch_size: int, workers: int,
                channels_last: bool) -> torch.Tensor:
    """Per-class mean of the features the head sees, over the training split (eval mode, test transform).
    Under torchrun each process sums its share of the images; sums and counts are then added over processes."""
    model.eval()
    loader = make_loader(data.dataset("train", train=False), batch_size, workers, device, shard=True)
    sums, counts = None, torch.zeros(data.num_classes, dtype=torch.float64)
    for images, targets in loader:
        _, feature = model.features(batch_to(images, device, channels_last))
        feature = feature.double().cpu()
        if sums is None:
            sums = torch.zeros(data.num_classes, feature.shape[1], dtype=torch.float64)
        sums.index_add_(0, targets, feature)
        counts += torch.bincount(targets, minlength=data.num_classes).double()
    sums, counts = distributed.all_reduce_sum(sums), distributed.all_reduce_sum(counts)
    return (sums / counts.clamp(min=1).unsqueeze(1)).float()


def init_from_run(model: OpenLTModel, run_path: str, data: DataBundle, device: torch.device, batch_size: int,
                  workers: int, channels_last: bool, log: Callable[[str], None]) -> None:
    source = open_run(run_path)
    manifest = source.manifest_file
    if manifest.is_file():
        import json

        theirs = json.loads(manifest.read_text(encoding="utf-8")).get("files", {}).get("train", {}).get("sha256")
        ours = data.manifest.get("files", {}).get("train", {}).get("sha256")
        if theirs and ours and theirs != ours:
            raise RunDirError(f"train.init_from={run_path} was trained on another training split than this run")
    tensors, _ = read_checkpoint(source.checkpoint("best"))
    weights = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    backbone = {k[len("backbone."):]: v for k, v in weights.items() if k.startswith("backbone.")}
    try:
        model.backbone.load_state_dict(backbone)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise RunDirError(f"the backbone of {run_path} does not match this config's ({first})") from None
    own = model.state_dict()
    copied = [k for k, v in weights.items() if not k.startswith("backbone.") and k in own and own[k].shape == v.shape]
    model.load_state_dict({k: weights[k] for k in copied}, strict=False)
    head = model.classifier
    if hasattr(head, "init_hallucinator_from") and "classifier.fc.weight" in weights:
        w = weights["classifier.fc.weight"]
        linear = nn.Linear(w.shape[1], w.shape[0], bias="classifier.fc.bias" in weights)
        linear.weight.data.copy_(w)
        if linear.bias is not None:
            linear.bias.data.copy_(weights["classifier.fc.bias"])
        if head.hallucinator is not None and linear.weight.shape == head.hallucinator.weight.shape:
            head.init_hallucinator_from(linear)
            copied.append("hallucinator <- stage-1 classifier")
    if hasattr(head, "init_centroids"):
        head.init_centroids(class_means(model, data, device, batch_size, workers, channels_last).to(device))
        copied.append("centroids <- class means of training features")
    log(f"initialised from {source.path}: backbone" + (f", {', '.join(copied)}" if copied else ""))
