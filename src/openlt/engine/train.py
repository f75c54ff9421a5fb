"""The training recipe, top to bottom: data, model, SGD with warm-up + cosine, epochs, checkpoints, resume.

Under `torchrun` the same recipe runs data-parallel (engine/distributed.py): `train.batch_size` is the global
batch, split evenly over the processes; the model is wrapped in DistributedDataParallel (gradients averaged, so
one step equals one step of a single process on the whole batch, up to per-process batch-norm statistics);
rank 0 alone writes the run directory. Mixed precision (`train.amp`) comes from engine/precision.py.
"""

from __future__ import annotations

import json
import math
import shutil
import sys
import time
from pathlib import Path
from typing import Callable

import torch
from tqdm import tqdm

from openlt.config import Config, TrainConfig
from openlt.data.build import prepare_data
from openlt.data.samplers import build_sampler
from openlt.engine import distributed
from openlt.engine.checkpoint import load_checkpoint, save_checkpoint
from openlt.engine.evaluate import closed_metrics
from openlt.engine.runtime import batch_to, collect_outputs, make_loader, resolve_device, to_device
from openlt.engine.precision import autocast, check_amp, grad_scaler
from openlt.engine.run import Run, new_run
from openlt.engine.stage2 import init_from_run
from openlt.engine.tracking import EpochLog
from openlt.errors import ConfigError, TrainingError
from openlt.io import remove_stale_temp, write_text
from openlt.losses import build_loss
from openlt.metrics import ShotBands
from openlt.models.model import build_model


