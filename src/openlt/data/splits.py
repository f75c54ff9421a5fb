"""Long-tailed + open-set splits from any labelled pool of images (the embedded data, an image folder).

The known classes get training counts from a profile (exponential or Pareto), some classes are held out
entirely as the open set, and validation / test stay class-balanced. The same seed gives the same split
bit for bit. The result is written as ImageNet-LT-style split files plus a JSON manifest.
"""

from __future__ import annotations

import contextlib
import difflib
import math
import os
import shutil
import tempfile
import unicodedata
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from openlt.config import SplitConfig, control_character, open_class_items, read_utf8
from openlt.data.splitfile import write_split_file
from openlt.errors import ConfigError, DataError, WriteError
from openlt.io import sha256_file, stale_temporaries, temp_prefix, unmakeable_folder, write_json

SPLIT_NAMES = ("train", "val", "test", "open")
MANIFEST = "manifest.json"
REJECTED_NAME = "unknown"  # the class_name `openlt predict` writes for an image rejected as unknown


def class_name_problem(name: str) -> str | None:
    """Why `name` cannot be a class name (None when it can): the outputs that name classes must stay readable.
    `unknown` (any case) is the name `openlt predict` gives a rejected image; ';' and ':' separate predict's CSV
    topk field (`name:p;name:p`); a tab, line break or other control character breaks its tab-separated lines."""
    if name.strip().casefold() == REJECTED_NAME:
        return f"{REJECTED_NAME!r} (any case) is the name `openlt predict` gives an image rejected as unknown"
    odd = control_character(name)
    if odd is not None:
        return f"the control character {odd!r} (a tab, a line break, ...) would break `openlt predict`'s output lines"
    sep = next((c for c in name if c in ";:"), None)
    if sep is not None:
        return f"{sep!r} separates `openlt predict`'s top-k field (name:probability;name:probability)"
    return None


@dataclass
class LabelledPool:
    """Items (relative paths or `part/index`) with their original class ids, and optional separate test items."""

    dataset: str
    class_names: list[str]
    items: list[str]
    labels: np.ndarray
    test_items: list[str] | None = None  # an official test set (embedded data); None: test comes from `items`
    test_labels: np.ndarray | None = None
    root: str | None = None


@dataclass
class Split:
    """A drawn split before it is written: the known and open classes and, per split name (train, val, test,
    open), its items and labels (known labels 0..K-1; open images -1)."""

    class_names: list[str]  # known classes, in label order 0..K-1
    open_class_names: list[str]
    original_ids: list[int]  # original class id of each known label
    entries: dict[str, tuple[list[str], list[int]]] = field(default_factory=dict)

    def train_counts(self) -> list[int]:
        """Training images per known class, in label order (length K, zeros included)."""
        labels = self.entries["train"][1]
        return np.bincount(np.asarray(labels, dtype=np.int64), minlength=len(self.class_names)).tolist()


