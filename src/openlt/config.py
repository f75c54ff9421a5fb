"""Configuration: defaults live in dataclasses, a YAML file says only what differs, `key=value` overrides last.

Every key is checked: an unknown one is an error naming it (with the closest valid key), so a typo in a
config never silently trains the wrong model.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints

import yaml

from openlt.errors import ConfigError


@dataclass
class SplitConfig:
    """How to build long-tailed + open-set splits when `data.split_dir` is not given (see `openlt split`)."""

    profile: str = "exp"  # exp | pareto | none (keep the natural counts)
    n_max: int = 1280  # training images of the largest known class
    n_min: int = 5  # training images of the smallest known class
    imbalance_factor: float | None = None  # exp: n_max / n_min; overrides n_min when set
    alpha: float = 6.0  # pareto shape (ImageNet-LT: 6)
    open_classes: Any = 2  # a number (chosen with the seed) or a list of class names / ids
    val_per_class: int = 20  # validation images per known class (taken before the long tail is cut)
    test_per_class: int | None = None  # None: every test image (embedded data) / 20 (image folder)
    order: str = "random"  # which known class gets n_max: random (with the seed) | label
    seed: int = 0  # which images and which open classes


@dataclass
class DataConfig:
    dataset: str = "fashion-mnist"  # fashion-mnist | image-folder | split-file | cifar10 | cifar100
    root: str | None = None  # image root; for fashion-mnist the folder of the IDX files (found if None)
    open_root: str | None = None  # root of the open split's paths when it differs (None: data.root);
    #                               cifar10 / cifar100: every image under it becomes the open set of a new split
    split_dir: str | None = None  # folder of split files (+ manifest.json); None: build them into the run
    train_split: str = "train.txt"  # split file names inside split_dir: "relative/path.jpg label" per line
    val_split: str | None = "val.txt"  # None: no validation (best = last epoch, fixed rejection threshold)
    test_split: str = "test.txt"  # the known classes' test images
    open_split: str | None = "open.txt"  # images of classes never seen in training (label -1); None: closed set
    class_names: str | None = None  # optional file with one class name per line (label order)
    transform: str = "auto"  # auto | small | imagenet
    image_size: int | None = None  # None: 28 for fashion-mnist, 32 for cifar, 224 for imagenet-style
    in_chans: int | None = None  # None: 1 for fashion-mnist, 3 otherwise
    workers: int = 0  # DataLoader worker processes per training process (0: load in the main process)
    pin_memory: bool | None = None  # page-locked batches for faster host-to-GPU copies; None: on with CUDA only
    split: SplitConfig = field(default_factory=SplitConfig)


@dataclass
class HeadConfig:
    """Options of the cosine and meta-embedding heads (OLTR) and the NCM head; ignored by the linear head."""

    scale: float = 16.0  # cosine classifier scale (the public code's 16)
    squash: bool = True  # ||x|| / (1 + ||x||) factor of the public code's cosine classifier
    reach_scale: float = 10.0  # reachability = reach_scale / min distance to a centroid
    use_memory: bool = True  # OLTR ablation switch: the memory feature of the meta-embedding
    use_selector: bool = True  # OLTR ablation switch: the concept selector
    use_reachability: bool = True  # OLTR ablation switch: scaling by the reachability
    ncm_metric: str = "cosine"  # NCM head (decouple.method=ncm): cosine | euclidean; logits = scale * (cos | -dist)
    ncm_center: bool = False  # NCM: subtract the training features' mean before L2-normalising (public code's cl2n)


@dataclass
class ModelConfig:
    backbone: str = "resnet18"  # torchvision ResNet / ResNeXt, CIFAR ResNet (resnet20-110), or timm/NAME (openlt[timm])
    small_input: bool | None = None  # None: True when the images are at most 64 px
    pretrained: str | None = None  # local weights file (torchvision .pth or .safetensors)
    classifier: str = "linear"  # the head: meta_embedding is OLTR's, normed_linear LDAM's, ncm is set by decoupling
    attention: bool = False  # OLTR's modulated attention on the last feature map
    feature_fc: bool = False  # an extra d -> d fc + ReLU after pooling (OLTR stage 2 on ImageNet-LT)
    head: HeadConfig = field(default_factory=HeadConfig)


@dataclass
class TrainConfig:
    epochs: int = 30  # training epochs (stage 2: cRT / LWS epochs on the cached features)
    batch_size: int = 128  # the global batch: split over the processes under torchrun
    lr: float = 0.1  # peak learning rate of SGD (after the warm-up)
    momentum: float = 0.9  # SGD momentum
    nesterov: bool = False  # Nesterov momentum
    weight_decay: float = 5e-4  # SGD weight decay on every trained parameter (as the public codes)
    warmup_epochs: float = 1.0  # linear warm-up from 0, in epochs (fractions allowed)
    schedule: str = "cosine"  # cosine (to min_lr) | step (x step_gamma every step_epochs, the OLTR code's)
    step_epochs: int = 10  # step schedule: epochs between decays
    step_gamma: float = 0.1  # step schedule: decay factor
    milestones: list = field(default_factory=list)  # step: x step_gamma at these 0-based epochs; []: every step_epochs
    min_lr: float = 0.0  # cosine schedule: the final learning rate
    backbone_lr: float | None = None  # None: train.lr; e.g. 0.001 for a pretrained backbone (Places-LT)
    sampler: str = "instance"  # how training batches are drawn
    loss: str = "ce"  # the training loss (its options: loss_args)
    loss_args: dict = field(default_factory=dict)  # keyword arguments of the loss, e.g. {weight: 0.01}
    init_from: str | None = None  # stage 2: a stage-1 run directory whose best weights start this run
    freeze_backbone: bool = False  # stage 2: keep the backbone fixed (attention / fc / head still learn)
    centroid_lr: float | None = None  # OLTR centroids' learning rate (None: train.lr)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    channels_last: bool = True  # NHWC memory format: about 15 % faster convolutions on CPU and GPU
    amp: str = "none"  # mixed precision: none | bf16 (CPU or GPU) | fp16 (GPU, with a grad scaler); see docs/scale.md
    sync_bn: bool = False  # under torchrun on GPUs: batch-norm statistics over the global batch (default: per process)
    eval_every: int = 1  # validate every N epochs (the best checkpoint is chosen among those)


@dataclass
class EvalConfig:
    many_above: int = 100  # many-shot band: classes with more than this many training images
    few_below: int = 20  # few-shot band: fewer than this many; medium: the rest
    inclusive_bands: bool = False  # True: many >= many_above, few <= few_below (current OLTR code)
    open_score: str = "msp"  # how known an image looks (higher = more known); rejection thresholds it
    open_threshold: Any = "auto"  # "auto": keep `keep_known` of the known val images; or a number
    keep_known: float = 0.95  # the automatic threshold keeps this fraction of the known validation images
    batch_size: int = 256  # evaluation and feature-extraction batch
    openmax_tail: int = 20  # OpenMax: largest training distances per class in its Weibull fit
    openmax_alpha: int | None = None  # OpenMax: top classes revised; None: min(10, number of classes)
    openmax_distance: str = "eucos"  # OpenMax: eucos (euclidean / 200 + cosine) | euclidean | cosine


@dataclass
class DecoupleConfig:
    """Stage 2 of Kang et al. (2020): a new classifier on the frozen representation of `train.init_from`.

    `openlt train` with `decouple.method` set trains no backbone: it reads (or builds) the stage-1 run's
    feature cache and fits the classifier; train.epochs / lr / batch_size / sampler / weight_decay apply to
    cRT and LWS. The result is an ordinary run (backbone + new linear head) for eval, predict and bench."""

    method: str = "none"  # none | crt | ncm | tau_norm | lws | logit_adjust (NCM's metric: model.head.ncm_metric)
    features: str = "cache"  # cache | augmented (cRT / LWS through the frozen backbone with train augmentation)
    cache_dtype: str = "float32"  # float32 | float16 (half the disk, same accuracy to ~1e-3)
    taus: list = field(default_factory=lambda: [i / 10 for i in range(21)])  # tau grid searched on val
    lws_bias: bool = True  # LWS scales W x + b (the public code keeps the bias)
    keep: str = "last"  # cRT / LWS: the last epoch's head, or "best": the epoch of best validation top-1 (public code)


@dataclass
class Config:
    name: str = "plain"  # run name prefix: runs are OUT_DIR/NAME-sSEED-TIMESTAMP
    seed: int = 0  # model init, sampling and augmentation draws (not the split: data.split.seed)
    out_dir: str = "runs"  # where run directories are created
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    decouple: DecoupleConfig = field(default_factory=DecoupleConfig)


def to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """Check (and gently convert) a value against a field's type hint; raise ConfigError when it cannot be."""
    if hint is Any:
        return value
    origin = get_origin(hint)
    if origin is Union or str(origin) == "types.UnionType":
        options = get_args(hint)
        if value is None and type(None) in options:
            return None
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, key)
            except ConfigError:
                continue
        raise ConfigError(f"config key {key!r}: {value!r} is not a valid value ({hint})")
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"config key {key!r} must be true or false, got {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"config key {key!r} must be an integer, got {value!r}")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads 1e-4 (no dot) as a string; a finite number is meant
            try:
                number = float(value)
            except ValueError:
                number = math.nan
            if math.isfinite(number):
                return number
        raise ConfigError(f"config key {key!r} must be a number, got {value!r}")
    if hint is list:
        if isinstance(value, (list, tuple)):
            return list(value)
        raise ConfigError(f"config key {key!r} must be a list, got {value!r}")
    if hint is dict:
        if isinstance(value, dict):
            return value
        raise ConfigError(f"config key {key!r} must be a mapping, got {value!r}")
    if hint is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"config key {key!r} must be a string, got {value!r}")
    return value


