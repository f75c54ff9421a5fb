"""Configuration: defaults live in dataclasses, a YAML file says only what differs, `key=value` overrides last.

Every key is checked where it enters: an unknown one is an error naming it (with the closest valid key), and
each field declares beside itself what its values may be (`opt(default, ge=..., choices=...)`); relations
between fields are declared after their section. `build_config` collects every problem of a config, each
naming the key (and the file and line it came from), so a bad config never starts a run.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import difflib
import errno
import math
import os
import re
import types
import unicodedata
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Union, get_args, get_origin, get_type_hints

import yaml

from openlt.errors import ConfigError
from openlt.registry import registered_names

DATASET_KINDS = ("fashion-mnist", "image-folder", "split-file", "cifar10", "cifar100")

# Upper bounds of the integer keys, declared beside each field: a value past them is a typo or a paste, and
# would otherwise pass the checks and fail deep inside numpy / torch (or fork hundreds of processes).
SEED_END = 2**32  # seeds reach numpy's RandomState, which takes 0 .. 2**32 - 1
MAX_COUNT = 10**9  # images / classes / steps / band edges: far above any data set, far below int64 trouble
MAX_EPOCHS = 100_000
MAX_BATCH = 2**20  # images in one batch
MAX_IMAGE_SIZE = 4096  # pixels per side
# a run folder is NAME-YYYYmmdd-HHMMSS (then -2, -3, ...) and a file name holds at most 255 bytes: 24 are kept for that
MAX_RUN_NAME_BYTES = 255 - 24
# the longest path the system takes (Linux PATH_MAX) and how much of it out_dir may use: the rest is kept for the
# run folder's name (at most 255 bytes) and the files inside a run (features/train.safetensors, its temporary files)
PATH_MAX_BYTES = 4096
MAX_OUT_DIR_BYTES = PATH_MAX_BYTES - 256 - 128
MIN_IMAGE_SIZE = 8  # the small-input networks downsample by 8: 1 px gave NaN losses blamed on the lr
MAX_WORKERS = 64  # DataLoader worker processes per training process: a fixed cap, not this machine's CPUs,
#                   so that a run's saved config reads the same on every machine

# Upper bounds of the float keys, the same way: a huge finite value (`train.lr=1e300`) passed every check and
# stopped at the first training step with a non-finite loss. Each is far above any published recipe.
MAX_LR = 100.0  # learning rates (SGD: 0.1 at batch 256; linear scaling to batch 2**18 gives ~100)
MAX_WEIGHT_DECAY = 1.0  # weight decay (recipes: 1e-4 .. 5e-4); 1 already halves the weights each step at lr 0.5
MAX_SCALE = 1000.0  # logit scales and temperatures inside a head (cosine scale 16, LDAM's s 30, FSLwF's gamma 10)
MAX_TEMPERATURE = 1e6  # ODIN's softmax temperature (the paper's 1000)
MAX_TAU = 10.0  # tau-norm / logit-adjustment exponents (the searched grid is 0 .. 2)
MAX_SHAPE = 1000.0  # the pareto profile's shape (ImageNet-LT: 6)
MAX_LOSS_WEIGHT = 1000.0  # weights of a loss's terms (OLTR, range, lifted: 0.01) and its margins (OLTR's 10)
MAX_LOSS_NUMBER = 1e6  # any other number of train.loss_args (an epoch, a count, a weight the table does not name)


class ConfigWarning(UserWarning):
    """A config that is valid but probably not what was meant (e.g. LDAM's re-weighting that never starts)."""


def _one_line_warning(message, category, filename, lineno, line=None, _default=warnings.formatwarning) -> str:
    """ConfigWarning prints as one line, 'openlt: warning: ...', not with the source line of the caller."""
    if isinstance(category, type) and issubclass(category, ConfigWarning):
        return f"openlt: warning: {message}\n"
    return _default(message, category, filename, lineno, line)


warnings.formatwarning = _one_line_warning


@dataclass(frozen=True)
class Rule:
    """What a field's value may be: bounds (numbers, or every item of a list), choices, a registry of names, or
    a check of its own. `None` passes (whether a field may be None is its type's business)."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    choices: Any = ()  # allowed values (a string: space-separated names)
    items: type | None = None  # list fields: the type of every item (bounds then apply to the items)
    nonempty: bool = False
    registry: str = ""  # the kind of registered name (backbone, loss, ...): checked against the registries
    check: Callable[[Any], str | None] | None = None  # value -> a problem ("must be ...") or None
    convert: Callable[[Any], Any] | None = None  # value -> the value kept; raises ConfigError(problem)

    def allowed(self) -> tuple:
        """The allowed values as a tuple (a string of choices split on spaces); () when any value may do."""
        return tuple(self.choices.split()) if isinstance(self.choices, str) else tuple(self.choices)

    def bounds(self) -> str:
        """'> 0', '>= 0 and < 1', ... ('' when unbounded)."""
        parts = [f"{op} {_number(v)}" for op, v in ((">=", self.ge), (">", self.gt), ("<=", self.le), ("<", self.lt))
                 if v is not None]
        return " and ".join(parts)

    def describe(self) -> str:
        """The rule in a few words, for the option reference (docs/config.md)."""
        parts = []
        if self.allowed():
            parts.append("one of " + ", ".join(str(c) for c in self.allowed()))
        if self.bounds():
            parts.append(("each item " if self.items else "") + self.bounds())
        if self.nonempty:
            parts.append("not empty")
        if self.registry:
            parts.append(f"a registered {self.registry} name")
        for fn in (self.check, self.convert):
            parts += [fn.says] if hasattr(fn, "says") else []
        return "; ".join(parts)

    def problem(self, value: Any) -> str | None:
        """What is wrong with `value` ("must be > 0, got -1.0"), or None."""
        if value is None:
            return None
        if self.nonempty and len(value) == 0:
            return "must not be empty"
        if self.allowed() and value not in self.allowed():
            return f"must be one of {', '.join(str(c) for c in self.allowed())}, got {value!r}"
        for item in value if self.items else [value]:
            if self.bounds() and not self._within(item):
                return f"must be {self.bounds()}, got {value!r}" if not self.items else \
                    f"items must be {self.bounds()}, got {item!r}"
        return self.check(value) if self.check else None

    def _within(self, x: float) -> bool:
        return ((self.ge is None or x >= self.ge) and (self.gt is None or x > self.gt)
                and (self.le is None or x <= self.le) and (self.lt is None or x < self.lt))


def opt(default: Any, **rule: Any) -> Any:
    """A field's default with its rule beside it: `lr: float = opt(0.1, gt=0)  # meaning`."""
    meta = {"rule": Rule(**rule)}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


def says(text: str) -> Callable:
    """Attach to a check function the words the option reference shows for it."""
    def mark(fn: Callable) -> Callable:
        fn.says = text  # type: ignore[attr-defined]
        return fn
    return mark


def _number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


@says("an integer >= 0, or class names / ids")
def _open_classes(value: Any) -> Any:
    """data.split.open_classes: a whole number of classes >= 0 (2.0 is 2), or class names / ids (a list, 'a,b')."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        if not 0 <= value <= MAX_COUNT:
            raise ConfigError(f"must be >= 0 and <= {MAX_COUNT} (a number of classes), got {value!r}")
        return value
    if isinstance(value, str) or (isinstance(value, (list, tuple)) and all(
            isinstance(v, (str, int)) and not isinstance(v, bool) for v in value)):
        open_class_items(value)  # no empty item, none twice
        return value
    raise ConfigError(f"must be a whole number of classes or a list of class names / ids, got {value!r}")


def open_class_items(value: str | list | tuple) -> list:
    """The items of a list of open classes, `'bag,sandal'` or `[bag, 3]`: spaces around an item are dropped
    (`'bag, sandal'`). ConfigError (the text follows the key's name) for a text that names nothing (`''`, `','`),
    an empty item (`'dog,,cat'`, `'dog, ,cat'`) or an item given twice (`'dog,dog'`). An empty list is no class."""
    if isinstance(value, str):
        items: list = [item.strip() for item in value.split(",")]
        if not any(items):  # '' or ',' would silently mean "no open class"
            raise ConfigError(f"{value!r} names no class: give a number of held-out classes (0 for none) or class "
                              f"names / ids ('8,9', 'bag,sandal')")
    else:
        items = [item.strip() if isinstance(item, str) else item for item in value]
    empty = [i for i, item in enumerate(items) if item == ""]
    if empty:
        raise ConfigError(f"{value!r} has an empty item (item {empty[0] + 1} of {len(items)}): separate class names "
                          f"/ ids by single commas")
    seen: set[str] = set()
    for item in items:
        if str(item) in seen:
            raise ConfigError(f"{value!r} names {item!r} twice: give each held-out class once")
        seen.add(str(item))
    return items


@says("a relative file name")
def _file_name_problem(value: Any) -> str | None:
    """A split file name inside data.split_dir: a relative path that stays inside it."""
    parts = Path(str(value)).parts
    if not str(value).strip() or Path(str(value)).is_absolute() or ".." in parts:
        return f"must be a file name inside data.split_dir, got {value!r}"
    return None


_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


@says("auto, cpu, cuda, cuda:N, mps")
def _device_problem(value: Any) -> str | None:
    return None if _DEVICE.match(str(value)) else f"must be auto, cpu, cuda, cuda:N or mps, got {value!r}"


def control_character(text: str) -> str | None:
    """The first control character of `text` (C0, DEL, C1, a format character, U+2028 / U+2029), None when it has
    none: such a character in a name breaks the lines that print it (class names, run names)."""
    return next((c for c in text if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp")), None)


@says(f"a plain name (no /, no control character) of at most {MAX_RUN_NAME_BYTES} bytes")
def run_name_problem(value: Any) -> str | None:
    """A run name prefix: one path component (no '/', '\\', NUL), not '.' or '..', not empty, no control character
    (a tab, a line break, ...: the "run directory:" line and the run folder's name would break, as class names'
    would: `control_character`), short enough for its run folder's name (MAX_RUN_NAME_BYTES in UTF-8: the folder
    adds -YYYYmmdd-HHMMSS)."""
    text = str(value)
    if not text.strip() or text in (".", "..") or any(c in text for c in "/\\\0") or text != text.strip():
        return f"must be a plain name (no '/', '\\', surrounding spaces, not '.' or '..'), got {value!r}"
    odd = control_character(text)
    if odd is not None:
        return (f"must not contain the control character {odd!r} (a tab, a line break, ...: the run folder's name "
                f"and the lines that print it would break), got {value!r}")
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_RUN_NAME_BYTES:
        return (f"must be at most {MAX_RUN_NAME_BYTES} bytes long (a file name holds 255; the run folder adds "
                f"-YYYYmmdd-HHMMSS), got {size} bytes ({text[:20]!r}...)")
    return None


def shown_path(value: Any) -> str:
    """A path in a message: as it is when short, else its start and its length (a 4,000-character echo helps no one)."""
    text = str(value)
    return repr(text) if len(text) <= 80 else f"{text[:40]!r}... ({len(text)} characters)"


@says(f"a folder path of at most {MAX_OUT_DIR_BYTES} bytes, each folder name at most 255")
def out_dir_problem(value: Any) -> str | None:
    """A folder runs are created in (out_dir, a bench's out_dir): short enough, as an absolute path, to hold a run
    folder and its files within the system's path limit, and no folder name in it over 255 bytes (what a file
    name holds). Checked by its text alone: the folder need not exist yet."""
    text = str(value)
    if not text:
        return None
    try:
        full = os.path.abspath(os.path.expanduser(text)).encode("utf-8", "surrogatepass")
    except (OSError, ValueError):  # (a NUL: the text checks name it)
        return None
    longest = max(full.split(b"/"), key=len)
    if len(longest) > 255:
        return (f"has a folder name of {len(longest)} bytes (a file name holds at most 255), got "
                f"{shown_path(text)}")
    if len(full) > MAX_OUT_DIR_BYTES:
        return (f"is {len(full)} bytes long as an absolute path: at most {MAX_OUT_DIR_BYTES} leave room for a run "
                f"folder and its files within the system's path limit ({PATH_MAX_BYTES}), got {shown_path(text)}")
    return None


@says(f"<= {MAX_WORKERS} (a fixed cap)")
def _workers_problem(value: Any) -> str | None:
    """data.workers: at most MAX_WORKERS forked loader processes, whatever the machine."""
    if value > MAX_WORKERS:
        return (f"must be <= {MAX_WORKERS} (a fixed cap on DataLoader worker processes per training process; "
                f"4 to 16 are usual), got {value!r}")
    return None


@says("auto or a finite number")
def _threshold(value: Any) -> Any:
    """eval.open_threshold: 'auto', or a finite number (a string that parses as one becomes that number)."""
    if value == "auto":
        return value
    try:
        return finite_number(value)
    except ConfigError:
        raise ConfigError(f"must be 'auto' or a finite number, got {value!r}") from None


@dataclass
class SplitConfig:
    """How to build long-tailed + open-set splits when `data.split_dir` is not given (see `openlt split`)."""

    profile: str = opt("exp", choices="exp pareto none")  # exp | pareto | none (keep the natural counts)
    n_max: int = opt(1280, ge=1, le=MAX_COUNT)  # training images of the largest known class
    n_min: int = opt(5, ge=1, le=MAX_COUNT)  # training images of the smallest known class
    imbalance_factor: float | None = opt(None, ge=1, le=MAX_COUNT)  # exp: n_max / n_min; overrides n_min when set
    alpha: float = opt(6.0, gt=0, le=MAX_SHAPE)  # pareto shape (ImageNet-LT: 6)
    open_classes: Any = opt(2, convert=_open_classes)  # a number (chosen with the seed; count:N when a class is named N) or a list of class names / ids
    val_per_class: int = opt(20, ge=0, le=MAX_COUNT)  # validation images per known class (taken before the long tail is cut)
    test_per_class: int | None = opt(None, ge=1, le=MAX_COUNT)  # None: every test image (embedded data) / 20 (image folder)
    order: str = opt("random", choices="random label")  # which known class gets n_max: random (with the seed) | label
    seed: int = opt(0, ge=0, lt=SEED_END)  # which images and which open classes


RELATIONS: dict[type, list[tuple[tuple[str, ...], Callable[[Any], str | None]]]] = {}


def relation(section: type, *keys: str) -> Callable:
    """Register a check between fields of `section` (`keys`: the fields it reads, the one it names first); it
    returns a problem ("must be <= n_max (20), got 40") or None, and is skipped when one of `keys` is invalid."""
    def add(fn: Callable[[Any], str | None]) -> Callable[[Any], str | None]:
        RELATIONS.setdefault(section, []).append((keys, fn))
        return fn
    return add


@relation(SplitConfig, "n_min", "n_max", "profile", "imbalance_factor")
def _n_min_below_n_max(s: SplitConfig) -> str | None:
    if s.profile != "none" and s.imbalance_factor is None and s.n_min > s.n_max:
        return f"must be <= n_max ({s.n_max}), got {s.n_min}"
    return None


@dataclass
class DataConfig:
    """The `data` section: which data set, where its images and split files are, and how images are loaded."""

    dataset: str = opt("fashion-mnist", choices=DATASET_KINDS)  # fashion-mnist | image-folder | split-file | cifar10 | cifar100
    root: str | None = None  # image root; for fashion-mnist the folder of the IDX files (found if None)
    open_root: str | None = None  # root of the open split's paths when it differs (None: data.root);
    #                               cifar10 / cifar100: every image under it becomes the open set of a new split
    split_dir: str | None = None  # folder of split files (+ manifest.json); None: build them into the run
    train_split: str = opt("train.txt", check=_file_name_problem)  # split file names inside split_dir: "relative/path.jpg label" per line
    val_split: str | None = opt("val.txt", check=_file_name_problem)  # None: no validation (best = last epoch, fixed rejection threshold)
    test_split: str = opt("test.txt", check=_file_name_problem)  # the known classes' test images
    open_split: str | None = opt("open.txt", check=_file_name_problem)  # images of classes never seen in training (label -1); None: closed set
    class_names: str | None = None  # optional file with one class name per line (label order)
    transform: str = opt("auto", choices="auto small imagenet face")  # auto | small | imagenet | face (aligned face crops: flip only, mean = std = 0.5)
    image_size: int | None = opt(None, ge=MIN_IMAGE_SIZE, le=MAX_IMAGE_SIZE)  # None: 28 for fashion-mnist, 32 for cifar; an image folder / split file: the images' own size when they are at most 64 px (small transform and stem), else 224
    in_chans: int | None = opt(None, choices=(1, 3))  # None: 1 for fashion-mnist, 3 otherwise
    workers: int = opt(0, ge=0, check=_workers_problem)  # DataLoader worker processes per training process (0: load in the main process)
    pin_memory: bool | None = None  # page-locked batches for faster host-to-GPU copies; None: on with CUDA only
    split: SplitConfig = field(default_factory=SplitConfig)


@dataclass
class HeadConfig:
    """Options of the cosine and meta-embedding heads (OLTR) and the NCM head; ignored by the linear head."""

    scale: float = opt(16.0, gt=0, le=MAX_SCALE)  # cosine classifier scale (the public code's 16)
    squash: bool = True  # ||x|| / (1 + ||x||) factor of the public code's cosine classifier
    reach_scale: float = opt(10.0, gt=0, le=MAX_SCALE)  # reachability = reach_scale / min distance to a centroid
    use_memory: bool = True  # OLTR ablation switch: the memory feature of the meta-embedding
    use_selector: bool = True  # OLTR ablation switch: the concept selector
    use_reachability: bool = True  # OLTR ablation switch: scaling by the reachability
    ncm_metric: str = opt("cosine", choices="cosine euclidean")  # NCM head (decouple.method=ncm): cosine | euclidean; logits = scale * (cos | -dist)
    ncm_center: bool = False  # NCM: subtract the training features' mean before L2-normalising (public code's cl2n)


@dataclass
class ModelConfig:
    """The `model` section: the backbone, the classifier head and OLTR's optional parts (attention, feature fc)."""

    backbone: str = opt("resnet18", registry="backbone")  # torchvision ResNet / ResNeXt, CIFAR ResNet (resnet20-110), or timm/NAME (openlt[timm])
    small_input: bool | None = None  # None: True when the images are at most 64 px
    pretrained: str | None = None  # local weights file (torchvision .pth or .safetensors)
    classifier: str = opt("linear", registry="classifier")  # the head: meta_embedding is OLTR's, normed_linear LDAM's, ncm is set by decoupling
    attention: bool = False  # OLTR's modulated attention on the last feature map
    attention_spatial: str = opt("conv", choices="conv fc")  # its spatial attention: conv (1x1 conv, any map size) | fc (the public code's Linear over the whole flattened map, size fixed by data.image_size)
    feature_fc: bool = False  # an extra d -> d fc + ReLU after pooling (OLTR stage 2 on ImageNet-LT)
    head: HeadConfig = field(default_factory=HeadConfig)


TRAINED_AMPS = ("none", "bf16", "fp16")  # the precisions a run trains in: train.amp with `auto` resolved


@dataclass
class TrainConfig:
    """The `train` section: SGD and its learning-rate schedule, the sampler, the loss, devices and precision."""

    epochs: int = opt(30, ge=1, le=MAX_EPOCHS)  # training epochs (stage 2: cRT / LWS epochs on the cached features)
    batch_size: int = opt(128, ge=1, le=MAX_BATCH)  # the global batch: split over the processes under torchrun
    lr: float = opt(0.1, gt=0, le=MAX_LR)  # peak learning rate of SGD (after the warm-up)
    momentum: float = opt(0.9, ge=0, lt=1)  # SGD momentum
    nesterov: bool = False  # Nesterov momentum
    weight_decay: float = opt(5e-4, ge=0, le=MAX_WEIGHT_DECAY)  # SGD weight decay on every trained parameter (as the public codes)
    warmup_epochs: float = opt(1.0, ge=0, le=MAX_EPOCHS)  # linear warm-up from 0, in epochs (fractions allowed)
    schedule: str = opt("cosine", choices="cosine step")  # cosine (to min_lr) | step (x step_gamma every step_epochs, the OLTR code's)
    step_epochs: int = opt(10, ge=1, le=MAX_EPOCHS)  # step schedule: epochs between decays
    step_gamma: float = opt(0.1, gt=0, le=1)  # step schedule: decay factor
    milestones: list = opt([], items=float, ge=0, le=MAX_EPOCHS)  # step: x step_gamma at these 0-based epochs; []: every step_epochs
    min_lr: float = opt(0.0, ge=0, le=MAX_LR)  # cosine schedule: the final learning rate
    backbone_lr: float | None = opt(None, ge=0, le=MAX_LR)  # None: train.lr; e.g. 0.001 for a pretrained backbone (Places-LT)
    sampler: str = opt("instance", registry="sampler")  # how training batches are drawn (progressive: instance- to class-balanced linearly over train.epochs, the last epoch class-balanced, as in Kang et al.'s code)
    loss: str = opt("ce", registry="loss")  # the training loss (its options: loss_args)
    loss_args: dict = field(default_factory=dict)  # keyword arguments of the loss, e.g. {weight: 0.01}; weights and margins in [0, 1000], s in (0, 1000], tau in [0, 10], gamma in [0, 1000], label_smoothing and drw_beta in [0, 1), any other number within +-10**6
    init_from: str | None = None  # stage 2: a stage-1 run directory whose best weights start this run
    freeze_backbone: bool = False  # stage 2: keep the backbone fixed (attention / fc / head still learn)
    centroid_lr: float | None = opt(None, ge=0, le=MAX_LR)  # OLTR centroids' learning rate (None: train.lr)
    device: str = opt("auto", check=_device_problem)  # auto | cpu | cuda | cuda:N
    channels_last: bool = True  # NHWC memory format: about 15 % faster convolutions on CPU and GPU
    amp: str = opt("auto", choices="auto " + " ".join(TRAINED_AMPS))  # mixed precision: auto (bf16 on a GPU or CPU with native bfloat16, else none; a run keeps the precision it started in) | none | bf16 (CPU or GPU) | fp16 (GPU, with a grad scaler); see docs/scale.md
    sync_bn: bool = False  # under torchrun on GPUs: batch-norm statistics over the global batch (default: per process)
    eval_every: int = opt(1, ge=1, le=MAX_EPOCHS)  # validate every N epochs (the best checkpoint is chosen among those)


@relation(TrainConfig, "nesterov", "momentum")
def _nesterov_needs_momentum(t: TrainConfig) -> str | None:
    return "needs train.momentum > 0 (Nesterov without momentum is undefined)" if t.nesterov and not t.momentum else None


@relation(TrainConfig, "min_lr", "lr", "schedule")
def _min_lr_below_lr(t: TrainConfig) -> str | None:
    if t.schedule == "cosine" and t.min_lr > t.lr:
        return f"must be <= train.lr ({t.lr}) for the cosine schedule to decay, got {t.min_lr}"
    return None


# The numbers of train.loss_args whose meaning is the same in every loss that takes them, with their bounds; any
# other number (an option of one loss, a list item) is only kept below MAX_LOSS_NUMBER in size.
LOSS_ARG_RULES: dict[str, tuple[Rule, str]] = {
    "label_smoothing": (Rule(ge=0, lt=1), "a probability mass"),
    "weight": (Rule(ge=0, le=MAX_LOSS_WEIGHT), "a loss term's weight"),
    "repel_weight": (Rule(ge=0, le=MAX_LOSS_WEIGHT), "a loss term's weight"),
    "margin": (Rule(ge=0, le=MAX_LOSS_WEIGHT), "a margin"),
    "margin_repel": (Rule(ge=0, le=MAX_LOSS_WEIGHT), "a margin"),
    "max_m": (Rule(ge=0, le=MAX_LOSS_WEIGHT), "LDAM's largest margin"),
    "s": (Rule(gt=0, le=MAX_SCALE), "a logit scale"),
    "tau": (Rule(ge=0, le=MAX_TAU), "a logit-adjustment temperature"),
    "gamma": (Rule(ge=0, le=MAX_SCALE), "a focusing exponent"),
    "drw_beta": (Rule(ge=0, lt=1), "an effective-number beta"),
}


def _loss_number(value: Any) -> float | None:
    """`value` as a number (a plain decimal string too: YAML 1.1 reads `1e-4` as text), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        return finite_number(value)
    except ConfigError:
        return None


def _loss_numbers(value: Any, key: str) -> Iterator[tuple[str, float]]:
    """(dotted name, number) of every number inside a loss_args value (lists and mappings walked)."""
    number = _loss_number(value)
    if number is not None:
        yield key, number
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            yield from _loss_numbers(item, f"{key}[{i}]")
    elif isinstance(value, dict):
        for k, item in value.items():
            yield from _loss_numbers(item, f"{key}.{k}")


@relation(TrainConfig, "loss_args")
def _loss_arg_bounds(t: TrainConfig) -> str | None:
    for name, value in t.loss_args.items():
        if name in LOSS_ARG_RULES and value is not None:
            rule, what = LOSS_ARG_RULES[name]
            number = _loss_number(value)
            if number is None or not rule._within(number):
                return f"{name} must be {rule.bounds()} ({what}), got {value!r}"
        for where, number in _loss_numbers(value, str(name)):
            if abs(number) > MAX_LOSS_NUMBER:
                return f"{where} must be between -{_number(MAX_LOSS_NUMBER)} and {_number(MAX_LOSS_NUMBER)}, got {number!r}"
    return None


@dataclass
class EvalConfig:
    """The `eval` section: the many / medium / few-shot bands, the open-set score and its rejection threshold."""

    many_above: int = opt(100, ge=0, le=MAX_COUNT)  # many-shot band: classes with more than this many training images
    few_below: int = opt(20, ge=0, le=MAX_COUNT)  # few-shot band: fewer than this many; medium: the rest
    inclusive_bands: bool = False  # True: many >= many_above, few <= few_below (current OLTR code)
    open_score: str = opt("msp", registry="open-set score")  # how known an image looks (higher = more known); rejection thresholds it
    open_threshold: Any = opt("auto", convert=_threshold)  # "auto": keep `keep_known` of the known val images; or a number
    keep_known: float = opt(0.95, gt=0, le=1)  # the automatic threshold keeps this fraction of the known validation images
    batch_size: int = opt(256, ge=1, le=MAX_BATCH)  # evaluation and feature-extraction batch
    openmax_tail: int = opt(20, ge=2, le=MAX_COUNT)  # OpenMax: largest training distances per class in its Weibull fit
    openmax_alpha: int | None = opt(None, ge=1, le=MAX_COUNT)  # OpenMax: top classes revised; None: min(10, number of classes)
    openmax_distance: str = opt("eucos", choices="eucos euclidean cosine")  # OpenMax: eucos (euclidean / 200 + cosine) | euclidean | cosine
    knn_k: int = opt(50, ge=1, le=MAX_COUNT)  # KNN (Sun et al. 2022): the neighbour among the normalised training features whose distance is the score (the paper's 50 for CIFAR-10)
    vim_dim: int | None = opt(None, ge=1, le=MAX_COUNT)  # ViM (Wang et al. 2022): principal subspace dimension; None: the paper's rule (1000 for features >= 1500 wide, 512 for >= 768, else half)
    react_percentile: float = opt(0.9, gt=0, le=1)  # ReAct (Sun et al. 2021): clip features at this percentile of the training activations, as a fraction (the paper's 0.9)
    odin_temperature: float = opt(1000.0, gt=0, le=MAX_TEMPERATURE)  # ODIN (Liang et al. 2018): softmax temperature T (the paper's 1000)
    odin_eps: float = opt(0.0014, ge=0, le=1)  # ODIN: input perturbation step on the [0, 1] pixel scale
    save_logits: bool = False  # predictions.npz keeps every test / open image's logits (N x K float32: 0.8 GB at 24k images x 8,142 classes); default: scores and the top-5 classes only


@relation(EvalConfig, "few_below", "many_above", "inclusive_bands")
def _bands_in_order(e: EvalConfig) -> str | None:
    if e.few_below > e.many_above:
        return f"must be <= eval.many_above ({e.many_above}): the few- and many-shot bands overlap; got {e.few_below}"
    if e.inclusive_bands and e.few_below >= e.many_above:  # few <= few_below and many >= many_above share an edge
        return (f"must be < eval.many_above ({e.many_above}) with eval.inclusive_bands=true (few: n <= few_below, "
                f"many: n >= many_above: a class of {e.many_above} images would be in both); got {e.few_below}")
    return None


@dataclass
class DecoupleConfig:
    """Stage 2 of Kang et al. (2020): a new classifier on the frozen representation of `train.init_from`.

    `openlt train` with `decouple.method` set trains no backbone: it reads (or builds) the stage-1 run's
    feature cache and fits the classifier; train.epochs / lr / batch_size / sampler / weight_decay apply to
    cRT and LWS (and FSLwF's base classifier). The result is an ordinary run (backbone + new head) for eval,
    predict and bench."""

    method: str = opt("none", registry="decouple.method")  # none | crt | ncm | tau_norm | lws | logit_adjust | fslwf (NCM's metric: model.head.ncm_metric; FSLwF: Gidaris & Komodakis 2018, options fslwf_*)
    features: str = opt("cache", choices="cache augmented")  # cache | augmented (cRT / LWS through the frozen backbone with train augmentation)
    cache_dtype: str = opt("float32", choices="float32 float16")  # float32 | float16 (half the disk, same accuracy to ~1e-3)
    taus: list = opt([i / 10 for i in range(21)], items=float, ge=0, le=MAX_TAU, nonempty=True)  # tau grid searched on val
    lws_bias: bool = True  # LWS scales W x + b (the public code keeps the bias)
    keep: str = opt("last", choices="last best")  # cRT / LWS: the last epoch's head, or "best": the epoch of best validation top-1 (public code)
    fslwf_novel_classes: int = opt(5, ge=1, le=MAX_COUNT)  # FSLwF: base (many-shot) classes drawn as fake novel in each generator-training episode (the paper's 5)
    fslwf_shots: int = opt(5, ge=1, le=MAX_COUNT)  # FSLwF: features per fake-novel class its weight is generated from in an episode (the paper's 5-shot)
    fslwf_queries: int = opt(3, ge=1, le=MAX_COUNT)  # FSLwF: query features per fake-novel class in an episode, plus as many of the other base classes (the paper: 15 + 15 for 5 classes)
    fslwf_episodes: int = opt(8, ge=1, le=MAX_COUNT)  # FSLwF: episodes per generator step (the paper's batch of 8)
    fslwf_epochs: int = opt(60, ge=1, le=MAX_EPOCHS)  # FSLwF: generator epochs; lr x1, x0.06, x0.012, x0.0024 after 0, 1/3, 2/3, 5/6 of them (the paper's 60: 20 / 40 / 50)
    fslwf_steps: int = opt(1000, ge=1, le=MAX_COUNT)  # FSLwF: generator steps per epoch (the paper's 1000)
    fslwf_lr: float = opt(0.1, gt=0, le=MAX_LR)  # FSLwF: generator SGD lr (Nesterov, train.momentum, train.weight_decay; the paper's 0.1)
    fslwf_gamma: float = opt(10.0, gt=0, le=MAX_SCALE)  # FSLwF: initial value of the learnable attention scale gamma (the paper's 10)


@dataclass
class Config:
    """A whole run's configuration: the top-level keys and the data, model, train, eval and decouple sections.

    Build it with `build_config` (defaults, YAML, overrides, every rule checked); one built in code is
    checked by `check_config`."""

    name: str = opt("plain", check=run_name_problem)  # run name prefix: runs are OUT_DIR/NAME-YYYYmmdd-HHMMSS (-2, -3, ... when taken; `openlt bench` names its runs METHOD-sSEED-YYYYmmdd-HHMMSS)
    seed: int = opt(0, ge=0, lt=SEED_END)  # model init, sampling and augmentation draws (not the split: data.split.seed)
    out_dir: str = opt("runs", nonempty=True, check=out_dir_problem)  # where run directories are created
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    decouple: DecoupleConfig = field(default_factory=DecoupleConfig)


# The heads that belong to one stage: ncm is filled from a stage-1 run's class means by decouple.method=ncm
# (`decoupling.NearestClassMean`); it has nothing to train, so a stage-1 run with it would train the backbone
# through constant logits and report chance accuracy as a result.
STAGE2_ONLY_HEADS = {"ncm": "ncm"}  # model.classifier -> the decouple.method that fills it


@relation(Config, "model.classifier", "decouple.method")
def _stage2_only_head(c: Config) -> str | None:
    method = STAGE2_ONLY_HEADS.get(c.model.classifier)
    if method is None or c.decouple.method == method:
        return None
    what = (f"is {c.model.classifier!r}, a head only decouple.method={method} fills (class means of a stage-1 "
            f"run's features; nothing in it is trained)")
    if c.decouple.method != "none":
        return f"{what}, but this config has decouple.method={c.decouple.method}, which builds its own head: drop it"
    return (f"{what}, but this config trains a stage-1 run (decouple.method=none), which would learn nothing: "
            f"train stage 1 with linear, cosine, normed_linear or meta_embedding, then fit NCM on it with "
            f"decouple.method={method} train.init_from=RUN")


def to_dict(cfg: Any) -> dict:
    """A config (or one of its sections) as a nested dict of plain values, a deep copy (`dataclasses.asdict`)."""
    return dataclasses.asdict(cfg)


def config_warnings(cfg: Config) -> list[str]:
    """Valid but probably unintended settings, one line each (shown by `build_config` as ConfigWarning)."""
    found = []
    if cfg.train.loss == "ldam" and cfg.decouple.method == "none":
        drw = cfg.train.loss_args.get("drw_epoch", 160)  # LDAMLoss's default
        if isinstance(drw, (int, float)) and not isinstance(drw, bool) and drw >= cfg.train.epochs:
            found.append(f"train.loss=ldam re-weights from (0-based) epoch train.loss_args.drw_epoch={drw}, but "
                         f"train.epochs={cfg.train.epochs}: this run trains LDAM without the deferred re-weighting "
                         f"(DRW); set drw_epoch below train.epochs, or drw_epoch: null to mean it")
    warmup, epochs = cfg.train.warmup_epochs, cfg.train.epochs
    if warmup > 0 and warmup >= epochs:  # a warning, not an error: a 1-epoch smoke run of a config with warm-up
        peak = min(1.0, epochs / warmup)  # the linear warm-up's factor at the run's last step
        found.append(f"train.warmup_epochs={warmup:g} >= train.epochs={epochs}: the whole run is the linear "
                     f"warm-up (the learning rate only rises, to {peak:.2g} x train.lr at the end) and the "
                     f"{cfg.train.schedule} schedule never starts; lower train.warmup_epochs (e.g. 0) or raise "
                     f"train.epochs, unless this is a short smoke run")
    return found


# ------------------------------------------------------------------------------------------ reading values
def _coerce(value: Any, hint: Any) -> Any:
    """Check (and gently convert) a value against a field's type hint; raise ConfigError("must be ...")."""
    if hint is Any:
        return value
    origin = get_origin(hint)
    if origin is Union or origin is types.UnionType:  # Optional[X] and X | None alike
        options = get_args(hint)
        if value is None and type(None) in options:
            return None
        problems = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option)
            except ConfigError as exc:
                problems.append(str(exc))
        raise ConfigError(problems[0] + (" (or null)" if type(None) in options else ""))
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"must be true or false, got {value!r}")
    if hint is int:
        if isinstance(value, str):  # "2", "2.0", "1e3" (YAML 1.1 reads 1e3 as a string): as for float keys
            value = _whole_number(value)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"must be an integer, got {value!r}")
    if hint is float:
        return finite_number(value)
    if hint is list:
        if isinstance(value, (list, tuple)):
            return list(value)
        raise ConfigError(f"must be a list, got {value!r}")
    if hint is dict:
        if isinstance(value, dict):
            return value
        raise ConfigError(f"must be a mapping, got {value!r}")
    if hint is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return str(value)
        raise ConfigError(f"must be a string, got {value!r}")
    return value