def profile_counts(profile: str, num_classes: int, n_max: int, n_min: int, alpha: float = 6.0) -> list[int]:
    """Training images per class, largest first (`num_classes` ints, each floored, none below n_min).

    exp:    n_i = n_max * (n_min / n_max)^(i / (C - 1))            (CIFAR-LT; IF = n_max / n_min)
    pareto: the sorted class sizes follow the Pareto pdf x^-(alpha+1) over evenly spaced x, scaled so
            that they span n_max .. n_min (ImageNet-LT: alpha = 6); more classes sit in the middle band
            than with the exponential profile.

    The exponential profile is CIFAR-LT's (Cui et al., CVPR 2019; Cao et al., NeurIPS 2019), the Pareto one
    ImageNet-LT's (Liu et al., "Large-Scale Long-Tailed Recognition in an Open World", CVPR 2019).
    ConfigError for another profile, num_classes < 1, n_min outside 1..n_max or alpha <= 0.
    """
    if num_classes < 1:
        raise ConfigError("a split needs at least one known class")
    if not 1 <= n_min <= n_max:
        raise ConfigError(f"split counts need 1 <= n_min <= n_max, got n_min={n_min}, n_max={n_max}")
    if num_classes == 1:
        return [n_max]
    ranks = np.arange(num_classes) / (num_classes - 1)
    if profile == "exp":
        counts = n_max * (n_min / n_max) ** ranks
    elif profile == "pareto":
        if alpha <= 0:
            raise ConfigError(f"pareto alpha must be positive, got {alpha}")
        x_end = (n_max / n_min) ** (1.0 / (alpha + 1))  # pdf(1) / pdf(x_end) = n_max / n_min
        counts = n_max * (1 + ranks * (x_end - 1)) ** -(alpha + 1)
    else:
        raise ConfigError(f"unknown split profile {profile!r}; known: exp, pareto, none")
    # Floor like the CIFAR-LT code, but never below n_min (floating error at the last class).
    return [max(n_min, int(math.floor(c + 1e-9))) for c in counts]


def _refuse_ambiguous(value: str, class_names: list[str]) -> None:
    """A digit text that names a class and is the id of another class ('2' among folders 0..10, sorted 0, 1, 10,
    2, ...): ConfigError saying how to give ids (numbers in a list) or names (quoted in a list)."""
    raise ConfigError(f"data.split.open_classes (--open-classes) {value!r} is ambiguous: it names the class "
                      f"{value!r} (id {class_names.index(value)}) and is the id of the class "
                      f"{class_names[int(value)]!r} (ids follow the sorted class names); give ids as numbers in a list, --open-classes '[{value}]' "
                      f"(data.split.open_classes: [{value}]), or names quoted in a list, --open-classes "
                      f"'[\"{value}\"]' (data.split.open_classes: [\"{value}\"])")


COUNT_FORM = "count:"  # `--open-classes count:3`: a number of classes, whatever the class names ("count:3" is no name)


def open_class_count(text: str, key: str = "--open-classes") -> int | None:
    """The number of `count:N` (any case, spaces allowed around N) as `--open-classes` or data.split.open_classes
    (`key`, for the message), None for any other text. ConfigError when N is not a whole number >= 0. ':' cannot
    be in a class name (`class_name_problem`), so this form never names a class."""
    head, sep, rest = text.strip().partition(":")
    if not sep or head.strip().casefold() != COUNT_FORM[:-1]:
        return None
    rest = rest.strip()
    if not (rest.isascii() and rest.isdigit()):
        raise ConfigError(f"{key} {text!r}: after {COUNT_FORM} give a whole number of held-out classes "
                          f"(count:3; count:0 for none)")
    return int(rest)


def as_count(spec, key: str = "data.split.open_classes"):
    """data.split.open_classes with its `count:N` text read as the number N; any other value as it is."""
    count = open_class_count(spec, key) if isinstance(spec, str) else None
    return spec if count is None else count


def refuse_count_that_names_a_class(text: str | None, value, class_names: list[str], where: str | None = None) -> None:
    """`--open-classes 3` (`text` as typed, `value` what it was read as) is a number of held-out classes; among
    class folders named 0..9 it could as well mean the class '3'. ConfigError naming both readings and how to say
    each (count:3, or the name quoted in a list) when the number, as typed or as read, is a class name. `where`
    (a config file's line or an override, `config.explicit_keys`): the value is data.split.open_classes given
    there, and the message says it in that key's terms."""
    if text is None or isinstance(value, bool) or not isinstance(value, int) or open_class_count(text) is not None:
        return
    typed = text.strip()
    name = typed if typed in class_names else str(value) if str(value) in class_names else None
    if name is None:
        return
    count = "none held out" if value == 0 else f"{value} classes chosen with the seed"
    readings = f"a number of held-out classes ({count}) or the class {name!r} (a class folder has that name)"
    if where is None:
        raise ConfigError(f"--open-classes {typed} is ambiguous: {readings}; write --open-classes {COUNT_FORM}{value} "
                          f"for the number, or --open-classes '[\"{name}\"]' for the class (names quoted in a list)")
    raise ConfigError(f"data.split.open_classes={value} ({where}) is ambiguous: {readings}; write "
                      f"data.split.open_classes: {COUNT_FORM}{value} for the number, or data.split.open_classes: "
                      f"[\"{name}\"] for the class (names quoted in a list)")