def lr_factor(step: int, steps_per_epoch: int, cfg: TrainConfig) -> float:
    """The learning rate as a fraction of its base value at an iteration: linear warm-up, then cosine
    decay to `min_lr` / `lr` or steps of `step_gamma` every `step_epochs` epochs (or at each `milestones` epoch)."""
    total_steps = steps_per_epoch * cfg.epochs
    warmup_steps = int(round(cfg.warmup_epochs * steps_per_epoch))
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    if cfg.schedule == "cosine":
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        floor = cfg.min_lr / cfg.lr if cfg.lr > 0 else 0.0
        return floor + 0.5 * (1 - floor) * (1 + math.cos(math.pi * progress))
    if cfg.schedule == "step":
        epoch = step // steps_per_epoch
        if cfg.milestones:  # x step_gamma at each milestone passed (CIFAR-LT: 160, 180)
            if not all(isinstance(m, (int, float)) and not isinstance(m, bool) for m in cfg.milestones):
                raise ConfigError(f"train.milestones must be a list of epochs, got {cfg.milestones!r}")
            return cfg.step_gamma ** sum(epoch >= m for m in cfg.milestones)
        return cfg.step_gamma ** (epoch // max(1, cfg.step_epochs))
    raise ConfigError(f"unknown train.schedule {cfg.schedule!r}; known: cosine, step")


def param_groups(model: torch.nn.Module, cfg: TrainConfig) -> list[dict]:
    """Feature model (backbone, attention, extra fc), head and OLTR centroids as groups with their own
    learning rates (`backbone_lr`, `lr`, `centroid_lr`); frozen parameters are left out."""
    groups = {"backbone": [], "head": [], "centroids": []}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        # attention and the extra fc belong to the feature model, as in the public OLTR code's lr groups
        key = ("backbone" if name.startswith(("backbone.", "attention.", "feature_fc.")) else
               "centroids" if name.endswith("centroids") else "head")
        groups[key].append(param)
    lrs = {"backbone": cfg.lr if cfg.backbone_lr is None else cfg.backbone_lr, "head": cfg.lr,
           "centroids": cfg.lr if cfg.centroid_lr is None else cfg.centroid_lr}
    return [{"params": params, "base_lr": lrs[key], "name": key} for key, params in groups.items() if params]


def _epoch_seed(seed: int, epoch: int, rank: int = 0) -> int:
    """The seed of an epoch's augmentation draws; each process of a distributed run draws its own
    (rank 0 the same as a single process)."""
    return (seed * 1_000_003 + epoch * 7919 + rank * 104_729) % (2**63)


def per_process_batch(batch_size: int, world_size: int) -> int:
    """`train.batch_size` is the global batch: each of `world_size` processes takes an equal share of it."""
    if batch_size < 1 or batch_size % world_size:
        raise ConfigError(f"train.batch_size={batch_size} is the global batch and must split evenly over the "
                          f"{world_size} processes (batch_size / WORLD_SIZE images each); "
                          f"use a multiple of {world_size}")
    return batch_size // world_size


def train(cfg: Config, *, run: Run | None = None, name: str | None = None, resume: bool = False,
          quiet: bool = False, log: Callable[[str], None] | None = None) -> Run:
    """Train per `cfg` into a new run directory (or continue `run` when `resume`); return the run."""
    log = log or (lambda line: print(line, flush=True))
    device = distributed.setup(resolve_device(cfg.train.device))  # joins the process group under torchrun
    check_amp(cfg.train.amp, device)
    per_process_batch(cfg.train.batch_size, distributed.world_size())
    if cfg.train.sync_bn and distributed.is_distributed() and device.type != "cuda":
        raise ConfigError("train.sync_bn needs CUDA devices (PyTorch's SyncBatchNorm has no CPU kernel); "
                          "leave it off for per-process batch-norm statistics")
    if not distributed.is_main():  # one voice: rank 0 logs and shows progress
        log, quiet = (lambda line: None), True
    torch.manual_seed(cfg.seed)
    if cfg.decouple.method != "none":  # stage 2 on a frozen representation: re-fitted from the cache, even on resume
        from openlt.engine.decouple import stage1_features, train_decoupled

        def body(cfg, run, resume, quiet, log, device):
            feats = stage1_features(cfg, device, quiet)  # every process extracts a share when the cache is stale
            if distributed.is_main():  # the rest is cheap (cached features): rank 0 alone, the others wait
                train_decoupled(cfg, run, quiet, log, device, feats)
            distributed.barrier()
            return run
    else:
        body = _train
    if run is not None:
        if resume and distributed.is_main():  # temporary files of writes a killed process never finished
            remove_stale_temp(run.path)
        return body(cfg, run, resume, quiet, log, device)
    run = Run(Path(distributed.broadcast_object(str(new_run(cfg, name).path) if distributed.is_main() else None)))
    log(f"run directory: {run.path}")
    try:
        return body(cfg, run, resume, quiet, log, device)
    except BaseException:
        if distributed.is_main() and not run.checkpoint("last").exists():  # failed before the first epoch ended:
            shutil.rmtree(run.path, ignore_errors=True)                  # leave nothing behind
        raise


def _train(cfg: Config, run: Run, resume: bool, quiet: bool, log: Callable[[str], None], device: torch.device) -> Run:
    main, rank, world = distributed.is_main(), distributed.rank(), distributed.world_size()
    data = distributed.main_first(lambda: prepare_data(cfg, default_split_dir=run.splits_dir))  # rank 0 may build the split files
    if main:
        if not resume:
            run.write_config(cfg)
        run.write_manifest(data.manifest)

    channels_last, amp = cfg.train.channels_last, cfg.train.amp
    model = to_device(build_model(cfg, data.num_classes, data.in_chans, data.image_size), device, channels_last)
    if cfg.train.init_from and not resume:
        init_from_run(model, cfg.train.init_from, data, device, cfg.eval.batch_size, cfg.data.workers, channels_last, log)
    if cfg.train.freeze_backbone:
        model.backbone.requires_grad_(False)
    if cfg.train.sync_bn and world > 1:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    train_set = data.dataset("train", train=True)
    sampler = build_sampler(cfg.train.sampler, train_set.targets, epochs=cfg.train.epochs, seed=cfg.seed,
                            rank=rank, world_size=world)  # every rank draws the same global order, takes its share
    loader = make_loader(train_set, per_process_batch(cfg.train.batch_size, world), cfg.data.workers, device,
                         sampler=sampler, pin_memory=cfg.data.pin_memory)
    val_loader = (make_loader(data.dataset("val"), cfg.eval.batch_size, cfg.data.workers, device,
                              pin_memory=cfg.data.pin_memory, shard=True) if data.has("val") else None)
    criterion = build_loss(cfg.train.loss, data.train_counts, model.backbone.out_dim, **cfg.train.loss_args).to(device)
    optimizer = torch.optim.SGD(param_groups(model, cfg.train), lr=cfg.train.lr, momentum=cfg.train.momentum,
                                nesterov=cfg.train.nesterov, weight_decay=cfg.train.weight_decay)
    scaler = grad_scaler(amp, device)
    steps_per_epoch = len(loader)
    bands = ShotBands.from_config(cfg.eval)

    start_epoch, best = 0, None
    if resume:
        state = load_checkpoint(run.checkpoint("last"), model, optimizer)
        start_epoch, best = state["epoch"] + 1, state.get("best_val")
        if scaler is not None and state.get("grad_scaler"):
            scaler.load_state_dict(state["grad_scaler"])
        if main:
            _truncate_log(run, state["epoch"])
        log(f"resuming {run.path} after epoch {state['epoch'] + 1}/{cfg.train.epochs}")
    if start_epoch >= cfg.train.epochs:
        log("training already finished")
        return run
    # the loss inside the (DDP-wrapped, under torchrun) module, so that DDP sees which parameters the loss used:
    # the centroids (a tensor of the model's output) get a gradient only from a loss with a centroid term
    unused = hasattr(model.classifier, "centroids") and not getattr(criterion, "uses_centroids", False)
    net = distributed.data_parallel(_WithLoss(model, criterion), device, find_unused_parameters=unused)

    log(f"{len(train_set)} training images, {data.num_classes} classes ({bands.describe()}), "
        f"{cfg.model.backbone} on {device}" + (f" x {world} processes" if world > 1 else "") +
        f", {cfg.train.epochs} epochs of {steps_per_epoch} steps" + (f", amp {amp}" if amp != "none" else ""))
    started = time.time()
    epoch_log = EpochLog(run, start_epoch) if main else None  # metrics.jsonl, and TensorBoard when it is installed
    for epoch in range(start_epoch, cfg.train.epochs):
        epoch_start = time.time()
        torch.manual_seed(_epoch_seed(cfg.seed, epoch, rank))  # augmentation draws depend on (seed, epoch, rank) only
        sampler.set_epoch(epoch)
        if hasattr(criterion, "set_epoch"):  # losses with a schedule (LDAM's deferred re-weighting)
            criterion.set_epoch(epoch)
        net.train()
        if cfg.train.freeze_backbone:
            model.backbone.eval()  # a frozen backbone keeps its batch-norm statistics too
        loss_sum, correct, seen = 0.0, 0, 0
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.train.epochs}", leave=False,
                   disable=True if quiet else None, file=sys.stderr)
        for i, (images, targets) in enumerate(bar):
            step = epoch * steps_per_epoch + i
            factor = lr_factor(step, steps_per_epoch, cfg.train)
            for group in optimizer.param_groups:
                group["lr"] = group["base_lr"] * factor
            lr = cfg.train.lr * factor
            images, targets = batch_to(images, device, channels_last), targets.to(device, non_blocking=True)
            with autocast(amp, device):
                loss, logits = net(images, targets)
            if not torch.isfinite(loss):
                raise TrainingError(_non_finite_message(loss.item(), epoch, i, run))
            optimizer.zero_grad(set_to_none=True)
            if scaler is None:
                loss.backward()
                optimizer.step()
            else:  # fp16: scaled loss, unscaled gradients checked for inf / NaN before the step
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
            loss_sum += loss.item() * len(targets)
            correct += int((logits.argmax(1) == targets).sum())
            seen += len(targets)
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", lr=f"{lr:.4f}")
        if world > 1:  # the epoch's loss and accuracy over every process's images
            totals = distributed.all_reduce_sum(torch.tensor([loss_sum, correct, seen], dtype=torch.float64))
            loss_sum, correct, seen = float(totals[0]), int(totals[1]), int(totals[2])
        record = {"epoch": epoch + 1, "train_loss": loss_sum / seen, "train_acc": correct / seen, "lr": lr}
        if val_loader is not None and ((epoch + 1) % cfg.train.eval_every == 0 or epoch + 1 == cfg.train.epochs):
            distributed.broadcast_buffers(model)  # every rank evaluates with rank 0's (the checkpoint's) BN statistics
            record["val"] = closed_metrics(collect_outputs(model, val_loader, device, "val", quiet, channels_last, amp),
                                           data.train_counts, bands)
        record["time_s"] = round(time.time() - epoch_start, 2)
        score = record.get("val", {}).get("overall")
        improved = score is not None and (best is None or score > best)
        if improved or (val_loader is None):
            best = score if improved else best
            if main:
                save_checkpoint(run.checkpoint("best"), model, None, {"epoch": epoch, "val_overall": score})
        state = {"epoch": epoch, "best_val": best}
        if scaler is not None:
            state["grad_scaler"] = scaler.state_dict()  # the loss scale continues where it was on resume
        if main:
            save_checkpoint(run.checkpoint("last"), model, optimizer, state)
            epoch_log.write(record)
        done = epoch + 1 - start_epoch
        eta = (time.time() - started) / done * (cfg.train.epochs - epoch - 1)
        val_text = "" if "val" not in record else "  val " + " ".join(
            f"{b} {_pct(record['val'][b])}" for b in ("many", "medium", "few", "overall"))
        log(f"epoch {epoch + 1:3d}/{cfg.train.epochs}  loss {record['train_loss']:.3f}  train acc {100 * record['train_acc']:.1f}"
            f"{val_text}  ({record['time_s']:.0f}s, eta {eta / 60:.1f} min){'  *best' if improved else ''}")
    if epoch_log is not None:
        epoch_log.close()
    distributed.barrier()  # the other ranks go on (e.g. to evaluation) once rank 0 has written the checkpoints
    return run


