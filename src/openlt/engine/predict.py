"""Prediction on images with a trained run, from its directory alone (engine/inference.py says which files):
label, softmax confidence, top-k classes, the open-set score, and "unknown" when the run's open-set decision
(its :class:`~openlt.openset.Rejector`) rejects the image. The decision is the one the run's evaluation chose for
this checkpoint, or a fixed threshold: prediction never chooses one itself (engine/inference.py `saved_decision`).

:class:`Predictor` is the loaded run; :func:`expand_inputs` turns files, folders (recursively, image files only)
and glob patterns into image paths; :func:`predict_files` labels them batch by batch, an unreadable image
becoming a record with its ``error`` while the others go on; :func:`write_records` saves the records as CSV or
JSON lines."""

from __future__ import annotations

import numbers

import csv
import glob
import io
import json
import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch

from openlt.config import Config
from openlt.data.datasets import IMAGE_EXTENSIONS, broken_link, convert_image, open_image
from openlt.data.datasets import skipped_note as _skipped_note  # the note `openlt split` prints too
from openlt.engine.checkpoint import recorded_amp
from openlt.engine.features import DTYPES, head_outputs_on_cache
from openlt.engine.inference import (InferenceSpec, build_run_model, checkpoint_identity, inference_spec,
                                    saved_decision, saved_score)
from openlt.engine.precision import autocast, check_amp, inference_amp, precision_name
from openlt.engine.run import Run
from openlt.engine.runtime import KEPT_OUTPUTS, batch_to, heads_on_stage1_features, resolve_device, trained_config
from openlt.errors import ConfigError, DataError, RunDirError
from openlt.io import write_text
from openlt.models.fusion import inference_copy
from openlt.models.model import OpenLTModel
from openlt.openset import OpenSetScore, Rejector
from openlt.openset.base import MODEL_SCORE
from openlt.reporting.samples import rank_classes

_LOG = logging.getLogger(__name__)

COLUMNS = ("path", "label", "class_name", "confidence", "open_score", "rejected", "topk", "top_class", "score",
           "threshold", "error")
OUTPUT_FORMATS = (".csv", ".jsonl")
NON_FINITE = "the network's outputs for this image are not finite (NaN or infinite values in the input?)"