def _whole_number(text: str) -> int | str:
    """The integer a string writes plainly (`2`, `+2`, `2.0`, `1e3`: the forms a float key accepts, whole), or the
    string itself (then refused as not an integer, naming it): an integer key reads a number written as a string
    as a float key does, so that `epochs: "2"` is 2 as `lr: "1e-3"` is 0.001."""
    if re.fullmatch(r"[-+]?[0-9]{1,30}", text):
        return int(text)
    try:
        number = finite_number(text)
    except ConfigError:
        return text
    return int(number) if number.is_integer() and abs(number) < 2 ** 53 else text


def finite_number(value: Any) -> float:
    """A finite float; YAML 1.1 reads 1e-4 (no dot) as a string, so a string holding a finite number is one.
    Raises ConfigError (without the key: the caller adds it) for a bool, another string, NaN or +-inf."""
    number = math.nan
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            raise ConfigError(f"must be a number, got {value!r}") from None
        # Python's float() also takes '1_0', ' 5 ' and 'infinity'; a config number is written plainly
        if math.isfinite(number) and not _DECIMAL.fullmatch(value):
            raise ConfigError(f"must be a plain decimal number (e.g. 0.1, 1e-4), got {value!r}")
    else:
        raise ConfigError(f"must be a number, got {value!r}")
    if not math.isfinite(number):
        raise ConfigError(f"must be a finite number, got {value!r}")
    return number


