"""The Python API: a trained run as an object, from its directory alone (``openlt.load_run``).

    import openlt
    run = openlt.load_run("runs/plain-20250101-120000")
    run.predict(["a.png", "photos/"])     # [{"label": 3, "class_name": "dress", "rejected": False, ...}, ...]
    run.features(["a.png"])               # torch.Size([1, 512]) float32
    run.evaluate(tag="api")               # the metrics dict, as `openlt eval` (needs the run's data)
"""

from __future__ import annotations

import logging
import numbers
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from openlt.engine.evaluate import evaluate_run
from openlt.engine.inference import checkpoint_identity, saved_decision, saved_score
from openlt.engine.override_scope import check_eval_overrides
from openlt.engine.predict import NON_FINITE, Predictor, expand_inputs, read_image
from openlt.engine.run import check_tag, open_run
from openlt.errors import ConfigError, DataError

_LOG = logging.getLogger(__name__)

Images = Any  # a path, a PIL image, a list of those, or a (N, C, H, W) / (C, H, W) float tensor or array


class LoadedRun:
    """A trained run ready to label images: ``classes`` (the K known class names, label order), ``transform``
    (the evaluation transform: PIL image -> float32 (C, H, W) tensor), ``model`` (the network, eval mode),
    ``config`` (the run's Config) and ``path``. Build it with :func:`load_run`.

    Images may be given as a path (str / Path; a folder gives its image files recursively, a glob pattern its
    matches), a PIL image, a list of those, or an already transformed float tensor / numpy array of shape
    (N, C, H, W) or (C, H, W): what ``transform`` gives, used as it is -- pixel values scaled to [0, 1], then
    normalised per channel, ``(x - mean) / std`` with the run's ``mean`` / ``std`` (inference.json), so each
    channel lies in ``[-mean / std, (1 - mean) / std]``. A float tensor clearly outside that range (a 0..255
    image, or [0, 1] values where the run expects normalised ones cannot always be told apart, but 0..255 can)
    is a DataError naming the minimum / maximum seen and the range expected; a uint8 tensor is refused too."""

    def __init__(self, predictor: Predictor, checkpoint: str = "best", threshold: float | None = None) -> None:
        self._predictor = predictor
        self._checkpoint = checkpoint
        self._threshold = threshold

    @property
    def path(self) -> Path:
        """The run directory."""
        return self._predictor.run.path

    @property
    def classes(self) -> list[str]:
        """The known class names, in label order (label i is ``classes[i]``)."""
        return list(self._predictor.spec.classes)

    @property
    def transform(self):
        """The evaluation transform: a PIL image -> float32 (C, H, W) normalised tensor."""
        return self._predictor.transform

    @property
    def model(self) -> torch.nn.Module:
        """The network (:class:`~openlt.models.model.OpenLTModel`), in eval mode on the run's device."""
        return self._predictor.model

    @property
    def config(self):
        """The run's config (:class:`~openlt.config.Config`) as saved in config.yaml."""
        return self._predictor.cfg

    def __repr__(self) -> str:
        return (f"LoadedRun({str(self.path)!r}, {len(self.classes)} classes, {self._predictor.spec.in_chans}x"
                f"{self._predictor.spec.image_size}x{self._predictor.spec.image_size} input)")

    def predict(self, images: Images, topk: int = 1, batch_size: int = 64) -> list[dict]:
        """One record per image, in order: ``label`` (class id, -1 when rejected as unknown), ``class_name``
        (or "unknown"), ``confidence`` (softmax maximum in [0, 1]), ``open_score`` (the run's open-set score,
        higher = more known), ``rejected`` (bool), ``topk`` ([{"class_name", "probability"}] of the `topk`
        most probable classes), ``top_class``, ``score`` (the score's name), ``threshold``, and ``path`` (None
        for images not given as paths). ConfigError for a `topk` outside 1..K or a `batch_size` below 1;
        DataError for an unreadable or empty image, a path without an image extension (openlt labels the names
        of openlt.data.datasets.IMAGE_EXTENSIONS only, as `openlt predict`), a tensor of the wrong shape (or on the
        meta device, or not dense), a tensor or array inside a list, or an image whose network outputs are not
        finite (a NaN or infinite value in a given tensor), naming it. A tensor that requires grad is used
        detached."""
        self._predictor.check_topk(topk, "topk")
        _check_batch_size(batch_size)
        records = []
        for paths, batch in self._batches(images, batch_size):
            for path, record in zip(paths, self._predictor.label(batch, topk)):
                if record.pop("error") is not None:
                    where = path or f"image {len(records)} of those given"
                    raise DataError(f"{where}: {NON_FINITE}")
                records.append({"path": path, **record})
        return records

    def features(self, images: Images, batch_size: int = 64) -> torch.Tensor:
        """(N, D) float32 CPU tensor: the pooled feature the classifier head sees (after attention and
        feature_fc where the model has them), one row per image, in order; (0, D) for no image. ConfigError for a
        `batch_size` below 1, DataError as :meth:`predict` (also for an image whose feature is not finite)."""
        _check_batch_size(batch_size)
        rows = []
        for paths, batch in self._batches(images, batch_size):
            feature = self._predictor.outputs(batch)["feature"]
            finite = torch.isfinite(feature).all(dim=1).tolist()
            if not all(finite):
                i = finite.index(False)
                where = paths[i] or f"image {sum(map(len, rows)) + i} of those given"
                raise DataError(f"{where}: {NON_FINITE}")
            rows.append(feature)
        if rows:
            return torch.cat(rows)
        spec = self._predictor.spec  # D from one blank image: the model knows it, the config may not say it
        blank = torch.zeros(1, spec.in_chans, spec.image_size, spec.image_size)
        return self._predictor.outputs(blank)["feature"][:0]

    def evaluate(self, overrides: list[str] | None = None, tag: str | None = None, quiet: bool = True) -> dict:
        """Evaluate the run as `openlt eval` does (needs its split files and images) and return the metrics dict
        (closed-set top-1 per band, open-set F-measure / AUROC, calibration, ...) of the loaded checkpoint;
        `overrides` are "key=value" strings of eval settings (``eval.*``: see `openlt eval`), applied after
        :func:`load_run`'s `threshold` (so ``eval.open_threshold=...`` there wins).

        Files: with a `tag` (1 to 100 ASCII letters, digits, '-' or '_', as `openlt eval --tag`; ConfigError
        otherwise), the results are written as metrics-TAG.json, report-TAG.* ... and the run's own stay.
        Without a tag, an evaluation as the run's own (no `threshold`, no overrides) rewrites the run's
        metrics.json, calibration.json and reports, and later predictions use the new calibration; one with a
        `threshold` or overrides is not the run's own and is returned without writing any file."""
        check_tag(tag)  # as `openlt eval --tag` (evaluate_run checks it again)
        check_eval_overrides(overrides or [])  # one string is no list of characters
        settings = ([] if self._threshold is None else [f"eval.open_threshold={self._threshold!r}"]) + \
            list(overrides or [])
        write = tag is not None or not settings
        metrics = evaluate_run(self._predictor.run, self._checkpoint, overrides=settings, quiet=quiet,
                               device=str(self._predictor.device), tag=tag, write=write)
        if tag is None and write:  # the run's own decision was chosen again: predict with it from now on
            predictor = self._predictor
            using = checkpoint_identity(predictor.run, self._checkpoint)
            predictor.rejector = saved_decision(predictor.run, predictor.cfg, using)
            name = predictor.cfg.eval.open_score if predictor.rejector is None else predictor.rejector.score
            predictor.scorer = saved_score(predictor.run, name, predictor.cfg, using)
        return metrics

    def _batches(self, images: Images, batch_size: int) -> Iterator[tuple[list, torch.Tensor]]:
        """(paths or Nones, preprocessed (B, C, H, W) batch) pairs of at most `batch_size` images."""
        if isinstance(images, (torch.Tensor, np.ndarray)):
            spec = self._predictor.spec
            tensor = _as_batch(images, spec.in_chans, spec.image_size)
            _check_normalised(tensor, spec.transform["mean"], spec.transform["std"])
            for start in range(0, len(tensor), batch_size):
                part = tensor[start : start + batch_size]
                yield [None] * len(part), part
            return
        items = list(images) if isinstance(images, (list, tuple)) else [images]
        pictures = [p for i, item in enumerate(items) for p in self._pictures(item, i)]
        for start in range(0, len(pictures), batch_size):
            part = pictures[start : start + batch_size]
            yield [p for p, _ in part], self._predictor.preprocess([img for _, img in part])

    def _pictures(self, item: Any, index: int) -> list[tuple[str | None, Image.Image]]:
        """The (path or None, PIL image) pairs of the `index`-th item given: a PIL image, or a path (a file, a
        folder's images, a glob's matches). DataError naming the item for anything else, and for an empty image."""
        if isinstance(item, Image.Image):
            if item.width < 1 or item.height < 1:
                raise DataError(f"image {index} of those given is empty ({item.width}x{item.height} px)")
            return [(None, item)]
        if isinstance(item, (torch.Tensor, np.ndarray)):
            raise DataError(f"image {index} of those given has type {type(item).__name__}: tensors and arrays "
                            f"cannot be mixed into a list; pass one batch tensor (N, C, H, W) or a list of paths / PIL images")
        if not isinstance(item, (str, os.PathLike)):
            raise DataError(f"image {index} of those given has type {type(item).__name__}: an image must be a "
                            f"path, a PIL image, or (not in a list) a batch tensor (N, C, H, W)")
        found = []
        for path, problem in expand_inputs([os.fspath(item)]):
            if problem is not None:
                raise DataError(problem)
            found.append((path, read_image(path, self._predictor.spec.mode)))
        return found


