"""Datasets: split files over an image root (ImageNet-LT, Places-LT, iNaturalist 2018, own data),
image folders, and the embedded Fashion-MNIST arrays. All yield (image tensor, label)."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import sys
import threading
import unicodedata
import warnings
from pathlib import Path, PurePosixPath
from stat import S_ISREG
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset
from torchvision import tv_tensors

from openlt.data import fashion_mnist
from openlt.data.splitfile import SplitEntries, item_problem
from openlt.data.splits import LabelledPool, class_name_problem
from openlt.errors import DataError

# The one list of image file names (lower-cased suffixes): what an image folder lists, what a split file may name
# (FileImageLoader.check), what `openlt predict` finds in a folder. GIF: its first frame.
_LOG = logging.getLogger(__name__)  # notes the commands print (cli.console_logging)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff", ".ppm", ".pgm")


def fashion_mnist_pool(root: str | None = None) -> LabelledPool:
    """Fashion-MNIST as a LabelledPool: items "train/i" and "test/i" (i: the position in the IDX file; 60,000
    and 10,000 in the official files), int64 label arrays (N,), the ten class names, root the folder found.

    DataError when the IDX files are not found (see `fashion_mnist.locate`: `root`, else $OPENLT_FASHION_MNIST,
    Debian's package, the cache, a download) or cannot be read."""
    parts = fashion_mnist.load(root)
    train, test = parts["train"], parts["test"]
    return LabelledPool(
        dataset="fashion-mnist",
        class_names=list(fashion_mnist.CLASS_NAMES),
        items=[f"train/{i}" for i in range(len(train.labels))],
        labels=train.labels.numpy(),
        test_items=[f"test/{i}" for i in range(len(test.labels))],
        test_labels=test.labels.numpy(),
        root=str(fashion_mnist.locate(root)),
    )


def _hidden(name: str) -> bool:
    """Entries an image folder holds that are not images of a class: dotfiles and dot-folders
    (`.ipynb_checkpoints/`, `.DS_Store`, macOS `._001.png`) and `__MACOSX/` from unpacked zip files."""
    return name.startswith(".") or name == "__MACOSX"


def broken_link(path: Path, what: str) -> str:
    """Why a symlink that does not resolve is broken, for a DataError: a loop or a missing target."""
    try:
        path.resolve(strict=True)
    except RuntimeError:  # Python 3.11 raises it for a symlink loop
        return f"a symlink loop ({os.readlink(path)} leads back to itself); remove it"
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return f"a symlink loop ({os.readlink(path)} leads back to itself); remove it"
    return f"a symlink to a missing {what} ({os.readlink(path)}); remove it or restore its target"


SHOWN_SKIPPED = 3  # file names a skipped-files warning shows


def _shown(name: str) -> str:
    return name if name.isprintable() else repr(name)


def skipped_note(where: str, skipped: list[Path], base: Path | None = None) -> str:
    """The one warning line for the files a folder or pattern `where` holds that are not read for their name (no
    image extension): `openlt predict`'s for a folder or pattern it labels (trial 10 D12) and `openlt split`'s for
    an image folder it lists (trial 14b D7c); they were skipped without a word, while the same files named
    directly are labelled. `base`: the folder the names are shown relative to."""
    names = [_shown(os.path.relpath(p, base) if base is not None else str(p)) for p in skipped[:SHOWN_SKIPPED]]
    more = f", ... ({len(skipped) - SHOWN_SKIPPED} more)" if len(skipped) > SHOWN_SKIPPED else ""
    return (f"{_shown(where)}: skipped {len(skipped)} file{'s' if len(skipped) > 1 else ''} without an image "
            f"extension ({', '.join(names)}{more}); openlt labels {' '.join(IMAGE_EXTENSIONS)} (any case): "
            f"convert or rename the others (e.g. .heic to .jpg)")


def image_files(folder: Path, root: Path, skipped: list[Path] | None = None) -> list[str]:
    """The image files under `folder` (any depth), as sorted paths relative to `root`; hidden entries (see
    `_hidden`) are skipped, and a path that a split file cannot hold is a DataError naming it. Symlinked
    sub-folders are followed (datasets are often assembled with links), except one that leads back to a folder the
    walk is in (a loop: `ant/loop -> ..`, or `ant/x -> ../bee` with `bee/y -> ../ant`): a DataError naming it, as a
    link to itself is (listing it would never end, and skipping it would drop what the link was meant to add); a
    link to another class's folder lists its images twice, which `_refuse_linked_twice` then refuses by name. A
    sub-folder that cannot be listed (no permission) is a DataError naming it, not skipped. Files without an image
    extension (`IMAGE_EXTENSIONS`: notes.txt, a BMP named without one) are not listed; `skipped` (a list) receives
    them, for :func:`skipped_note`."""
    files = []

    def unreadable(exc: OSError) -> None:
        raise DataError(f"cannot list {exc.filename} (under {root}): {exc.strerror or exc}; fix its permissions "
                        f"or remove it")

    for directory, subdirs, names in os.walk(folder, onerror=unreadable, followlinks=True):
        here = Path(directory)
        keep = []
        for name in sorted(subdirs):
            sub = here / name
            if _hidden(name):
                continue
            if sub.is_symlink():
                _refuse_folder_loop(sub, folder, root)
            keep.append(name)
        subdirs[:] = keep
        for name in names:
            path = here / name
            if _hidden(name):
                continue
            if path.is_symlink() and not path.exists():
                raise DataError(f"{path.relative_to(root).as_posix()!r} under {root} is {broken_link(path, 'file')}")
            if not path.is_file():
                continue
            if path.suffix.lower() in IMAGE_EXTENSIONS:
                item = path.relative_to(root).as_posix()
                problem = item_problem(item)
                if problem:
                    raise DataError(f"cannot list {path!r}: {problem}; rename it")
                files.append(item)
            elif skipped is not None:
                skipped.append(path)
    return sorted(files)


def _refuse_folder_loop(link: Path, folder: Path, root: Path) -> None:
    """DataError when the symlinked folder `link`, met while listing `folder`, leads to a folder that holds (or
    is) a folder on the way from `folder` to `link` (compared as real paths): following it would list the same
    images again and again."""
    target = link.resolve()
    above = link.parent
    while True:
        if above.resolve().is_relative_to(target):
            raise DataError(f"{link.relative_to(root).as_posix()!r} under {root} is a symlink loop: it leads to "
                            f"{os.readlink(link)!r} ({target}), a folder it is itself in; remove it")
        if above == folder or above == above.parent:
            return
        above = above.parent


def image_folder_pool(root: str | os.PathLike) -> LabelledPool:
    """`root/<class name>/<image>`: one sub-folder per class, classes in sorted order (as torchvision); hidden
    entries are skipped (see `_hidden`). Images in sub-folders of a class folder belong to that class (as in
    torchvision's ImageFolder), with a note naming one. DataError for a class name the outputs cannot hold
    (`splits.class_name_problem`) and a dangling symlink (a class folder or an image), naming it."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"image folder root does not exist or is not a folder: {root}")
    for entry in sorted(root.iterdir()):
        if entry.is_symlink() and not entry.exists() and not _hidden(entry.name):
            raise DataError(f"{entry} is {broken_link(entry, 'folder')}")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not _hidden(d.name))
    if not classes:
        raise DataError(f"image folder {root} has no class sub-folders (expected root/<class>/<image>)")
    for name in classes:
        problem = class_name_problem(name)
        if problem:
            raise DataError(f"class folder {str(root / name)!r} cannot be a class name: {problem}; rename it")
    _refuse_lookalike_classes(root, classes)
    warn_mixed_scripts(f"image folder {root}", classes, "class folder")
    items, labels, skipped = [], [], []
    for label, name in enumerate(classes):
        files = image_files(root / name, root, skipped)
        if not files:
            raise DataError(f"class folder {root / name} has no images ({', '.join(IMAGE_EXTENSIONS)})")
        items += files
        labels += [label] * len(files)
    _refuse_linked_twice(root, items)
    if skipped:  # as `openlt predict` says of a folder it labels
        _LOG.warning(skipped_note(str(root), sorted(skipped), root))
    nested = [item for item in items if len(PurePosixPath(item).parts) > 2]
    if nested:
        _LOG.info(f"note: image folder {root}: {len(nested)} image(s) in sub-folders of class folders belong to "
                  f"their class folder's class (e.g. {nested[0]})")
    return LabelledPool("image-folder", classes, items, np.asarray(labels), root=str(root))


def _lookalike_key(name: str, keep: str = "") -> str:
    """`name` with what makes two class folders look alike taken away: surrounding spaces (strip), Unicode
    compatibility forms (NFKC: full-width 'ｃａｔ', ligatures, superscripts), letters of other scripts that look like
    Latin ones (Cyrillic 'с', Greek 'ο': :func:`latin_lookalikes`) and case (casefold); each of 'spaces', 'compat',
    'scripts', 'case' named in `keep` is left as it is (NFC is always applied: NFC / NFD forms are one name)."""
    form = "NFC" if "compat" in keep else "NFKC"
    key = unicodedata.normalize(form, name)
    if "spaces" not in keep:
        key = key.strip()
    if "scripts" not in keep:
        key = latin_lookalikes(key)
    if "case" not in keep:
        key = unicodedata.normalize(form, key.casefold())
    return key


_LOOKALIKE_WAYS = {"spaces": "spaces around the name",
                   "compat": "Unicode compatibility forms",
                   "scripts": "letters of other scripts that look like Latin ones",
                   "case": "case"}

# What confusable_homoglyphs (Unicode's confusables.txt, TR39) lacks among the letters that matter here: Greek
# small tau looks like 't'; Greek capital iota is listed as 'l' only, but reads as 'I'.
_LATIN_EXTRA = {"τ": "t", "Ι": "I"}


def _latin_twin(char: str) -> str | None:
    """The Latin letter a letter of another script (Cyrillic, Greek, Armenian, Cherokee, ...) looks like, after
    confusable_homoglyphs' table and :data:`_LATIN_EXTRA` (a letter of its own case when there is one); None for
    an ASCII character, a Latin letter (accented ones are letters of their own) or a letter with no such twin."""
    if char.isascii() or not char.isalpha():
        return None
    if char in _LATIN_EXTRA:
        return _LATIN_EXTRA[char]
    from confusable_homoglyphs import categories, confusables  # ~0.1 s: only for a name with such letters

    if categories.alias(char) == "LATIN":
        return None
    twins = [h["c"] for h in confusables.confusables_data.get(char, ()) if h["c"].isascii() and h["c"].isalpha()]
    same_case = [t for t in twins if t.isupper() == char.isupper()]
    return (same_case or twins or [None])[0]


def latin_lookalikes(name: str) -> str:
    """`name` with each letter of another script that looks like a Latin letter replaced by that letter (Cyrillic
    'сat' -> 'cat', Greek 'ΟΝΕ' -> 'ONE'); the rest as it is. Scope: single letters that Unicode's confusables table
    (through confusable_homoglyphs) maps to one ASCII letter, plus :data:`_LATIN_EXTRA`; not digits or signs
    ('l' / '1'), not sequences ('rn' / 'm'), not Latin letters with accents."""
    if name.isascii():
        return name
    return "".join(_latin_twin(char) or char for char in name)


def mixed_script_words(name: str) -> list[str]:
    """The words of `name` (runs of letters) that mix Latin letters with letters of another script that look like
    Latin ones (e.g. 'сat', first letter Cyrillic): in a class name they are almost always a slip of the keyboard."""
    return [word for word in re.findall(r"[^\W\d_]+", name)
            if any(c.isascii() for c in word) and any(_latin_twin(c) for c in word)]


_WARNED_MIXED: set[tuple[str, str]] = set()  # (source, class name) warned about in this process


def warn_mixed_scripts(source: str, names: list[str], noun: str = "class name") -> None:
    """One `openlt: warning:` line per class name of `names` that mixes Latin letters with look-alike letters of
    another script inside one word (:func:`mixed_script_words`), once per process, `source` and name. `source`
    says where the names were read ("image folder ROOT", "CIFAR meta file FILE"), `noun` what each name is there
    ("class folder", "class name"). Image folders (:func:`image_folder_pool`) and CIFAR meta files
    (`cifar.checked_class_names`) warn through it."""
    for name in names:
        words = mixed_script_words(name)
        if words and (source, name) not in _WARNED_MIXED:
            _WARNED_MIXED.add((source, name))
            _LOG.warning(f"{source}: the {noun} {name!r} mixes Latin letters with letters of another script that "
                         f"look like Latin ones inside one word ({_twins_text(''.join(words))}; code points "
                         f"{ascii(name)}); rename it if that is a slip")


def _twins_text(text: str) -> str:
    """"Cyrillic 'с' U+0441 looks like 'c', ..." for each letter of `text` with a Latin twin (once each)."""
    odd = [c for c in dict.fromkeys(text) if _latin_twin(c)]
    return ", ".join(f"{unicodedata.name(c, 'U+%04X' % ord(c)).split()[0].title()} {c!r} U+{ord(c):04X} looks like "
                     f"{_latin_twin(c)!r}" for c in odd)


def _refuse_lookalike_classes(root: Path, classes: list[str]) -> None:
    """Two class folders whose names look alike (:func:`lookalike_names`) would be two classes that print alike in
    every report (and, by case, one folder on a case-insensitive file system): DataError naming both, and how they
    differ. A name that mixes Latin with such letters inside one word is warned about (:func:`warn_mixed_scripts`)."""
    alike = lookalike_names(classes)
    if alike is not None:
        other, name, how = alike
        raise DataError(f"image folder {root}: the class folders {other!r} and {name!r} differ {how}: they would be "
                        f"two classes that look alike; merge them or rename one")


def lookalike_names(classes: list[str], folders: bool = True) -> tuple[str, str, str] | None:
    """The first two of `classes` (distinct names) that differ only by Unicode normalisation (NFC 'café' and NFD
    'café'), by case ('Cat' and 'cat'), by spaces around the name ('cat ' and 'cat'), by Unicode compatibility
    forms (NFKC: full-width 'ｃａｔ' and 'cat') or by letters of other scripts that look like Latin ones ('cat' and
    'сat', first letter Cyrillic), as (the earlier name, the later one, "only by ..." saying how they differ);
    None when no two look alike. Every source of class names refuses such a pair (image folders, CIFAR meta files);
    `folders`: the names are folders' (a pair alike by case is said to be one folder on some file systems)."""
    seen: dict[str, str] = {}
    for name in classes:
        other = seen.setdefault(_lookalike_key(name), name)
        if other == name:
            continue
        if unicodedata.normalize("NFC", other) == unicodedata.normalize("NFC", name):
            how = (f"only by Unicode normalisation (code points {ascii(other)} and {ascii(name)}: NFC / NFD forms "
                   f"of one name)")
        else:  # the ways that matter: keeping one of them as it is tells the two names apart
            ways = [way for way in _LOOKALIKE_WAYS if _lookalike_key(other, way) != _lookalike_key(name, way)]
            ways = ways or ["compat"]  # 'ﬁsh' and 'fish': NFKC and casefold both undo the ligature
            how = "only by " + " and ".join(_LOOKALIKE_WAYS[way] for way in ways)
            if ways == ["case"] and folders:
                how += " (one folder on a case-insensitive file system: Windows, macOS)"
            elif "compat" in ways:
                how += (f" (code points {ascii(other)} and {ascii(name)}: full-width letters, ligatures and the like "
                        f"are one name under NFKC)")
            elif "scripts" in ways:
                how += f" (code points {ascii(other)} and {ascii(name)}: {_twins_text(other + name)})"
        return other, name, how
    return None


def _refuse_linked_twice(root: Path, items: list[str]) -> None:
    """One file listed under two names (a symlinked class folder, a link to another class's image, a hard link)
    would be one image in two classes or in two splits: DataError naming both (files compared by device and
    inode)."""
    seen: dict[tuple[int, int], str] = {}
    for item in items:
        stat = os.stat(root / item)
        other = seen.setdefault((stat.st_dev, stat.st_ino), item)
        if other != item:
            raise DataError(f"image folder {root}: {item!r} and {other!r} are the same file (a symlink or a hard "
                            f"link); an image may be listed once, in one class: remove one of them")


HIGH_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")
SIXTEEN_BIT = 65535  # the top of a 16-bit image: 'I;16*' always, and 'I' by openlt's rule (see convert_image)


def high_bit_problem(img: Image.Image, name: object = "the image") -> str | None:
    """Why openlt's decoding rule (:func:`convert_image`) cannot read `img`, or None: a float ('F') image must hold
    values in [0, 1] (finite), a 32-bit integer ('I') image values in 0..65535 (16-bit); `name` (the file) starts
    the message. The rule depends on the mode alone, never on the values: these are refused, not guessed."""
    if img.mode not in ("I", "F") or img.width * img.height == 0:
        return None
    arr = np.asarray(img)
    finite = bool(np.isfinite(arr).all()) if img.mode == "F" else True
    low, high = (float(arr.min()), float(arr.max())) if finite else (float("nan"), float("nan"))
    if img.mode == "F" and not (finite and 0.0 <= low and high <= 1.0):
        found = "non-finite values (NaN or inf)" if not finite else f"values from {low:g} to {high:g}"
        return (f"{name} is a float ('F') image with {found}; openlt reads float images as [0, 1] (x 255): clip "
                f"or rescale it to [0, 1], or save it as an 8- or 16-bit image")
    if img.mode == "I" and not (0 <= low and high <= SIXTEEN_BIT):
        return (f"{name} is a 32-bit integer ('I') image with values from {low:g} to {high:g}; openlt reads 'I' "
                f"images as 16-bit (0..65535, / 257): rescale it to 0..65535, or save it as an 8- or 16-bit image")
    return None


def convert_image(img: Image.Image, mode: str, name: object = "the image") -> Image.Image:
    """Convert any PIL image to `mode` ("RGB" or "L"). Palette, CMYK, RGBA (alpha dropped), LA, 1-bit convert as
    PIL does. The scaling of high-bit images depends on the mode alone (never on the pixel values, issue 14 D2):
    16-bit ('I;16', 'I;16L', 'I;16B', 'I;16N') and 32-bit integer ('I': a 16-bit PNG or PGM as some Pillow
    versions open it, a 32-bit TIFF) images are read as 16-bit, 0..65535 / 257 -> 0..255 (PIL alone would clip
    them to white); float ('F') images as [0, 1], x 255. An 'I' image outside 0..65535 or an 'F' image outside
    [0, 1] is a DataError naming `name` (:func:`high_bit_problem`). :func:`decoding` describes the whole rule."""
    if img.mode in HIGH_BIT_MODES:
        problem = high_bit_problem(img, name)
        if problem:
            raise DataError(problem)
        arr = np.asarray(img).astype(np.float64)
        arr = arr * 255.0 if img.mode == "F" else arr / 257.0  # [0, 1] / 0..65535 -> 0..255
        img = Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), mode="L")
    elif img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")  # what PIL asks for, without its warning
    return img if img.mode == mode else img.convert(mode)