_DECIMAL = re.compile(r"[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?")


def _convert_items(value: Any, rule: Rule | None) -> Any:
    """A list field's items converted to the rule's item type (each a finite number, for floats)."""
    if rule is None or rule.items is None or not isinstance(value, list):
        return value
    out = []
    for i, item in enumerate(value):
        try:
            out.append(_coerce(item, rule.items))
        except ConfigError as exc:
            raise ConfigError(f"item {i}: {exc}") from None
    return out


def _hostile_text(value: Any) -> str | None:
    """A problem found anywhere inside a value (lists, mappings): a NUL byte or a non-finite number."""
    if isinstance(value, str) and "\0" in value:
        return f"must not contain a NUL byte, got {value!r}"
    if isinstance(value, float) and not math.isfinite(value):
        return f"must hold finite numbers, got {value!r}"
    if isinstance(value, dict):
        value = [*value.keys(), *value.values()]
    if isinstance(value, (list, tuple)):
        for item in value:
            problem = _hostile_text(item)
            if problem:
                return problem
    return None


# the keys that name a file or folder (engine.run.PATH_KEYS and data.class_names)
_PATH_FIELDS = ("data.root", "data.open_root", "data.split_dir", "data.class_names", "model.pretrained",
                "train.init_from")


def _path_name_problem(value: Any) -> str | None:
    """A path the filesystem refuses by its name alone (too long: ENAMETOOLONG; a folder on the way that cannot
    be searched: EACCES), named here with its key rather than as a raw OSError later. A missing path is no
    problem here: the command that reads it says what is missing."""
    if isinstance(value, str) and value and not value.strip():
        return f"must name a file or folder, got blank {value!r}"
    if not isinstance(value, str) or not value:
        return None
    try:
        os.stat(os.path.expanduser(value))
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "errno", None)
        if reason in (errno.ENAMETOOLONG, errno.EACCES):
            shown = repr(value) if len(value) <= 80 else f"{value[:40]!r}... ({len(value)} characters)"
            return f"cannot be used as a path: {exc.strerror}, got {shown}"
    return None