def _nfc(name: str) -> str:
    return unicodedata.normalize("NFC", name)


def _resolve_open_classes(spec, class_names: list[str], rng: np.random.Generator) -> list[int]:
    """The held-out class ids of `spec` (data.split.open_classes): a number of classes drawn with `rng`, or items
    ('a,b' text or a list) that are class names or ids. A number in a list (YAML ``[2, 3]``) is an id, a quoted
    text in a list (``["2", "3"]``) a name when a class has it; in 'a,b' text an item that is a class name and the id
    of another class is refused as ambiguous (folders named 0..10: '2' is the folder '2' and id 2, the folder '10')."""
    n = len(class_names)
    spec = as_count(spec)  # count:N
    if spec is None or spec == 0 or spec == []:
        return []
    if isinstance(spec, int) and not isinstance(spec, bool):
        if not 0 <= spec < n:
            raise ConfigError(f"open_classes={spec}: need fewer open classes than the {n} classes")
        return sorted(rng.choice(n, size=spec, replace=False).tolist())
    try:
        items = open_class_items(spec)  # spaces around an item dropped; no empty item, none twice
    except ConfigError as exc:
        raise ConfigError(f"open_classes {exc}") from None
    chosen: list[int] = []
    named: dict[int, object] = {}
    nfc_names = {_nfc(name): c for c, name in enumerate(class_names)}  # one each: look-alike folders are refused
    for value in items:
        if isinstance(spec, str) and value in class_names and value.isascii() and value.isdigit() and int(value) < n \
                and class_names[int(value)] != value:
            _refuse_ambiguous(value, class_names)
        if isinstance(value, int) or (isinstance(value, str) and value.lstrip("-").isdigit() and value not in class_names):
            idx = int(value)
            if not 0 <= idx < n:
                raise ConfigError(f"open class id {idx} out of range 0..{n - 1}")
        elif value in class_names:
            idx = class_names.index(value)
        elif isinstance(value, str) and _nfc(value) in nfc_names:  # 'café' typed (NFC) for a folder written in NFD
            idx = nfc_names[_nfc(value)]
        else:
            close = difflib.get_close_matches(str(value), class_names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            shown = ", ".join(class_names[:20]) + (f", ... ({n} classes)" if n > 20 else "")
            raise ConfigError(f"open class {value!r} is not a class of this dataset{hint}; classes: {shown}")
        if idx in named:  # one class by its name and by its id ('dog,3')
            raise ConfigError(f"data.split.open_classes (--open-classes) names the class {class_names[idx]!r} twice ({named[idx]!r} and "
                              f"{value!r}): give each held-out class once")
        named[idx] = value
        chosen.append(idx)
    if len(set(chosen)) == n:
        raise ConfigError("every class is held out as open; keep at least one known class")
    return sorted(set(chosen))


def check_known_classes(class_names: list[str], open_ids: list[int]) -> None:
    """A split keeps at least two known classes: with one, every image is that class (softmax 1.0, any open-set
    score constant) and the closed- and open-set numbers mean nothing. ConfigError naming the option."""
    known = [name for c, name in enumerate(class_names) if c not in open_ids]
    if len(known) >= 2:
        return
    names = ", ".join(map(repr, known))
    if open_ids:
        raise ConfigError(f"data.split.open_classes (--open-classes) holds out {len(open_ids)} of the "
                          f"{len(class_names)} classes, leaving 1 known class ({names}); a split needs at least 2 "
                          f"known classes: hold out at most {len(class_names) - 2}")
    raise ConfigError(f"the data has 1 class ({names}); a split needs at least 2 known classes")


DEFAULT_TEST_PER_CLASS = 20  # data.split.test_per_class when not given and the test images come from the pool


def _fitting_counts(n: int) -> tuple[int, int]:
    """(test, validation) images per class that a class of `n` images can give, a third each at most, leaving
    the rest (at least one) for training: the values a refusal suggests."""
    third = max(0, (n - 1) // 3)
    test = max(1, third)
    return test, max(0, min(third, n - 1 - test))


def _check_available(pool: LabelledPool, cfg: SplitConfig, wanted: dict[int, int | None],
                     by_class: dict[int, np.ndarray], test_per_class: int,
                     test_by_class: dict[int, np.ndarray] | None = None) -> None:
    """Refuse a split the pool cannot give in full (never a smaller one without a word): a known class that cannot
    give its test images (`test_per_class`; 0: they come from `test_by_class`, a separate test set, which must hold
    `cfg.test_per_class` of the class when that is set), its validation images (data.split.val_per_class) and at
    least one training image; or fewer training images than its profile count (the profile would be silently cut,
    e.g. [9, 4, 1, 1] for n_min 2). Names both options, the class and its image count, and what to pass."""
    t_opt, v_opt = "data.split.test_per_class (--test-per-class)", "data.split.val_per_class (--val-per-class)"
    v = cfg.val_per_class
    tight = [(len(by_class[c]), c) for c in wanted if len(by_class[c]) < test_per_class + v + 1]
    if tight:
        n, c = min(tight)  # the smallest such class; ties in class order
        others = ("" if len(tight) == 1 else ", nor does 1 more class" if len(tight) == 2 else
                  f", nor do {len(tight) - 1} more classes")
        if test_per_class:
            takes = f"{t_opt} {test_per_class} and {v_opt} {v} take {test_per_class + v} of them"
            t_fit, v_fit = _fitting_counts(n)
            fit = f"--test-per-class {t_fit} --val-per-class {v_fit}"
        else:  # a separate test set: validation alone comes from these images
            takes = f"{v_opt} {v} takes {v} of them"
            fit = f"--val-per-class {max(0, (n - 1) // 3)}"
        fix = ("add images to it, or hold it out (--open-classes)" if n <= 1 else
               f"lower them to what it can give (e.g. {fit}, or the same data.split keys), or add images")
        raise DataError(f"class {pool.class_names[c]!r} has no image left for training ({n} in all){others}: "
                        f"{takes} first, never fewer than asked, and training needs at least 1; {fix}")
    if test_by_class is not None:
        check_test_set(pool, cfg, list(wanted), test_by_class)
    short = []
    for c, want in sorted(wanted.items()):  # class order: the same message whatever the ranks
        left = len(by_class[c]) - test_per_class - v
        if want is not None and want > left:
            short.append(f"{pool.class_names[c]!r} has {left} of {want}")
    if short:
        largest = max(len(idx) for idx in by_class.values())
        raise DataError(f"the {cfg.profile} profile (n_max {cfg.n_max}) asks more training images than "
                        f"{len(short)} class(es) have left after their validation and test images: "
                        f"{', '.join(short[:5])}{', ...' if len(short) > 5 else ''}; lower data.split.n_max "
                        f"(--n-max; the largest class has {largest} images in all), or keep the natural counts "
                        f"with profile none")


def check_test_set(pool: LabelledPool, cfg: SplitConfig, known: list[int], test_by_class: dict[int, np.ndarray]) -> None:
    """Refuse a data.split.test_per_class that a known class cannot give from the data set's own test set
    (`test_by_class`: class id -> its test images; Fashion-MNIST, CIFAR): never fewer test images than asked without
    a word (the manifest records the count asked). DataError naming the smallest such class, its count and the
    option; nothing to check when test_per_class is unset (every test image)."""
    if cfg.test_per_class is None:
        return
    short = [(len(test_by_class[c]), c) for c in known if len(test_by_class[c]) < cfg.test_per_class]
    if short:
        n, c = min(short)
        raise DataError(f"class {pool.class_names[c]!r} has {n} test image(s) in the {pool.dataset} test set, "
                        f"fewer than data.split.test_per_class (--test-per-class) {cfg.test_per_class} asks (never "
                        f"fewer than asked); lower it to {n} or less, or leave it unset for every test image")


def _check_open(pool: LabelledPool, cfg: SplitConfig, open_ids: list[int], source: dict[int, np.ndarray],
                test_per_class: int | None, separate_test: bool) -> None:
    """Refuse an open class with fewer images than its open test images take (`test_per_class`, data.split.
    test_per_class or its default; None: every image of a separate test set), as a known class is refused: never
    a smaller open set than asked without a word (the manifest would record the count asked). Names the class,
    its image count, the option and a count that fits every open class."""
    if test_per_class is None:
        return
    short = [(len(source[c]), c) for c in open_ids if len(source[c]) < test_per_class]
    if not short:
        return
    n, c = min(short)  # the smallest such class; ties in class order
    others = ("" if len(short) == 1 else ", nor does 1 more open class" if len(short) == 2 else
              f", nor do {len(short) - 1} more open classes")
    where = f"in the {pool.dataset} test set" if separate_test else "in all"
    asked = ("data.split.test_per_class (--test-per-class) "
             f"{test_per_class}{'' if cfg.test_per_class is not None else ' (the default)'}")
    fix = ("add images to it, or keep it known (leave it out of --open-classes)" if n == 0 else
           f"lower it to what it can give (--test-per-class {n}, or the same data.split key), or add images")
    raise DataError(f"open class {pool.class_names[c]!r} has {n} image(s) {where}, fewer than {asked} asks for "
                    f"its open test images{others} (never fewer than asked); {fix}")


def _profile_wanted(cfg: SplitConfig, ranked: list[int]) -> dict[int, int | None]:
    """Class id -> its training count under the profile, in rank order (None: profile none, keep them all)."""
    if cfg.profile == "none":
        return {c: None for c in ranked}
    return dict(zip(ranked, profile_counts(cfg.profile, len(ranked), cfg.n_max, profile_n_min(cfg), cfg.alpha)))


def profile_n_min(cfg: SplitConfig) -> int:
    """The smallest class's training images under the exp / pareto profile: data.split.n_min, or n_max / imbalance
    factor (floored) when data.split.imbalance_factor is set. ConfigError for a factor that n_max cannot reach (a
    smallest class below one image would be raised to one: a lower factor than asked, without a word)."""
    if cfg.imbalance_factor is None:
        return cfg.n_min
    if cfg.n_max / cfg.imbalance_factor < 1:
        raise ConfigError(f"data.split.imbalance_factor (--imbalance-factor) {cfg.imbalance_factor:g} is unreachable "
                          f"with data.split.n_max (--n-max) {cfg.n_max}: the smallest class would have n_max / "
                          f"factor = {cfg.n_max / cfg.imbalance_factor:.3g} images; the largest reachable factor is "
                          f"{cfg.n_max} (n_min 1), or raise n_max to {math.ceil(cfg.imbalance_factor)} at least")
    return int(cfg.n_max / cfg.imbalance_factor)


def used_split_config(cfg: SplitConfig, cifar: bool = False, test_from_pool: bool = False) -> dict:
    """`cfg` as the manifest records it: only the values the split used, the others None (profile none: no
    counts; exp: no alpha; an imbalance factor: the n_min it gave, and n_max / that n_min as the factor, so that
    the recorded values give the same split; CIFAR-LT: no n_min, its rule has none). `test_from_pool`: the test
    images came from the pool (an image folder), so test_per_class unset is the DEFAULT_TEST_PER_CLASS it took.
    The counts are the ones drawn: `make_split` takes each in full or refuses."""
    used = asdict(cfg)
    if test_from_pool and used["test_per_class"] is None:
        used["test_per_class"] = DEFAULT_TEST_PER_CLASS
    if cfg.profile == "none":
        used.update(n_max=None, n_min=None, imbalance_factor=None, alpha=None)
        return used
    if cfg.profile != "pareto":
        used["alpha"] = None
    if not cifar:
        used["n_min"] = profile_n_min(cfg)
        if cfg.imbalance_factor is not None:  # the factor of the counts drawn (n_min is floored)
            used["imbalance_factor"] = cfg.n_max / used["n_min"]
    else:
        used["n_min"] = None
    return used


def imbalance_record(cfg: SplitConfig, train_counts: list[int]) -> dict:
    """The manifest's `imbalance`: the factor asked (`requested_factor`: data.split.imbalance_factor, None when the
    profile was given by n_min or is none) and the one drawn (`drawn_factor`: largest / smallest training count).
    They differ when n_max / factor is not a whole number of images: n_min is floored (CIFAR-LT's rule), so
    `--n-max 8 --imbalance-factor 3` draws n_min 2, factor 4. Such a split is kept, not refused: its smallest class
    is the whole number of images below the one asked, and `openlt split` prints the factor drawn beside it."""
    known = [int(c) for c in train_counts if c > 0]
    drawn = max(known) / min(known) if known else None
    requested = cfg.imbalance_factor if cfg.profile != "none" else None
    return {"requested_factor": requested, "drawn_factor": None if drawn is None else round(drawn, 6)}


def make_split(pool: LabelledPool, cfg: SplitConfig) -> Split:
    """Draw train / val / test / open from the pool following `cfg`; deterministic in `cfg.seed`."""
    rng = np.random.default_rng(cfg.seed)
    n_classes = len(pool.class_names)
    open_ids = _resolve_open_classes(cfg.open_classes, pool.class_names, rng)
    known_ids = [c for c in range(n_classes) if c not in open_ids]
    check_known_classes(pool.class_names, open_ids)
    labels = np.asarray(pool.labels)
    by_class = {c: np.flatnonzero(labels == c) for c in range(n_classes)}
    separate_test = pool.test_items is not None
    test_by_class = (
        {c: np.flatnonzero(np.asarray(pool.test_labels) == c) for c in range(n_classes)} if separate_test else by_class
    )
    test_per_class = cfg.test_per_class if cfg.test_per_class is not None else (
        None if separate_test else DEFAULT_TEST_PER_CLASS)

    # Which known class gets which profile rank.
    ranked = list(known_ids) if cfg.order == "label" else rng.permutation(known_ids).tolist()
    wanted = _profile_wanted(cfg, ranked)
    _check_available(pool, cfg, wanted, by_class, 0 if separate_test else test_per_class,
                     test_by_class if separate_test else None)
    _check_open(pool, cfg, open_ids, test_by_class, test_per_class, separate_test)
    label_of = {c: i for i, c in enumerate(known_ids)}
    out: dict[str, tuple[list[str], list[int]]] = {name: ([], []) for name in SPLIT_NAMES}

    def take(split: str, items: list[str], idx: np.ndarray, label: int) -> None:
        out[split][0].extend(items[i] for i in idx)
        out[split][1].extend([label] * len(idx))

    test_items = pool.test_items if separate_test else pool.items
    for c in range(n_classes):
        pool_idx = rng.permutation(by_class[c])
        if c in label_of:
            used = 0
            if not separate_test:  # _check_available: every count in full, and a training image left
                take("test", pool.items, np.sort(pool_idx[:test_per_class]), label_of[c])
                used = test_per_class
            take("val", pool.items, np.sort(pool_idx[used : used + cfg.val_per_class]), label_of[c])
            used += cfg.val_per_class
            rest = pool_idx[used:]
            n_train = len(rest) if wanted[c] is None else wanted[c]  # _check_available: enough are left
            take("train", pool.items, np.sort(rest[:n_train]), label_of[c])
            if separate_test:
                t_idx = test_by_class[c] if test_per_class is None else rng.permutation(test_by_class[c])[:test_per_class]
                take("test", test_items, np.sort(t_idx), label_of[c])
        else:
            source = test_by_class[c] if separate_test else pool_idx
            o_idx = source if test_per_class is None else rng.permutation(source)[:test_per_class]
            take("open", test_items, np.sort(o_idx), -1)
    return Split(
        class_names=[pool.class_names[c] for c in known_ids],
        open_class_names=[pool.class_names[c] for c in open_ids],
        original_ids=known_ids,
        entries=out,
    )


def write_split(split: Split, out_dir: str | Path, pool: LabelledPool, cfg: SplitConfig, bands=None,
                extra: dict | None = None, replace: bool = True) -> dict:
    """Write `train.txt`, `val.txt`, `test.txt`, `open.txt` and `manifest.json` (plus `extra` keys; its root: the
    pool's, absolute, so that it never depends on the working directory); return the manifest. Atomic: everything is written into a temporary sibling folder that then replaces `out_dir`, so an
    interrupted write leaves the previous split (or none), never a mix of old and new files. `replace` False
    (`openlt split` without --force): a split that another process wrote into `out_dir` while this one was drawn is
    refused (ConfigError), never replaced."""
    out_dir = Path(out_dir)
    check_split_folder(out_dir)
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        _remove_dead_staging(out_dir)
        tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(out_dir.name), suffix=".tmp", dir=out_dir.parent))
    except OSError as exc:
        raise WriteError(f"cannot write the split folder {out_dir}: {exc.strerror or exc}") from None
    try:
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; a split folder is meant to be read by others
        files = {}
        for name in SPLIT_NAMES:
            items, labels = split.entries[name]
            if items:
                files[name] = tmp / f"{name}.txt"
                write_split_file(files[name], items, labels)
        manifest = describe_split(files, split.class_names, split.train_counts(), bands=bands,
                                  shown={name: out_dir / path.name for name, path in files.items()})
        # the root absolute, resolved now: a run on this split folder without data.root reads it from any folder
        root = None if pool.root is None else os.path.abspath(pool.root)
        manifest.update(dataset=pool.dataset, root=root, open_class_names=split.open_class_names,
                        original_class_ids=split.original_ids,
                        split_config=used_split_config(cfg, cifar=pool.dataset in ("cifar10", "cifar100"),
                                                       test_from_pool=pool.test_items is None),
                        imbalance=imbalance_record(cfg, split.train_counts()), seed=cfg.seed)
        manifest.update(extra or {})
        write_json(tmp / MANIFEST, manifest)
        if not replace and holds_split(out_dir):  # checked by the caller at its start: again, just before the swap
            raise ConfigError(f"{out_dir} already holds a split (or part of one), written by another process while "
                              f"this split ran; pass --force to replace it")
        _replace_folder(tmp, out_dir)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)  # nothing half-written is left behind
        cause = exc.__cause__ if isinstance(exc, WriteError) else exc  # atomic_path's, naming the temporary file
        if isinstance(cause, OSError):
            raise WriteError(f"cannot write the split folder {out_dir}: {cause.strerror or cause}") from None
        raise
    return manifest


