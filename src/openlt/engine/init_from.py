"""Initialise a model from a stage-1 run (`train.init_from`): OLTR's stage 2 and the stage-2 baselines start
from a stage-1 run's best weights, and decoupled stage 2 (engine/decouple.py) keeps its representation.

The backbone must match exactly; other modules take every tensor whose name and shape match. The head then
initialises itself through its `init_from_stage1` hook (see `OpenLTModel.init_head_from_stage1`): the
meta-embedding head takes its hallucinator from the stage-1 linear classifier (as the public code) and its
centroids as the per-class means of the features over the training split (one pass, eval mode, no
augmentation, no re-sampling). Where the model's features at that point follow from the stage-1 run's (its
attention still the identity, a new feature fc applied to them, the same evaluation transform), the means come
from the stage-1 run's feature cache (`openlt features`, which a decoupled stage 2 of the same run fills too):
the pass through the network is then made once per stage-1 run, not once per stage 2.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable

import torch

from openlt.config import Config, explicit_keys
from openlt.data.build import DataBundle
from openlt.engine import distributed
from openlt.engine.checkpoint import checkpoint_state, read_checkpoint
from openlt.engine.manifest import verify_manifest
from openlt.engine.run import Run, open_run
from openlt.engine.stage1_record import RELOCATION_KEYS, stage1_config
from openlt.engine.runtime import batch_to, inference_loader, trained_config
from openlt.errors import ConfigError, RunDirError
from openlt.models.model import HEAD_PREFIX, OpenLTModel

CHECKPOINT_PREFIX = "model."  # a checkpoint's model tensors are "model.<state-dict name>"


@torch.no_grad()
def class_means(model: OpenLTModel, data: DataBundle, device: torch.device, batch_size: int, workers: int,
                channels_last: bool) -> torch.Tensor:
    """Per-class mean of the features the head sees, over the training split (eval mode, test transform):
    (num_classes, D) float32 on the CPU; a class without images gets zeros. Under torchrun each process sums
    its share of the images; sums and counts are then added over processes."""
    model.eval()
    loader = inference_loader(data.dataset("train", train=False), batch_size, workers, device, data.image_size)
    sums, counts = None, torch.zeros(data.num_classes, dtype=torch.float64)
    for images, targets in loader:  # on the CPU one inference pass per batch (runtime.inference_loader)
        _, feature = model.features(batch_to(images, device, channels_last))
        feature = feature.double().cpu()
        if sums is None:
            sums = torch.zeros(data.num_classes, feature.shape[1], dtype=torch.float64)
        sums.index_add_(0, targets, feature)
        counts += torch.bincount(targets, minlength=data.num_classes).double()
    sums, counts = distributed.all_reduce_sum(sums), distributed.all_reduce_sum(counts)
    return (sums / counts.clamp(min=1).unsqueeze(1)).float()


def mean_per_class(features: torch.Tensor, labels: torch.Tensor, num_classes: int,
                   transform: Callable[[torch.Tensor], torch.Tensor] | None = None, chunk: int = 8192) -> torch.Tensor:
    """Per-class means of `features` (N, D), any float dtype, with `labels` (N,) int, each row first mapped by
    `transform` (float64 (n, D) -> (n, D'), e.g. a new feature fc) when given: (num_classes, D') float32 on the
    CPU; a class without rows gets zeros. Summed in float64, `chunk` rows at a time (`ncm.class_sums`, as NCM's
    class means; no float64 copy of the whole)."""
    from openlt.decoupling.ncm import class_sums

    sums = class_sums(features, labels.long(), num_classes, transform, chunk).cpu()
    counts = torch.bincount(labels.long(), minlength=num_classes).double()
    return (sums / counts.clamp(min=1).unsqueeze(1)).float()


Transform = Callable[[torch.Tensor], torch.Tensor]


def cached_class_means(source: Run, data: DataBundle, device: torch.device, transform: Transform | None = None,
                       quiet: bool = False) -> torch.Tensor:
    """:func:`class_means` from the stage-1 run `source`'s cached training features (`features.load_features`:
    read when fresh, else extracted once and cached in the run), each mapped by `transform` (what
    :func:`head_input_from_stage1` returns): (num_classes, D) float32 on the CPU. Equal to the pass through the
    model up to float rounding: the cache's features come from the run's inference copy (batch norms folded), in
    the precision it was trained in."""
    from openlt.engine.features import load_features

    cached = load_features(source, ("train",), device=str(device), cfg=stage1_config(source, data.cfg),
                           quiet=quiet)["train"]
    return mean_per_class(cached["features"], cached["labels"], data.num_classes, transform)


def head_input_from_stage1(model: OpenLTModel, weights: Mapping[str, torch.Tensor], copied: list[str], source: Run,
                           data: DataBundle) -> tuple[bool, Transform | None]:
    """Whether the features `model`'s head sees on `data`'s training images follow from the stage-1 run `source`'s
    cached ones (what its head saw), and how: `model` just loaded from the run (`weights`, of which `copied`
    outside the backbone). They do when the evaluation transform is the run's (its inference.json), the images
    are read from the run's data.root (:func:`_same_images`) and each feature module beyond the backbone is loaded
    whole from the run, or is a new modulated attention that is still the identity (zero-initialised), or is a new
    feature fc, which then maps the cached features (the second item; None: none). A module the run had and
    `model` lacks, or a trained new attention, means no."""
    from openlt.engine.inference import InferenceSpec, read_inference
    from openlt.models.attention import ModulatedAttention

    spec = read_inference(source)
    if spec is None or spec.transform != InferenceSpec.from_data(data).transform:
        return False, None
    if not _same_images(data.cfg.data.root, source.config().data.root):
        return False, None
    transform = None
    for name in ("attention", "feature_fc"):  # the feature modules after the backbone, which loads exactly
        module, had = getattr(model, name, None), any(key.startswith(f"{name}.") for key in weights)
        if module is None:
            if had:
                return False, None
        elif had:
            if not all(f"{name}.{key}" in copied for key in module.state_dict()):
                return False, None
        elif name == "attention":
            if not (isinstance(module, ModulatedAttention) and module.is_identity()):
                return False, None
        else:  # a new fc after pooling: applied to the cached (pooled) features, as the pass would
            transform = _on_device(module)
    return True, transform


def _same_images(root: str | None, stage1_root: str | None) -> bool:
    """Whether a stage 2's `data.root` is the image folder its stage-1 run was trained on (that run's config.yaml;
    both resolved). Only then is the run's feature cache read: it holds that folder's features, and its key names
    the folder (`features.cache_key`), so a relocated or other copy (the same names: a resized copy, other pixels)
    would be extracted into it, replacing the run's own; such a stage 2 passes its own images through the network.
    None (Fashion-MNIST / CIFAR read from their default location) matches None."""
    def where(path: str | None) -> str | None:
        return None if path is None else os.path.realpath(os.path.expanduser(path))

    return where(root) == where(stage1_root)


def _on_device(module: torch.nn.Module) -> Transform:
    """`module` in eval mode, without gradients, on CPU rows of any float dtype: run on its own device in its
    parameters' dtype, result on the CPU."""
    weight = next(module.parameters())

    @torch.no_grad()
    def apply(rows: torch.Tensor) -> torch.Tensor:
        module.eval()
        return module(rows.to(device=weight.device, dtype=weight.dtype)).cpu()

    return apply