@dataclass
class Predictor:
    """A trained run loaded for prediction (:meth:`load`): its config, :class:`InferenceSpec` (classes,
    transform), network in eval mode on `device`, inference precision `amp`, the open-set decision (`rejector`:
    None when nothing is rejected) and the score it thresholds (`scorer`)."""

    run: Run
    cfg: Config
    spec: InferenceSpec
    model: OpenLTModel
    device: torch.device
    amp: str
    rejector: Rejector | None
    scorer: OpenSetScore
    checkpoint: str = "best"
    transform: object = field(default=None, repr=False)

    @classmethod
    def load(cls, run: Run, checkpoint: str = "best", threshold: float | None = None,
             device: str | None = None, options: tuple[str, str] = ("--threshold", "--device")) -> "Predictor":
        """Load `run`'s `checkpoint` (best | last) on `device` (None: CUDA when available, else CPU); `threshold`:
        a fixed rejection threshold instead of calibration.json. Reads config.yaml, inference.json, the
        checkpoint and calibration.json / open-score.safetensors; no data (a run without inference.json, from an
        older openlt, is described from its data once). `options` name the threshold and device in messages.

        The decision is :func:`~openlt.engine.inference.saved_decision`: a run never evaluated, or whose
        calibration or fitted score belongs to another checkpoint, is a RunDirError naming the `openlt eval`
        command to run (or the threshold option). ConfigError / RunDirError / NotFittedError naming what is
        wrong, before any image is read."""
        command = "predict" if options[0].startswith("--") else None  # the CLI's, or openlt.load_run
        # config.yaml as the run was trained (before any work); a decoupled run's stage-1 checkpoint is not read:
        # the run's own checkpoint holds its whole network (stage-1 body and head)
        cfg = trained_config(run, checkpoint, command, stage1=False)
        using = checkpoint_identity(run, checkpoint)
        rejector = saved_decision(run, cfg, using, threshold, options[0])  # before any work
        scorer = saved_score(run, cfg.eval.open_score if rejector is None else rejector.score, cfg, using)
        dev = resolve_device(device or "auto", options[1])
        spec = inference_spec(run, cfg)
        model, state = build_run_model(run, cfg, spec, checkpoint, dev)
        amp = inference_amp(cfg.train.amp, dev, recorded_amp(state))  # the precision the run trained in
        amp = decision_amp(run, rejector, amp, dev, options[0])  # the one its threshold was chosen in (D6)
        return cls(run, cfg, spec, model, dev, amp, rejector, scorer, checkpoint,
                   transform=spec.image_transform())

    def check_topk(self, topk: int, option: str = "--topk") -> None:
        """ConfigError naming `option` unless 1 <= `topk` <= K (the run's known classes)."""
        k = self.spec.num_classes
        if isinstance(topk, bool) or not isinstance(topk, numbers.Integral) or not 1 <= topk <= k:
            raise ConfigError(f"{option} must be an integer from 1 to {k} (the run's known classes), got {topk!r}")

    def preprocess(self, pictures: list) -> torch.Tensor:
        """PIL images (any mode: converted to the run's) -> the (B, C, H, W) float32 batch the network takes."""
        return torch.stack([self.transform(convert_image(p, self.spec.mode)) for p in pictures])

    @torch.no_grad()
    def outputs(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        """A preprocessed batch (B, C, H, W) float -> float32 CPU tensors "logits" (B, K), "feature" (B, D) and,
        from the meta-embedding head, "reachability" (B,); eval mode, in the run's inference precision."""
        model, kept = self.forward_model(), KEPT_OUTPUTS + ("feature",)
        images = batch_to(batch.float(), self.device, self.cfg.train.channels_last)
        if heads_on_stage1_features(self.cfg, self.scorer):  # as `openlt eval` computes it (_split_outputs)
            with autocast(self.amp, self.device):
                feature = model.features(images)[1]
            cached = {"features": feature.float().cpu().to(DTYPES[self.cfg.decouple.cache_dtype]), "labels": None}
            raw = head_outputs_on_cache(self.model, cached, self.device, kept)
        else:
            with autocast(self.amp, self.device):
                raw = model(images)
        return {k: v.float().cpu() for k, v in raw.items() if k in kept}

    def forward_model(self) -> torch.nn.Module:
        """The network as `openlt eval` runs it (`runtime.collect_outputs`): a copy with its batch norms folded
        (:func:`~openlt.models.fusion.inference_copy`, milliseconds), made per call so that it follows the weights
        of :attr:`model` (public as `LoadedRun.model`). In bf16 the folded weights round otherwise than the
        unfolded ones: on the unfolded network calibration.json's threshold met other scores than it was chosen on."""
        return inference_copy(self.model)

    def label(self, batch: torch.Tensor, topk: int = 1) -> list[dict]:
        """A preprocessed batch (B, C, H, W) -> B records (see :func:`predict_files`, without path), `topk` in
        1..K (:meth:`check_topk`). An image whose logits are not finite (a NaN or infinite value in a tensor given
        as input) gets a record with every field None and its ``error``: no label is made up for it."""
        self.check_topk(topk, "topk")
        topk = int(topk)  # (a numpy integer is accepted: plain int from here)
        out = self.outputs(batch)
        rejector, scorer = self.rejector, self.scorer
        ok = torch.isfinite(out["logits"]).all(dim=1)
        finite = ok.tolist()
        logits = out["logits"]
        if not all(finite):  # their records are errors; scored as zeros: the scores refuse non-finite input
            out = {k: torch.where(ok.view(-1, *[1] * (v.dim() - 1)), v, torch.zeros((), dtype=v.dtype))
                   for k, v in out.items()}
            batch = torch.where(ok.view(-1, 1, 1, 1), batch.float(), torch.zeros(()))
        if scorer.needs_model:  # ODIN: the score of the perturbed images, through the network
            images = batch_to(batch.float(), self.device, self.cfg.train.channels_last)
            model = self.forward_model()
            out[MODEL_SCORE] = scorer.score_images(lambda x: model(x)["logits"], images, self.spec.transform["std"])
        best_p, best_c = rank_classes(logits, topk)  # the label is the top-k's first: one ranking (trial 10 D10)
        confidence, top = best_p[:, 0], best_c[:, 0]
        open_score = scorer.score(out)
        decided = top.numpy() if rejector is None else rejector.decide(top.numpy(), open_score.numpy())
        names = self.spec.classes
        return [{"label": int(c), "class_name": names[c] if c >= 0 else "unknown", "confidence": prob,
                 "open_score": value, "rejected": bool(c < 0),
                 "topk": [{"class_name": names[j], "probability": p} for j, p in zip(cs, ps)],
                 "top_class": names[t], "score": scorer.name if rejector is None else rejector.score,
                 "threshold": None if rejector is None else rejector.threshold, "error": None} if ok else
                {**{key: None for key in COLUMNS[1:-1]}, "error": NON_FINITE}
                for ok, c, t, prob, value, cs, ps in zip(finite, decided.tolist(), top.tolist(), confidence.tolist(),
                                                         open_score.tolist(), best_c.tolist(), best_p.tolist())]


def decision_amp(run: Run, rejector: Rejector | None, amp: str, device: torch.device, option: str = "--threshold") -> str:
    """The precision prediction runs in: `amp` (the run's: precision.inference_amp), or the one the evaluation that
    chose calibration.json's threshold ran in (its fitted_on "amp") when that differs (an `openlt eval RUN
    train.amp=none` of a bf16 run), with a note: a threshold is applied to scores computed as those it was chosen
    on, never to another precision's (issue 14 D6). A calibration.json that records no precision (an older openlt)
    is applied in `amp` as before. RunDirError when this device cannot run the threshold's precision (fp16 on a CPU):
    choose one here with `openlt eval`, or give a fixed threshold."""
    fitted = (rejector.fitted_on or {}).get("amp") if rejector is not None and rejector.calibrated else None
    if fitted is None or fitted == amp:
        return amp
    try:
        check_amp(fitted, device)
    except ConfigError:
        given = f"{option} T" if option.startswith("--") else f"{option}=T"
        raise RunDirError(f"{run.calibration_file}: its threshold was chosen on scores computed in "
                          f"{precision_name(fitted)}, which {device.type} cannot run; choose one in "
                          f"{precision_name(amp)} with `openlt eval {run.path} "
                          f"train.device={device.type}`, or give a fixed one ({given})") from None
    _LOG.warning("note: predicting in %s, the precision of the evaluation that chose %s's threshold (the run "
                 "itself evaluates in %s; `openlt eval %s` chooses one in it)", precision_name(fitted),
                 run.calibration_file.name, precision_name(amp), run.path)
    return fitted


def _folder_images(folder: Path) -> tuple[list[tuple[Path, str | None]], list[Path]]:
    """A folder's image files (see :func:`expand_inputs`) as (path, None), sorted; its dangling symlinks with an
    image extension are kept as images (reading one names it, on its own line, not skipped), and a sub-folder
    that cannot be listed (no permission) is (that folder, why): its images are not skipped without a word.
    Hidden entries are skipped. Symlinked sub-folders are followed, as `openlt split` and a ``**`` pattern follow
    them (trial 16 D1: they were skipped without a word), each folder once (compared by device and inode): a
    link to a folder already listed, or that leads back into the walk (``a/up -> ..``), adds nothing, and one to a
    folder that holds `folder` is not followed, with a warning naming it (its other images are not labelled).
    Real sub-folders are listed first, so an image reachable without a link is named by its real path. Also
    returns the files skipped for their name (no image extension: ``.heic``, ``.txt``, none), sorted, for
    :func:`_skipped_note`."""
    found: list[tuple[Path, str | None]] = []
    skipped: list[Path] = []

    def unlisted(exc: OSError) -> None:
        found.append((Path(exc.filename), f"cannot list the folder {exc.filename}: {exc.strerror or exc} (its "
                                          f"images are not labelled; fix its permissions)"))

    seen: set[tuple[int, int]] = set()
    links = [folder]  # the folder, then each symlinked sub-folder met, walked in turn
    while links:
        for directory, subdirs, names in os.walk(links.pop(0), onerror=unlisted):
            here = Path(directory)
            identity = _identity(here)
            if identity in seen:  # (a link's target listed already)
                subdirs[:] = []
                continue
            seen.add(identity)
            subdirs[:] = [d for d in subdirs if not d.startswith(".")]
            links += [here / d for d in subdirs if (here / d).is_symlink() and _followed(here / d, folder)]
            subdirs[:] = [d for d in subdirs if not (here / d).is_symlink()]  # walked after the real ones
            for name in names:
                path = here / name
                if name.startswith("."):
                    continue
                if path.suffix.lower() in IMAGE_EXTENSIONS:
                    if path.is_file() or _dangling(path):
                        found.append((path, None))
                elif path.is_file():
                    skipped.append(path)
    return sorted(found, key=lambda item: item[0]), sorted(skipped)


def _identity(folder: Path) -> tuple[int, int]:
    stat = folder.stat()
    return stat.st_dev, stat.st_ino


def _followed(link: Path, folder: Path) -> bool:
    """Whether :func:`_folder_images` of `folder` follows the symlinked sub-folder `link`: not when it leads to a
    folder that holds `folder` (walking it would list what lies around `folder`: a warning names it); a link to
    `folder` itself or to a folder inside it is followed and adds nothing (each folder is listed once)."""
    target, real = link.resolve(), folder.resolve()
    if real != target and real.is_relative_to(target):
        _LOG.warning("%s: not followed: a symlink to %s, a folder that holds %s (a loop); the images there are "
                     "not labelled (name them directly)", link, target, folder)
        return False
    return True


def not_image_name(path: str) -> str:
    """The error of a file named directly whose name has no image extension: the rule folders and patterns
    follow (they skip it, with :func:`_skipped_note`), and split files (they refuse it)."""
    return (f"{path} is not an image file name: openlt labels {' '.join(IMAGE_EXTENSIONS)} (any case), named "
            f"directly or in a folder alike; convert or rename it (e.g. .heic to .jpg)")


def _dangling(path: Path) -> bool:
    """True for a symlink that leads nowhere (a missing target, or a loop)."""
    return path.is_symlink() and not path.exists()


def expand_inputs(inputs: Iterable[str]) -> list[tuple[str, str | None]]:
    """Image paths from what the user named, in order: a file as it is, a folder's image files (recursively,
    extensions of openlt.data.datasets.IMAGE_EXTENSIONS, hidden entries skipped, sorted), a glob pattern's
    image matches and the images of its matching folders (``*``, ``?``, ``[``; ``**`` recursive; sorted). One rule
    for all three: a file whose name has no image extension is not read (named: an entry with its problem; in a
    folder or among matches: skipped, with one warning line giving how many and the first names). Returns (path, problem) pairs: problem is None, or
    a one-line reason when the entry names no image (missing path, folder without images, pattern without
    match, a name the filesystem refuses: too long, ...), so that the caller reports it on that entry's line and
    goes on; a sub-folder that cannot be listed is such an entry too. A dangling symlink (named, matched, or in a
    folder with an image extension) is kept: reading it names the link and its missing target."""
    found: list[tuple[str, str | None]] = []
    for entry in inputs:
        try:
            found += _expand(entry)
        except OSError as exc:  # a name too long for the filesystem, a folder that cannot be listed, ...
            found.append((entry, f"cannot read {entry}: {exc.strerror or exc}"))
    return found


def _expand(entry: str) -> list[tuple[str, str | None]]:
    """:func:`expand_inputs` for one entry; OSError when the filesystem refuses the name itself. Files without
    an image extension are never read: named, they are an entry with its problem (:func:`not_image_name`); in a
    folder or among a pattern's matches, they are skipped with one warning (:func:`_skipped_note`)."""
    path = Path(entry)
    if entry == "-" and not path.exists():  # the shell's "standard input": no file of that name here
        return [(entry, "'-' is no image file: openlt predict reads image files, not standard input (save the "
                        "image to a file, or name a file called '-' as ./-)")]
    if path.is_dir():
        images, skipped = _folder_images(path)
        if not images:  # one line: the skipped files are part of the entry's problem, not a warning beside it
            held = f"; {_skipped_note(entry, skipped, path)}" if skipped else ""
            return [(entry, f"no image files ({', '.join(IMAGE_EXTENSIONS)}) in the folder {entry}{held}")]
        if skipped:
            _LOG.warning(_skipped_note(entry, skipped, path))
        return [(str(p), problem) for p, problem in images]
    if path.exists() or path.is_symlink() or not glob.has_magic(entry):
        if path.suffix.lower() not in IMAGE_EXTENSIONS and path.is_file():
            return [(entry, not_image_name(entry))]
        return [(entry, None)]  # a missing file or a dangling symlink is reported when it is read
    return _matches(entry)


def _matches(entry: str) -> list[tuple[str, str | None]]:
    """:func:`_expand` for a glob pattern: its matching image files and the images of its matching folders, as if
    each were named (``imgs/*`` over class folders; was "no file matches"), each path once (``**`` matches a
    folder and its files), in the matches' order."""
    found: dict[str, str | None] = {}
    skipped: list[Path] = []
    for match in sorted(glob.glob(entry, recursive=True)):
        path = Path(match)
        if path.is_dir():
            images, passed = _folder_images(path)
            found.update((str(p), problem) for p, problem in images if str(p) not in found)
            skipped += passed
        elif path.is_file() or _dangling(path):
            if path.suffix.lower() in IMAGE_EXTENSIONS:
                found.setdefault(match, None)
            else:
                skipped.append(path)
    if skipped:
        _LOG.warning(_skipped_note(entry, list(dict.fromkeys(skipped))))
    return list(found.items()) or [(entry, f"no {'image ' if skipped else ''}file matches {entry!r}")]


def _failure(path: str, message: str) -> dict:
    return {"path": path, **{key: None for key in COLUMNS[1:-1]}, "error": message}


def read_image(path: str, mode: str):
    """The image at `path` as a PIL image of `mode`; DataError (its message names the file) when it is not one: a
    folder, a dangling symlink (the link and its missing target named), a file PIL cannot read. `openlt predict`
    and `LoadedRun.predict` / `features` read each path through it (trial 16 D14: the API said only "image not
    found" for a dangling link)."""
    try:
        if Path(path).is_dir():
            raise DataError(f"not an image file but a folder: {path}")
        if _dangling(Path(path)):
            raise DataError(f"{path} is {broken_link(Path(path), 'file')}")
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    return open_image(path, mode)


def predict_files(predictor: Predictor, inputs: Iterable[str], batch_size: int = 64,
                  topk: int = 1, output: str | Path | None = None) -> Iterator[dict]:
    """Label the images `inputs` name (:func:`expand_inputs`), `batch_size` at a time, yielding one record per
    image in order: ``path``; ``label`` the class id (int, -1 when rejected as unknown); ``class_name`` (its
    name, or "unknown"); ``confidence`` the softmax maximum in [0, 1]; ``open_score`` the value of the run's
    open-set score (higher = more known); ``rejected`` (bool); ``topk`` the `topk` most probable classes as
    [{"class_name", "probability"}]; ``top_class`` the best guess even when rejected; ``score`` the score's
    name; ``threshold`` (None when nothing is rejected); ``error`` None. An entry that names no readable image
    gives a record with its ``error`` (one line) and every other field None, and prediction goes on. ConfigError,
    before any image is read, for a `topk` outside 1..K, and with `output` (the --output file the records go to)
    a .csv file, for a path that a CSV file cannot hold (:func:`check_csv_paths`)."""
    predictor.check_topk(topk)
    entries = expand_inputs(inputs)
    if output is not None and output_format(output) == ".csv":
        check_csv_paths((path for path, _ in entries), output)  # before any image is labelled (trial 10 D16)
    for start in range(0, len(entries), batch_size):
        chunk = entries[start : start + batch_size]
        records: list[dict | None] = [None] * len(chunk)
        pictures, slots = [], []
        for i, (path, problem) in enumerate(chunk):
            try:
                if problem is not None:
                    raise DataError(problem)
                pictures.append(read_image(path, predictor.spec.mode))
                slots.append(i)
            except DataError as exc:
                records[i] = _failure(path, str(exc))
        if pictures:
            for i, record in zip(slots, predictor.label(predictor.preprocess(pictures), topk)):
                records[i] = {"path": chunk[i][0], **record}
        yield from records


def output_format(path: str | Path) -> str:
    """".csv" or ".jsonl", from the suffix of an --output file; ConfigError for any other (before any work)."""
    suffix = Path(path).suffix.lower()
    if suffix not in OUTPUT_FORMATS and Path(path).is_dir():
        raise ConfigError(f"--output {path} is a folder; give a file name (e.g. {Path(path) / 'predictions.csv'})")
    if suffix not in OUTPUT_FORMATS:
        raise ConfigError(f"--output {path}: give a .csv or .jsonl file name (got {suffix or 'no suffix'!r})")
    return suffix


def check_output(path: str | Path, option: str = "--output") -> str:
    """:func:`output_format`, and that :func:`write_records` can write `path`, checked before any image is read:
    ConfigError naming `option` and the cause when `path` is a folder or a symbolic link (as `openlt export`'s
    folder: the atomic write would replace the link, not write its target), when the folder it goes in (or one above:
    missing folders are created) is a file or a dangling symlink, or cannot be written into, or when the
    filesystem refuses the name (too long, ...). Returns the format."""
    suffix = output_format(path)
    target = Path(path)
    try:
        if target.is_symlink():  # the atomic write renames a new file into place: the link, not its target, replaced
            real = os.path.realpath(target)
            raise ConfigError(f"{option} {path} is a symbolic link to {real}: the predictions would replace the link "
                              f"with a file and leave {real} as it is; write to {real} itself, or remove the link")
        if target.is_dir():
            raise ConfigError(f"{option} {path} is a folder; give a file name (e.g. {target / ('predictions' + suffix)})")
        folder = target.parent
        while not folder.exists() and not folder.is_symlink():  # the folders to create, up to one that exists
            folder = folder.parent
        if _dangling(folder):
            raise ConfigError(f"{option} {path}: {folder} is {broken_link(folder, 'folder')}")
        if not folder.is_dir():
            raise ConfigError(f"{option} {path}: {folder} is a file, not a folder")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise ConfigError(f"{option} {path}: the folder {folder} cannot be written into (permission denied or "
                              f"a read-only filesystem)")
    except OSError as exc:
        raise ConfigError(f"{option} {path}: {exc.strerror or exc}") from None
    return suffix


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # what a spreadsheet reads as a formula at a cell's start


def csv_cell(value: object) -> object:
    """A CSV cell of `value`: None empty; text that starts like a formula (= + - @, a tab or a carriage return:
    `=cmd.png`, a class named `-x`) prefixed with a single quote, as OWASP advises against CSV injection (trial 10
    D13): a spreadsheet shows it as text, never evaluates it. Numbers as they are (-1 is a label, not a formula);
    the .jsonl output and --json keep every text exactly."""
    if value is None:
        return ""
    return "'" + value if isinstance(value, str) and value.startswith(FORMULA_STARTS) else value


def check_csv_paths(paths: Iterable[str], output: str | Path, option: str = "--output") -> None:
    """ConfigError naming `option` and the first of `paths` a CSV file (UTF-8 text) cannot hold: a file name
    whose bytes are not UTF-8 (Python gives them as lone surrogates, '\\udcff'); was an internal
    UnicodeEncodeError after every image was labelled, with no file written (trial 10 D16)."""
    for path in paths:
        try:
            path.encode("utf-8")
        except UnicodeEncodeError:
            raw = os.fsencode(path)
            raise ConfigError(f"{option} {output}: the file name {path!r} is not UTF-8 (bytes {raw!r}), which a CSV "
                              f"file (UTF-8 text) cannot hold; rename the file, or write .jsonl (it keeps such names, "
                              f"as \\udcXX escapes: os.fsencode gives the bytes back)") from None


def _csv_row(record: dict) -> list:
    topk = record["topk"]
    cells = {**record, "topk": None if topk is None else ";".join(f"{t['class_name']}:{t['probability']:.6g}"
                                                                  for t in topk)}
    return [csv_cell(cells[key]) for key in COLUMNS]


def write_records(records: list[dict], path: str | Path) -> None:
    """Save prediction records (:func:`predict_files`) to `path` atomically: CSV (a header of COLUMNS; topk as
    ``name:probability`` pairs joined by ``;``; empty cells for None) or JSON lines (one record a line, as
    yielded), by its suffix (:func:`output_format`). CSV text cells that start like a formula get a leading
    single quote (:func:`csv_cell`); a path a CSV file cannot hold is a ConfigError (:func:`check_csv_paths`)."""
    if output_format(path) == ".jsonl":
        write_text(path, "".join(json.dumps(r) + "\n" for r in records))
        return
    check_csv_paths((r["path"] for r in records), path, "output")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    # Python 3.11's writer leaves a carriage return unquoted when the line ends in "\n" alone (a path read from a
    # Windows list, 'a.png\r'): a reader then splits the row there; such a row is written with every cell quoted
    quoted = csv.writer(buffer, lineterminator="\n", quoting=csv.QUOTE_ALL)
    writer.writerow(COLUMNS)
    for row in map(_csv_row, records):
        (quoted if any(isinstance(cell, str) and "\r" in cell for cell in row) else writer).writerow(row)
    write_text(path, buffer.getvalue())