def decoding(mode: str) -> dict:
    """How openlt turns an image file into the `mode` ("RGB" or "L") image its transform takes (:func:`open_image`,
    :func:`convert_image`), as data: an export bundle's openlt.json "decoding", for a user who reads images
    without openlt (docs/robustness.md "Images" says the same)."""
    return {
        "reader": "PIL (Pillow): Image.open(path), the first frame (animated GIF, multi-page TIFF), then "
                  f".convert({mode!r}) except for the modes below",
        "mode": mode,
        "channels": ("1: color images become PIL's luma L = R*299/1000 + G*587/1000 + B*114/1000" if mode == "L"
                     else "3: grayscale images are repeated into R, G and B"),
        "sixteen_bit": "modes I;16, I;16L, I;16B, I;16N and I (a 16-bit grayscale PNG / PGM / TIFF, a 32-bit "
                       "integer TIFF): value / 257 rounded to 0..255 (mode L), then converted; an I image outside "
                       "0..65535 is refused (16-bit color PNGs: PIL reads them as 8-bit RGB)",
        "float": "mode F: value x 255 rounded to 0..255 (mode L), then converted; values outside [0, 1] are refused",
        "alpha": "RGBA, LA and palette images with transparency: the alpha channel is dropped (not composited)",
        "exif_orientation": "not applied: pixels as stored in the file, as in training (torchvision ImageFolder "
                            "does the same); a photo with an EXIF orientation tag is read unrotated",
    }