def model_weights(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A checkpoint's model tensors (`read_checkpoint`'s "model.<name>" keys) by state-dict name; the optimizer's
    are left out."""
    return {k[len(CHECKPOINT_PREFIX):]: v for k, v in tensors.items() if k.startswith(CHECKPOINT_PREFIX)}


def load_stage1_weights(model: OpenLTModel, weights: Mapping[str, torch.Tensor], source: str, *,
                        head: bool = True) -> list[str]:
    """Load a stage-1 run's model tensors (`weights`: :func:`model_weights` of its checkpoint) into `model`;
    returns the state-dict names copied besides the backbone's.

    `head=True` (init-from): the backbone exactly, then every other tensor (attention, extra fc, head) whose
    name and shape match; the rest of `model` keeps its initialisation. `head=False` (decoupled stage 2, whose
    model is the stage-1 architecture with a new head): everything but the head exactly, the head untouched.
    Raises RunDirError naming `source` when the backbone differs, ConfigError when (head=False) anything else
    outside the head is missing or left over.
    """
    if not head:
        weights = {k: v for k, v in weights.items() if not k.startswith(HEAD_PREFIX)}
    backbone = {k[len("backbone."):]: v for k, v in weights.items() if k.startswith("backbone.")}
    try:
        model.backbone.load_state_dict(backbone)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise RunDirError(f"the backbone of {source} does not match this config's ({first})") from None
    own = model.state_dict()
    copied = [k for k, v in weights.items() if not k.startswith("backbone.") and k in own and own[k].shape == v.shape]
    model.load_state_dict({k: weights[k] for k in copied}, strict=False)
    if not head:
        missing = [k for k in own if not k.startswith(("backbone.", HEAD_PREFIX)) and k not in weights]
        unexpected = [k for k in weights if not k.startswith("backbone.") and k not in copied]
        if missing or unexpected:
            raise ConfigError(f"the stage-1 checkpoint of {source} does not match the model: missing "
                              f"{missing[:5]}, unexpected {unexpected[:5]}")
    return copied


def check_stage1_run(cfg: Config) -> None:
    """`train.init_from` of a stage 2 that trains (OLTR, the stage-2 loss baselines) must name a stage-1 run: one
    trained from scratch, not a decoupled run (its head is a re-fitted classifier) nor another stage 2 (its head
    is no stage-1 classifier; OLTR would silently skip the hallucinator's initialisation). With OLTR's memory
    (`model.head.use_memory`) the stage-1 head must be linear: the hallucinator starts as a copy of it.
    Checked before any work; ConfigError naming the run and what it is, RunDirError when it is no run.

    For every stage 2 (decoupled ones too) the stage-1 run must have finished training (`check_stage1_finished`);
    for OLTR and the stage-2 baselines its model keys this stage 2 inherits (`INHERITED_MODEL_KEYS`: the
    backbone the weights load into) must match this config's."""
    if not cfg.train.init_from:
        return
    source = open_run(cfg.train.init_from)
    check_stage1_free(source, cfg.train.init_from)
    src = trained_config(source, "best", None)  # its config.yaml as it was trained (issue 14)
    if cfg.decouple.method != "none":
        if src.decouple.method == "none":  # (a decoupled source is refused by adopt_representation)
            check_stage1_finished(source, src, cfg.train.init_from)
        return
    what = stage2_kind(src, src.train.init_from)
    if what:
        raise ConfigError(f"train.init_from={cfg.train.init_from} is {what}, not a stage-1 run: start this stage 2 "
                          f"from the stage-1 run (trained without train.init_from and decouple.method)")
    if cfg.model.classifier == "meta_embedding" and cfg.model.head.use_memory and src.model.classifier != "linear":
        raise ConfigError(f"train.init_from={cfg.train.init_from} has model.classifier={src.model.classifier}: OLTR "
                          f"stage 2 starts its hallucinator from a stage-1 linear classifier (model.classifier=linear)")
    differ = [f"model.{key}={getattr(cfg.model, key)} differs from the stage-1 run's model.{key}="
              f"{getattr(src.model, key)}" for key in INHERITED_MODEL_KEYS
              if getattr(cfg.model, key) is not None and getattr(src.model, key) is not None
              and getattr(cfg.model, key) != getattr(src.model, key)]
    if differ:
        raise ConfigError(f"train.init_from={cfg.train.init_from}: {'; '.join(differ)}: a stage 2 starts from the "
                          f"stage-1 run's weights, so set {', '.join(d.split('=')[0] for d in differ)} to the "
                          f"stage-1 run's value, or train a stage-1 run with it")
    check_stage1_data(cfg, src, source)
    check_stage1_finished(source, src, cfg.train.init_from)


def check_stage1_free(source: Run, name: str) -> None:
    """RunDirError, one line, while another live process trains the stage-1 run `source` (`train.init_from=name`;
    its train.lock held: `Run.check_not_training`): its checkpoints are still changing, and a stage 2 would write
    its feature cache into it. Checked before any work, before the 'interrupted' check (a run being resumed is
    not interrupted)."""
    try:
        source.check_not_training("start a stage 2 from")
    except RunDirError as exc:
        raise RunDirError(f"train.init_from={name}: {exc}") from None


# The data keys that name a stage-1 run's data: a stage 2 that trains (OLTR, the stage-2 baselines) reads its own
# data.* (unlike a decoupled stage 2, which takes the stage-1 run's) and must name the same training split.
def check_stage1_data(cfg: Config, src: Config, source: Run) -> None:
    """A stage 2 that trains reads its own data.* and its training split must be the stage-1 run's (checked by
    sha256 once the split is read, `verify_manifest`). Refused here, before any work, when it cannot be: another
    `data.dataset`, or no `data.split_dir` (it would build a new split) while the stage-1 run trained on a split
    folder. ConfigError naming the stage-1 run's data keys to pass."""
    mine, theirs = cfg.data, src.data
    if mine.dataset == theirs.dataset and (mine.split_dir is not None or theirs.split_dir is None):
        return
    split_dir = theirs.split_dir or str(source.splits_dir)
    wanted = {"data.dataset": theirs.dataset, "data.root": theirs.root, "data.split_dir": split_dir,
              "data.image_size": theirs.image_size}
    passed = " ".join(f"{key}={value}" for key, value in wanted.items() if value is not None)
    has = (f"data.dataset={mine.dataset}" + ("" if mine.split_dir is not None else
                                             ", no data.split_dir: it would build a new split"))
    raise ConfigError(f"train.init_from={cfg.train.init_from}: a stage 2 that trains (model.classifier="
                      f"{cfg.model.classifier}) reads its own data.* and must train on the stage-1 run's training "
                      f"split, but this config has {has}; pass the stage-1 run's data: {passed} "
                      f"(data.split_dir may be a moved copy: its files are checked by sha256)")


def stage2_kind(src: Config, init_from: str | None) -> str | None:
    """Why a run of config `src` (started from `init_from`, None for none) cannot be the start of a stage 2 that
    trains: "a decoupled stage-2 run (...)" or "itself a stage-2 run (...)"; None for a stage-1 run. Used by
    :func:`check_stage1_run` on a run directory and by a bench's spec check on its methods' configs."""
    if src.decouple.method != "none":
        return f"a decoupled stage-2 run (decouple.method={src.decouple.method})"
    if init_from:
        return f"itself a stage-2 run (train.init_from={init_from}, model.classifier={src.model.classifier})"
    return None


def relocated_data(cfg: Config) -> dict[str, Any]:
    """{dotted key: value} of the :data:`RELOCATION_KEYS` the user set explicitly (config file or override)."""
    explicit = explicit_keys(cfg)
    return {key: getattr(cfg.data, key.split(".", 1)[1]) for key in RELOCATION_KEYS if key in explicit}


def check_stage1_split_dir(cfg: Config, source: Run, relocated: Mapping[str, Any]) -> None:
    """A decoupled stage 2's split folder, taken from its stage-1 run's config, must still exist: ConfigError
    saying where the path came from and what to pass when it moved. (One set with data.split_dir is left to the
    split check: 'split folder not found'.)"""
    split_dir = cfg.data.split_dir
    if split_dir is None or "data.split_dir" in relocated or Path(split_dir).expanduser().is_dir():
        return
    raise ConfigError(f"train.init_from={cfg.train.init_from}: the stage-1 run's split folder {split_dir} is not found "
                      f"(data.split_dir of {source.config_file}: a decoupled stage 2 fits on the stage-1 run's data); "
                      f"if it moved, pass data.split_dir=NEW_FOLDER (its split files must be the ones of "
                      f"{source.manifest_file}, checked by sha256, as for `openlt eval {source.path} "
                      f"data.split_dir=NEW_FOLDER`)")


# The model keys a stage 2 that trains takes from its stage-1 run as they are (the backbone its weights load into);
# None (small_input: chosen from the image size) matches any value.
INHERITED_MODEL_KEYS = ("backbone", "small_input")


def check_stage1_finished(source, src: Config, name: str) -> None:
    """ConfigError, one line naming the run, when the stage-1 run `source` (its config `src`) stopped before its
    train.epochs: epochs done are the most of its metrics.jsonl and its last checkpoint."""
    records, _ = source.read_log()
    done = max((r["epoch"] for r in records), default=0)
    last = source.checkpoint("last")
    if last.is_file():
        done = max(done, checkpoint_state(last)["epoch"] + 1)
    if done < src.train.epochs:
        raise ConfigError(f"train.init_from={name}: the stage-1 run {source.path} was interrupted after {done} of "
                          f"its {src.train.epochs} epochs (train.epochs); finish it first with "
                          f"`openlt train --resume {source.path}`, then start this stage 2 from it")


def init_from_run(model: OpenLTModel, run_path: str, data: DataBundle, device: torch.device, batch_size: int,
                  workers: int, channels_last: bool, log: Callable[[str], None], quiet: bool = False) -> None:
    """`train.init_from=run_path`: the run's best weights into `model` (:func:`load_stage1_weights`), then the
    head's own stage-1 initialisation, with the class means of `data`'s training split where the head asks for
    them: from the run's feature cache when `model`'s follow from the run's (:func:`head_input_from_stage1`), else
    through `model` with `batch_size` / `workers` (`quiet`: no progress bar). RunDirError: the run was trained on
    another training split or class list than `data`'s (its split_manifest.json, :func:`verify_manifest`), or
    its backbone does not match."""
    source = open_run(run_path)
    verify_manifest(source, data, "init_from", splits=("train",), source=f"train.init_from={run_path}")
    weights = model_weights(read_checkpoint(source.checkpoint("best"))[0])
    copied = load_stage1_weights(model, weights, run_path)
    from_cache, transform = head_input_from_stage1(model, weights, copied, source, data)

    def means() -> torch.Tensor:
        if from_cache:
            return cached_class_means(source, data, device, transform, quiet)
        return class_means(model, data, device, batch_size, workers, channels_last)

    done = model.init_head_from_stage1(weights, means)
    done = [f"{line} (the stage-1 run's feature cache)" if from_cache and line.startswith("centroids") else line
            for line in done]
    log(f"initialised from {source.path}: backbone" + (f", {', '.join(copied + done)}" if copied + done else ""))