def _check_batch_size(batch_size: int) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise ConfigError(f"batch_size must be an integer >= 1, got {batch_size!r}")


def _as_batch(images: torch.Tensor | np.ndarray, in_chans: int, size: int) -> torch.Tensor:
    """A float (N, C, size, size) tensor from a tensor or array of that shape or (C, size, size), the network's
    input as the run was trained (inference.json); DataError otherwise (another size would be classified without a
    word: the network pools whatever it gets)."""
    given_as = _described(images)  # named in the errors as given: a numpy array is not called a tensor
    if isinstance(images, np.ndarray) and images.dtype.kind not in "biuf":
        raise DataError(f"a numpy array of images must be float (N, {in_chans}, {size}, {size}), already transformed "
                        f"as the run was trained (see LoadedRun.transform; or give paths / PIL images); got {given_as}")
    # a numpy view with negative strides (img[:, ::-1]) is copied: torch.as_tensor refuses it with a raw ValueError
    tensor = torch.as_tensor(np.ascontiguousarray(images) if isinstance(images, np.ndarray) else images)
    if tensor.device.type == "meta":
        raise DataError("a tensor of images on the meta device holds no values to label: give one on the CPU or a "
                        "GPU (or paths / PIL images)")
    if tensor.layout != torch.strided:
        raise DataError(f"a tensor of images must be dense, got layout {tensor.layout}: convert it with "
                        f".to_dense() (or give paths / PIL images)")
    tensor = tensor.detach()  # labelling needs no gradient (and warns about none)
    if tensor.dim() == 3:
        tensor = tensor.unsqueeze(0)
    if tensor.dim() != 4 or tuple(tensor.shape[1:]) != (in_chans, size, size) or not tensor.is_floating_point():
        picture = (isinstance(images, np.ndarray) and images.ndim in (2, 3) and images.dtype == np.uint8
                   and (images.ndim == 2 or images.shape[-1] in (1, 3, 4)))
        hint = "; an (H, W, C) picture? give PIL.Image.fromarray(it), or its path" if picture else ""
        what = "a numpy array of images" if isinstance(images, np.ndarray) else "a tensor of images"
        raise DataError(f"{what} must be float (N, {in_chans}, {size}, {size}), already transformed as the run was "
                        f"trained (see LoadedRun.transform; or give paths / PIL images); got {given_as}{hint}")
    return tensor