def open_image(path: str | os.PathLike, mode: str | None = "RGB") -> Image.Image | tuple[int, int]:
    """Read an image file as `mode`; a missing, empty, truncated or non-image file is a DataError naming it.
    `mode` None: decode it only (a check), return its (width, height).

    The one decoder of every image openlt reads (the split check, the training / evaluation loaders, predict):
    an image between PIL's decompression-bomb warning and error limits decodes, and instead of PIL's
    DecompressionBombWarning (which names no file, once per read) this process logs one note naming it, once
    (:func:`note_large_image`); above the error limit it is a DataError naming it (:func:`too_large`)."""
    with _no_bomb_warning():
        image, pixels = _decode(path, mode)
    note_large_image(path, pixels)
    return image


@contextlib.contextmanager
def _no_bomb_warning() -> Iterator[None]:
    """PIL's DecompressionBombWarning not passed on inside the block, in the main thread (warnings.catch_warnings
    is not thread-safe: a caller with threads, `check_decodable`, sets the filter around them)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        yield


def image_header_size(path: str | os.PathLike) -> tuple[int, int] | None:
    """(width, height) of an image file from its header alone (no decoding), or None when it cannot be read
    (the decoders name it); PIL's DecompressionBombWarning is not passed on (:func:`open_image` notes the file)."""
    try:
        with _no_bomb_warning(), Image.open(path) as img:
            return img.size
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None


