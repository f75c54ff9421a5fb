"""The engine's ground floor: the device, data loaders, moving a batch there, inference over a loader, and
loading a run's model. Every other engine module builds on these; this one imports no other engine module but
`distributed`, `precision`, `checkpoint` and `run`."""

from __future__ import annotations

import sys

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from openlt.config import Config
from openlt.data.build import DataBundle, prepare_data
from openlt.engine import distributed
from openlt.engine.checkpoint import load_checkpoint
from openlt.engine.precision import autocast
from openlt.engine.run import Run
from openlt.errors import ConfigError
from openlt.models.model import OpenLTModel, build_model


def resolve_device(name: str) -> torch.device:
    """The torch device of ``train.device``: ``"auto"`` is CUDA when available, else the CPU; any other name as
    given (``"cpu"``, ``"cuda:1"``, ...). Raises ConfigError for a CUDA device on a machine without CUDA.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"train.device={name!r} but no CUDA device is available; use train.device=cpu or auto")
    return torch.device(name)


def to_device(model: torch.nn.Module, device: torch.device, channels_last: bool) -> torch.nn.Module:
    """Move ``model`` to ``device`` in place, in channels-last memory format when asked; returns it."""
    model.to(device)
    return model.to(memory_format=torch.channels_last) if channels_last else model


def batch_to(images: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    """A batch of images (B, C, H, W) on ``device`` (asynchronously from pinned memory), channels-last when asked
    (4-D inputs only); dtype unchanged.
    """
    images = images.to(device, non_blocking=True)
    return images.contiguous(memory_format=torch.channels_last) if channels_last and images.dim() == 4 else images


def make_loader(dataset, batch_size: int, workers: int, device: torch.device, sampler=None, shuffle=False,
                pin_memory: bool | None = None, shard: bool = False) -> DataLoader:
    """A DataLoader; `pin_memory` None pins with CUDA only. `shard`: under torchrun each process takes its
    share of the images (`distributed.ShardSampler`) and `collect_outputs` gathers them back in order."""
    if shard and sampler is None and distributed.is_distributed():
        sampler = distributed.ShardSampler(len(dataset))
    pin = device.type == "cuda" if pin_memory is None else bool(pin_memory) and torch.cuda.is_available()
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, shuffle=shuffle, num_workers=workers,
                      pin_memory=pin, persistent_workers=workers > 0, drop_last=False)


KEPT_OUTPUTS = ("logits", "reachability")  # what evaluation and the open-set scores read


@torch.no_grad()
def collect_outputs(model: OpenLTModel, loader: DataLoader, device: torch.device, desc: str = "eval",
                    quiet: bool = False, channels_last: bool = False, amp: str = "none") -> dict[str, torch.Tensor]:
    """Logits (and reachability, where the head gives it) and labels of every image (eval mode, no augmentation).
    A loader sharded over processes (`make_loader(..., shard=True)` under torchrun) gives every process all of them."""
    model.eval()
    kept: dict[str, list[torch.Tensor]] = {}
    quiet = quiet or not distributed.is_main()
    for images, targets in tqdm(loader, desc=desc, leave=False, disable=True if quiet else None, file=sys.stderr):
        with autocast(amp, device):
            out = model(batch_to(images, device, channels_last))
        for key in KEPT_OUTPUTS:
            if key in out:
                kept.setdefault(key, []).append(out[key].float().cpu())
        kept.setdefault("labels", []).append(targets)
    outputs = {key: torch.cat(values) for key, values in kept.items()}
    if isinstance(loader.sampler, distributed.ShardSampler):
        outputs = {key: distributed.gather_shards(value, len(loader.dataset)) for key, value in outputs.items()}
    return outputs


def load_run_model(run: Run, checkpoint: str = "best", device: torch.device | None = None,
                   cfg: Config | None = None) -> tuple[Config, DataBundle, OpenLTModel, dict]:
    """Rebuild a run's data description and model, and load one of its checkpoints."""
    cfg = cfg or run.config()
    data = prepare_data(cfg, default_split_dir=run.splits_dir)
    model = build_model(cfg, data.num_classes, data.in_chans, data.image_size)
    state = load_checkpoint(run.checkpoint(checkpoint), model)
    to_device(model, device or torch.device("cpu"), cfg.train.channels_last)
    return cfg, data, model, state