class _Problems:
    """The problems of one config, each a line naming the key (and the file and line it came from)."""

    def __init__(self, origins: dict[str, str] | None = None, names: dict[str, str] | None = None) -> None:
        self.origins = origins or {}  # dotted key -> "FILE, line N", or "override 'KEY=VALUE'"
        self.names = names or {}  # dotted key -> how the user wrote it (e.g. an option: "--seed")
        self.lines: list[str] = []
        self.keys: set[str] = set()

    def where(self, *keys: str) -> str | None:
        """Where the values of `keys` came from: each one's file and line or override, and the overrides of keys
        below it (an override of `train.loss_args.weight` is where a problem of `train.loss_args` came from)."""
        found = [self.origins.get(key) for key in keys]
        found += [origin for key in keys for k, origin in self.origins.items() if k.startswith(f"{key}.")
                  and origin.startswith("override ")]
        found = [w for w in dict.fromkeys(found) if w]
        return " and ".join(found) or None

    def label(self, key: str) -> str:
        """How a problem names dotted `key`: as the user wrote it (e.g. "--seed"), else "config key 'KEY'"."""
        return self.names.get(key) or f"config key {key!r}"

    def add(self, key: str, problem: str, *also: str, whole: bool = False) -> None:
        """`problem` follows the key's label ("must be > 0, got -1"), or is the `whole` text; it is placed where
        `key`'s value (and the values of the keys in `also`, for a relation) came from."""
        where = self.where(key, *also)
        text = problem if whole else f"{self.label(key)} {problem}"
        self.lines.append(f"{where}: {text}" if where else text)
        self.keys.add(key)

    def raise_if_any(self) -> None:
        """Raise one ConfigError holding every problem, one per line (repeats dropped); nothing when none."""
        if self.lines:  # one line each (the CLI prints them on one line, separated by '; ')
            raise ConfigError("\n".join(dict.fromkeys(self.lines)))