def _decode(path: str | os.PathLike, mode: str | None) -> tuple[Image.Image | tuple[int, int], int]:
    """(:func:`open_image`'s result, the image's pixels); DataError as there. PIL's warnings pass through."""
    path = Path(path)
    try:
        with Image.open(path) as img:
            img.load()
            pixels = img.size[0] * img.size[1]
            if mode is not None:
                return convert_image(img, mode, path), pixels  # (checks a high-bit image's range, once)
            problem = high_bit_problem(img, path)  # the split check (mode None) too: refused before any work
            if problem:
                raise DataError(problem)
            return img.size, pixels
    except FileNotFoundError:
        raise DataError(f"image not found: {path}") from None
    except IsADirectoryError:
        raise DataError(f"not an image file but a folder: {path}") from None
    except Image.DecompressionBombError as exc:
        raise DataError(too_large(path, exc)) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as exc:
        raise DataError(f"corrupt or unreadable image {path}: {exc}") from None


_NOTED_LARGE: set[str] = set()  # the large images this process has named in a note


def note_large_image(path: str | os.PathLike, pixels: int) -> None:
    """Log :func:`large_image_note` for an image of `pixels` above PIL's warning limit, once per file and
    process, and not from a DataLoader worker process (its main process, or the split check, names it)."""
    if not Image.MAX_IMAGE_PIXELS or pixels <= Image.MAX_IMAGE_PIXELS or str(path) in _NOTED_LARGE:
        return
    if torch.utils.data.get_worker_info() is not None:
        return
    _NOTED_LARGE.add(str(path))
    _LOG.info(large_image_note(Path(path), pixels))


