"""Face identification of a run (`openlt identify`): the OLTR paper's MS1M-LT benchmark, MegaFace-style.

The run's frozen network (eval mode, no augmentation) gives the pooled feature of every image of the given
lists; :mod:`openlt.metrics.identification` does the rest:

* gallery: one template per identity -- from the run's training images (features from the run's feature
  cache, `openlt features`), replaced by the gallery list's images for every identity that list names
  (identities with no training image, listed only there, are the zero-shot ones);
* probes matched against the templates + the distractors (chunked: memory bounded by the chunk), rank-1 per
  band of training images per identity (many / few / one / zero), open-set TPIR and rejection at FPIR
  (probes labelled -1, or with an identity nowhere enrolled, should be rejected);
* 1:1 verification from a pairs file: TAR at FAR = 1e-3 and 1e-4.

Lists are split files (``relative/path label``: probe -1 = unknown identity; gallery labels >= 0; distractors
-1, no identity). A pairs file holds ``path1 path2 same`` lines (same: 1 same identity, 0 not; no image paired
with itself, no pair twice in either order or as both 1 and 0, no training image of the run, genuine and impostor
pairs both present).
Identities are the run's integer labels (the training split's classes 0..K-1), new ones >= K. Everything is
checked (files, lines, images: present, and a header PIL reads; an image truncated after its header is named with
its list file and line when it is extracted) before the model is loaded; a probe that is a training image of the
run or an image of the gallery list (compared as files, by device and inode) is refused: it would match its own
template; so is a distractor that is one (it would take rank-1 from its identity), and a probe list of no enrolled
identity.
The run's own images are found from its config.yaml (``data.root``, ...; ``overrides`` when they moved).
The result goes to RUN/identification.json; with probe, gallery or pair features that have no spread (the same
up to float rounding, e.g. a network trained for an epoch) it carries one ``warning`` (printed under the table):
the numbers then reflect float rounding and the tie rule, not the data. The numbers do not depend on --chunk-size.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image

from openlt.config import Config, read_utf8
from openlt.data.build import DataBundle, prepare_data
from openlt.data.datasets import FileImageLoader, SplitDataset, check_each, too_large
from openlt.data.splitfile import SplitEntries, normalise_item, read_split_file
from openlt.engine.checkpoint import recorded_amp
from openlt.engine.evaluate import checkpoint_epoch_fields, evaluated_data
from openlt.engine.features import extract_features, load_features
from openlt.engine.identify_request import LIST_FILES, check_identify_options, check_list_file, check_list_files
from openlt.engine.inference import checkpoint_identity
from openlt.engine.manifest import verify_manifest
from openlt.engine.override_scope import (IDENTIFY_READS, check_data_folders, check_identify_overrides,
                                          overridden_config)
from openlt.engine.precision import check_amp_override, inference_amp
from openlt.engine.run import Run
from openlt.engine.runtime import load_run_model, command_device, make_loader, trained_config
from openlt.errors import DataError, WriteError
from openlt.io import sha256_file, unmakeable_folder, write_json
from openlt.metrics.identification import (DEFAULT_CHUNK, IDENTITY_BANDS, IdentityBands, enrol, match,
                                           open_set_identification, pair_scores, rank1_by_band, spread_warning,
                                           tar_at_far)

LISTS = ("probe", "gallery", "distractors")
PROTOCOL = ("templates = mean of L2-normalised features per identity (training images, or the gallery list's "
            "for the identities it names); probes matched by cosine similarity against templates + distractors; "
            "rank-1 over mated probes (identity enrolled); open set: non-mated probes (label -1 or not enrolled) "
            "should score at most the threshold chosen at each FPIR; verification: TAR at FAR over the pairs")


@dataclass
class PairList:
    """The parsed lines of a pairs file: two image paths and same (1) / different (0) identity per line."""

    path: Path
    first: list[str]
    second: list[str]
    same: list[int]
    lines: list[int]

    def images(self) -> SplitEntries:
        """Every image the pairs name, once each (label 0), as split entries for a loader; lines of first use."""
        seen: dict[str, int] = {}
        for a, b, line in zip(self.first, self.second, self.lines):
            seen.setdefault(a, line)
            seen.setdefault(b, line)
        return SplitEntries(self.path, list(seen), [0] * len(seen), list(seen.values()))


def read_pairs_file(path: str | Path) -> PairList:
    """Parse a pairs file: ``path1 path2 same`` per line (UTF-8; blank lines and '#' comments skipped; columns
    separated by tabs on a line that has one, so that paths may hold spaces, else by spaces), same 0
    or 1, paths relative to the image root. DataError naming the file and line for anything else, and for a
    file that is missing, lists no pair, or lacks genuine (1) or impostor (0) pairs."""
    path = check_list_file("pairs", path)
    pairs = PairList(path, [], [], [], [])
    for lineno, line in enumerate(read_utf8(path, "pairs file", DataError).split("\n"), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{path}, line {lineno}"
        # tab-separated columns when the line has a tab (paths with spaces), else spaces: not str.split()'s Unicode
        # whitespace, which would cut a name at its no-break space (macOS screenshots: "10.00.00\u202fAM.png")
        parts = [part.strip() for part in line.split("\t") if part.strip()] if "\t" in line else \
            [part for part in line.split(" ") if part]
        if len(parts) != 3:
            raise DataError(f"{where}: expected 'path1 path2 same' (same: 0 or 1), got {line!r}; "
                            + _pairs_hint(line, len(parts)))
        if parts[2] not in ("0", "1"):
            header = " (a header line? a pairs file has none: remove it or make it a '#' comment)" \
                if not pairs.same and not parts[2].lstrip("-").isdigit() else ""
            raise DataError(f"{where}: same must be 0 (different identities) or 1 (same identity), got "
                            f"{parts[2]!r}{header}")
        pairs.first.append(normalise_item(parts[0], where))
        pairs.second.append(normalise_item(parts[1], where))
        pairs.same.append(int(parts[2]))
        pairs.lines.append(lineno)
    if not pairs.same:
        raise DataError(f"pairs file {path} lists no pairs")
    if len(set(pairs.same)) < 2:
        raise DataError(f"pairs file {path} needs genuine (1) and impostor (0) pairs; it has only "
                        f"{'genuine' if pairs.same[0] else 'impostor'} ones")
    check_pairs(pairs)
    return pairs


def _pairs_hint(line: str, columns: int) -> str:
    """What to do about a pairs line that does not split into three columns."""
    if "," in line:
        return "the columns are separated by whitespace (or tabs), not commas"
    if "\t" in line:
        return f"it has {columns} tab-separated column(s)"
    return "a path with spaces needs the three columns separated by tabs"


def check_pairs(pairs: PairList, keys: dict[str, Any] | None = None) -> None:
    """DataError, naming the file and line(s), for a pair of an image with itself (its score is 1: a genuine one is
    accepted at any threshold, an impostor one is never rejected), a pair given twice (also as (b, a): it counts
    twice in TAR / FAR) and a pair given as both same (1) and different (0) (one of the two is wrong). `keys`:
    each image's identity (a file's (device, inode), so that a symlink is the same image); default its name."""
    keys = keys or {}
    seen: dict[frozenset, tuple[int, int]] = {}
    for a, b, same, line in zip(pairs.first, pairs.second, pairs.same, pairs.lines):
        ka, kb = keys.get(a, a), keys.get(b, b)
        where = f"{pairs.path}, line {line}"
        if ka == kb:
            alias = "" if a == b else f" ({a!r} and {b!r} are one file)"
            raise DataError(f"{where}: a pair of an image with itself{alias}: its score is 1, accepted at any "
                            f"threshold; a verification pair needs two images")
        pair = frozenset((ka, kb))
        if pair in seen:
            then, line_then = seen[pair]
            if then != same:
                raise DataError(f"{where}: the pair {a!r} {b!r} is {same} here but {then} at line {line_then} "
                                f"(same and different identity): keep the right one")
            raise DataError(f"{where}: the pair {a!r} {b!r} repeats line {line_then} (a pair counts once, in either "
                            f"order): remove one")
        seen[pair] = (same, line)


def read_list(kind: str, path: str | Path) -> SplitEntries:
    """A probe / gallery / distractor list (split-file format; -1 allowed but in the gallery). DataError naming
    the file (and line) when it is missing or bad."""
    lines = LIST_FILES[kind][1]
    path = check_list_file(kind, path)
    entries = read_split_file(path, allow_open=True, what=f"--{kind} list",
                              empty_hint=f" (only blank or '#' lines): give one {lines[:-1]} per image")
    if kind == "gallery" and -1 in entries.labels:
        line = entries.lines[entries.labels.index(-1)]
        raise DataError(f"{path}, line {line}: a gallery image needs its identity (a label >= 0), got -1")
    return entries


def identify_config(run: Run, checkpoint: str = "best", overrides: Sequence[str] | None = None) -> Config:
    """The run's config.yaml with `overrides` ("key=value" strings of :data:`override_scope.IDENTIFY_KEYS`, e.g.
    data.root=NEW when the run's images moved) applied, checked against the config its checkpoint records
    (`trained_config`), its data folders present. ConfigError / DataError, one line naming the key (and
    RUN/config.yaml), before any work."""
    check_identify_overrides(overrides or [])  # (also: one string, or items that are no strings)
    overrides = list(overrides or [])
    given = {item.split("=", 1)[0].strip() for item in overrides}
    cfg = trained_config(run, checkpoint, "identify", overridden_config(run, overrides))
    check_data_folders(run, cfg, given, "identify", IDENTIFY_READS)
    return cfg


def _loaders(data: DataBundle, root: str | None, distractor_root: str | None) -> dict[str, Any]:
    """The image loader of each list: --root's files (else the run's own images), distractors under
    --distractor-root when given."""
    mode = "L" if data.in_chans == 1 else "RGB"
    main = FileImageLoader(root, mode) if root is not None else data.loader
    other = FileImageLoader(distractor_root, mode) if distractor_root is not None else main
    return {"probe": main, "gallery": main, "pairs": main, "distractors": other}


class ListedImages(SplitDataset):
    """The images of a probe / gallery / distractor list or a pairs file for extraction: an image that does not
    decode (it passed :func:`check_headers`: a truncated file) is a DataError naming the list file and line."""

    def __getitem__(self, index: int):
        try:
            return super().__getitem__(index)
        except DataError as exc:
            raise DataError(f"{self.entries.path}, line {self.entries.lines[index]}: {exc}") from None


HEADER_THREADS = 8  # threads reading image headers (file opens: I/O-bound on a network file system)


def check_headers(entries: SplitEntries, loader) -> None:
    """The cheap check of every listed image, before any work: not empty, and a header PIL reads (format and size,
    `Image.open` without decoding the pixels; not above PIL's decompression-bomb limit). DataError naming the list
    file and line of the first bad one in list order (:func:`check_each`: in threads, PIL's
    DecompressionBombWarning silenced). Decoding every image here would double the reading of a million
    distractors: one truncated after its header is found when it is extracted, named the same way
    (:class:`ListedImages`). Images of the embedded data sets (arrays) need nothing."""
    if not isinstance(loader, FileImageLoader):
        return

    def problem(item: str) -> str | None:
        path = loader.root / item
        try:
            with Image.open(path):
                return None
        except Image.DecompressionBombError as exc:
            return too_large(path, exc)
        except PermissionError:
            return f"image {item!r} under {loader.root} cannot be read (permission denied)"
        except (OSError, ValueError, SyntaxError, EOFError) as exc:
            if path.is_file() and path.stat().st_size == 0:
                return f"image {item!r} is an empty file (0 bytes) under {loader.root}"
            return f"image {item!r} under {loader.root} is not an image PIL can read: {exc}"

    check_each(entries.items, problem, lambda index: f"{entries.path}, line {entries.lines[index]}",
               f"checking {entries.path.name}", HEADER_THREADS)


def _extract(model, cfg: Config, data: DataBundle, entries: SplitEntries, loader, device: torch.device,
             desc: str, quiet: bool, amp: str) -> np.ndarray:
    """(N, D) float32 features of the listed images, in list order (eval transform, no augmentation), under `amp`;
    an image that does not decode is a DataError naming the list file and line (:class:`ListedImages`)."""
    dataset = ListedImages(entries, loader, data.transform(False), checked=True)
    batches = make_loader(dataset, cfg.eval.batch_size, cfg.data.workers, device, pin_memory=cfg.data.pin_memory)
    feats, _ = extract_features(model, batches, device, desc, quiet, cfg.train.channels_last, amp)
    return feats.numpy()


def _gallery(train: dict[str, torch.Tensor], gallery: tuple[np.ndarray, list[int]] | None
             ) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """Templates (K, D), their identities (K,) and how many came from the training images / the gallery list."""
    templates, ids = enrol(train["features"].numpy(), train["labels"].numpy())
    if gallery is None:
        return templates, ids, {"identities": int(ids.size), "from_train": int(ids.size), "from_gallery_list": 0}
    g_templates, g_ids = enrol(gallery[0], gallery[1])
    keep = ~np.isin(ids, g_ids)  # the gallery list's images replace an identity's training images
    templates, ids = np.vstack([templates[keep], g_templates]), np.concatenate([ids[keep], g_ids])
    return templates, ids, {"identities": int(ids.size), "from_train": int(keep.sum()),
                            "from_gallery_list": int(g_ids.size)}


def _identification(train, feats: dict[str, np.ndarray], lists: dict[str, SplitEntries], counts: list[int],
                    bands: IdentityBands, fpirs: Sequence[float], chunk_size: int) -> dict[str, Any]:
    """The gallery description, rank-1 by band and the open-set numbers of the probes."""
    gallery = (feats["gallery"], lists["gallery"].labels) if "gallery" in lists else None
    templates, ids, described = _gallery(train, gallery)
    distractors = feats.get("distractors")
    described["distractors"] = 0 if distractors is None else int(distractors.shape[0])
    labels = np.asarray(lists["probe"].labels)
    scores, found = match(feats["probe"], templates, ids, distractors, k=1, chunk_size=chunk_size)
    result: dict[str, Any] = {"gallery": described, "identification": rank1_by_band(
        found, probe_labels=labels, enrolled=ids, train_counts=counts, bands=bands)}
    result["spread"] = {"probe": feats["probe"],
                        "gallery (templates and distractors)": [templates] + ([] if distractors is None else
                                                                               [distractors])}
    mated = np.isin(labels, ids) & (labels >= 0)
    if mated.any() and not mated.all():
        result["open_set"] = open_set_identification(scores, found, labels, ids, fpirs)
    else:
        result["open_set"] = {"n_mated": int(mated.sum()), "n_non_mated": int((~mated).sum()), "at_fpir": None,
                              "note": "needs probes of enrolled and of unenrolled identities (label -1)"}
    # identities >= 0 enrolled nowhere: non-mated as -1 is (by design), named so that a typo or a forgotten
    # --gallery shows under the table
    result["open_set"]["unenrolled_identities"] = sorted(set(labels[(labels >= 0) & ~np.isin(labels, ids)].tolist()))
    return result


def _check_request(probe, gallery, distractors, pairs, many_above: int, chunk_size: int, root: str | None = None,
                   distractor_root: str | None = None) -> IdentityBands:
    check_identify_options(probe, gallery, distractors, pairs, chunk_size, root, distractor_root, many_above)
    check_list_files({"probe": probe, "gallery": gallery, "distractors": distractors, "pairs": pairs})
    return IdentityBands(many_above)


def _shared(probe: SplitEntries, probe_keys: list, other: SplitEntries, other_keys: list, what: str) -> None:
    """DataError when a probe is one of `other`'s images (compared as files: (device, inode), so a symlink or a
    hard link is the same image), naming the count and the first such probe with both lines."""
    where = {}
    for key, line in zip(other_keys, other.lines):
        where.setdefault(key, line)
    shared = [(item, line, where[key]) for item, key, line in zip(probe.items, probe_keys, probe.lines)
              if key in where]
    if shared:
        item, line, other_line = shared[0]
        raise DataError(f"{probe.path}: {len(shared)} of {len(probe.items)} probe image(s) are {what}, e.g. line "
                        f"{line} {item!r} = {other.path}, line {other_line}: a probe must be held out (e.g. the "
                        f"test split), or rank-1 matches an image with itself; remove them from the probe list")


def check_listed_once(entries: SplitEntries, keys: list, kind: str) -> None:
    """DataError naming both lines when a list names one file twice under two names (a symlink or a hard link:
    compared by device and inode, as the probe-vs-gallery check and the pairs are; the same name twice, also as
    ``./a``, is refused when the list is read): a probe would be counted twice (trial 16 D6), a gallery image
    would weigh twice in its template."""
    first: dict = {}
    for item, key, line in zip(entries.items, keys, entries.lines):
        if key in first:
            other, other_line = first[key]
            raise DataError(f"{entries.path}, line {line}: {item!r} is the same file as {other!r} (line "
                            f"{other_line}; a symlink or a hard link): each {kind} image is listed once; remove one")
        first[key] = (item, line)


def train_keys(keys: dict[str, list], data: DataBundle) -> list:
    """The file identity of each training image of the run (`keys["train"]`, found once)."""
    if "train" not in keys:
        keys["train"] = data.loader_of("train").check(data.entries["train"])
    return keys["train"]


def check_probes_held_out(lists: dict[str, SplitEntries], keys: dict[str, list], data: DataBundle) -> None:
    """No probe is a training image (the templates are their means), an image of the gallery list (the
    template of its identity) or a distractor: the first two would match themselves and inflate rank-1, a
    distractor would match itself and take rank-1 away. Images are compared as files."""
    train = data.entries.get("train")
    if train is not None:
        _shared(lists["probe"], keys["probe"], train, train_keys(keys, data),
                "training images of the run (its templates are built from them)")
    if "gallery" in lists:
        _shared(lists["probe"], keys["probe"], lists["gallery"], keys["gallery"],
                "images of the gallery list (the templates of their identities)")
    if "distractors" in lists:
        _shared(lists["probe"], keys["probe"], lists["distractors"], keys["distractors"],
                "images of the distractor list (each would match itself as a distractor)")


def check_distractors(lists: dict[str, SplitEntries], keys: dict[str, list], data: DataBundle) -> None:
    """Distractors are images of no enrolled identity: DataError naming the file and line for one labelled with an
    identity (it would be counted as no one's), and for one that is an image of the gallery list or a training
    image of the run (a copy of a template's image, of no identity: it takes rank-1 from that identity's probes).
    Images are compared as files."""
    distractors = lists["distractors"]
    labelled = [(line, label) for line, label in zip(distractors.lines, distractors.labels) if label != -1]
    if labelled:
        line, label = labelled[0]
        raise DataError(f"{distractors.path}, line {line}: a distractor has no identity (label -1), got {label}: an "
                        f"image of a known identity belongs in the gallery list (--gallery) or the probe list")
    others = [(lists.get("gallery"), keys.get("gallery"), "an image of the gallery list")]
    if "train" in data.entries:
        train = data.entries["train"]
        others.append((train, train_keys(keys, data), "a training image of the run"))
    for other, other_keys, what in others:
        if other is None:
            continue
        where = dict(zip(other_keys, other.lines))
        for item, key, line in zip(distractors.items, keys["distractors"], distractors.lines):
            if key in where:
                raise DataError(f"{distractors.path}, line {line}: distractor {item!r} is {what} ({other.path}, line "
                                f"{where[key]}): a distractor must be of no enrolled identity; remove it")


def check_pairs_held_out(pairs: PairList, images: SplitEntries, image_keys: list, keys: dict[str, list],
                         data: DataBundle) -> None:
    """DataError when a pair names a training image of the run (compared as files): the network learnt those images,
    so their scores measure what it memorised, not verification; the count and the first such line are named."""
    if "train" not in data.entries:
        return
    train = data.entries["train"]
    where = dict(zip(train_keys(keys, data), train.lines))
    key_of = dict(zip(images.items, image_keys))
    shared = [(line, item) for a, b, line in zip(pairs.first, pairs.second, pairs.lines) for item in (a, b)
              if key_of[item] in where]
    if shared:
        line, item = shared[0]
        lines = len({line for line, _ in shared})
        raise DataError(f"{pairs.path}: {lines} of {len(pairs.lines)} pair(s) name training images of the run, e.g. "
                        f"line {line} {item!r} = {train.path}, line {where[key_of[item]]}: verification pairs must "
                        f"be held out (e.g. the test split), or TAR measures what the network memorised; remove them")


def check_gallery_labels(lists: dict[str, SplitEntries], keys: dict[str, list], data: DataBundle) -> None:
    """DataError when an image of the gallery list is a training image of the run under another identity (compared
    as files): one of the two labels is wrong, and the template would mix two identities."""
    if "train" not in data.entries:
        return
    train = data.entries["train"]
    where = {key: (line, label) for key, line, label in zip(train_keys(keys, data), train.lines, train.labels)}
    gallery = lists["gallery"]
    for item, key, line, label in zip(gallery.items, keys["gallery"], gallery.lines, gallery.labels):
        if key in where and where[key][1] != label:
            raise DataError(f"{gallery.path}, line {line}: {item!r} enrols identity {label}, but it is a training "
                            f"image of identity {where[key][1]} ({train.path}, line {where[key][0]}): correct one of "
                            f"the two labels")


def check_probes_enrolled(lists: dict[str, SplitEntries], data: DataBundle) -> None:
    """DataError when no probe has an enrolled identity (the run's training identities, and the gallery list's):
    rank-1 counts only such probes, and the open-set rates need them too, so nothing would be measured."""
    probe = lists["probe"]
    enrolled = set(range(data.num_classes)) | set(lists["gallery"].labels if "gallery" in lists else ())
    if not any(label in enrolled for label in probe.labels):
        others = sorted(set(probe.labels))
        shown = ", ".join(map(str, others[:5])) + (", ..." if len(others) > 5 else "")
        gallery = " and the gallery list's" if "gallery" in lists else ""
        raise DataError(f"{probe.path}: none of its {len(probe.items)} probe(s) has an enrolled identity (labels "
                        f"{shown}; enrolled: the run's 0..{data.num_classes - 1}{gallery}): rank-1 and the open-set "
                        f"rates need probes of enrolled identities; enrol new ones with --gallery")


def check_lists(lists: dict[str, SplitEntries], pair_list: PairList | None, loaders: dict[str, Any], data: DataBundle) -> None:
    """Every check of the probe / gallery / distractor lists and the pairs file against each other and the run's
    data (the module docstring's), then each listed image's header (not its pixels): DataError before the model is
    loaded. Adds ``lists["pairs"]``, the images of `pair_list` (a pairs file, or None)."""
    keys = {kind: loaders[kind].check(entries) for kind, entries in lists.items()}
    for kind, entries in lists.items():
        check_listed_once(entries, keys[kind], kind)
    if "probe" in lists:
        check_probes_held_out(lists, keys, data)
        check_probes_enrolled(lists, data)
        if "gallery" in lists:
            check_gallery_labels(lists, keys, data)
        if "distractors" in lists:
            check_distractors(lists, keys, data)
    if pair_list is not None:
        lists["pairs"] = pair_list.images()
        pair_keys = loaders["pairs"].check(lists["pairs"])
        check_pairs(pair_list, dict(zip(lists["pairs"].items, pair_keys)))
        check_pairs_held_out(pair_list, lists["pairs"], pair_keys, keys, data)
    for kind, entries in lists.items():
        check_headers(entries, loaders[kind])


def _verification(feats: torch.Tensor, images: SplitEntries, pair_list: PairList, fars: Sequence[float]) -> dict:
    """TAR at each FAR of the pairs file's cosine scores; `feats` are the features of `images` (its images)."""
    index = {item: i for i, item in enumerate(images.items)}
    first = feats[[index[p] for p in pair_list.first]]
    second = feats[[index[p] for p in pair_list.second]]
    return tar_at_far(pair_scores(first, second), pair_list.same, fars)


def _device(cfg: Config, device: str | None) -> torch.device:
    """The device identify runs on, with a `train.amp=` override checked on it as `openlt train` checks it
    (precision.check_amp_override: fp16 on a CPU is refused, not run in float32). A device that is not there is
    named as given: `device` as --device (trial 16 D11: it was named train.device), else the run's train.device."""
    dev = command_device(device, cfg.train.device)
    check_amp_override(cfg, dev)
    return dev


def check_writable(run: Run, tag: str | None = None) -> None:
    """WriteError when this process cannot write into the run's folder, where the result goes
    (identification(-TAG).json, written atomically: a temporary file there, then renamed), or when a folder has
    that file's name (the rename would fail after all the work)."""
    if unmakeable_folder(run.path) is not None:  # (io's one rule of a folder that cannot be written into)
        raise WriteError(f"{run.path}: cannot write {run.identification_path(tag).name} into the run's folder "
                         f"(permission denied or a read-only filesystem): copy the run somewhere writable and "
                         f"identify the copy")
    out = run.identification_path(tag)
    if out.is_dir() and not out.is_symlink():
        raise WriteError(f"{out} is a folder, where identify writes its result: move it away, or give another "
                         f"--tag")


def identify_run(run: Run, probe: str | None = None, gallery: str | None = None, distractors: str | None = None,
                 pairs: str | None = None, *, root: str | None = None, distractor_root: str | None = None,
                 checkpoint: str = "best", device: str | None = None, many_above: int = 20,
                 fpirs: Sequence[float] = (0.1, 0.01), fars: Sequence[float] = (1e-3, 1e-4),
                 chunk_size: int = DEFAULT_CHUNK, tag: str | None = None, quiet: bool = False,
                 overrides: Sequence[str] | None = None) -> dict[str, Any]:
    """Identification and / or verification numbers of a run's features; written to identification(-TAG).json.

    ``probe`` / ``gallery`` / ``distractors``: list files (see the module docstring); ``pairs``: a pairs file;
    paths in them are relative to ``root`` (default: the run's image root), distractors' to
    ``distractor_root`` (default: ``root``). ``overrides``: "key=value" strings of
    :data:`override_scope.IDENTIFY_KEYS` (:func:`identify_config`), e.g. ``data.root=NEW`` when the run's own
    images moved. Returns ``{"protocol", "run", "checkpoint", "files", "gallery", "identification",
    "open_set"}`` (with a probe list; ``open_set["unenrolled_identities"]``: the probes' identities >= 0 enrolled
    nowhere),
    ``"verification"`` (with pairs) and ``"warning"`` (features without spread: :func:`spread_warning`), with the
    checkpoint's ``"checkpoint_sha256"`` and ``"epoch"`` (as metrics.json); ``"run"`` is the run's absolute path, and
    the inputs are recorded as absolute paths: ``"files"`` and their ``"files_sha256"`` (:func:`list_files`), the
    folders in ``"data"`` (:func:`identified_data`). Refused while another process trains
    the run (``Run.check_not_training``). ConfigError / DataError for a bad request, file, line or image (the checks
    of the module docstring), before the model is loaded; WriteError, before any work, when the run's folder
    cannot be written (:func:`check_writable`)."""
    bands = _check_request(probe, gallery, distractors, pairs, many_above, chunk_size, root, distractor_root)
    run.check_not_training("identify")  # its checkpoints are still changing (as eval, predict and export refuse)
    check_writable(run, tag)  # said now, not after hours of matching
    paths = {"probe": probe, "gallery": gallery, "distractors": distractors}
    lists = {kind: read_list(kind, path) for kind, path in paths.items() if path is not None}
    pair_list = read_pairs_file(pairs) if pairs is not None else None
    files = list_files({**paths, "pairs": pairs})  # hashed as read: what these numbers were measured on
    cfg = identify_config(run, checkpoint, overrides)
    data = prepare_data(cfg, default_split_dir=run.splits_dir)
    verify_manifest(run, data, "eval", splits=("train",))  # the training split (templates) the run was trained on
    dev = _device(cfg, device)  # a device that is not there is said before every listed image's header is read
    loaders = _loaders(data, root, distractor_root)
    check_lists(lists, pair_list, loaders, data)  # (adds lists["pairs"]: the images of the pairs file)
    using = checkpoint_identity(run, checkpoint)  # the weights scored, recorded as metrics.json records them
    train = load_features(run, ("train",), checkpoint, device=str(dev), quiet=quiet, cfg=cfg,
                          checkpoint_sha256=using["sha256"])["train"] if probe else None  # (hashed once)
    _, data, model, state = load_run_model(run, checkpoint, dev, cfg)
    amp = inference_amp(cfg.train.amp, dev, recorded_amp(state))  # the templates' (load_features): the trained one
    feats = {kind: _extract(model, cfg, data, entries, loaders[kind], dev, kind, quiet, amp)
             for kind, entries in lists.items()}
    result: dict[str, Any] = {"protocol": PROTOCOL, "run": str(run.path.resolve()), "checkpoint": checkpoint,
                              "amp": amp, **files, "data": identified_data(cfg, data, root, distractor_root)}
    result.update({"checkpoint_sha256": using["sha256"], **checkpoint_epoch_fields(state)})  # which weights
    spread = {}
    if probe is not None:
        result.update(_identification(train, feats, lists, data.train_counts, bands, fpirs, chunk_size))
        spread.update(result.pop("spread"))
    if pair_list is not None:
        spread["verification pairs'"] = feats["pairs"]
        result["verification"] = _verification(feats["pairs"], lists["pairs"], pair_list, fars)
    warning = spread_warning(spread)  # no spread: every score is ~1, the matches are float rounding
    if warning:
        result["warning"] = warning
    run.check_not_training("identify")  # (a `train --resume` started meanwhile: its weights are not these)
    write_json(run.identification_path(tag), result)
    return result


def _absolute(path: str | Path) -> str:
    return os.path.abspath(os.path.expanduser(str(path)))


def list_files(paths: dict[str, str | Path | None]) -> dict[str, dict[str, str]]:
    """identification.json's record of the list files given (`paths`: kind -> file, None when not given):
    ``"files"``, kind -> the file's absolute path (trial 12 D4: it was the path as typed, relative to where
    `openlt identify` ran), and ``"files_sha256"``, kind -> the SHA-256 of its bytes (two lists of one name are
    told apart). DataError naming the file when it cannot be read."""
    given = {kind: path for kind, path in paths.items() if path is not None}
    try:
        hashes = {kind: sha256_file(path) for kind, path in given.items()}
    except OSError as exc:
        raise DataError(f"cannot read {exc.filename}: {exc.strerror}") from None
    return {"files": {kind: _absolute(path) for kind, path in given.items()}, "files_sha256": hashes}


def identified_data(cfg: Config, data: DataBundle, root: str | None, distractor_root: str | None) -> dict:
    """identification.json's ``"data"``, as absolute paths: the run's own data as metrics.json records it
    (:func:`evaluated_data`: ``"root"``, ``"open_root"``, ``"split_dir"``: the training images the templates come
    from), ``"list_root"`` (the folder the lists' paths are relative to: --root, else the run's data.root) and
    ``"distractor_root"`` (the distractors' folder: --distractor-root, else the list root)."""
    record = evaluated_data(cfg, data.split_dir)
    list_root = _absolute(root) if root is not None else record["root"]
    return {**record, "list_root": list_root,
            "distractor_root": _absolute(distractor_root) if distractor_root is not None else list_root}


def format_identification(result: dict[str, Any]) -> str:
    """A few lines for the terminal: rank-1 per band, open-set TPIR / rejection per FPIR, TAR per FAR."""
    out = []
    if "identification" in result:
        ident, g = result["identification"], result["gallery"]
        out.append(f"gallery: {g['identities']} identities ({g['from_train']} from training images, "
                   f"{g['from_gallery_list']} from the gallery list) + {g['distractors']} distractors")
        cells = [f"{name} {_pct(ident['rank1'][name])} ({ident['n_probes'][name]})"
                 for name in (*IDENTITY_BANDS, "overall")]
        out.append(f"rank-1 % (probes), bands {ident['bands']}: " + ", ".join(cells))
        if not result["open_set"].get("at_fpir"):
            out.append(f"open set: not measured ({result['open_set'].get('note')})")
        for fpir, at in (result["open_set"].get("at_fpir") or {}).items():
            out.append(f"open set at FPIR {fpir}: TPIR {_pct(at['tpir'])}, unenrolled rejected "
                       f"{_pct(at['rejection_rate'])}" + ("" if at["reliable"] else " (too few unenrolled probes)"))
        nowhere = result["open_set"].get("unenrolled_identities")
        if nowhere:
            shown = ", ".join(map(str, nowhere[:10])) + (", ..." if len(nowhere) > 10 else "")
            out.append(f"note: probes of {len(nowhere)} {'identity' if len(nowhere) == 1 else 'identities'} "
                       f"enrolled nowhere ({shown}) count as unenrolled, to be rejected, as label -1 does; enrol new "
                       f"identities with --gallery")
    for far, at in (result.get("verification", {}).get("at_far") or {}).items():
        out.append(f"verification TAR at FAR {far}: {_pct(at['tar'])}" +
                   ("" if at["reliable"] else " (too few impostor pairs)"))
    if result.get("warning"):  # features without spread: the numbers are float rounding
        out.append(f"warning: {result['warning']}")
    return "\n".join(out)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"