def _non_finite_message(value: float, epoch: int, step: int, run: Run) -> str:
    """Why training stopped, and what is left: the checkpoint of the last finished epoch, or nothing."""
    text = f"loss became {value} at epoch {epoch + 1}, step {step + 1} (try a lower train.lr); "
    if run.checkpoint("last").exists():
        return text + (f"the last good checkpoint (epoch {epoch}) is kept: {run.checkpoint('last')}; "
                       f"`openlt train --resume {run.path}` continues from it with the run's config.yaml")
    return text + "no epoch had finished, so no checkpoint was written and the run directory is removed"


class _WithLoss(torch.nn.Module):
    """model + loss as one module: forward(images, targets) -> (loss, logits)."""

    def __init__(self, model: torch.nn.Module, criterion: torch.nn.Module) -> None:
        super().__init__()
        self.model, self.criterion = model, criterion

    def forward(self, images: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.model(images)
        return self.criterion(out, targets), out["logits"]


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def _truncate_log(run: Run, last_epoch: int) -> None:
    """Drop metric lines written after the checkpoint we resume from (a crash between the two writes)."""
    kept = [r for r in run.epochs_logged() if r["epoch"] <= last_epoch + 1]
    write_text(run.log_file, "".join(json.dumps(r) + "\n" for r in kept))