def too_large(path: str | os.PathLike, exc: Image.DecompressionBombError) -> str:
    """The message for an image PIL refuses as a possible decompression bomb: not corrupt, but more pixels than
    PIL's limit (2 x PIL.Image.MAX_IMAGE_PIXELS; its own text gives both numbers)."""
    numbers = re.findall(r"\((\d+) pixels\).*?limit of (\d+) pixels", str(exc))
    size = f"{int(numbers[0][0]):,} pixels, above PIL's limit of {int(numbers[0][1]):,}" if numbers else str(exc)
    return (f"image too large: {path} has {size} (PIL refuses it as a possible decompression bomb); resize it, or "
            f"if the file is trusted raise the limit from Python (PIL.Image.MAX_IMAGE_PIXELS; openlt has no "
            f"option for it)")


DECODE_BATCH = 4096  # images handed to the threads at a time (not one future per image of a large folder)


def check_decodable(paths: list[Path], where: list[str] | None = None, desc: str = "checking images") -> None:
    """Decode every image of `paths` (PIL, in threads: its decoders release the GIL), so that an image that cannot
    be read stops the command before any work, not at the final evaluation hours later. A progress bar on stderr
    from 1000 images on (a terminal only). DataError for the first bad one in list order, prefixed with its
    `where` (e.g. "test.txt, line 9") when given. 1.1 to 2.4 ms per 500 x 375 JPEG on one core (docs/robustness.md).
    An image between PIL's warning and error limits decodes: instead of PIL's raw DecompressionBombWarning, one
    note names it (`note_large_image`, as every decoding of :func:`open_image`)."""

    def problem(path: Path) -> str | int:
        try:
            return _decode(path, None)[1]  # open_image's decoder; the note is logged below, in list order
        except DataError as exc:
            return str(exc)

    for path, pixels in check_each(paths, problem, where.__getitem__ if where else None, desc):
        note_large_image(path, pixels)