def _assign(obj: Any, updates: dict, prefix: str, problems: _Problems) -> None:
    """Set `updates` on the dataclass `obj`, converted to each field's type; problems are collected."""
    hints = get_type_hints(type(obj))
    fields = {f.name: f for f in dataclasses.fields(obj)}
    for key, value in updates.items():
        full = f"{prefix}{key}"
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f" (did you mean {prefix + close[0]!r}?)" if close else ""
            problems.add(full, f"unknown {problems.label(full)}{hint}; valid keys here: {', '.join(fields)}", whole=True)
            continue
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            if isinstance(value, dict):
                _assign(current, value, f"{full}.", problems)
            else:
                problems.add(full, f"is a section; give its keys, e.g. {full}.<key>=...")
            continue
        rule = fields[key].metadata.get("rule")
        try:
            value = _convert_items(_coerce(value, hints[key]), rule)
            if rule is not None and rule.convert is not None and value is not None:
                value = rule.convert(value)
        except ConfigError as exc:
            allowed = rule.allowed() if rule is not None else ()
            problems.add(full, str(exc) + (f"; one of {', '.join(map(str, allowed))}" if allowed else ""))
            continue
        setattr(obj, key, value)


def _check(obj: Any, prefix: str, problems: _Problems) -> None:
    """Every field's rule, then the relations of each section (skipping keys that already have a problem)."""
    for f in dataclasses.fields(obj):
        value, full = getattr(obj, f.name), f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            _check(value, f"{full}.", problems)
            continue
        if full in problems.keys:
            continue
        rule = f.metadata.get("rule")
        problem = _hostile_text(value) or (_path_name_problem(value) if full in _PATH_FIELDS else None)
        if problem is None and rule is not None:
            choice = rule.allowed() and value is not None and value not in rule.allowed()
            if choice and all(isinstance(c, str) for c in rule.allowed()):
                problems.add(full, _unknown_name(f"{problems.names.get(full) or full}", value, rule.allowed()),
                             whole=True)
                continue
            problem = rule.problem(value)
            if problem is None and rule.registry:
                known = _registered(rule.registry, value)
                if known is not None:
                    problems.add(full, _unknown_name(rule.registry, value, known, full), whole=True)
                    continue
        if problem:
            problems.add(full, problem)
    for keys, check in RELATIONS.get(type(obj), []):
        if not any(f"{prefix}{key}" in problems.keys for key in keys):
            problem = check(obj)
            if problem:
                problems.add(f"{prefix}{keys[0]}", problem, *(f"{prefix}{key}" for key in keys[1:]))


