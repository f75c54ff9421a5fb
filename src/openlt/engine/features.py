"""Feature cache: the pooled features (what the classifier head sees) and labels of every split, extracted once
with a run's frozen network (eval mode, no augmentation), so that stage-2 classifiers (cRT, NCM, tau-norm,
LWS) train in seconds without touching the backbone.

One safetensors file per split under RUN/features/, with the key it was made from in its metadata: the
checkpoint's and the split file's sha256, the images' folder, sizes and modification times, and the dtype. A file
whose key no longer matches (the run was trained further, the split or an image changed) is stale and is
recomputed; a matching one is reused.

Under torchrun every process extracts a share of the images (`ShardSampler`) and all get the whole split back
(`gather_outputs`, also when a share is empty: a split smaller than the processes), as evaluation does; rank 0
alone decides whether a file is fresh and alone writes it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from tqdm import tqdm

from openlt.config import Config
from openlt.data.build import DataBundle, prepare_data
from openlt.engine import distributed
from openlt.engine.checkpoint import checkpoint_state, recorded_amp
from openlt.engine.runtime import (batch_to, inference_loader, inference_passes, load_run_model, command_device,
                                   trim_heap)
from openlt.engine.precision import autocast, inference_amp
from openlt.engine.run import Run
from openlt.errors import ConfigError, WriteError
from openlt.io import TempRemovedError, atomic_path, remove_stale_temp, sha256_file
from openlt.models.fusion import inference_copy
from openlt.models.model import OpenLTModel

_LOG = logging.getLogger(__name__)

SPLITS = ("train", "val", "test", "open")
DTYPES = {"float32": torch.float32, "float16": torch.float16}
FORMAT = "openlt-features/1"


def cache_key(checkpoint: str, checkpoint_sha256: str, data: DataBundle, split: str, dtype: str,
              amp: str = "none") -> dict:
    """What a cached file must have been made from to be reused (the autocast precision only when not float32;
    the folder of the split's image files when they are files, and each file's size and modification time: a split
    file lists names, so another copy of the images under the same names -- data.root or data.open_root pointing
    elsewhere -- is other data, and so is an image written again in place. Packed data, Fashion-MNIST and CIFAR,
    is checked by its files' sha256 against the run's manifest instead). The split file by its real path: one file
    named relative to the working folder by one config and absolutely by another (a bench's relative
    data.split_dir, a stage 2's OLTR centroids and its decoupled rows) is one cache, not two that rebuild each other."""
    key = {"format": FORMAT, "checkpoint": checkpoint, "checkpoint_sha256": checkpoint_sha256,
           "split_file": os.path.realpath(data.split_path(split)), "split_sha256": sha256_file(data.split_path(split)),
           "dtype": dtype}
    root = getattr(data.loader_of(split), "root", None)
    if root is not None:
        key["image_root"] = os.path.realpath(root)
        if split in data.entries:  # an image rewritten under its own name (edited, regenerated) is other data too
            key["images_stat_sha256"] = _files_stamp(Path(root), data.entries[split].items)
    return key if amp == "none" else {**key, "amp": amp}


def _rank0_key(main: bool, *args) -> dict:
    """:func:`cache_key` (`args`) as rank 0 builds it, on every process: one stat pass over the split's images, and
    one view of them (a node that saw a rewritten image late would otherwise decide otherwise than the rest)."""
    return distributed.broadcast_object(cache_key(*args) if main else None)


def _files_stamp(root: Path, items) -> str:
    """sha256 of each listed image's name, size and modification time (ns): what changes when a file is written
    again under its name, without reading the pixels (the split check stats every file already)."""
    digest = hashlib.sha256()
    for item in items:
        stat = os.stat(root / item)
        digest.update(f"{item}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


def _read(path: Path) -> tuple[dict, dict[str, torch.Tensor]] | None:
    """(key, tensors) of a cache file, or None when it is absent or unreadable (then it is rebuilt)."""
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt", device="cpu") as fh:
            key = json.loads((fh.metadata() or {}).get("openlt", "{}"))
            tensors = {name: fh.get_tensor(name) for name in fh.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError):
        return None
    if set(tensors) != {"features", "labels"}:
        return None
    return key, tensors


@torch.no_grad()
def extract_features(model: OpenLTModel, loader, device: torch.device, desc: str = "features", quiet: bool = False,
                     channels_last: bool = False, amp: str = "none") -> tuple[torch.Tensor, torch.Tensor]:
    """(N, D) float32 features (the head's input) and (N,) labels, in the loader's order, in eval mode
    (under `amp` autocast: the run's train.amp where the device runs it), each batch in `inference_passes`. A
    loader sharded over processes (`make_loader(..., shard=True)` under torchrun) gives every process all of them.
    The forward runs on :func:`openlt.models.fusion.inference_copy`'s copy of `model` (same up to float rounding)."""
    model = inference_copy(model)  # eval mode; the forward on a copy with its batch norms folded (faster)
    feats, labels = [], []
    quiet = quiet or not distributed.is_main()
    trim_heap()  # before the loader forks its workers
    for batch, targets in tqdm(loader, desc=desc, leave=False, disable=True if quiet else None, file=sys.stderr):
        for images in inference_passes(batch, device):  # bounded activation memory on the CPU
            with autocast(amp, device):
                feature = model.features(batch_to(images, device, channels_last))[1]
            feats.append(feature.float().cpu())
        labels.append(targets)
    if isinstance(loader.sampler, distributed.ShardSampler):  # also a share with no image (fewer than processes)
        outputs = {"features": torch.cat(feats), "labels": torch.cat(labels).long()} if feats else {}
        outputs = distributed.gather_outputs(outputs, len(loader.dataset))
        return outputs["features"], outputs["labels"]
    return torch.cat(feats), torch.cat(labels).long()


def extraction_amp(run: Run, cfg: Config, device: torch.device, checkpoint: str = "best") -> str:
    """The precision `run`'s features are extracted in on `device` (and its cache key records): the one it trained
    in, where this device has it (precision.inference_amp; an older run: float32 on CPUs). A decoupled stage 2 of
    `run` is fitted on them, so it is that stage 2's precision too (engine/decouple.py)."""
    return inference_amp(cfg.train.amp, device, recorded_amp(checkpoint_state(run.checkpoint(checkpoint))))


def load_features(run: Run, splits: tuple[str, ...] = SPLITS, checkpoint: str = "best", dtype: str = "float32",
                  device: str | None = None, force: bool = False, quiet: bool = False,
                  cfg: Config | None = None, checkpoint_sha256: str | None = None,
                  command: str | None = None, named: bool = False) -> dict[str, dict[str, torch.Tensor]]:
    """{split: {"features": (N, D), "labels": (N,)}} for each split the run has, from the cache when it is fresh,
    else extracted (and cached). Splits the run's data lacks (no val / open) are left out, unless `named` (the user
    named them: `openlt features --splits`; :func:`_present`); a split named twice is extracted once. Features read
    from the cache keep its dtype (`dtype`: a float16 cache stays float16, half the memory: 1.7 GB instead of 3.4 GB for
    iNaturalist's training split); their consumers convert to float32 a batch or chunk of rows at a time where they
    compute (cRT / LWS batches, NCM's class sums, the head on a split's features, the open-set score fits), which
    gives the values of a whole conversion. Freshly extracted features are returned as the cache holds them (in
    `dtype`), so that a result never depends on whether the cache was there.
    `checkpoint_sha256`: the checkpoint's, from a caller that hashed it (identify; every process): not hashed again.
    `command` ("features": `openlt features RUN`, whose work is the cache): the split files are first checked
    against the run's split_manifest.json (as `openlt eval` does), and a cache that cannot be written (a read-only
    run) is an error, one line. Without it (a decoupled stage 2 reading its stage-1 run), a cache that cannot be
    written is noted once and the features are used without being cached."""
    _check_request(dtype, splits)
    cfg = cfg or run.config()
    dev = distributed.setup(_device(device, cfg))
    data = prepare_data(cfg, default_split_dir=run.splits_dir)
    splits = _present(run, data, splits, named)
    if command is not None:  # the split files the run was trained on (a stage 2 checks its stage-1 run itself)
        from openlt.engine.manifest import verify_manifest

        verify_manifest(run, data, command)
    model = None  # loaded only when a split must be (re-)extracted
    main = distributed.is_main()
    unwritable: list[str] = []  # why the cache cannot be written, once known
    if checkpoint_sha256 is None:  # once, not per split and not per process: checkpoints are large
        checkpoint_sha256 = distributed.broadcast_object(sha256_file(run.checkpoint(checkpoint)) if main else None)
    amp = extraction_amp(run, cfg, dev, checkpoint)
    result: dict[str, dict[str, torch.Tensor]] = {}
    for split in splits:
        path = run.feature_cache(split)
        key = _rank0_key(main, checkpoint, checkpoint_sha256, data, split, dtype, amp)
        existed = path.is_file()
        cached = None if force else _read(path)
        reused = _reused(path, cached, key)
        if reused is not None:
            feats, labels = reused
            status = "reused"
        else:  # every process extracts its share of the split; rank 0 writes the whole
            if model is None:
                cfg, data, model, _ = load_run_model(run, checkpoint, dev, cfg)
            feats, labels = _extract_split(model, cfg, data, split, dev, quiet, amp, dtype)
            if main and not unwritable:
                _write_cache(run, path, feats, labels, key, command, unwritable)
            distributed.barrier()  # the file is complete before any process goes on
            status = ("stale, rebuilt" if cached is not None else
                      "unreadable, rebuilt" if existed and not force else "extracted")
            if unwritable:
                status += ", not cached"
        if not quiet and main:
            _LOG.info(f"features {split:5s} {tuple(feats.shape)} {dtype}: {status} ({path})")
        result[split] = {"features": feats, "labels": labels}  # the cache's dtype: no float32 copy of the split
    return result


def _device(device: str | None, cfg: Config) -> torch.device:
    """The device features are extracted on: `device` (`openlt features --device`; the other callers pass the device
    they already use), else the run's train.device; one that is not there is named as given (trial 16 D11: --device
    was named train.device)."""
    return command_device(device, cfg.train.device)


def _present(run: Run, data: DataBundle, splits: tuple[str, ...], named: bool) -> tuple[str, ...]:
    """`splits` once each, in order, without those the run's data lacks. ConfigError, one line, for a missing train
    or test split, and, when the splits were `named` (`openlt features --splits val open` on a run with
    data.val_split: null: was exit 0 and nothing said, trial 16 D7), for any split the run lacks, naming why and
    the splits it has."""
    splits = tuple(dict.fromkeys(splits))  # (`--splits test test`: one extraction, one line)
    for split in ("train", "test"):
        if split in splits and not data.has(split):
            raise ConfigError(f"run {run.path} has no {split} split file ({data.split_path(split)})")
    missing = [split for split in splits if not data.has(split)]
    if named and missing:
        why = [f"data.{split}_split is null" if data.split_path(split) is None else
               f"{data.split_path(split)} does not exist" for split in missing]
        has = [split for split in SPLITS if data.has(split)]
        raise ConfigError(f"run {run.path} has no {' and no '.join(missing)} split ({'; '.join(why)}): --splits "
                          f"can name {', '.join(has)}")
    return tuple(split for split in splits if split not in missing)


def _extract_split(model, cfg: Config, data, split: str, dev, quiet: bool, amp, dtype: str):
    """(features in `dtype`, as the cache holds them and as a reuse reads them; labels) of one split."""
    loader = inference_loader(data.dataset(split, train=False), cfg.eval.batch_size, cfg.data.workers, dev,
                              data.image_size, cfg.data.pin_memory)
    feats, labels = extract_features(model, loader, dev, f"features {split}", quiet, cfg.train.channels_last, amp)
    return feats.to(DTYPES[dtype]), labels


def _check_request(dtype: str, splits: tuple[str, ...]) -> None:
    if dtype not in DTYPES:
        raise ConfigError(f"feature cache dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    for split in splits:
        if split not in SPLITS:
            raise ConfigError(f"unknown split {split!r}; choose from {', '.join(SPLITS)}")


def _reused(path: Path, cached, key: dict) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(features, labels) of the cache read from PATH when it holds KEY, else None; rank 0's view decides for
    every process."""
    if not distributed.broadcast_object(cached is not None and cached[0] == key):
        return None
    if cached is None or cached[0] != key:  # rank 0 read a fresh file that this process cannot
        raise ConfigError(f"feature cache {path} differs between processes; the run directory must be on "
                          "a file system every process sees")
    return cached[1]["features"], cached[1]["labels"]


_NOTED: set[Path] = set()  # the feature caches noted as not writable (:func:`_write_cache`)


def _write_cache(run: Run, path: Path, feats: torch.Tensor, labels: torch.Tensor, key: dict, command: str | None,
                 unwritable: list[str]) -> None:
    """Write one split's cache file (the features folder made inside the run directory, never the run directory
    itself: a run moved away is not recreated); first, the temporary files of killed extractions (their process
    dead) are removed. A folder that cannot be written (a read-only run): WriteError, one line, for `openlt
    features` (`command`); otherwise a note, once, and `unwritable` records why (nothing more is tried)."""
    try:
        path.parent.mkdir(exist_ok=True)
        remove_stale_temp(path.parent, dead_only=True)
        with atomic_path(path, parents=False) as tmp:
            save_file({"features": feats.contiguous(), "labels": labels.contiguous()}, str(tmp),
                      metadata={"openlt": json.dumps(key)})
    except (OSError, WriteError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc).split(": ")[-1]
        reason = reason.split(" (the previous version")[0]
        if isinstance(exc, TempRemovedError):  # not a permissions problem: another process removed the temporary
            reason = "its temporary file was removed by another process while it was written (the folder is writable)"
            if command is not None:
                raise WriteError(f"cannot write the feature cache {run.features_dir} of the run {run.path}: {reason}; "
                                 f"run `openlt features` again") from None
            _LOG.warning(f"the feature cache {path} of the stage-1 run {run.path} was not written ({reason}): its "
                         f"features are used uncached by this command (the results are the same)")
            return
        if command is not None:
            raise WriteError(f"cannot write the feature cache {run.features_dir} of the run {run.path}: {reason}; "
                             f"make that folder writable, or copy the run to a writable folder and run `openlt "
                             f"features` on the copy") from None
        unwritable.append(reason)
        if run.features_dir in _NOTED:  # once a process (a stage 2 and its final evaluation read it twice)
            return
        _NOTED.add(run.features_dir)
        _LOG.warning(f"the feature cache {run.features_dir} of the stage-1 run {run.path} cannot be written "
                     f"({reason}): its features are extracted for this command alone, not cached (extracted again "
                     f"next time; the results are the same). Make that folder writable to cache them")


def stage1_source(cfg: Config) -> tuple[Run, Config] | None:
    """A decoupled run's stage-1 run (`train.init_from`), opened, and its config where this run says its data is now
    (stage1_record.stage1_config); None when the stage-1 run is gone. What :func:`stage1_cache` reads and
    :func:`stage1_amp` asks the precision of."""
    from openlt.engine.stage1_record import stage1_config
    from openlt.engine.run import open_run
    from openlt.errors import RunDirError

    try:
        source = open_run(cfg.train.init_from)
    except (RunDirError, TypeError):
        return None
    return source, stage1_config(source, cfg)


def stage1_cache(cfg: Config, splits: list[str], device: torch.device, quiet: bool = False
                 ) -> dict[str, dict[str, torch.Tensor]] | None:
    """The feature cache of a decoupled run's stage-1 run (`train.init_from`) for `splits`, read once
    (:func:`load_features`: {split: {"features", "labels"}}), or None when the stage-1 run is gone."""
    found = stage1_source(cfg)
    if found is None:
        return None
    source, source_cfg = found
    return load_features(source, tuple(splits), dtype=cfg.decouple.cache_dtype, device=str(device), quiet=quiet,
                         cfg=source_cfg)


def stage1_amp(cfg: Config, device: torch.device) -> str | None:
    """The precision of a decoupled run's stage-1 feature cache on `device` (:func:`extraction_amp`: what
    :func:`stage1_cache` reads), or None when the stage-1 run is gone (or its config / checkpoint cannot be read)."""
    from openlt.errors import RunDirError

    try:
        found = stage1_source(cfg)
        return None if found is None else extraction_amp(*found, device)
    except (RunDirError, TypeError):
        return None


@torch.no_grad()
def head_outputs_on_cache(model: OpenLTModel, cached: dict[str, torch.Tensor], device: torch.device,
                          keep: tuple[str, ...] = ("logits", "reachability")) -> dict[str, torch.Tensor]:
    """One split's outputs from its cached features ({"features" (N, D), "labels" (N,)}): the model's head on
    them (in float32: a float16 cache's features converted for the head, split by split), `keep` as
    `runtime.collect_outputs` ("feature": the cached features themselves, in the cache's dtype), and "labels"."""
    from openlt.models.meta_embedding import head_outputs

    model.eval()
    out = {**head_outputs(model.classifier, cached["features"].to(device, torch.float32)), "feature": cached["features"]}
    return {**{k: out[k] if k == "feature" else out[k].float().cpu() for k in keep if k in out},  # feature: no copy
            "labels": cached["labels"]}


def cached_head_outputs(cfg: Config, model: OpenLTModel, splits: list[str], device: torch.device,
                        quiet: bool = False, keep: tuple[str, ...] = ("logits", "reachability")
                        ) -> dict[str, dict[str, torch.Tensor]]:
    """The outputs of a decoupled run (stage-1 body + new head) computed from its stage-1 run's feature cache:
    the head applied to the cached features, so evaluation passes no image through the backbone; `keep` as
    `runtime.collect_outputs` ("feature": the cached features themselves). Returns {} when the stage-1 run is
    gone (the caller then evaluates through the network)."""
    feats = stage1_cache(cfg, splits, device, quiet)
    if feats is None:
        return {}
    return {split: head_outputs_on_cache(model, cached, device, keep) for split, cached in feats.items()}
