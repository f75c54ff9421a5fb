"""The training recipe, in the shape of torchvision's classification references: `train()` reads top to bottom
(data, model, optimizer, schedule, resume, epochs, finish) and calls `train_one_epoch`, `validate` and
`save_epoch` once per epoch. SGD over the model's parameter groups with warm-up + cosine (or step) decay,
stepped per iteration (openlt/optim.py); checkpoints every epoch; `--resume` continues from the last one.

Under `torchrun` the same recipe runs data-parallel (engine/distributed.py): `train.batch_size` is the global
batch, split evenly over the processes; the model is wrapped in DistributedDataParallel (gradients averaged, so
one step equals one step of a single process on the whole batch, up to per-process batch-norm statistics);
rank 0 alone writes the run directory. Mixed precision (`train.amp`) comes from engine/precision.py.
`decouple.method` other than none trains a decoupled stage 2 on cached features instead (engine/decouple.py).
"""

from __future__ import annotations

import copy
import json
import logging
import os
import re
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Callable

import torch
from torch.optim.lr_scheduler import LambdaLR
from tqdm import tqdm

from openlt.config import Config
from openlt.data.build import DataBundle, prepare_data
from openlt.data.samplers import build_sampler
from openlt.data.splits import MANIFEST
from openlt.engine import distributed
from openlt.engine.checkpoint import checkpoint_state, load_checkpoint, recorded_amp, save_checkpoint
from openlt.engine.decouple import check_stage2_source, stage1_features, train_decoupled
from openlt.engine.dist_signals import interrupt_note
from openlt.engine.evaluate import closed_metrics
from openlt.engine.inference import InferenceSpec, read_inference, write_inference
from openlt.engine.init_from import check_stage1_run, init_from_run
from openlt.engine.stage1_record import stage1_note, training_stage1_record
from openlt.engine.manifest import check_training_data
from openlt.engine.precheck import check_loss_weights, check_open_score_before_training
from openlt.engine.precision import autocast, check_amp, grad_scaler, precision_name, resolve_amp, run_amp
from openlt.engine.run import (Run, RunMovedError, new_folders, new_run, publish_run, remove_empty, remove_stale_stages,
                               run_around, staged_run)
from openlt.engine.runtime import (batch_to, collect_outputs, config_change, config_value, defining_config,
                                   inference_loader, make_loader, resolve_device, stage1_moved_to, to_device,
                                   trained_recipe)
from openlt.engine.tracking import EpochLog
from openlt.errors import ConfigError, OpenLTError, RunDirError, TrainingError, WriteError
from openlt.io import remove_stale_temp, write_json, write_text
from openlt.losses import build_loss, check_train_loss
from openlt.metrics import ShotBands
from openlt.models.model import OpenLTModel, build_model
from openlt.optim import build_optimizer, build_scheduler, lr_schedule, optimizer_step, scheduled_factor
from openlt.reporting.convergence import convergence_note
from openlt.reporting.summary import changes_text, fold_free_mappings

Log = Callable[[str], None]
_LOG = logging.getLogger(__name__)  # the default voice: `openlt train` prints these records (cli.console_logging)


def _optimization(cfg: Config, data, model: OpenLTModel, steps_per_epoch: int, device: torch.device) -> tuple:
    """(criterion, optimizer, learning-rate schedule, grad scaler or None) of a stage-1 run (train.* keys)."""
    criterion = build_loss(cfg.train.loss, data.train_counts, model.backbone.out_dim, **cfg.train.loss_args).to(device)
    optimizer = build_optimizer(model.param_groups(), cfg.train)
    schedule = lr_schedule(cfg.train, steps_per_epoch)  # the config checked here, once
    return criterion, optimizer, schedule, grad_scaler(cfg.train.amp, device)