def _unknown_name(kind: str, value: Any, known: tuple | list, key: str | None = None) -> str:
    """'unknown backbone 'resnt18' for model.backbone (did you mean 'resnet18'?); known: ...'."""
    close = difflib.get_close_matches(str(value), [str(k) for k in known], n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return (f"unknown {kind} {value!r}" + (f" for {key}" if key else "") + f"{hint}; known: {', '.join(known)}"
            + ("; or timm/NAME for a timm model" if kind == "backbone" else ""))


def _registered(kind: str, name: Any) -> list[str] | None:
    """None when `name` is registered as a `kind` (backbone, loss, ...; timm/NAME backbones and decouple.method
    none pass) or when that registry's package has not been imported (the registry itself refuses the name when
    the piece is built), else the registered names."""
    if kind == "backbone" and isinstance(name, str) and name.startswith("timm/"):
        return None
    if kind == "decouple.method" and name == "none":
        return None
    known = registered_names(kind)
    return None if known is None or name in known else (["none", *known] if kind == "decouple.method" else known)


def _apply(obj: Any, updates: dict, prefix: str = "", names: dict[str, str] | None = None) -> None:
    """Set `updates` on a config section and check the whole section; raise one ConfigError with every problem.

    `names` says how the user wrote a key when it was not a config key (e.g. {"seed": "--seed"})."""
    problems = _Problems(names=names)
    _assign(obj, updates, prefix, problems)
    _check(obj, prefix, problems)
    problems.raise_if_any()


def check_config(cfg: Any) -> None:
    """Check a config built in code (every rule and relation); raise one ConfigError with every problem."""
    problems = _Problems()
    _check(cfg, "", problems)
    problems.raise_if_any()


# Every character YAML folds as a line break or Python's str.splitlines() splits at: an override value with one
# would be read as a value the user did not type (`name=a<U+0085>b` became "a b").
LINE_BREAKS = frozenset("\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")


def parse_overrides(overrides: list[str]) -> dict:
    """Turn ["train.epochs=2", "data.root=/x"] into a nested dict; values are parsed as YAML scalars."""
    nested: dict = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value (e.g. train.epochs=2)")
        key, raw = item.split("=", 1)
        if not key.strip():
            raise ConfigError(f"override {item!r} has no key before '=' (key=value, e.g. train.epochs=2)")
        brk = next((ch for ch in raw if ch in LINE_BREAKS), None)
        if brk is not None:  # YAML would fold it into a space: a value the user did not type
            raise ConfigError(f"override {item!r} has a line break ({brk!r}) in its value; give the value on one line")
        try:
            value = _parse_yaml(raw, f"override {item!r}", lined=False)[0] if raw != "" else None
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


# ------------------------------------------------------------------------------------------ reading YAML
class _CheckedLoader(yaml.SafeLoader):
    """PyYAML's SafeLoader without anchors and aliases: a "billion laughs" file is refused, not expanded."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        """PyYAML's node composer, raising _Refused (with the line) at an anchor or an alias."""
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            raise _Refused(event.start_mark, "YAML anchors and aliases (&name, *name) are not supported")
        return super().compose_node(parent, index)


class _Refused(Exception):
    """YAML that parses but that openlt refuses (aliases, merge keys, duplicate keys); names the line."""

    def __init__(self, mark: Any, problem: str) -> None:
        super().__init__(problem)
        self.line, self.problem = mark.line + 1, problem


_INT_TAG, _FLOAT_TAG = "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"
# The number forms YAML 1.1 and 1.2 read alike: plain decimal integers (no leading 0) and decimal floats.
_PLAIN_INT = re.compile(r"[-+]?(0|[1-9][0-9]*)")
_PLAIN_FLOAT = re.compile(r"[-+]?([0-9]+\.[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?|[-+]?\.(inf|Inf|INF)|\.(nan|NaN|NAN)")


_BOOL_TAG = "tag:yaml.org,2002:bool"
_PLAIN_BOOL = re.compile(r"true|True|TRUE|false|False|FALSE")  # YAML 1.2's booleans


def boolean_form_problem(node: Any) -> str | None:
    """What is wrong with a scalar that PyYAML (YAML 1.1) reads as a boolean but YAML 1.2 and a reader take for
    text: ``yes`` / ``no`` / ``on`` / ``off`` (e.g. a class or run named ``no`` would become False)."""
    if not isinstance(node, yaml.ScalarNode) or node.tag != _BOOL_TAG or _PLAIN_BOOL.fullmatch(node.value):
        return None
    read = node.value.lower() in ("yes", "on", "y")
    return (f"{node.value!r} is a boolean in YAML 1.1 (it would read as {read!r}); for a yes / no key write true or "
            f"false, else quote it to mean text")


def number_form_problem(node: Any) -> str | None:
    """What is wrong with a scalar that PyYAML (YAML 1.1) reads as a number written in a form other than plain
    decimal: sexagesimal ``1:30`` (= 90), hexadecimal ``0x10``, binary ``0b11``, octal ``010`` (= 8), ``1_0``.
    A reader (and YAML 1.2) would take most of them for something else, so they are refused, not guessed."""
    if not isinstance(node, yaml.ScalarNode) or node.tag not in (_INT_TAG, _FLOAT_TAG):
        return None
    text = node.value
    if (_PLAIN_INT if node.tag == _INT_TAG else _PLAIN_FLOAT).fullmatch(text):
        return None
    low = text.lower()
    form = ("a sexagesimal (base-60) number" if ":" in text else "a hexadecimal number" if "0x" in low
            else "a binary number" if "0b" in low else "a number with _ separators" if "_" in text
            else "an octal number (leading 0)" if node.tag == _INT_TAG else "a number in a YAML 1.1 form")
    try:
        read = yaml.safe_load(text)
    except yaml.YAMLError:  # (an explicit !!int tag on text that is no number)
        read = "?"
    return (f"{text!r} is {form} in YAML 1.1 (it would read as {read!r}); write a plain decimal number, "
            f"or quote it to mean text")


def _walk(loader: _CheckedLoader, node: Any, prefix: str, lines: dict[str, int], name: str = "") -> None:
    """Record the line of every mapping key (dotted) and refuse duplicate keys, merge keys (<<) and numbers in
    YAML 1.1's other forms (`number_form_problem`; `name`: what the message calls the node, "key 'a.b'")."""
    problem = number_form_problem(node) or boolean_form_problem(node)
    if problem:
        raise _Refused(node.start_mark, f"{name}: {problem}" if name else problem)
    if isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _walk(loader, item, f"{prefix}{i}.", lines, f"{name}, item {i}" if name else f"item {i}")
        return
    if not isinstance(node, yaml.MappingNode):
        return
    seen: dict[Any, int] = {}
    for key_node, value_node in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            raise _Refused(key_node.start_mark, "YAML merge keys (<<) are not supported")
        key = loader.construct_object(key_node, deep=True)
        try:
            first = seen.get(key)
        except TypeError:
            raise _Refused(key_node.start_mark, "a mapping key must be a plain value") from None
        if first is not None:
            raise _Refused(key_node.start_mark, f"key {prefix + str(key)!r} appears twice (first on line {first}); "
                                                "YAML would silently keep only the last")
        seen[key] = lines[f"{prefix}{key}"] = key_node.start_mark.line + 1
        _walk(loader, value_node, f"{prefix}{key}.", lines, f"key {prefix + str(key)!r}")


def _parse_yaml(text: str, name: str, lined: bool = True) -> tuple[Any, dict[str, int]]:
    """YAML text -> (data, {dotted key: line}). Raises yaml.YAMLError (syntax) or ConfigError (refused), which
    names `name` and, when `lined`, the line (an override's value has one line: it is not named)."""
    loader = _CheckedLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, {}
        lines: dict[str, int] = {}
        _walk(loader, node, "", lines)
        return loader.construct_document(node), lines
    except _Refused as exc:
        raise ConfigError(f"{name}, line {exc.line}: {exc.problem}" if lined else f"{name}: {exc.problem}") from None
    except RecursionError:
        raise ConfigError(f"{name}: nested too deeply to be a config") from None
    finally:
        loader.dispose()


def yaml_error_text(exc: yaml.YAMLError) -> str:
    """A YAML parse error on one line: 'line 4, column 2: expected <block end>, but found ...'."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or getattr(exc, "context", None) or str(exc).strip().splitlines()[0]
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return f"{where}{problem}"


def read_utf8(path: str | Path, what: str, error: type[Exception] = ConfigError) -> str:
    """A text file a user edits, as UTF-8 (a byte-order mark is dropped); anything else is one `error` line."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise error(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise error(f"cannot read {what} {path}: not UTF-8 text (line {line}: byte 0x{raw[exc.start]:02x}); "
                    f"save it as UTF-8") from None


def read_json(path: str | Path, what: str, error: type[Exception] = ConfigError) -> Any:
    """A JSON file openlt wrote and a crash or an edit may have damaged, parsed strictly: UTF-8 (read_utf8), and
    NaN / Infinity refused as numbers. Anything unreadable is one `error` line naming the file."""
    try:
        return json.loads(read_utf8(path, what, error), parse_constant=_no_json_constant)
    except ValueError as exc:
        raise error(f"{path} is not readable JSON ({exc})") from None


def _no_json_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _read_yaml(path: Path, what: str) -> tuple[dict, dict[str, int]]:
    """A YAML file that must hold a mapping -> (data, {dotted key: line}); every problem is one ConfigError."""
    if not path.is_file():
        raise ConfigError(f"{what} not found: {path}" if not path.exists() else f"{what} {path} is not a file")
    try:
        data, lines = _parse_yaml(read_utf8(path, what), str(path))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{what} {path} is not valid YAML ({yaml_error_text(exc)})") from None
    if data is None:
        return {}, {}
    if not isinstance(data, dict):
        raise ConfigError(f"{what} {path} must hold a mapping of keys, not {type(data).__name__}")
    return data, lines


def read_yaml_mapping(path: str | Path, what: str = "config file") -> dict:
    """A YAML file that must hold a mapping: UTF-8, no duplicate keys, no anchors / aliases; every problem
    (missing file, bad YAML, another type) is one ConfigError line naming the file (and line)."""
    return _read_yaml(Path(path), what)[0]


def _load_yaml(path: Path, chain: tuple[Path, ...] = ()) -> tuple[dict, dict[str, str]]:
    """A config file merged onto its `base:` chain -> (data, {dotted key: "FILE, line N"})."""
    data, lines = _read_yaml(path, "config file" if not chain else f"base config of {chain[-1]}")
    origins = {key: f"{path}, line {line}" for key, line in lines.items()}
    if "base" not in data:
        return data, origins
    base = data.pop("base")
    where = origins.pop("base")
    if not isinstance(base, str) or not base.strip() or "\0" in base:
        raise ConfigError(f"{where}: base: must name a config file (relative to this one) or a packaged config, "
                          f"got {base!r}")
    try:  # as the command line resolves a config: a file relative to this one, else a packaged config's name
        target = resolve_config(base, path.parent, "base config")
    except ConfigError as exc:
        raise ConfigError(f"{where}: base: {base!r} is not a config file ({exc})") from None
    if target.resolve() in [p.resolve() for p in (*chain, path)]:
        cycle = " -> ".join(str(p) for p in (*chain, path, target))
        raise ConfigError(f"{where}: base: {base!r} makes a cycle: {cycle}")
    if not target.is_file():
        raise ConfigError(f"{where}: base: {base!r} is not a config file ({target} is not a file)")
    merged, merged_origins = _load_yaml(target, (*chain, path))
    _deep_merge(merged, data)
    merged_origins.update(origins)
    return merged, merged_origins


def load_yaml(path: str | Path) -> dict:
    """A config file (or a packaged config's name, see `resolve_config`) merged onto its `base:` chain (each
    base a file relative to the file that names it, else a packaged config's name, as `resolve_config`)."""
    return _load_yaml(resolve_config(path))[0]


# The configs that ship inside the package (src/openlt/configs; the repository's top-level configs/ links here).
PACKAGED_CONFIGS = Path(__file__).resolve().parent / "configs"


def packaged_configs() -> dict[str, Path]:
    """Every packaged config by name -> its file, sorted by name: the path under the package's configs folder
    without ``.yaml`` (``fmnist_lt/plain``, ``bench/fmnist_lt``); empty when the folder is absent."""
    if not PACKAGED_CONFIGS.is_dir():
        return {}
    files = sorted(PACKAGED_CONFIGS.rglob("*.yaml"))
    return {f.relative_to(PACKAGED_CONFIGS).with_suffix("").as_posix(): f for f in files}


def first_comment(path: Path) -> str:
    """The first ``#`` comment line of a config file, without the ``#`` (what the config is); "" when none."""
    for line in read_utf8(path, "config file").splitlines():
        if line.lstrip().startswith("#"):
            return line.lstrip().lstrip("#").strip()
    return ""


def config_name(value: str | Path) -> str:
    """The packaged-config name a value may mean: '/' separators, without a leading ``configs/`` (a README path
    typed outside the repository) and without the ``.yaml`` / ``.yml`` suffix (``configs/fmnist_lt/plain.yaml``
    -> ``fmnist_lt/plain``)."""
    name = str(value).replace("\\", "/").strip()
    while name.startswith("./"):
        name = name[2:]
    name = name.removeprefix("configs/")
    for suffix in (".yaml", ".yml"):
        name = name.removesuffix(suffix)
    return name