def check_each(items: Sequence[Any], problem: Callable[[Any], str | int | None],
               where: Callable[[int], str] | None = None, desc: str = "checking images",
               threads: int | None = None) -> list[tuple[Any, int]]:
    """The threaded check of every item of a list (:func:`check_decodable`'s decoding, `openlt identify`'s header
    reading): `problem(item)` in `threads` threads (default: up to 8, one per core), handed DECODE_BATCH items at a
    time, PIL's DecompressionBombWarning silenced around the threads (warnings.catch_warnings is not thread-safe:
    the filter is set here, not in them). `problem` returns a message (the item is bad), the image's pixels or
    None. DataError for the first message in list order, prefixed with `where(index)` when given; a progress bar
    on stderr from 1000 items on (a terminal only). Returns (item, pixels) of the images above PIL's warning limit,
    in list order, for the caller's note."""
    from concurrent.futures import ThreadPoolExecutor

    from tqdm import tqdm

    large = []
    with warnings.catch_warnings(), ThreadPoolExecutor(max_workers=threads or min(8, os.cpu_count() or 1)) as pool, \
            tqdm(total=len(items), desc=desc, leave=False, file=sys.stderr,
                 disable=True if len(items) < 1000 else None) as bar:
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        for start in range(0, len(items), DECODE_BATCH):
            for offset, found in enumerate(pool.map(problem, items[start:start + DECODE_BATCH])):
                if isinstance(found, str):
                    raise DataError(f"{where(start + offset)}: {found}" if where else found)
                if found is not None and Image.MAX_IMAGE_PIXELS and found > Image.MAX_IMAGE_PIXELS:
                    large.append((items[start + offset], found))
            bar.update(len(items[start:start + DECODE_BATCH]))
    return large