def train(cfg: Config, *, run: Run | None = None, name: str | None = None, resume: bool = False,
          quiet: bool = False, log: Log | None = None) -> Run:
    """Train per `cfg` into a new run directory (or continue `run` when `resume`); return the run.

    Every split file is parsed and checked before the run directory exists; it appears (OUT_DIR/NAME-STAMP) with
    config.yaml, split_manifest.json and its split files, so that from then on `--resume` works, also after a
    SIGKILL in epoch 1 (it starts again from epoch 1). A new run is removed again when training fails (not when
    it is interrupted) before its first epoch ends. One process trains a run at a time (``Run.lock``). An
    interrupt (KeyboardInterrupt; the CLI raises one on SIGTERM too) comes out with a message naming the run, its
    last checkpoint and the `--resume` command. Raises ConfigError for invalid options (device, precision, batch
    split, schedule, run name), TrainingError when the loss stops being finite, RunDirError for an unusable run,
    checkpoint or metrics.jsonl, or a run another process is training.
    """
    device = _setup(cfg, resume)
    main, rank = distributed.is_main(), distributed.rank()
    log = (log or _print) if main else _silent  # one voice: rank 0 logs and shows progress
    quiet = quiet or not main
    torch.manual_seed(cfg.seed)
    if cfg.decouple.method != "none":  # stage 2 on a frozen representation: re-fitted from the cache on resume
        return _train_decoupled(cfg, run, name, quiet, log, device, resume)
    with _prepared_run(cfg, run, name, resume, log) as (run, data):
        state = _resume_state(run, cfg, log) if resume else None  # None: start at epoch 1
        cfg = _with_amp(cfg, device, state, run)  # the precision the run trains in, recorded in its checkpoints
        model = _build_model(cfg, data, device, state is not None, log, quiet)
        sampler, loader, val_loader = _loaders(cfg, data, device)
        criterion, optimizer, schedule, scaler = _optimization(cfg, data, model, len(loader), device)
        start_epoch, best = _load_last(run, state, model, optimizer, scaler)
        defining = defining_config(cfg, data.class_names)  # unchanged since the run started (check_resume_config)
        stage1 = training_stage1_record(cfg, state)  # the stage-1 run's recipe and sha256 (summary, trial 14a D2)
        if start_epoch >= cfg.train.epochs:
            log("training already finished")
            return run
        recipe, resumed = trained_recipe(cfg), resumed_changes(cfg, state, start_epoch, log)
        scheduler = build_scheduler(optimizer, schedule, start_step=start_epoch * len(loader))
        net = wrap_for_training(model, criterion, device)
        bands = ShotBands.from_config(cfg.eval)
        _log_start(log, cfg, data, bands, device, loader, has_val=val_loader is not None, stage1=stage1)
        started = time.time()
        epoch_log = EpochLog(run, start_epoch) if main else None  # metrics.jsonl, and TensorBoard when it is installed
        for epoch in range(start_epoch, cfg.train.epochs):
            epoch_start = time.time()
            torch.manual_seed(_epoch_seed(cfg.seed, epoch, rank))  # augmentation draws depend on (seed, epoch, rank) only
            sampler.set_epoch(epoch)
            record = train_one_epoch(net, criterion, optimizer, scheduler, loader, device, epoch, cfg, scaler,
                                     model=model, quiet=quiet, run=run)
            if val_loader is not None and ((epoch + 1) % cfg.train.eval_every == 0 or epoch + 1 == cfg.train.epochs):
                record["val"] = validate(model, val_loader, device, data.train_counts, bands, cfg, quiet)
            record["time_s"] = round(time.time() - epoch_start, 2)
            best, improved = save_epoch(run, model, optimizer, scaler, epoch, record, best,
                                        has_val=val_loader is not None, epoch_log=epoch_log, defining=defining,
                                        amp=cfg.train.amp, stage1=stage1, recipe=recipe, resumed=resumed)
            eta = (time.time() - started) / (epoch + 1 - start_epoch) * (cfg.train.epochs - epoch - 1)
            log(_epoch_line(record, cfg.train.epochs, eta, improved))
        _close_log(epoch_log, run, log)
        distributed.barrier()  # the other ranks go on (e.g. to evaluation) once rank 0 has written the checkpoints
    return run


def train_one_epoch(net: torch.nn.Module, criterion: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler: LambdaLR, loader, device: torch.device, epoch: int, cfg: Config,
                    scaler: torch.amp.GradScaler | None = None, *, model: OpenLTModel, quiet: bool = False,
                    run: Run) -> dict:
    """One pass over `loader` (0-based `epoch`): per batch, the forward pass of `net` (`wrap_for_training`:
    images -> (loss, logits)) under `cfg.train.amp` autocast, then :func:`openlt.optim.optimizer_step` (the
    scheduler advances every iteration). `model` is the unwrapped network (a frozen backbone stays in eval mode).

    Returns the epoch's record: train_loss (mean over images), train_acc (fraction in [0, 1]), both over every
    process's images, and lr (`train.lr` times the schedule factor of the epoch's last step). Raises
    TrainingError naming `run` when the loss is not finite.
    """
    if hasattr(criterion, "set_epoch"):  # losses with a schedule (LDAM's deferred re-weighting)
        criterion.set_epoch(epoch)
    net.train()
    if cfg.train.freeze_backbone:
        model.backbone.eval()  # a frozen backbone keeps its batch-norm statistics too
    loss_sum, correct, seen, lr = 0.0, 0, 0, 0.0
    bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.train.epochs}", leave=False,
               disable=True if quiet else None, file=sys.stderr)
    for i, (images, targets) in enumerate(bar):
        lr = cfg.train.lr * scheduled_factor(scheduler)
        images = batch_to(images, device, cfg.train.channels_last)
        targets = targets.to(device, non_blocking=True)
        with autocast(cfg.train.amp, device):
            loss, logits = net(images, targets)
        if not torch.isfinite(loss):
            raise TrainingError(_non_finite_message(loss.item(), epoch, i, run))
        optimizer_step(loss, optimizer, scheduler, scaler)
        loss_sum += loss.item() * len(targets)
        correct += int((logits.argmax(1) == targets).sum())
        seen += len(targets)
        bar.set_postfix(loss=f"{loss_sum / seen:.3f}", lr=f"{lr:.4f}")
    if distributed.world_size() > 1:  # the epoch's loss and accuracy over every process's images
        totals = distributed.all_reduce_sum(torch.tensor([loss_sum, correct, seen], dtype=torch.float64))
        loss_sum, correct, seen = float(totals[0]), int(totals[1]), int(totals[2])
    return {"epoch": epoch + 1, "train_loss": loss_sum / seen, "train_acc": correct / seen, "lr": lr}


def validate(model: OpenLTModel, loader, device: torch.device, train_counts: list[int], bands: ShotBands,
             cfg: Config, quiet: bool = False) -> dict:
    """Closed-set accuracy on the validation loader (eval mode, `cfg.train.amp`): overall, many / medium / few
    (fractions in [0, 1], `closed_metrics`). Every process evaluates its share with rank 0's buffers."""
    distributed.broadcast_buffers(model)  # every rank evaluates with rank 0's (the checkpoint's) BN statistics
    outputs = collect_outputs(model, loader, device, "val", quiet, cfg.train.channels_last, cfg.train.amp)
    return closed_metrics(outputs, train_counts, bands)