def resolve_config(value: str | Path, relative_to: Path | None = None, what: str = "config file") -> Path:
    """The file a config argument names: `value` as a path (relative to `relative_to` when given, e.g. a bench
    spec's folder) when anything exists there, else the packaged config of that name (``fmnist_lt/plain``;
    see `config_name`). ConfigError naming the value and the closest packaged names when it is neither."""
    path = Path(value) if relative_to is None else relative_to / value
    if path.exists():
        return path
    known = packaged_configs()
    name = config_name(value)
    if name in known:
        return known[name]
    close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.6)
    close += [n for n in known if n.rsplit("/", 1)[-1] == name.rsplit("/", 1)[-1] and n not in close][:3]
    hint = f"; closest: {', '.join(close)}" if close else ""
    raise ConfigError(f"{what} not found: {path} (nor a packaged config of that name{hint}; `openlt configs` "
                      f"lists them)")


def _deep_merge(into: dict, update: dict) -> None:
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _deep_merge(into[key], value)
        else:
            into[key] = value


def flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    """A nested mapping as {dotted key: value} of its values (not of its sub-mappings; an empty one is a value),
    e.g. ``flatten(to_dict(cfg))["train.lr"]``."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


# Keys that only one choice of another key uses: (key, the choice key, whether the config uses the key, the choice
# that would, in words). An explicitly set non-default value of such a key under another choice would have no
# effect: refused by build_config (:func:`_inactive_keys`), naming the key and the choice that would use it.
# One rule is named per key, a stage 2 that trains nothing first (train.milestones under ncm: not the schedule).
# The decoupled stage-2 methods that train nothing (a head fitted in closed form on the cached features: class
# means, a tau search on validation): they read no optimiser, schedule or sampler setting (engine/decouple.py,
# decoupling/methods.py: only TrainedOnFeatures and FSLwF read train.epochs / lr / ...); what they do read of
# `train` (init_from, device, amp and channels_last for the feature extraction, seed) is not refused.
# How fast a run ran, not what it learnt: the device, loader processes, page-locked memory and the memory format
# change the numbers only at rounding level (as a rerun on another machine does). `openlt summary` leaves them out
# of a recipe; `openlt bench` reuses a finished run that differs from the spec only in them.
EXECUTION_KEYS = frozenset({"train.device", "data.workers", "data.pin_memory", "train.channels_last"})
TRAINS_NOTHING = ("ncm", "tau_norm", "logit_adjust")
UNTRAINED_TRAIN_KEYS = ("epochs", "batch_size", "lr", "momentum", "nesterov", "weight_decay", "warmup_epochs",
                        "schedule", "step_epochs", "step_gamma", "milestones", "min_lr", "backbone_lr", "sampler",
                        "eval_every")
INACTIVE_RULES: tuple[tuple[str, str, Callable[[Any], bool], str], ...] = (
    ("train.milestones", "train.schedule", lambda c: c.train.schedule == "step", "train.schedule=step"),
    ("train.step_gamma", "train.schedule", lambda c: c.train.schedule == "step", "train.schedule=step"),
    ("train.step_epochs", "train.schedule", lambda c: c.train.schedule == "step" and not c.train.milestones,
     "train.schedule=step with train.milestones: [] (milestones replace step_epochs)"),
    ("train.min_lr", "train.schedule", lambda c: c.train.schedule == "cosine", "train.schedule=cosine"),
    ("train.centroid_lr", "model.classifier", lambda c: c.model.classifier == "meta_embedding",
     "model.classifier=meta_embedding (the head with centroids)"),
    ("eval.keep_known", "eval.open_threshold", lambda c: c.eval.open_threshold == "auto", "eval.open_threshold=auto"),
    ("eval.knn_k", "eval.open_score", lambda c: c.eval.open_score == "knn", "eval.open_score=knn"),
    ("eval.vim_dim", "eval.open_score", lambda c: c.eval.open_score == "vim", "eval.open_score=vim"),
    ("eval.react_percentile", "eval.open_score", lambda c: c.eval.open_score == "react", "eval.open_score=react"),
    ("eval.odin_temperature", "eval.open_score", lambda c: c.eval.open_score == "odin", "eval.open_score=odin"),
    ("eval.odin_eps", "eval.open_score", lambda c: c.eval.open_score == "odin", "eval.open_score=odin"),
    ("eval.openmax_tail", "eval.open_score", lambda c: c.eval.open_score == "openmax", "eval.open_score=openmax"),
    ("eval.openmax_alpha", "eval.open_score", lambda c: c.eval.open_score == "openmax", "eval.open_score=openmax"),
    ("eval.openmax_distance", "eval.open_score", lambda c: c.eval.open_score == "openmax",
     "eval.open_score=openmax"),
    ("decouple.taus", "decouple.method", lambda c: c.decouple.method in ("tau_norm", "logit_adjust"),
     "decouple.method=tau_norm or logit_adjust"),
    ("decouple.lws_bias", "decouple.method", lambda c: c.decouple.method == "lws", "decouple.method=lws"),
    ("decouple.keep", "decouple.method", lambda c: c.decouple.method in ("crt", "lws"), "decouple.method=crt or lws"),
    ("decouple.features", "decouple.method", lambda c: c.decouple.method in ("crt", "lws", "fslwf"),
     "decouple.method=crt, lws or fslwf"),
    ("decouple.cache_dtype", "decouple.method", lambda c: c.decouple.method != "none",
     "a decouple.method (a stage 2 on cached features)"),
    *((f"decouple.{k}", "decouple.method", lambda c: c.decouple.method == "fslwf", "decouple.method=fslwf")
      for k in ("fslwf_novel_classes", "fslwf_shots", "fslwf_queries", "fslwf_episodes", "fslwf_epochs",
                "fslwf_steps", "fslwf_lr", "fslwf_gamma")),
    ("model.head.ncm_metric", "decouple.method", lambda c: c.decouple.method == "ncm", "decouple.method=ncm"),
    ("model.head.ncm_center", "decouple.method", lambda c: c.decouple.method == "ncm", "decouple.method=ncm"),
    *((f"train.{k}", "decouple.method", lambda c: c.decouple.method not in TRAINS_NOTHING,
       "decouple.method=none (stage 1), crt, lws or fslwf (a stage that trains; ncm, tau_norm and logit_adjust train "
       "nothing)") for k in UNTRAINED_TRAIN_KEYS),
)


def _value_at(cfg: Any, key: str) -> Any:
    for part in key.split("."):
        cfg = getattr(cfg, part)
    return cfg


def _inactive_keys(cfg: Config, explicit: dict[str, str], problems: _Problems, complete_file: bool = False) -> None:
    """A problem for each key of :data:`INACTIVE_RULES` set explicitly (`explicit`: the named file's own lines and
    the overrides) to a value other than its default while the config's choice does not use it: it would be
    ignored without a word (train.milestones under the cosine schedule). Not when an override changed the choice
    and the key came from the file: switching the choice on the command line leaves the file's setting inert on
    purpose. Nor, for the `train` keys of a stage 2 that trains nothing (:data:`UNTRAINED_TRAIN_KEYS`), when the key
    is a line of a `complete_file` (a config file without `base:`, as `openlt config` prints a resolved config:
    every key is its own line, the training settings a shipped NCM / tau-norm config inherits from its stage-2
    base included, and it must build the same); a line of a file with a `base:` or an override is refused."""
    default = Config()
    named = set()
    untrained = {f"train.{k}" for k in UNTRAINED_TRAIN_KEYS}
    first = sorted(INACTIVE_RULES, key=lambda rule: not (rule[0] in untrained and rule[1] == "decouple.method"))
    for key, choice, used, needs in first:
        if key in named or key not in explicit or used(cfg) or _value_at(cfg, key) == _value_at(default, key):
            continue
        if explicit.get(choice, "").startswith("override ") and not explicit[key].startswith("override "):
            continue
        if complete_file and key in untrained and choice == "decouple.method" and not explicit[key].startswith(
                "override "):
            continue
        named.add(key)
        problems.add(key, f"has no effect here: this config has {choice}={_value_at(cfg, choice)} and only "
                          f"{needs} uses it; change {choice}, or leave {key} out")


def build_config(path: str | Path | None = None, overrides: list[str] | None = None, base: dict | None = None,
                 shared: list[str] | None = None) -> Config:
    """Defaults <- `base` (e.g. a saved run config) <- YAML file <- `shared` then `overrides` (`key=value`), then
    every rule and relation is checked: one ConfigError lists every problem, each naming the key (and its file and
    line). `shared` are overrides given to many configs at once (a bench spec's `overrides:` and `openlt bench`'s
    command-line ones, for every method): set like the others, but a key only they set is not refused where this
    config's choices do not use it (:data:`INACTIVE_RULES`): `train.epochs=2` for every method of a bench leaves
    its NCM stage 2, which trains nothing, as it is, and a bench that gives it to all runs is not refused."""
    spread = set()  # the keys `shared` sets and `overrides` does not
    layer = None  # the overrides parsed (once: here with `shared`, else after the file, whose errors come first)
    if shared:
        own = list(overrides or [])
        overrides = [*shared, *own]
        layer = parse_overrides(overrides)
        leaves = list(flatten(layer))
        spread = set(_override_origins(list(shared), leaves)) - set(_override_origins(own, leaves))
    cfg = Config()
    problems = _Problems()
    if base:
        _assign(cfg, base, "", problems)
    own_file = None  # "FILE, line ": the origins of the named file's own lines (not of its base: chain)
    complete_file = False  # a file without base: (every key its own line, e.g. a resolved config: _inactive_keys)
    if path is not None:
        top = resolve_config(path)
        own_file = f"{top}, line "
        data, problems.origins = _load_yaml(top)
        complete_file = all(where.startswith(own_file) for where in problems.origins.values())  # no base: chain
        _assign(cfg, data, "", problems)
    if overrides:
        layer = layer if layer is not None else parse_overrides(overrides)
        typed = {item.split("=", 1)[0].strip() for item in overrides}
        for key in flatten(layer):  # these keys come from the command line now, not from the file: the whole
            key = _merged_entry(cfg, layer, key, typed)  # value the override replaces (name={a: 1} replaces the file's
            problems.origins = {k: v for k, v in problems.origins.items()  # name), or the one entry it sets
                                if k not in (key, _replaced_value(key)) and not k.startswith(f"{key}.")}
        problems.origins.update(_override_origins(overrides, list(flatten(layer))))
        _assign(cfg, layer, "", problems)
        _empty_folder_overrides(overrides, problems)
    _check(cfg, "", problems)
    problems.raise_if_any()
    cfg._explicit = {key: where for key, where in problems.origins.items()  # the named file's lines and overrides
                     if where.startswith("override ") or (own_file and where.startswith(own_file))}
    _inactive_keys(cfg, {k: v for k, v in cfg._explicit.items() if k not in spread},  # an explicit key the
                   problems, complete_file)  # config's choices do not use (one every method of a bench is given: inert)
    _stage2_explicit_head(cfg, problems)
    problems.raise_if_any()
    if cfg.decouple.method in STAGE2_HEADS and "model.classifier" not in cfg._explicit:
        # the head the method fills, as its run's config.yaml records it: a printed resolved config builds again
        cfg.model.classifier = STAGE2_HEADS[cfg.decouple.method]
    # a new config (a saved run's config was seen when the run began); under torchrun rank 0 alone says it (the
    # same on every rank; the group is not joined yet: torchrun's RANK)
    if base is None and os.environ.get("RANK", "0").strip() in ("0", ""):
        for text in config_warnings(cfg):
            warnings.warn(text, ConfigWarning, stacklevel=2)
    return cfg


def article(word: str) -> str:
    """"a" or "an" before `word`, by sound: "an ncm head", "an attention", "a linear head"."""
    return "an" if word[:1].lower() in "aeio" or word.lower() in _LETTER_NAMES else "a"


_LETTER_NAMES = {"ncm", "lws", "fslwf", "msp", "mlp"}  # said letter by letter: "en-see-em"


# The head each decoupled stage-2 method fills (its `head`, `decoupling.base.Stage2Method`), kept here so that the
# config check needs no import of the methods (a layer above); tests/decoupling/test_stage2_heads.py checks the two agree
STAGE2_HEADS = {"crt": "linear", "lws": "linear", "tau_norm": "linear", "logit_adjust": "linear", "ncm": "ncm",
                "fslwf": "cosine"}


def stage2_head_problem(method: str, classifier: str) -> str | None:
    """The problem of a decoupled stage 2 (`decouple.method=METHOD`) given another `model.classifier` than the
    head its method fills ("but decouple.method=crt fills a linear head; drop model.classifier"), or None."""
    head = STAGE2_HEADS.get(method)
    if head is None or classifier == head:  # (none, or an unknown name: refused as such)
        return None
    return f"but decouple.method={method} fills {article(head)} {head} head; drop model.classifier"


def _stage2_explicit_head(cfg: Config, problems: _Problems) -> None:
    """A decoupled stage 2 builds the head its method fills: a model.classifier set explicitly (the config file
    named or an override, `explicit_keys`) to another head is refused here, in the config check (`openlt config`
    as `openlt train`), naming where it was set."""
    if "model.classifier" not in cfg._explicit:
        return
    problem = stage2_head_problem(cfg.decouple.method, cfg.model.classifier)
    if problem:
        problems.add("model.classifier", f"is {cfg.model.classifier!r}, {problem}")


# the data folders an override may not leave empty: `data.split_dir=` (a shell variable that expanded to nothing)
# would silently mean null -- new splits built into the run, the open images read under data.root, the images
# looked for elsewhere -- rather than the folder meant
_FOLDER_KEYS = ("data.root", "data.open_root", "data.split_dir")


def _empty_folder_overrides(overrides: list[str], problems: _Problems) -> None:
    """Add a problem for each override of a :data:`_FOLDER_KEYS` key with an empty or blank value (``KEY=`` or
    ``KEY=  ``): one line naming the override and the key (``KEY=null`` says null on purpose: the command
    judges it)."""
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if sep and key in _FOLDER_KEYS and not raw.strip():
            problems.add(key, f"is empty: give the folder, {key}=FOLDER, or leave the override out")


def _section_keys(obj: Any, prefix: str = "") -> Iterator[str]:
    """The dotted keys of the config's sections (train, model.head, ...): the dataclasses, whose keys an override
    sets one by one; any other key's value an override replaces as a whole."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            yield f"{prefix}{f.name}"
            yield from _section_keys(value, f"{prefix}{f.name}.")