def _described(images: torch.Tensor | np.ndarray) -> str:
    """An array or tensor of images as the caller gave it, for a message: ``a numpy array of dtype uint8, shape
    (12, 12, 3)`` or ``a tensor of dtype torch.uint8, shape (1, 3, 12, 12)`` (the shape passed in, before any
    unsqueeze)."""
    kind = "a numpy array" if isinstance(images, np.ndarray) else "a tensor"
    return f"{kind} of dtype {images.dtype}, shape {tuple(images.shape)}"


RANGE_MARGIN = 0.25  # in units of a channel's [0, 1] range: a resize of float pixels may overshoot a little


def _check_normalised(tensor: torch.Tensor, mean: list[float], std: list[float]) -> None:
    """DataError when a channel of `tensor` (N, C, H, W) holds values clearly outside what the run's transform gives
    (``[(0 - mean) / std, (1 - mean) / std]``, with a margin of RANGE_MARGIN / std): a 0..255 or unnormalised image
    would be classified with confidence and without a word. Non-finite values are left to the network's check."""
    for c, (m, s) in enumerate(zip(mean, std)):
        values = tensor[:, c]
        values = values[torch.isfinite(values)]
        if values.numel() == 0:
            continue
        low, high = (0.0 - m) / s, (1.0 - m) / s
        seen_low, seen_high = float(values.min()), float(values.max())
        if seen_low < low - RANGE_MARGIN / s or seen_high > high + RANGE_MARGIN / s:
            raise DataError(f"a tensor of images must be normalised as LoadedRun.transform gives (pixels in [0, 1], "
                            f"then (x - mean) / std with mean {m:g}, std {s:g}: channel {c} in [{low:.3g}, "
                            f"{high:.3g}]); channel {c} holds {seen_low:.4g} .. {seen_high:.4g}"
                            + (" (0..255 pixels? divide by 255 and normalise, or give paths / PIL images)"
                               if seen_high > 2 * high + 1 else "; or give paths / PIL images"))
    _warn_if_unnormalised(tensor, mean, std)