def save_epoch(run: Run, model: OpenLTModel, optimizer: torch.optim.Optimizer,
               scaler: torch.amp.GradScaler | None, epoch: int, record: dict, best: float | None, *,
               has_val: bool, epoch_log: EpochLog | None, defining: dict | None = None,
               amp: str | None = None, stage1: dict | None = None, recipe: dict | None = None,
               resumed: list | None = None) -> tuple[float | None, bool]:
    """After epoch `epoch` (0-based): the best checkpoint when validation accuracy improved (every epoch when
    there is no validation split), the last one with the optimizer and grad-scaler state and the epoch's record
    (what `--resume` continues from), then the epoch's metrics line (a kill before it: `--resume` writes it from
    the checkpoint). `defining` (:func:`defining_config` of the config the run started with) goes into the last
    checkpoint's state as "config" (the best one's too), `amp` (the precision it trains in: train.amp resolved)
    as "amp" (checkpoint.recorded_amp), `stage1` (a stage 2's stage-1 run: stage1_record.training_stage1_record) as
    "stage1" in both, `recipe` (:func:`trained_recipe`) as "recipe" and `resumed` (:func:`resumed_changes`) as
    "resumed" in both. Rank 0 writes; returns (best accuracy so far, improved)."""
    score = record.get("val", {}).get("overall")
    improved = score is not None and (best is None or score > best)
    best = score if improved else best
    main = distributed.is_main()
    # what `openlt summary` names the run's recipe by (not config.yaml, which may be edited after training)
    trained = {**({"recipe": recipe} if recipe is not None else {}), **({"resumed": resumed} if resumed else {})}
    if main and (improved or not has_val):
        best_state = {"epoch": epoch, "val_overall": score, **({"config": defining} if defining is not None else {}),
                      **({"amp": amp} if amp is not None else {}), **({"stage1": stage1} if stage1 is not None else {}),
                      **trained}
        _in_place(run, f"the best checkpoint of epoch {epoch + 1}", lambda: save_checkpoint(
            run.checkpoint("best"), model, None, best_state, parents=False))
    state = {"epoch": epoch, "best_val": best, "record": record}  # the record too: the log line is repaired from it
    if defining is not None:  # what --resume must find unchanged in config.yaml (check_resume_config)
        state["config"] = defining
    if amp is not None:  # what --resume, eval, predict and features run in (precision.run_amp, inference_amp)
        state["amp"] = amp
    if stage1 is not None:  # the stage-1 run it started from (its recipe, for summary: trial 14a D2)
        state["stage1"] = stage1
    state.update(trained)
    if scaler is not None:
        state["grad_scaler"] = scaler.state_dict()  # the loss scale continues where it was on resume
    if main:
        _in_place(run, f"the checkpoint of epoch {epoch + 1}",
                  lambda: save_checkpoint(run.checkpoint("last"), model, optimizer, state, parents=False))
        _in_place(run, f"epoch {epoch + 1}'s line of {run.log_file.name}", lambda: epoch_log.write(record))
    return best, improved


def resumed_changes(cfg: Config, state: dict | None, start_epoch: int, log: Log) -> list:
    """The run's record of training keys a `--resume` changed part-way (state "resumed": a list of {"after_epoch":
    epochs done, "changes": {key: [before, after]}}), with this resume's changes added (one note line naming
    them): a run extended from 3 to 6 epochs trained another learning-rate curve than a 6-epoch run, and `openlt
    summary` must not average the two as one recipe (trial 19 D7). A new run, or a resume of a run whose
    checkpoint records no recipe (an older openlt), starts an empty record; a key only one of the two has (the
    checkpoint's openlt had no such key yet, or this one no longer has it) is no change."""
    if state is None or not isinstance(state.get("recipe"), dict):
        return []
    resumed = list(state.get("resumed") or [])
    before, now = fold_free_mappings(state["recipe"]), fold_free_mappings(trained_recipe(cfg))  # loss_args whole
    changes = {key: [before[key], now[key]] for key in sorted(set(before) & set(now)) if before[key] != now[key]}
    if changes:
        resumed.append({"after_epoch": start_epoch, "changes": changes})
        log(f"note: resumed after epoch {start_epoch} with {changes_text(changes)}: this run's recipe is its own "
            f"now (recorded in its checkpoints); `openlt summary` will not average it with runs trained with the new "
            f"settings from the start")
    return resumed


def _in_place(run: Run, what: str, write: Callable[[], None]) -> None:
    """`write` `what` into the run unless its directory was moved or deleted (``Run.check_in_place``: one line,
    nothing written, the directory never recreated: the writes create no missing parent); a write that fails
    because it was moved meanwhile is that same error."""
    run.check_in_place(what)
    try:
        write()
    except WriteError:
        run.check_in_place(what)
        raise