def _apply(obj: Any, updates: dict, prefix: str = "") -> None:
    hints = get_type_hints(type(obj))
    names = [f.name for f in dataclasses.fields(obj)]
    for key, value in updates.items():
        full = f"{prefix}{key}"
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f" (did you mean {prefix + close[0]!r}?)" if close else ""
            raise ConfigError(f"unknown config key {full!r}{hint}; valid keys here: {', '.join(names)}")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ConfigError(f"config key {full!r} is a section; give its keys, e.g. {full}.<key>=...")
            _apply(current, value, prefix=f"{full}.")
        else:
            setattr(obj, key, _coerce(value, hints[key], full))


def parse_overrides(overrides: list[str]) -> dict:
    """Turn ["train.epochs=2", "data.root=/x"] into a nested dict; values are parsed as YAML scalars."""
    nested: dict = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value (e.g. train.epochs=2)")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw != "" else None
        except yaml.YAMLError:
            value = raw
        node = nested
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r} conflicts with another override of {part!r}")
        node[parts[-1]] = value
    return nested


def yaml_error_text(exc: yaml.YAMLError) -> str:
    """A YAML parse error on one line: 'line 4, column 2: expected <block end>, but found ...'."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or getattr(exc, "context", None) or str(exc).strip().splitlines()[0]
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return f"{where}{problem}"


def read_yaml_mapping(path: str | Path, what: str = "config file") -> dict:
    """A YAML file that must hold a mapping; a missing file, bad YAML or another type is one ConfigError line."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{what} {path} is not valid YAML ({yaml_error_text(exc)})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{what} {path} must hold a mapping of keys, not {type(data).__name__}")
    return data


def load_yaml(path: str | Path) -> dict:
    path = Path(path)
    data = read_yaml_mapping(path)
    base = data.pop("base", None)
    if base is not None:  # a config may build on another one, relative to itself
        merged = load_yaml(path.parent / base)
        _deep_merge(merged, data)
        return merged
    return data


def _deep_merge(into: dict, update: dict) -> None:
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _deep_merge(into[key], value)
        else:
            into[key] = value


def build_config(path: str | Path | None = None, overrides: list[str] | None = None, base: dict | None = None) -> Config:
    """Defaults <- `base` (e.g. a saved run config) <- YAML file <- `key=value` overrides."""
    cfg = Config()
    if base:
        _apply(cfg, base)
    if path is not None:
        _apply(cfg, load_yaml(path))
    if overrides:
        _apply(cfg, parse_overrides(overrides))
    return cfg


def dump_yaml(cfg: Config) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)