SPLIT_FILES = (*(f"{name}.txt" for name in SPLIT_NAMES), MANIFEST)


def holds_split(out_dir: Path) -> bool:
    """`out_dir` is a folder with a split file (or part of a split) in it."""
    return out_dir.is_dir() and any((out_dir / name).exists() for name in SPLIT_FILES)


def check_split_folder(out_dir: Path) -> None:
    """`out_dir` may receive a split: absent, empty, or holding only split files (which a new split replaces)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise DataError(f"{out_dir} is not a folder; give a new or empty folder for the split")
    problem = None if out_dir.exists() else unmakeable_folder(out_dir)
    if problem:
        raise DataError(f"{out_dir}: {problem}; give a new or empty folder for the split")
    if out_dir.is_dir():
        other = sorted(p.name for p in out_dir.iterdir() if p.name not in SPLIT_FILES)
        if other:
            raise DataError(f"{out_dir} holds files that are not a split's ({', '.join(other[:5])}"
                            f"{', ...' if len(other) > 5 else ''}); give a new or empty folder for the split")


def check_outside(out_dir: str | Path, folder: str | Path | None, out_name: str, folder_name: str,
                  runs: bool = False) -> None:
    """Refuse a split folder `out_dir` inside `folder`, an image folder that a split lists (real paths compared, so
    a symlink or `..` does not hide it): the next split of that folder would list the split folder as a class
    (or its files as images). `out_name` / `folder_name` name the two as the user gave them (an option, a key);
    `runs`: `out_dir` is the folder runs are made in (a run draws its split into a folder inside it). DataError,
    one sentence naming both."""
    if folder is None:
        return
    out, root = Path(out_dir).resolve(), Path(folder).resolve()
    if out == root or root in out.parents:
        if runs:
            raise DataError(f"{out_name} {out_dir} is inside {folder_name} {folder}: a run draws its split into a "
                            f"folder under {out_name}, which the next split of {folder_name} would list as a class "
                            f"of its own; give an {out_name} outside {folder_name}")
        raise DataError(f"{out_name} {out_dir} is inside {folder_name} {folder}: the split folder would become part "
                        f"of the image folder it lists (a class of its own in the next split); write it elsewhere")


def _remove_dead_staging(out_dir: Path) -> None:
    """Remove the staging folders (``.OUT.PID-HOST.XXXX.tmp`` / ``.old`` beside OUT) of splits to `out_dir` whose
    process died on this host (a SIGKILL mid-write: :func:`openlt.io.stale_temporaries`), never a live one's."""
    for stale in stale_temporaries(out_dir.parent, out_dir.name):
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                stale.unlink()