def wrap_for_training(model: OpenLTModel, criterion: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """`model` and its loss as one module (:class:`ModelWithLoss`: images, targets -> (loss, logits)), wrapped in
    DistributedDataParallel under torchrun. The loss sits inside the wrapped module so that DDP sees which
    parameters it used: a head's centroids get a gradient only from a loss with a centroid term."""
    unused = bool(model.param_groups().get("centroids")) and not getattr(criterion, "uses_centroids", False)
    return distributed.data_parallel(ModelWithLoss(model, criterion), device, find_unused_parameters=unused)


class ModelWithLoss(torch.nn.Module):
    """model + loss as one module: forward(images (B, C, H, W), targets (B,) int64) -> (loss: scalar tensor,
    logits (B, num_classes))."""

    def __init__(self, model: torch.nn.Module, criterion: torch.nn.Module) -> None:
        super().__init__()
        self.model, self.criterion = model, criterion

    def forward(self, images: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss, logits) of a batch: see the class docstring."""
        out = self.model(images)
        return self.criterion(out, targets), out["logits"]


def per_process_batch(batch_size: int, world_size: int) -> int:
    """`train.batch_size` is the global batch: each of `world_size` processes takes an equal share of it."""
    if batch_size < 1 or batch_size % world_size:
        raise ConfigError(f"train.batch_size={batch_size} is the global batch and must split evenly over the "
                          f"{world_size} processes (batch_size / WORLD_SIZE images each); "
                          f"use a multiple of {world_size}")
    return batch_size // world_size


# ----------------------------------------------------------------------------------------------- the steps of train()


def _setup(cfg: Config, resume: bool = False) -> torch.device:
    """The device (joining the process group under torchrun), with the options that depend on it checked; for a
    new stage 2, that `train.init_from` is a finished stage-1 run (`check_stage1_run`), and that the loss takes
    train.loss_args, before any work (no run directory exists yet)."""
    if not resume:
        check_stage1_run(cfg)
        inside = run_around(cfg.out_dir)
        if inside is not None:  # (every rank refuses alike, before any work)
            where = "" if inside == Path(cfg.out_dir).expanduser().resolve() else "inside "
            raise ConfigError(f"out_dir {cfg.out_dir} is {where}the run directory {inside}: the new run would be a "
                              f"file of that run; give a folder outside any run (e.g. runs/NAME)")
    check_train_loss(cfg)
    check_loss_weights(cfg)  # per-class loss weights (focal alpha) against the split's class count
    check_open_score_before_training(cfg)  # eval.open_score against the head, width, classes, images
    device = resolve_device(cfg.train.device)
    world = distributed.check_env().world_size  # before joining: every rank refuses alike, rank 0 says it
    per_process_batch(cfg.train.batch_size, world)
    if cfg.train.sync_bn and world > 1 and device.type != "cuda":
        raise ConfigError("train.sync_bn needs CUDA devices (PyTorch's SyncBatchNorm has no CPU kernel); "
                          "leave it off for per-process batch-norm statistics")
    device = distributed.setup(device)
    check_amp(cfg.train.amp, device)
    return device


@contextmanager
def _own_split_named(cfg: Config, stage: Run) -> Iterator[None]:
    """An error about the split files a new run draws into its staged directory names them as files of the split
    drawn from the data (`train.txt of the split this run drew from data.root=...`), not by their path in the
    staged directory, which is removed with the failed run (no such folder exists once the message is read)."""
    try:
        yield
    except OpenLTError as exc:
        text = str(exc)
        folders = sorted({str(stage.splits_dir), os.path.abspath(stage.splits_dir), str(stage.path),
                          os.path.abspath(stage.path)}, key=len, reverse=True)
        source = f"data.root={cfg.data.root}" if cfg.data.root else f"the {cfg.data.dataset} data"
        pattern = "(?:" + "|".join(map(re.escape, folders)) + r")(?:/([^\s'\":,;)]+))?"
        named = re.sub(pattern, lambda m: f"{m.group(1) or 'the split folder'} of the split this run drew from "
                                          f"{source} (not kept)", text)
        if named == text:
            raise
        raise type(exc)(named) from None


@contextmanager
def _prepared_run(cfg: Config, run: Run | None, name: str | None, resume: bool,
                  log: Log) -> Iterator[tuple[Run, DataBundle]]:
    """(the run to train into, its checked data): `run` as given (locked, its split files checked again), or a
    new run made by :func:`_new_run`. An interrupt leaves with a message naming the run and `--resume`."""
    if run is None:
        with _new_run(cfg, name, log) as (run, data):
            yield run, data
        return
    with _locked(run):
        if resume and distributed.is_main():  # temporary files of writes a killed process never finished: only
            remove_stale_temp(run.path, dead_only=True)  # a dead writer's (an eval or features may write there now)
        if resume:
            check_resume_folders(run, cfg)  # moved data: config.yaml's key and how to point it at the new folder
        data = distributed.main_first(lambda: prepare_data(cfg, default_split_dir=run.splits_dir))
        check_training_data(cfg, data, run, resume)  # resume: the split files it started on; open set: a threshold
        if resume:
            check_resume_config(run, cfg, data)  # and the network and input transform it started with
        with _interrupt_note(run), _watched(run):
            yield run, data


RESUME_FOLDERS = ("data.split_dir", "data.root", "data.open_root")  # (override_scope.RUN_FOLDERS)


def check_resume_folders(run: Run, cfg: Config) -> None:
    """DataError, one line, when a data folder of the run's config.yaml (`cfg`) that `--resume` reads is not there:
    naming RUN/config.yaml and the key, and what to do: `--resume` takes no overrides (it continues with config.yaml
    alone), but where the data is may change in config.yaml (not a key that defines the run; the split files are
    still checked against the run's split_manifest.json), so the user sets the key there to the new folder."""
    from openlt.errors import DataError

    for key in RESUME_FOLDERS:
        value = getattr(cfg.data, key.split(".", 1)[1])
        if value is None or Path(value).expanduser().is_dir():
            continue
        raise DataError(f"{run.config_file}: {key} {value} is not a folder; `openlt train --resume` reads the run's "
                        f"data there: if it moved, set {key} in {run.config_file} to the new folder (--resume takes "
                        f"no overrides; the split files there are checked against the run's split_manifest.json), "
                        f"then `openlt train --resume {run.path}` again")


@contextmanager
def _new_run(cfg: Config, name: str | None, log: Log) -> Iterator[tuple[Run, DataBundle]]:
    """A new run, made by rank 0 only once its data passed every check: the split files of data.split_dir are
    checked before anything is created; split files of its own are built and checked in a hidden staged directory
    (``run.staged_run``). With config.yaml and split_manifest.json written, the staged directory is renamed to
    OUT_DIR/NAME-STAMP, locked. It is removed again when training fails before the first checkpoint."""
    if not distributed.is_main():  # the others learn its path and read the split files rank 0 checked
        run = Run(Path(distributed.broadcast_object(None)))
        with _interrupt_note(run):  # rank 0 killed: this rank's DDP collective names it and the run (trial 9 D2)
            yield run, prepare_data(cfg, default_split_dir=run.splits_dir)
        return
    if Path(cfg.out_dir).is_dir():
        remove_stale_stages(cfg.out_dir)  # left by processes killed while they prepared a run
    data = prepare_data(cfg) if cfg.data.split_dir is not None else None
    if data is not None:
        check_training_data(cfg, data, None, False)
    made = new_folders(cfg.out_dir)  # out_dir made for this run: removed again with it (no empty folder left)
    stage, run = staged_run(cfg, name), None
    try:
        with stage.lock():  # rank 0 alone is here (the others wait for the path below): not a collective
            if data is None:  # the run's own split files, built and checked in the staged directory
                with _own_split_named(cfg, stage):
                    data = prepare_data(cfg, default_split_dir=stage.splits_dir)
                    check_training_data(cfg, data, stage, False)
            stage.write_config(cfg)
            stage.write_manifest(data.manifest)
            write_inference(stage, data)  # classes, input, eval transform: predict needs no data
            run = publish_run(stage, cfg, name)
            _adopt_splits(run, stage, data)
            distributed.broadcast_object(str(run.path))
            log(f"run directory: {run.path}")
            with _interrupt_note(run), _watched(run):
                yield run, data
    except BaseException as exc:
        _remove_unfinished(run or stage, exc, staged=run is None)
        remove_empty(made)
        raise


def _remove_unfinished(run: Run, exc: BaseException, staged: bool) -> None:
    """After `exc`: remove a staged run, and a new run without a checkpoint unless it was interrupted (it is
    resumable from epoch 1 then, as after a SIGKILL); an error message then says it is removed."""
    if not staged and (isinstance(exc, (KeyboardInterrupt, RunMovedError, distributed.PeerLost))
                       or run.checkpoint("last").exists()):
        return  # (moved: what is at its old path now is not this run's; a lost peer: resumable as after SIGKILL)
    shutil.rmtree(run.path, ignore_errors=True)
    if not staged and isinstance(exc, OpenLTError):
        exc.args = (f"{str(exc).rstrip()}; the run directory {run.path} is removed",)


@contextmanager
def _locked(run: Run) -> Iterator[None]:
    """Rank 0 holds the run's lock (``Run.lock``) inside the block; the other processes follow rank 0 (its
    refusal is the same one line on every rank: `distributed.held_by_main`)."""
    with distributed.held_by_main(run.lock):
        yield


@contextmanager
def _watched(run: Run) -> Iterator[None]:
    """Rank 0 (the writer) keeps a handle on the run directory inside the block (``Run.watched``): a run moved or
    deleted while it trains stops at its next write (``Run.check_in_place``), never recreating the directory."""
    if not distributed.is_main():
        yield
        return
    with run.watched():
        yield


@contextmanager
def _hinted_interrupt(hint: Callable[[], str]) -> Iterator[None]:
    """A KeyboardInterrupt (Ctrl-C; SIGTERM through the CLI) leaving the block has `hint()` as its message, and so
    has the line the watchdog prints on a signal it has to act on (:func:`interrupt_note`)."""
    try:
        with interrupt_note(hint):
            yield
    except KeyboardInterrupt as exc:
        exc.args = (hint(),)
        raise


@contextmanager
def _interrupt_note(run: Run) -> Iterator[None]:
    """A KeyboardInterrupt (Ctrl-C; SIGTERM through the CLI) leaving the block gets a one-line message: the run,
    the last checkpoint it keeps, and the command that continues it."""
    try:
        with _hinted_interrupt(lambda: _resume_hint(run)):
            yield
    except RuntimeError as exc:  # DDP's gradient all-reduce: a peer killed mid-step (gloo's raw error)
        lost = distributed.peer_lost(exc)
        if lost is None:
            raise
        raise distributed.PeerLost(f"{lost}; {_resume_hint(run)}") from None
    except distributed.PeerLost as exc:  # (the helpers' collectives)
        exc.args = (f"{str(exc).rstrip()}; {_resume_hint(run)}",)
        raise


@contextmanager
def final_evaluation(run: Run) -> Iterator[None]:
    """The evaluation `openlt train` runs after the last epoch: a KeyboardInterrupt (Ctrl-C; SIGTERM through the
    CLI) leaving the block gets the same kind of one-line message as one during training: the run, and the
    command that finishes it (`openlt train --resume RUN` evaluates a trained run that has no metrics.json yet;
    `openlt eval RUN` when one is there, e.g. of an earlier evaluation). An error that stops it (an OpenLTError,
    or an OSError such as a full disk, then a WriteError) gets the same hint after its own message: the run has
    finished training and is kept, and the command that finishes it once the cause is fixed. A run moved away
    meanwhile (RunMovedError) keeps its own message, which names where it went, with the command that finishes
    it there (`openlt train --resume NEW`, or `openlt eval NEW` when it holds a metrics.json)."""
    try:
        with _hinted_interrupt(lambda: _evaluation_hint(run)):
            yield
    except RunMovedError as exc:  # the command that finishes the run where it is now (not `openlt eval` there)
        if exc.where is not None and exc.command is not None:
            finish = _finish_command(Run(exc.where))
            exc.args = (str(exc).replace(f"`{exc.command}`", f"`{finish}`"),)
            exc.command = finish
        raise
    except OpenLTError as exc:
        exc.args = (f"{str(exc).rstrip()}; {_evaluation_failed_hint(run)}",)
        raise
    except OSError as exc:  # not an openlt write: still the machine's (disk full, no permission), one line
        where = f" ({exc.filename})" if exc.filename else ""
        raise WriteError(f"{exc.strerror or exc}{where}; {_evaluation_failed_hint(run)}") from exc


def _finish_command(run: Run) -> str:
    return f"openlt eval {run.path}" if run.metrics_file.is_file() else f"openlt train --resume {run.path}"


def _evaluation_hint(run: Run) -> str:
    return (f"the run {run.path} has finished training, its final evaluation was stopped (nothing of it was "
            f"written, or all of it); finish it with `{_finish_command(run)}`")


def _evaluation_failed_hint(run: Run) -> str:
    return (f"the run {run.path} has finished training and is kept (its checkpoints are written); its final "
            f"evaluation failed, so finish it with `{_finish_command(run)}` once that is fixed")


def _resume_hint(run: Run) -> str:
    last = run.checkpoint("last")
    try:
        kept = f"keeps the checkpoint of epoch {checkpoint_state(last)['epoch'] + 1} ({last})"
    except OpenLTError:  # no epoch had finished (or the checkpoint is unreadable)
        kept = "has no finished epoch yet (it starts again from epoch 1)"
    return f"the run {run.path} {kept}; continue with `openlt train --resume {run.path}`"


def _adopt_splits(run: Run, stage: Run, data: DataBundle) -> None:
    """Split files built in the staged directory: the data and both manifests name them where they are now."""
    if data.split_dir != stage.splits_dir:
        return
    old, new = str(stage.path), str(run.path)

    def moved(files: dict) -> dict:
        return {k: {**info, "file": new + info["file"][len(old):] if info["file"].startswith(old) else info["file"]}
                for k, info in files.items()}

    data.split_dir = run.splits_dir
    data.entries = {k: replace(e, path=run.splits_dir / e.path.name) for k, e in data.entries.items()}
    data.manifest["files"] = moved(data.manifest["files"])
    folder_manifest = run.splits_dir / MANIFEST
    saved = json.loads(folder_manifest.read_text(encoding="utf-8"))  # written by this process a moment ago
    write_json(folder_manifest, {**saved, "files": moved(saved["files"])})
    run.write_manifest(data.manifest)


def _train_decoupled(cfg: Config, run: Run | None, name: str | None, quiet: bool, log: Log,
                     device: torch.device, resume: bool = False) -> Run:
    """Decoupled stage 2: the features first (every check of the stage-1 run, its cache and the method), then
    the run directory (rank 0 creates it, the others learn its path), removed again if the fit fails. A resumed
    run whose fit is done (decouple.json) is left as it is."""
    if resume and run is not None and finished_training(run, cfg):
        log(f"training already finished (decoupled stage 2: {run.decouple_file.name} is written)")
        return run
    if resume and run is not None:  # fitted again: on the stage-1 run it started from, before its features are read
        check_stage2_source(run, cfg)
    feats = stage1_features(cfg, device, quiet)  # every process extracts a share when the cache is stale
    fresh, made = run is None, new_folders(cfg.out_dir) if run is None and distributed.is_main() else []
    if fresh:
        run = Run(Path(distributed.broadcast_object(str(new_run(cfg, name).path) if distributed.is_main() else None)))
        log(f"run directory: {run.path}")
    try:
        with _locked(run):
            if distributed.is_main():  # the rest is cheap (cached features): rank 0 alone, the others wait
                train_decoupled(cfg, run, quiet, log, device, feats)
    except BaseException as exc:
        if fresh and distributed.is_main() and not run.checkpoint("last").exists():
            _remove_unfinished(run, exc, staged=True)  # also when interrupted: nothing to resume in a stage 2
            remove_empty(made)
        raise
    distributed.barrier()
    return run


def _build_model(cfg: Config, data: DataBundle, device: torch.device, from_checkpoint: bool, log: Log,
                 quiet: bool = False) -> OpenLTModel:
    """The network on `device`, initialised from `train.init_from` (not when a checkpoint is loaded into it next),
    backbone frozen (`train.freeze_backbone`) and batch norm synchronised (`train.sync_bn`) as configured."""
    channels_last = cfg.train.channels_last
    model = to_device(build_model(cfg, data.num_classes, data.in_chans, data.image_size), device, channels_last)
    if cfg.train.init_from and not from_checkpoint:
        init_from_run(model, cfg.train.init_from, data, device, cfg.eval.batch_size, cfg.data.workers, channels_last,
                      log, quiet)
    if cfg.train.freeze_backbone:
        model.backbone.requires_grad_(False)
    if cfg.train.sync_bn and distributed.world_size() > 1:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return model


def _loaders(cfg: Config, data: DataBundle, device: torch.device):
    """(train sampler, train loader of this process's share of the global batch, validation loader or None)."""
    rank, world = distributed.rank(), distributed.world_size()
    train_set = data.dataset("train", train=True)
    sampler = build_sampler(cfg.train.sampler, train_set.targets, epochs=cfg.train.epochs, seed=cfg.seed,
                            rank=rank, world_size=world)  # every rank draws the same global order, takes its share
    loader = make_loader(train_set, per_process_batch(cfg.train.batch_size, world), cfg.data.workers, device,
                         sampler=sampler, pin_memory=cfg.data.pin_memory)
    val_loader = (inference_loader(data.dataset("val"), cfg.eval.batch_size, cfg.data.workers, device,
                                   data.image_size, cfg.data.pin_memory) if data.has("val") else None)
    return sampler, loader, val_loader


def finished_training(run: Run, cfg: Config) -> bool:
    """Whether `run` (with its config `cfg`) has nothing left to train: a decoupled stage 2 whose decouple.json is
    written (its fit is done), or a run whose last checkpoint is of epoch train.epochs. ConfigError when the last
    checkpoint is past train.epochs (config.yaml edited to fewer epochs: `--resume` cannot train fewer);
    RunDirError for a malformed checkpoint."""
    if cfg.decouple.method != "none":
        return run.decouple_file.is_file()
    last = run.checkpoint("last")
    if not last.is_file():
        return False
    done = checkpoint_state(last)["epoch"] + 1
    _check_epochs(run, cfg, done)
    return done >= cfg.train.epochs


def _check_epochs(run: Run, cfg: Config, done: int) -> None:
    if done > cfg.train.epochs:
        raise ConfigError(f"{run.path} has trained {done} epochs, but train.epochs={cfg.train.epochs} in its "
                          f"{run.config_file.name}: --resume cannot train fewer epochs than are done; set train.epochs "
                          f"to {done} or more there (or start a new run)")


_MAY_CHANGE = ("only training-schedule, evaluation and loader keys (train.epochs, train.schedule, train.warmup_epochs, "
               "train.min_lr, eval.*, data.workers, ...) may change on resume")


def check_resume_config(run: Run, cfg: Config, data: DataBundle) -> None:
    """Refuse to resume `run` when its config.yaml (`cfg`, with its checked `data`) changed a key that defines the
    data, the network or its input transform, where its weights started (train.init_from, compared as resolved
    paths) or what its optimizer state was built with (train.freeze_backbone, train.lr / backbone_lr /
    centroid_lr, momentum, nesterov, weight_decay: the checkpoint's would apply, or its parameter groups would
    not fit) or the recipe its config.yaml names (seed, train.loss, train.sampler) since the run started (runtime :data:`DEFINING_KEYS`): compared with the config the last checkpoint
    records (state "config", :func:`defining_config`), then with the input the run's inference.json records (size,
    channels, evaluation transform: written when the run started, never rewritten; this also covers a run with
    no checkpoint yet, or of an older openlt). ConfigError naming the key, both values and what may change,
    before the model or optimizer is built."""
    last = run.checkpoint("last")
    state = checkpoint_state(last) if last.is_file() else {}
    recorded = state.get("config")
    if isinstance(recorded, dict):
        if stage1_moved_to(recorded.get("train.init_from"), cfg.train.init_from, state):
            recorded = {**recorded, "train.init_from": os.path.abspath(cfg.train.init_from)}  # the same run, moved
        change = config_change(recorded, cfg, for_evaluation=False)
        if change is not None:
            key, then, now = change
            raise ConfigError(_changed_message(run, key, then, now, f"the checkpoint {last}"))
    spec = read_inference(run)
    if spec is None:
        return
    now_spec = InferenceSpec.from_data(data)
    for field, key in (("image_size", "data.image_size"), ("in_chans", "data.in_chans")):
        then, now = getattr(spec, field), getattr(now_spec, field)
        if then != now:
            raise ConfigError(_changed_message(run, key, then, now, run.inference_file, resolved=True))
    if spec.transform != now_spec.transform:
        field = next(k for k in sorted(set(spec.transform) | set(now_spec.transform))
                     if spec.transform.get(k) != now_spec.transform.get(k))
        raise ConfigError(_changed_message(run, f"the input transform's {field} (data.transform, data.dataset)",
                                           spec.transform.get(field), now_spec.transform.get(field),
                                           run.inference_file, resolved=True))


def _changed_message(run: Run, key: str, then, now, where, resolved: bool = False) -> str:
    what = "resolves to" if resolved else "is"
    return (f"{run.config_file}: {key} {what} {config_value(now)} now, but the run started with {config_value(then)} "
            f"(recorded in {where}); `--resume` continues only with the data, network, initial weights and optimizer "
            f"the run started with ({_MAY_CHANGE}): set it back, or start a new run")


def _resume_state(run: Run, cfg: Config, log: Log) -> dict | None:
    """The state of the run's last checkpoint (None when no epoch had finished: a run killed in epoch 1 starts
    again), with metrics.jsonl made to match it (rank 0): a torn last line dropped, lines written after the
    checkpoint dropped, the checkpoint's epoch line restored when a kill came between the two writes. RunDirError
    for a malformed log line or checkpoint, or a log without the checkpoint it was written with; nothing is
    rewritten before these checks."""
    records, note = run.read_log()
    last = run.checkpoint("last")
    if not last.exists():
        if records:
            raise RunDirError(f"checkpoint not found: {last}, but {run.log_file} has {len(records)} finished "
                              f"epoch(s); restore the checkpoint, or start a new run")
        state, kept = None, []
    else:
        state = checkpoint_state(last)
        done = state["epoch"] + 1
        _check_epochs(run, cfg, done)
        kept = [r for r in records if r["epoch"] <= done]
        if (not kept or kept[-1]["epoch"] != done) and "record" in state:
            kept.append(state["record"])  # the kill came after the checkpoint, before the line
            log(f"note: epoch {done}'s line of {run.log_file} restored from {last}")
    if note:
        log(f"note: {note}")
    if distributed.is_main() and (kept != records or note):
        write_text(run.log_file, "".join(json.dumps(r) + "\n" for r in kept))
    log(f"resuming {run.path} " + (f"after epoch {state['epoch'] + 1}/{cfg.train.epochs}" if state else
                                   "from epoch 1 (no epoch had finished)"))
    return state


def _with_amp(cfg: Config, device: torch.device, state: dict | None, run: Run) -> Config:
    """`cfg` (a copy) with train.amp resolved to the precision this run trains in: a new run (or one that had
    finished no epoch, `state` None) what `auto` means on `device` now (precision.resolve_amp: bf16 on a CPU with
    bfloat16 units too); a resumed run the precision its last checkpoint records, so that it continues as it
    started; one whose checkpoint records none (written before openlt recorded it) as `auto` meant then, float32
    on any CPU (precision.run_amp). config.yaml keeps what the user wrote. A resumed run whose train.amp (config.yaml
    edited, or an override) asks for another precision than its checkpoints record is refused (issue 14 D5): one
    run trains in one precision, its best checkpoint and its last would otherwise disagree."""
    recorded = None if state is None else recorded_amp(state)
    amp = resolve_amp(cfg.train.amp, device) if state is None else run_amp(cfg.train.amp, device, recorded)
    if recorded is not None and amp != recorded:
        raise ConfigError(f"train.amp={cfg.train.amp} ({run.config_file} or an override) asks --resume to continue "
                          f"in {precision_name(amp)}, but the run trained in {precision_name(recorded)} (its "
                          f"checkpoints record it): a run keeps its precision; set train.amp back to auto or "
                          f"{recorded}, or train a new run in {precision_name(amp)} from its weights "
                          f"(train.init_from={run.path})")
    check_amp(amp, device)  # (a run trained in bf16 on a GPU, resumed on one without bfloat16: one line)
    cfg = copy.deepcopy(cfg)
    cfg.train.amp = amp
    return cfg


def _load_last(run: Run, state: dict | None, model: OpenLTModel, optimizer: torch.optim.Optimizer,
               scaler: torch.amp.GradScaler | None) -> tuple[int, float | None]:
    """Load the last checkpoint (weights, optimizer, loss scale) when `state` says there is one; return (first
    epoch to train, 0-based; best validation accuracy so far)."""
    if state is None:
        return 0, None
    load_checkpoint(run.checkpoint("last"), model, optimizer)
    if scaler is not None and state.get("grad_scaler"):
        scaler.load_state_dict(state["grad_scaler"])
    return state["epoch"] + 1, state.get("best_val")


def _epoch_seed(seed: int, epoch: int, rank: int = 0) -> int:
    """The seed of an epoch's augmentation draws; each process of a distributed run draws its own
    (rank 0 the same as a single process)."""
    return (seed * 1_000_003 + epoch * 7919 + rank * 104_729) % (2**63)


def _start_line(cfg: Config, data: DataBundle, bands: ShotBands, device: torch.device, images: int, steps: int) -> str:
    world, amp = distributed.world_size(), resolve_amp(cfg.train.amp, device)
    return (f"{images} training images, {data.num_classes} classes ({bands.describe()}), {cfg.model.backbone} on "
            f"{device}" + (f" x {world} processes" if world > 1 else "") + f", {cfg.train.epochs} epochs of {steps} "
            f"steps" + (f", amp {amp}" if amp != "none" else "") + (f"; {data.input_note}" if data.input_note else ""))


def _log_start(log: Log, cfg: Config, data: DataBundle, bands: ShotBands, device: torch.device, loader, *,
               has_val: bool, stage1: dict | None) -> None:
    """The run's start line, a note when the stage-1 run of a stage 2 (`stage1`: its record) may be under-trained
    or could not be checked (stage1_record.stage1_note), and one when the validation split lacks some known class."""
    log(_start_line(cfg, data, bands, device, len(loader.dataset), len(loader)))
    note = stage1_note(cfg, stage1)
    if note:
        log(f"note: {note}")
    untested = _classes_without_val_images(data) if has_val else ""
    if untested:
        log(f"note: the validation split has no image of {untested}: each epoch's validation top-1 (and the best "
            f"checkpoint chosen on it) averages over the classes it has")


def _close_log(epoch_log: EpochLog | None, run: Run, log: Log) -> None:
    """Close metrics.jsonl (rank 0) and say when the run may be under-trained (best epoch late, validation still
    rising: reporting.convergence), or that its curve could not be judged (no validation, too few evaluations)."""
    if epoch_log is None:
        return
    epoch_log.close()
    note = convergence_note(run.epochs_logged())
    if note:
        log(f"note: {note}")


def _classes_without_val_images(data: DataBundle) -> str:
    """``2 classes (dog, eel)``: the known classes the validation split file lists no image of (own split files
    may leave a rare class out), or "" when it has every class (or is not a parsed split file)."""
    entries = data.entries.get("val")
    if entries is None:
        return ""
    missing = sorted(set(range(data.num_classes)) - set(entries.labels))
    if not missing:
        return ""
    names = ", ".join(data.class_names[k] for k in missing[:5]) + (", ..." if len(missing) > 5 else "")
    return f"{len(missing)} class{'es' if len(missing) > 1 else ''} ({names})"


def _epoch_line(record: dict, epochs: int, eta_s: float, improved: bool) -> str:
    val_text = "" if "val" not in record else "  val " + " ".join(
        f"{b} {_pct(record['val'][b])}" for b in ("many", "medium", "few", "overall"))
    return (f"epoch {record['epoch']:3d}/{epochs}  loss {record['train_loss']:.3f}  train acc "
            f"{100 * record['train_acc']:.1f}{val_text}  ({record['time_s']:.0f}s, eta {eta_s / 60:.1f} min)"
            f"{'  *best' if improved else ''}")


def _non_finite_message(value: float, epoch: int, step: int, run: Run) -> str:
    """Why training stopped, and what is left: the checkpoint of the last finished epoch, or nothing."""
    text = (f"loss became {value} at epoch {epoch + 1}, step {step + 1} (try a lower train.lr, in a new run: "
            f"--resume keeps the run's); ")
    if run.checkpoint("last").exists():
        return text + (f"the last good checkpoint (epoch {epoch}) is kept: {run.checkpoint('last')}; "
                       f"`openlt train --resume {run.path}` continues from it with the run's config.yaml")
    return text + "no epoch had finished, so no checkpoint was written"


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def _print(line: str) -> None:
    _LOG.info(line)


def _silent(line: str) -> None:
    pass