def large_image_note(path: Path, pixels: int) -> str:
    """The note for an image above PIL's decompression-bomb warning limit (PIL.Image.MAX_IMAGE_PIXELS) but below
    its error limit (twice that): it decodes; PIL's own warning would say nothing of which file."""
    return (f"note: {path} has {pixels:,} pixels, above PIL's warning limit of {Image.MAX_IMAGE_PIXELS:,} "
            f"(PIL.Image.MAX_IMAGE_PIXELS): it decodes, but each read is slow and memory-hungry; consider resizing it")


def check_split_images(split, pool: LabelledPool) -> None:
    """Decode every image a drawn `split` (splits.Split) of an image folder lists, before its files are written
    (`check_decodable`): a split folder of `openlt split` lists only images that can be read. The embedded data
    (arrays, checked when they are read) need nothing."""
    if pool.dataset == "image-folder":
        root = Path(pool.root)
        check_decodable([root / item for name in split.entries for item in split.entries[name][0]])


class FileImageLoader:
    """Open `root/item` with PIL in the wanted mode; a corrupt or missing file is a DataError naming it."""

    def __init__(self, root: str | os.PathLike, mode: str = "RGB") -> None:
        self.root = Path(root)
        self.mode = mode
        if not self.root.is_dir():
            raise DataError(f"data root does not exist or is not a folder: {self.root}")

    def check(self, entries: SplitEntries) -> list[tuple[int, int]]:
        """Fail early, naming the split file and line, when a listed image is absent or its name is not one of
        IMAGE_EXTENSIONS (the rule an image folder is listed by: a split file cannot name what a folder skips).
        Returns each item's file identity (device, inode): two names of one file (a symlink) have the same."""
        keys = []
        for item, line in zip(entries.items, entries.lines):
            try:
                stat = os.stat(self.root / item)
            except (FileNotFoundError, NotADirectoryError):
                stat = None
            except PermissionError:  # a folder on its path this process may not enter (chmod 000, another user's)
                raise DataError(f"{entries.path}, line {line}: image {item!r} under {self.root}: permission denied (a "
                                f"folder on its path cannot be entered)") from None
            if stat is None or not S_ISREG(stat.st_mode):
                raise DataError(f"{entries.path}, line {line}: image {item!r} not found under {self.root}")
            keys.append((stat.st_dev, stat.st_ino))
            if PurePosixPath(item).suffix.lower() not in IMAGE_EXTENSIONS:
                raise DataError(f"{entries.path}, line {line}: {item!r} is not an image file name (openlt reads "
                                f"{', '.join(IMAGE_EXTENSIONS)}, in any case, in split files and image folders alike)")
        return keys

    def check_decodable(self, entries: SplitEntries) -> None:
        """Decode every image of `entries` (`check_decodable`); the error names the split file and line."""
        check_decodable([self.root / item for item in entries.items],
                        [f"{entries.path}, line {line}" for line in entries.lines], f"checking {entries.path.name}")

    def __call__(self, item: str):
        return open_image(self.root / item, self.mode)


