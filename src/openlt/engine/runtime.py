"""The engine's ground floor: the device, data loaders, moving a batch there, inference over a loader, and
loading a run's model. Every other engine module builds on these; this one imports no other engine module but
`distributed`, `precision`, `checkpoint` and `run`."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import json
import os
import sys
from pathlib import Path
from typing import Callable

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from openlt.config import Config, flatten, to_dict
from openlt.data.build import DataBundle, prepare_data
from openlt.data.transforms import normalisation
from openlt.engine import distributed
from openlt.engine.checkpoint import checkpoint_state, load_checkpoint
from openlt.engine.manifest import label_difference
from openlt.engine.precision import autocast
from openlt.engine.run import PATH_KEYS, Run, absolute_paths
from openlt.engine.stage1_record import check_stage1_unchanged
from openlt.errors import ConfigError, RunDirError
from openlt.models.classifier import LinearClassifier
from openlt.models.fusion import inference_copy
from openlt.models.model import OpenLTModel, build_model
from openlt.openset.base import MODEL_SCORE, OpenSetScore, no_linear_head


DEVICE_KINDS = {"cuda": "CUDA", "mps": "MPS (Apple GPU)", "xpu": "XPU (Intel GPU)"}


def _device_missing(device: torch.device) -> str | None:
    """Why `device` cannot be used here (None: it can): its type not built into this PyTorch or not available on
    this machine, or an index past the devices there are."""
    if device.type == "cpu":
        return None
    kind = DEVICE_KINDS.get(device.type, device.type)
    if device.type == "mps":
        backend = getattr(torch.backends, "mps", None)
        available = backend is not None and backend.is_available()
        count = 1
    else:
        module = getattr(torch, device.type, None)  # torch.cuda, torch.xpu, torch.mtia, ...
        probe = getattr(module, "is_available", None)
        available = bool(callable(probe) and probe())
        count = module.device_count() if available and callable(getattr(module, "device_count", None)) else 1
    if not available:
        return f"no {kind} device is available"
    if device.index is not None and device.index >= count:
        return f"there is no {kind} device {device.index} (this machine has {count}: 0..{count - 1})"
    return None


def resolve_device(name: str, option: str = "train.device") -> torch.device:
    """The torch device of ``train.device``: ``"auto"`` is CUDA when available, else the CPU; any other name as
    given (``"cpu"``, ``"cuda:1"``, ``"mps"``, ...). Raises ConfigError, naming `option` (where the name came from:
    ``train.device``, ``--device``, ``device=``), for a name that is not a device and for a device this machine
    (or this PyTorch build) does not have: a CUDA, MPS or XPU device where there is none, an index past the
    devices there are.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    given, fix = ((f"{option} {name}", f"{option} cpu") if option.startswith("--") else
                  (f"{option}{'' if option.endswith('=') else '='}{name!r}", f"{option.rstrip('=')}=cpu"))
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError, TypeError):
        raise ConfigError(f"{given} is not a device (auto, cpu, cuda, cuda:N, mps); use {fix} or auto") from None
    missing = _device_missing(device)
    if missing is not None:
        raise ConfigError(f"{given} but {missing}; use {fix} or auto")
    return device


def command_device(device: str | None, run_device: str) -> torch.device:
    """The device of a command on a run: its ``--device`` option when given (a missing device named as --device),
    else the run's ``train.device`` (named as such). :func:`resolve_device`'s errors."""
    return resolve_device(device, "--device") if device else resolve_device(run_device)


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


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to hand back this way
        return None