def _warn_if_unnormalised(tensor: torch.Tensor, mean: list[float], std: list[float]) -> None:
    """A warning (logger openlt.engine.api) when every value of a batch lies in [0, 1] though the run's transform
    subtracts a positive mean: a ToTensor() output without Normalize sits inside the normalised range, so the range
    check passes it, and it would be labelled wrongly without a word (trial 19). Not an error: a bright normalised
    batch can lie in [0, 1] too; none when the batch is exactly 8-bit pixels normalised with the run's mean and std
    (LoadedRun.transform's output of an image: helper trial, session 28, a light-grey image was warned about)."""
    finite = tensor[torch.isfinite(tensor)]
    if finite.numel() == 0 or not any(m > 0 for m in mean):
        return
    if float(finite.min()) >= 0.0 and float(finite.max()) <= 1.0 and not _normalised_pixels(tensor, mean, std):
        _LOG.warning("every value of the tensor of images given lies in [0, 1]: is it normalised as "
                     "LoadedRun.transform gives ((x - mean) / std, mean %s)? A ToTensor() output without Normalize "
                     "is labelled wrongly; give paths / PIL images, or LoadedRun.transform's output",
                     ", ".join(f"{m:g}" for m in mean))


def _normalised_pixels(tensor: torch.Tensor, mean: list[float], std: list[float], tol: float = 1e-3) -> bool:
    """Whether every channel c of `tensor` (N, C, H, W) is (k / 255 - mean[c]) / std[c] for whole k: 8-bit pixels
    normalised as the run's transform does (a ToTensor() output, k / 255 itself, is not, unless mean is 0)."""
    pixels = (tensor.double() * torch.tensor(std, dtype=torch.float64).view(1, -1, 1, 1)
              + torch.tensor(mean, dtype=torch.float64).view(1, -1, 1, 1)) * 255
    pixels = pixels[torch.isfinite(pixels)]
    return bool(((pixels - pixels.round()).abs() <= tol).all())