class ArrayImageLoader:
    """Items `part/index` into uint8 arrays (N, H, W) or (N, C, H, W): the embedded data set and CIFAR."""

    def __init__(self, parts: dict[str, fashion_mnist.ArrayPart]) -> None:
        self.parts = parts

    def check(self, entries: SplitEntries) -> list[str]:
        """Every item is `part/index` with an index in range, written canonically (ASCII digits, no leading
        zero: one image has one name, so that duplicates and overlaps between splits are seen). Returns the items
        (an item's identity is its name)."""
        for item, line in zip(entries.items, entries.lines):
            part, _, index = item.partition("/")
            canonical = index.isascii() and index.isdigit() and str(int(index)) == index
            if part not in self.parts or not canonical or int(index) >= len(self.parts[part].labels):
                raise DataError(f"{entries.path}, line {line}: {item!r} is not an image of the embedded data set "
                                f"(expected one of {', '.join(self.parts)}/<index>)")
        return list(entries.items)

    def __call__(self, item: str):
        part, _, index = item.partition("/")
        image = self.parts[part].images[int(index)]
        return tv_tensors.Image(image.unsqueeze(0) if image.ndim == 2 else image)


class SplitDataset(Dataset):
    """The images of one split file, loaded by `loader` and passed through `transform`."""

    def __init__(self, entries: SplitEntries, loader: Callable, transform: Callable | None = None,
                 checked: bool = False) -> None:
        if not checked:  # `checked`: the loader already checked these entries (prepare_data checks every split)
            loader.check(entries)
        self.entries = entries
        self.loader = loader
        self.transform = transform
        self.targets = torch.as_tensor(entries.labels, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int):
        image = self.loader(self.entries.items[index])
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.targets[index])