def trim_heap() -> None:
    """Hand the C heap's free pages back to the system (glibc ``malloc_trim``; a no-op elsewhere). Called before
    a loader forks its workers: a forked worker shares every page of this process, and every free page that this
    process writes again afterwards stays behind as the workers' copy, so the free heap left by training steps
    (hundreds of MB at 224 px) would be held once more by the validation workers for the whole run."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


CPU_PIXELS_PER_PASS = 16 * 224 * 224  # pixels of the images of one inference forward pass on the CPU


def cpu_images_per_pass(height: int, width: int) -> int:
    """Images of `height` x `width` pixels in one inference forward pass on the CPU (``CPU_PIXELS_PER_PASS``)."""
    return max(1, CPU_PIXELS_PER_PASS // (height * width))


def inference_passes(images: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, ...]:
    """A loader batch (B, C, H, W) cut into the chunks of one inference forward pass each: on the CPU at most
    ``CPU_PIXELS_PER_PASS`` pixels of images (16 images at 224 px, 1,024 at 28 px, so the small-image benchmarks
    keep whole batches), so that the activations of evaluation, validation and feature extraction stay those of
    16 images at 224 px whatever eval.batch_size (ResNet-10: 0.1 GB; 1.1 GB for 160 images), and no slower (the CPU
    kernels run small batches at least as fast); on a GPU the whole batch. Each image's outputs are the same
    (inference: no batch statistics): bit for bit for ResNet-10 at 224 px on the development machine (passes of 16
    against one of 160), up to float rounding in general (tests/engine/test_runtime_memory.py)."""
    if device.type != "cpu" or images.dim() != 4:
        return (images,)
    return images.split(cpu_images_per_pass(images.shape[-2], images.shape[-1]))


@functools.cache
def preload_image_plugins() -> None:
    """Pillow's common image plugins (JPEG, PNG, BMP, GIF, PPM: ``Image.preinit``) imported once in this process
    before a loader forks its workers: each worker otherwise imports them again at its first image (30-50 ms each,
    for every worker of every loader; an evaluation forks one set per split)."""
    from PIL import Image

    Image.preinit()


def make_loader(dataset, batch_size: int, workers: int, device: torch.device, sampler=None, shuffle=False,
                pin_memory: bool | None = None, shard: bool = False) -> DataLoader:
    """A DataLoader; `pin_memory` None pins with CUDA only. `shard`: under torchrun each process takes its
    share of the images (`distributed.ShardSampler`) and `collect_outputs` gathers them back in order."""
    if shard and sampler is None and distributed.is_distributed():
        sampler = distributed.ShardSampler(len(dataset))
    pin = device.type == "cuda" if pin_memory is None else bool(pin_memory) and torch.cuda.is_available()
    if workers > 0:
        preload_image_plugins()
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, shuffle=shuffle, num_workers=workers,
                      pin_memory=pin, persistent_workers=workers > 0, drop_last=False)


def inference_loader(dataset, batch_size: int, workers: int, device: torch.device, image_size: int,
                     pin_memory: bool | None = None) -> DataLoader:
    """`make_loader(..., shard=True)` for inference (eval transform, the split's order): on the CPU each batch is
    one inference pass (`inference_passes`: 16 images at 224 px, whole batches for small images) rather than
    eval.batch_size images, so that the batches the workers hold ready (workers x prefetch 2) stay small: at
    256 images of 224 px and 8 workers they were up to 2.4 GB of decoded images in shared memory, on a CPU that
    runs the model far slower than the workers decode. Outputs are the same (eval mode, in order)."""
    if device.type == "cpu":
        batch_size = min(batch_size, cpu_images_per_pass(image_size, image_size))
    workers = min(workers, -(-len(dataset) // batch_size))  # a worker beyond the batches would only be forked
    return make_loader(dataset, batch_size, workers, device, pin_memory=pin_memory, shard=True)


KEPT_OUTPUTS = ("logits", "reachability")  # what evaluation and the open-set scores read
WITH_FEATURES = KEPT_OUTPUTS + ("feature",)  # for a score that needs_features (Mahalanobis, KNN, ViM, ReAct)
BatchScore = Callable[[Callable[[torch.Tensor], torch.Tensor], torch.Tensor], torch.Tensor]


def kept_for(scorer: OpenSetScore) -> tuple[str, ...]:
    """The model outputs `collect_outputs` keeps for `scorer`: the (N, D) penultimate features only when the
    score declares ``needs_features`` (they are the largest tensors), else logits and reachability."""
    return WITH_FEATURES if scorer.needs_features else KEPT_OUTPUTS


def heads_on_stage1_features(cfg: Config, scorer: OpenSetScore) -> bool:
    """Whether a run's outputs are its head on the stage-1 body's features as the feature cache holds them
    (decouple.cache_dtype), as `openlt eval` and `openlt predict` both compute them: a decoupled run (its body is the
    stage-1 run's), unless the score needs the images (ODIN: gradients through the whole network)."""
    return cfg.decouple.method != "none" and not scorer.needs_model


def batch_score_for(scorer: OpenSetScore, data: DataBundle) -> BatchScore | None:
    """`collect_outputs`'s `batch_score` for a score that ``needs_model`` (ODIN): its ``score_images`` with the
    per-channel normalisation std of `data`'s images (on the [0, 1] pixel scale); None for any other score."""
    if not scorer.needs_model:
        return None
    std = list(normalisation(data.cfg.data.dataset, data.in_chans, data.family)[1])
    return lambda logits_of_images, images: scorer.score_images(logits_of_images, images, std)


def score_fit_args(scorer: OpenSetScore, model: OpenLTModel) -> dict:
    """The keyword arguments of `scorer.fit` beyond the training outputs: ``{"head": (W, b)}`` for a score that
    ``needs_head`` (ViM, ReAct), else {}. ConfigError, before any image is read, when the model's classifier is
    not linear (the scores' own message, `openset.base.no_linear_head`; `openlt eval` has refused it already in
    `precheck.check_open_score_on_model`)."""
    if not scorer.needs_head:
        return {}
    head = linear_head(model)
    if head is None:
        raise ConfigError(no_linear_head(scorer.name, f"this model's head is {type(model.classifier).__name__}"))
    return {"head": head}


def linear_head(model: OpenLTModel) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(weight (K, D), bias (K,)) float32 CPU of the model's classifier when it is linear (logits = W f + b:
    ``model.classifier=linear``, and the cRT / LWS / tau-norm / logit-adjust heads, which are stored as one),
    for the scores that ``needs_head`` (ViM, ReAct); None for any other head (a missing bias is zeros)."""
    head = model.classifier
    if not isinstance(head, LinearClassifier):
        return None
    weight = head.fc.weight.detach().float().cpu()
    bias = head.fc.bias
    return weight, torch.zeros(weight.shape[0]) if bias is None else bias.detach().float().cpu()


@torch.no_grad()
def collect_outputs(model: OpenLTModel, loader: DataLoader, device: torch.device, desc: str = "eval",
                    quiet: bool = False, channels_last: bool = False, amp: str = "none",
                    keep: tuple[str, ...] = KEPT_OUTPUTS, batch_score: BatchScore | None = None
                    ) -> dict[str, torch.Tensor]:
    """Logits (and reachability, where the head gives it) and labels of every image (eval mode, no augmentation;
    through :func:`openlt.models.fusion.inference_copy`'s copy of `model`: the same up to float rounding);
    `keep` names the model outputs kept ("feature" too for a score that needs it: :func:`kept_for`).
    Each loader batch goes through the model in `inference_passes` (chunks of 16 images at 224 px on the CPU).
    `batch_score` (a score that needs_model, ODIN): called as ``batch_score(logits_of_images, images)`` on each
    chunk, outside autocast and with gradients allowed, its (B,) result kept as "model_score".
    A loader sharded over processes (`make_loader(..., shard=True)` under torchrun) gives every process all of them."""
    model = inference_copy(model)  # eval mode; the forward on a copy with its batch norms folded (faster)
    kept: dict[str, list[torch.Tensor]] = {}
    quiet = quiet or not distributed.is_main()
    trim_heap()  # before the loader forks its workers (once for persistent ones)
    for batch, targets in tqdm(loader, desc=desc, leave=False, disable=True if quiet else None, file=sys.stderr):
        for images in inference_passes(batch, device):  # bounded activation memory on the CPU
            images = batch_to(images, device, channels_last)
            with autocast(amp, device):
                out = model(images)
            for key in keep:
                if key in out:
                    kept.setdefault(key, []).append(out[key].float().cpu())
            del out  # before the next pass or ODIN's own
            if batch_score is not None:
                kept.setdefault(MODEL_SCORE, []).append(batch_score(lambda x: model(x)["logits"], images))
        kept.setdefault("labels", []).append(targets)
    outputs = {key: torch.cat(values) for key, values in kept.items()}
    if isinstance(loader.sampler, distributed.ShardSampler):
        outputs = distributed.gather_outputs(outputs, len(loader.dataset))  # (also an empty share)
    return outputs


def load_run_model(run: Run, checkpoint: str = "best", device: torch.device | None = None,
                   cfg: Config | None = None) -> tuple[Config, DataBundle, OpenLTModel, dict]:
    """Rebuild a run's data description and model, and load one of its checkpoints. `cfg` None: the run's
    config.yaml; either checked against the config its checkpoint records (:func:`trained_config`)."""
    cfg = trained_config(run, checkpoint, None, cfg)
    data = prepare_data(cfg, default_split_dir=run.splits_dir)
    model = build_model(cfg, data.num_classes, data.in_chans, data.image_size)
    state = load_checkpoint(run.checkpoint(checkpoint), model)
    to_device(model, device or torch.device("cpu"), cfg.train.channels_last)
    return cfg, data, model, state


# ------------------------------------------------------------------------------ what a run's config.yaml must keep

# The keys that define the network a run trained and what it learnt from: the dataset kind, the input transform,
# size and channels (the split files and classes are checked by the run's split_manifest.json), every model.* key
# (the head's options too: model.head.ncm_metric, ...) and decouple.method (the stage-2 head that was fitted). The
# weights are that network's: every command that rebuilds it from config.yaml (openlt eval, predict, export,
# openlt.load_run, --resume) refuses a config.yaml that changed one since training (:func:`trained_config`).
MODEL_KEYS = ("data.dataset", "data.transform", "data.image_size", "data.in_chans", "decouple.method")
MODEL_PREFIXES = ("model.",)
# fixed on `--resume` too (train.py `check_resume_config`): where the weights started (train.init_from: the
# stage-1 run; it is also the feature cache a decoupled run's evaluation reads, so evaluation keeps it for those),
# and what the optimizer state in the last checkpoint was built with: which parameters train (the parameter
# groups: train.freeze_backbone) and their hyper-parameters (the checkpoint's, not config.yaml's, apply on resume);
# and the recipe the finished run's config.yaml names to `openlt summary` (its seed, loss and sampler: a run resumed
# with another would be named after a recipe, or counted as a seed, that trained only its last epochs)
RESUME_KEYS = ("train.init_from", "train.freeze_backbone", "train.lr", "train.backbone_lr", "train.centroid_lr",
               "train.momentum", "train.nesterov", "train.weight_decay", "seed", "train.loss", "train.sampler")
DEFINING_KEYS = MODEL_KEYS + RESUME_KEYS
DEFINING_PREFIXES = MODEL_PREFIXES
# a model.* key that does not define the trained network: where its starting weights were read (the checkpoint's
# replace them); a moved file may be named anew in config.yaml for an evaluation
NOT_FOR_EVALUATION = ("model.pretrained",)
# keys that name a file or folder: compared as absolute, symlink-resolved paths
_PATHS = tuple(f"{section}.{key}" for section, key in PATH_KEYS)
# what an evaluation may change in config.yaml (and its overrides: override_scope.EVAL_KEYS)
MAY_CHANGE_AFTER_TRAINING = ("eval.* (open_score, batch_size, bands, ...), train.device, train.amp, data.workers, "
                             "data.pin_memory and where the data is (data.root, data.split_dir, ...)")


def trained_recipe(cfg: Config) -> dict:
    """The training keys of `cfg` as config.yaml saves them (summary.trained_keys of its flattened, path-absolute
    form, JSON values): what a run's checkpoints record it trained with (state "recipe": train.save_epoch, and a
    decoupled stage 2's, decouple.train_decoupled), which `openlt summary` names the run by."""
    from openlt.reporting.summary import trained_keys

    return trained_keys(flatten(json.loads(json.dumps(to_dict(absolute_paths(cfg)), default=str))))


def defining_config(cfg: Config, classes: list[str] | None = None) -> dict:
    """{dotted key: value} of the keys of :data:`DEFINING_KEYS` / :data:`DEFINING_PREFIXES` in `cfg`, its paths
    absolute (as config.yaml saves them), as JSON data: what a run's checkpoints record as their state's
    "config". `classes` (the run's class list, label order), when given, is recorded under "classes"
    (:data:`CLASSES_KEY`, no config key: :func:`config_change` skips it; :func:`check_recorded_classes` reads it)."""
    flat = flatten(to_dict(absolute_paths(cfg)))
    defining = {k: v for k, v in flat.items() if k in DEFINING_KEYS or k.startswith(DEFINING_PREFIXES)}
    if classes is not None:
        defining[CLASSES_KEY] = list(classes)
    return json.loads(json.dumps(defining))


CLASSES_KEY = "classes"  # the run's class names in label order, in a checkpoint's recorded config (issue 14)


def check_recorded_classes(run: Run, recorded: dict | None, where: Path | None) -> None:
    """RunDirError, one line, when the class list a checkpoint records (`recorded`: its defining config, from
    `where`) differs from the run's split_manifest.json class_names or inference.json classes: a hand edit of
    both (labels swapped in each) would otherwise name every prediction after another class, the edited files
    taken as the truth. Names each file that differs, once split_manifest.json does (inference.json alone is left to
    `inference.check_inference`, which names it against the manifest). A checkpoint without the record (an older
    openlt), a file that is missing or malformed (its own check reports it) are passed."""
    classes = (recorded or {}).get(CLASSES_KEY)
    if not isinstance(classes, list):
        return
    differ = []
    for file, key in ((run.inference_file, "classes"), (run.manifest_file, "class_names")):
        try:
            given = json.loads(Path(file).read_text(encoding="utf-8")).get(key)
        except (OSError, ValueError, AttributeError):
            continue
        if not isinstance(given, list) or given == classes:
            continue
        differ.append((file, key, label_difference(classes, given, "there", "in the checkpoint")))
    if any(file == run.manifest_file for file, _, _ in differ):  # (inference.json alone: check_inference names it)
        raise RunDirError(" and ".join(f"{file}: {key} ({what})" for file, key, what in differ)
                          + f" differ{'s' if len(differ) == 1 else ''} from the class list the run was trained "
                          f"with, recorded in {where}: its labels would be named after other classes; restore "
                          f"{' and '.join(Path(f).name for f, _, _ in differ)} (the checkpoint's list, in label "
                          f"order: {', '.join(classes)})")


def stage1_moved_to(then, now, state: dict) -> bool:
    """Whether train.init_from, `then` when the run started and `now` in its config.yaml, names the same stage-1
    run moved or copied: the checkpoint `now` holds has the sha256 the run's checkpoint `state` records of it
    ("stage1": {"checkpoint", "sha256"}, stage1_record.stage1_record), whether or not `then` is still there (session
    27: both runs copied elsewhere, the copy named, was refused while the originals stayed). Then `--resume`
    (train.check_resume_config) and an evaluation (:func:`trained_config`) take the new path (trial 14a S5)."""
    record = state.get("stage1")
    if not (isinstance(then, str) and isinstance(now, str) and isinstance(record, dict)):
        return False
    if os.path.realpath(os.path.expanduser(now)) == os.path.realpath(os.path.expanduser(then)):
        return False  # not moved: nothing to hash (every evaluation of a decoupled run comes here)
    name, sha = record.get("checkpoint", "best"), record.get("sha256")
    stage1 = Path(now).expanduser() / "checkpoints" / f"{name}.safetensors"
    if not isinstance(name, str) or not isinstance(sha, str) or not stage1.is_file():
        return False
    from openlt.io import sha256_file

    try:
        return sha256_file(stage1) == sha
    except OSError:
        return False


def recorded_config(run: Run, checkpoint: str = "last") -> tuple[dict | None, Path | None]:
    """(the defining config a checkpoint of `run` records, that checkpoint): `checkpoint`'s, else the last
    checkpoint's; (None, None) when neither records one (no checkpoint, or one written by an older openlt)."""
    for name in dict.fromkeys((checkpoint, "last")):
        path = run.checkpoint(name)
        if path.is_file():
            recorded = checkpoint_state(path).get("config")
            if isinstance(recorded, dict):
                return recorded, path
    return None, None


def config_change(recorded: dict, cfg: Config, for_evaluation: bool) -> tuple[str, object, object] | None:
    """The first defining key (key, recorded value, value in `cfg`) whose value in `cfg` differs from the
    `recorded` one, or None; paths are compared resolved. `for_evaluation`: only the keys that define the trained
    network (:data:`MODEL_KEYS`, model.* but :data:`NOT_FOR_EVALUATION`; train.init_from of a decoupled run)."""
    now = defining_config(cfg)
    decoupled = recorded.get("decouple.method", now.get("decouple.method")) not in (None, "none")
    for key, then in recorded.items():
        if key not in now or _same(key, then, now[key]):
            continue
        if for_evaluation and not (key in MODEL_KEYS or (key.startswith(MODEL_PREFIXES) and key not in
                                                        NOT_FOR_EVALUATION) or (key == "train.init_from" and decoupled)):
            continue
        return key, then, now[key]
    return None


def _same(key: str, then, now) -> bool:
    if then == now:
        return True
    if key in _PATHS and isinstance(then, str) and isinstance(now, str):
        # a relative path was recorded by an older openlt, from a working directory unknown now: not compared
        return not os.path.isabs(then) or os.path.realpath(then) == os.path.realpath(now)
    return False


def config_value(value) -> str:
    """A config value as a message shows it: null, JSON for lists / dicts / booleans, else str."""
    return "null" if value is None else json.dumps(value) if isinstance(value, (list, dict, bool)) else str(value)


def trained_config(run: Run, checkpoint: str = "best", command: str | None = "eval", cfg: Config | None = None,
                   stage1: bool = True) -> Config:
    """The run's config.yaml (``Run.config``; `cfg` instead when given: a config made from it), checked against the
    defining config its checkpoints record (the `checkpoint` used, else the last: :func:`recorded_config`): what
    `openlt eval`, `predict`, `export`, ``openlt.load_run`` and :func:`load_run_model` rebuild the run's network
    from. ConfigError, one line naming config.yaml, the key, both values and the remedy (`command`: the openlt
    command it names, None: loading the run), when a key that defines the trained network (:func:`config_change`)
    was edited since training: the weights would be loaded into (or evaluated as) another network without a word.
    A run whose checkpoints record no config (written by an older openlt) is taken as it is. Then (issue 14) the
    run's inference.json / split_manifest.json classes against the class list the checkpoint records
    (:func:`check_recorded_classes`), and a decoupled run's stage-1 checkpoint against the sha256 it was fitted on
    (`stage1_record.check_stage1_unchanged`; `stage1` False: not checked, for a command that reads only the run's
    own checkpoint, which holds every weight of the network -- predict, export, ``openlt.load_run``): RunDirError,
    one line."""
    cfg = cfg if cfg is not None else run.config()
    recorded, where = recorded_config(run, checkpoint)
    if recorded is not None and stage1_moved_to(recorded.get("train.init_from"), cfg.train.init_from,
                                                checkpoint_state(where)):  # the same stage-1 run, moved
        recorded = {**recorded, "train.init_from": os.path.abspath(os.path.expanduser(cfg.train.init_from))}
    change = None if recorded is None else config_change(recorded, cfg, for_evaluation=True)
    if change is not None:
        key, then, now = change
        doing = f"`openlt {command}`" if command else "loading the run"
        raise ConfigError(f"{run.config_file}: {key} is {config_value(now)} now, but the run was trained with "
                          f"{config_value(then)} (recorded in {where}); {doing} rebuilds the network the run "
                          f"trained, so config.yaml must keep the keys that define it: set {key} back to "
                          f"{config_value(then)}, or train a new run for another (only "
                          f"{MAY_CHANGE_AFTER_TRAINING} may change after training)")
    check_recorded_classes(run, recorded, where)
    if stage1:
        check_stage1_unchanged(run, cfg, checkpoint)
    return cfg