def load_run(path: str | os.PathLike, checkpoint: str = "best", device: str | None = None,
             threshold: float | None = None) -> LoadedRun:
    """A trained run, loaded from its directory alone (config.yaml, inference.json, the checkpoint,
    calibration.json): `checkpoint` best | last; `device` a name, e.g. "cpu", "cuda", "cuda:1", or a
    torch.device (None: CUDA when available; not an int); `threshold` a fixed rejection threshold on the run's
    open-set score instead of its calibrated one: a real number (int, float, numpy scalar; not a string).
    RunDirError for a missing or damaged run directory (also a file, or an `openlt export` bundle), for a run that
    another process is training (train.lock), for a run never evaluated without `threshold`, for an
    inference.json that does not fit the run's split_manifest.json or config.yaml, and for a
    calibration or fitted score of another checkpoint (the message names the `openlt eval` command that fits it);
    ConfigError for a bad threshold or device, and for a `path` or `checkpoint` that is not one (a checkpoint is
    'best', 'last' or the plain name of another file in checkpoints/, never a path out of it)."""
    if isinstance(path, bool) or not isinstance(path, (str, os.PathLike)):
        raise ConfigError(f"load_run: path must be a run directory (a str or os.PathLike), got "
                          f"{type(path).__name__} {path!r}")
    threshold = _threshold_argument(threshold)
    device = _device_argument(device)
    _check_checkpoint(checkpoint)
    # absolute once, here: a notebook's later os.chdir must not move the run (LoadedRun.path, evaluate())
    run = open_run(Path(path).absolute())
    run.check_not_training("load")  # its best checkpoint and calibration are still changing
    predictor = Predictor.load(run, checkpoint, threshold, device, options=("threshold", "device"))
    return LoadedRun(predictor, checkpoint, threshold)


def _threshold_argument(threshold: object) -> float | None:
    """load_run's `threshold` as a float: None, or a real number (int, float, numpy scalar; not a bool, not a
    string: the CLI's --threshold parses text, the API takes numbers). Finiteness and range are checked with the
    run's score (Rejector.fixed, check_threshold_range). ConfigError otherwise."""
    if threshold is None:
        return None
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real):
        raise ConfigError(f"threshold must be a number (e.g. 0.5) or None, got {type(threshold).__name__} "
                          f"{threshold!r}")
    return float(threshold)


def _device_argument(device: object) -> str | None:
    """load_run's `device` as a name: None (CUDA when available, else the CPU), a str ("cpu", "cuda", "cuda:1";
    checked by runtime.resolve_device) or a torch.device. ConfigError for anything else, e.g. an int (0 is not
    "cuda:0" here: give the name)."""
    if device is None or isinstance(device, torch.device):
        return None if device is None else str(device)
    if not isinstance(device, str) or not device.strip():
        raise ConfigError(f"device must be a device name such as 'cpu', 'cuda' or 'cuda:1' (or None: CUDA when "
                          f"available), got {type(device).__name__} {device!r}")
    return device


def _check_checkpoint(checkpoint: object) -> None:
    """ConfigError unless `checkpoint` is 'best', 'last' or one plain file name (without .safetensors) inside
    the run's checkpoints/: no path, no '..', nothing that leaves the run directory."""
    if checkpoint in ("best", "last"):
        return
    plain = (isinstance(checkpoint, str) and checkpoint not in ("", ".", "..") and "/" not in checkpoint
             and "\\" not in checkpoint and "\0" not in checkpoint and not checkpoint.startswith("."))
    if not plain:
        raise ConfigError(f"checkpoint must be 'best', 'last' or the plain name of a file in the run's "
                          f"checkpoints/ (without .safetensors), got {checkpoint!r}")