_SECTIONS: list[frozenset[str]] = []  # _section_keys of the Config, computed once


def _sections() -> frozenset[str]:
    if not _SECTIONS:
        _SECTIONS.append(frozenset(_section_keys(Config())))
    return _SECTIONS[0]


def _replaced_value(leaf: str) -> str:
    """The key whose whole value an override of dotted `leaf` replaces: its first ancestor (or itself) that is not
    a section -- `name` for name.a (name={a: 1}), `train.lr` for train.lr.x, `train.epochs` for itself."""
    sections = _sections()
    parts = leaf.split(".")
    return next((".".join(parts[:i]) for i in range(1, len(parts)) if ".".join(parts[:i]) not in sections), leaf)


def _merged_entry(cfg: Config, layer: dict, leaf: str, typed: set[str]) -> str:
    """The key an override of dotted `leaf` sets. Within a mapping-valued option (train.loss_args.alpha=0.5) it is
    the one entry: the override `layer` then holds the option's current mapping with that entry changed, as a
    config file's `base:` chain merges mappings (the file's other entries, e.g. gamma, are kept, not dropped
    without a word); `typed`: the overrides' keys as written (train.loss_args={alpha: 0.5} replaces the mapping).
    Otherwise the key whose whole value it replaces (:func:`_replaced_value`)."""
    replaced = _replaced_value(leaf)
    if not any(leaf == key or leaf.startswith(f"{key}.") for key in typed if key.startswith(f"{replaced}.")):
        return replaced
    node: Any = cfg
    for part in replaced.split("."):
        node = getattr(node, part, None) if dataclasses.is_dataclass(node) else None
    if leaf == replaced or not isinstance(node, dict):
        return replaced
    *parents, last = replaced.split(".")
    holder = layer
    for part in parents:
        holder = holder[part]
    if isinstance(holder.get(last), dict):
        merged = copy.deepcopy(node)
        _deep_merge(merged, holder[last])
        holder[last] = merged
    return leaf


def explicit_keys(cfg: Config) -> dict[str, str]:
    """The dotted keys a user set explicitly in `build_config`: in the config file named (its own lines, not the
    values its `base:` chain gives) or by a `key=value` override -> where ("FILE, line N" / "override 'K=V'").
    Empty for a config built otherwise (a saved run's config.yaml, one made in code). A stage 2 that must take a
    setting from its stage-1 run refuses an explicit value that differs (engine/decouple.py)."""
    return dict(getattr(cfg, "_explicit", {}))


def _override_origins(overrides: list[str], leaves: list[str]) -> dict[str, str]:
    """{dotted key: "override 'KEY=VALUE'"} for every key the overrides set (the last one that sets it)."""
    origins = {}
    for item in overrides:
        key = item.split("=", 1)[0].strip()
        for leaf in leaves:
            if leaf == key or leaf.startswith(f"{key}."):
                origins[leaf] = f"override {_shown_override(item)}"
    return origins


def check_override_keys(overrides: list[str], where: str = "on the command line") -> None:
    """Warn (ConfigWarning, one line) when one list of `key=value` overrides (one command line's) sets a key twice,
    or a key and one inside it (`train.lr=0.2 train={lr: 0.3}`): they apply one after the other, so the last wins,
    as in most command lines (a script's defaults then the user's own: `openlt train CFG $COMMON out_dir=X`); the
    warning says which, where a key twice in a YAML file is refused (no order there). Lists merged on purpose (a
    bench spec's shared and method overrides, eval's --threshold after its overrides) are not one list: each is
    checked alone."""
    seen: dict[str, str] = {}
    for item in overrides:
        if "=" not in item:
            continue  # not key=value: parse_overrides names it
        key = item.split("=", 1)[0].strip()
        for other, first in seen.items():
            if (key == other or key.startswith(f"{other}.") or other.startswith(f"{key}.")) and \
                    os.environ.get("RANK", "0").strip() in ("0", ""):  # under torchrun rank 0 alone says it
                what = (f"{key} is given twice" if key == other else
                        "{} and {}, a key inside it, are both given".format(*sorted((key, other), key=len)))
                warnings.warn(f"{what} {where} ({_shown_override(first)}, then {_shown_override(item)}): the last "
                              f"wins", ConfigWarning, stacklevel=2)
        seen[key] = item


def _shown_override(item: str) -> str:
    """An override as a message names it: in full when short, else its start and its length."""
    return repr(item) if len(item) <= 120 else f"{item[:60]!r}... ({len(item)} characters)"


def dump_yaml(cfg: Config) -> str:
    """The config as YAML text, keys in declaration order: what `openlt config` prints and a run saves."""
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)