def _replace_folder(new: Path, target: Path) -> None:
    """Put the folder `new` in the place of `target` by renames: readers see the old folder or the new one."""
    if not target.exists():
        os.rename(new, target)
        return
    old = Path(tempfile.mkdtemp(prefix=temp_prefix(target.name), suffix=".old", dir=target.parent))
    os.rename(target, old / target.name)
    try:
        os.rename(new, target)
    except OSError:
        os.rename(old / target.name, target)  # the previous split stays
        raise
    finally:
        if target.exists():
            shutil.rmtree(old, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def describe_split(files: dict[str, Path], class_names: list[str], train_counts: list[int], bands=None,
                   shown: dict[str, Path] | None = None) -> dict:
    """The manifest of a set of split files: classes, training counts, shot band per class, file hashes
    (`shown`: the path recorded for a file when it differs from where it is now)."""
    from openlt.metrics import ShotBands

    bands = bands or ShotBands()
    return {
        "format": "openlt-split/1",
        "class_names": list(class_names),
        "num_classes": len(class_names),
        "train_counts": [int(c) for c in train_counts],
        "bands": {"rule": bands.describe(), "per_class": bands.bands_of(train_counts)},
        "files": {
            name: {"file": str((shown or {}).get(name, path)), "sha256": sha256_file(path), "lines": _count_lines(path)}
            for name, path in files.items()
        },
    }


def _count_lines(path: Path) -> int:
    text = read_utf8(path, "split file", DataError)
    return sum(1 for line in text.splitlines(keepends=True) if line.strip() and not line.startswith("#"))
