"""`openlt export RUN OUT`: a run as a deployable bundle that needs neither the run directory nor its data.

OUT holds ``model.safetensors`` (the network's weights, state-dict names), ``openlt.json`` (classes, input,
the evaluation transform as data, the model settings to rebuild the network with openlt (resolved: ``small_input``
is the stem the network has, never null), the open-set score
with its options and fitted-state file, the rejection threshold and how it was chosen), ``open-score.safetensors``
for a fitted score (OpenMax's Weibull fits), and with ``--format torchscript | onnx`` the network traced /
exported as ``model.torchscript.pt`` / ``model.onnx``: input ``images`` (B, C, H, W) float32 (the transform's
output), outputs ``logits`` (B, K), ``feature`` (B, D) and, for OLTR's meta-embedding head, ``reachability``
(B,). The exported network is checked against the PyTorch model on a test batch before the bundle is kept
(ONNX: with onnxruntime when it is installed, the ``export`` extra).

openlt.json ``decoding`` states how openlt turns an image file into the transform's input (PIL's conversion to
``input.mode``, 16-bit and float scaling, alpha dropped, EXIF orientation not applied: openlt.data.datasets
:func:`~openlt.data.datasets.decoding`), so that a reader without openlt gives `openlt predict`'s answers for
16-bit and float images too (trial 10 D11); ``README.md`` in OUT says the same in words, with the steps.
``source.run`` is the run directory's absolute path.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import warnings
from importlib import metadata
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from openlt.config import to_dict
from openlt.data.build import SMALL_IMAGES
from openlt.data.datasets import decoding
from openlt.engine.checkpoint import recorded_amp, user_epoch
from openlt.engine.inference import (InferenceSpec, build_run_model, checkpoint_identity, inference_spec,
                                    saved_decision, saved_score)
from openlt.engine.run import Run
from openlt.engine.runtime import trained_config
from openlt.errors import ConfigError, OpenLTError, WriteError
from openlt.io import atomic_path, stale_temporaries, temp_prefix, unmakeable_folder, write_json, write_text
from openlt.openset import Rejector, save_score
from openlt.reporting.describe import threshold_text

_LOG = logging.getLogger(__name__)

FORMAT = "openlt-export/1"
FORMATS = ("safetensors", "torchscript", "onnx")
FILES = {"weights": "model.safetensors", "description": "openlt.json", "open_score": "open-score.safetensors",
         "torchscript": "model.torchscript.pt", "onnx": "model.onnx", "readme": "README.md"}
TOLERANCE = {"rtol": 1e-4, "atol": 1e-4}  # the exported network against PyTorch on the test batch
ONNX_OPSET = 17


class ExportNet(nn.Module):
    """An :class:`~openlt.models.model.OpenLTModel` with tensor outputs only, for tracing and ONNX: images
    (B, C, H, W) float32 -> the tuple of ``outputs`` ("logits" (B, K), "feature" (B, D), "reachability" (B,)
    where the head gives it)."""

    def __init__(self, model: nn.Module, outputs: tuple[str, ...]) -> None:
        super().__init__()
        self.model, self.outputs = model, outputs

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The model's outputs named in ``self.outputs``, in that order."""
        out = self.model(images)
        return tuple(out[name] for name in self.outputs)


def output_names(model: nn.Module, spec: InferenceSpec) -> tuple[str, ...]:
    """("logits", "feature") plus "reachability" when the model's head gives it (OLTR's meta-embedding)."""
    with torch.no_grad():
        out = model(torch.zeros(1, spec.in_chans, spec.image_size, spec.image_size))
    return ("logits", "feature") + (("reachability",) if "reachability" in out else ())


def test_batch(spec: InferenceSpec, n: int = 4, seed: int = 0) -> torch.Tensor:
    """A reproducible (n, C, H, W) float32 batch of standard-normal values (inputs on the transform's scale)."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, spec.in_chans, spec.image_size, spec.image_size, generator=generator)


def _max_differences(expected: tuple[torch.Tensor, ...], got, names: tuple[str, ...]) -> dict[str, float]:
    """{output name: max |expected - got|}; OpenLTError naming the output when one is off by more than TOLERANCE."""
    diffs = {}
    for name, want, have in zip(names, expected, got):
        have = torch.as_tensor(have).float()
        if have.shape != want.shape or not torch.allclose(have, want, **TOLERANCE):
            raise OpenLTError(f"the exported network's {name!r} differs from the PyTorch model's on the test batch "
                              f"(shape {tuple(have.shape)} vs {tuple(want.shape)}); the bundle is not kept")
        diffs[name] = float((have - want).abs().max()) if want.numel() else 0.0
    return diffs


def _torchscript(net: ExportNet, batch: torch.Tensor, path: Path) -> dict:
    """Trace `net` on `batch`, save it to `path`, load it back and compare it on another batch."""
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer notes on the shape checks that run in Python
        traced = torch.jit.trace(net, batch, check_trace=False)
    with atomic_path(path) as tmp:
        traced.save(str(tmp))
    other = batch.flip(0) * 0.5
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.load's note that TorchScript is deprecated
        got, want = torch.jit.load(str(path))(other), net(other)
    return {"checked_with": "torch.jit.load", "max_abs_diff": _max_differences(want, got, net.outputs)}


def _onnx(net: ExportNet, batch: torch.Tensor, path: Path) -> dict:
    """Export `net` to ONNX (opset ONNX_OPSET, dynamic batch size) and compare it with onnxruntime when that
    is installed (else the check is recorded as not done)."""
    names = net.outputs
    axes = {"images": {0: "batch"}, **{name: {0: "batch"} for name in names}}
    with atomic_path(path) as tmp, torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript-based exporter's deprecation note, tracer notes
        torch.onnx.export(net, (batch,), str(tmp), input_names=["images"], output_names=list(names),
                          dynamic_axes=axes, opset_version=ONNX_OPSET, dynamo=False)
    try:
        import onnxruntime
    except ImportError:
        return {"checked_with": None, "note": "onnxruntime is not installed (pip install openlt[export])"}
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    other = batch.flip(0)[:3] * 0.5  # another batch size than the traced one
    got = session.run(list(names), {"images": other.numpy()})
    with torch.no_grad():
        want = net(other)
    return {"checked_with": f"onnxruntime {onnxruntime.__version__}", "max_abs_diff": _max_differences(want, got, names)}


def _bundle_problem(out: Path, force: bool) -> str | None:
    """Why OUT cannot take the bundle, or None: it must be new, an empty folder, or (with `force`) a folder that
    holds nothing but a previous bundle's files (:data:`FILES`), so that --force never deletes anything else.
    A symbolic link is refused (also without `force`): the bundle is renamed into place, which would replace the
    link with a new folder and leave the folder it points to with its old bundle."""
    if out.is_symlink():
        return (f"export folder {out} is a symbolic link to {os.path.realpath(out)}: export to "
                f"{os.path.realpath(out)} itself, or remove the link")
    if out.exists() and not out.is_dir():
        return f"export folder {out} is a file"
    problem = None if out.exists() else unmakeable_folder(out)
    if problem:
        return f"export folder {out}: {problem}"
    if not out.is_dir() or not any(out.iterdir()):
        return None
    others = sorted(p.name for p in out.iterdir() if p.name not in FILES.values() or not p.is_file())
    if others:  # said first: --force would not help
        return (f"export folder {out} holds other files than an openlt bundle ({', '.join(others[:3])}"
                f"{', ...' if len(others) > 3 else ''}); --force replaces a bundle only: choose another folder")
    if not force:
        return f"export folder {out} holds an openlt bundle; pass --force to replace it"
    return None


def _staging(out: Path) -> Path:
    """A new empty hidden folder beside OUT (``.NAME.PID-HOST.XXXX.tmp``, :func:`openlt.io.temp_prefix`) that the
    bundle is written into. First, the staging folders of earlier exports to OUT whose process is dead (a SIGKILL
    mid-export) are removed; never one a live process is writing."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        for stale in stale_temporaries(out.parent, out.name):
            shutil.rmtree(stale, ignore_errors=True)
        return Path(tempfile.mkdtemp(prefix=temp_prefix(out.name), suffix=".tmp", dir=out.parent))
    except OSError as exc:
        raise WriteError(f"cannot create the export folder {out}: {exc.strerror or exc}") from None


def _publish(stage: Path, out: Path) -> None:
    """Put the complete bundle `stage` at OUT: renamed into place, the previous bundle (if any) moved aside first
    and removed after, so that OUT holds exactly the new bundle's files (never a mix of two bundles)."""
    old = None
    try:
        if out.is_dir():
            old = Path(tempfile.mkdtemp(prefix=temp_prefix(out.name), suffix=".old", dir=out.parent))
            out.rename(old / "bundle")
        stage.rename(out)
    except OSError as exc:
        if old is not None and not out.exists():
            (old / "bundle").rename(out)  # put the previous bundle back
        raise WriteError(f"cannot write the export folder {out}: {exc.strerror or exc}") from None
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    os.chmod(out, 0o777 & ~_umask())  # mkdtemp made it private; a bundle is shared like any folder


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def resolved_small_input(cfg, spec: InferenceSpec) -> bool:
    """Whether the exported network has the small-input stem: model.small_input when set, else what `build_model`
    resolves null to (images of at most :data:`~openlt.data.build.SMALL_IMAGES` px), never null in openlt.json."""
    if cfg.model.small_input is not None:
        return bool(cfg.model.small_input)
    return spec.image_size <= SMALL_IMAGES


def _description(run: Run, cfg, spec: InferenceSpec, state: dict, checkpoint: str, names: tuple[str, ...],
                 scorer, rejector: Rejector | None) -> dict:
    """The content of openlt.json, without the files and checks (added by :func:`export_run`)."""
    return {
        "format": FORMAT, "openlt_version": _version(),
        "source": {"run": os.path.abspath(run.path), "checkpoint": checkpoint, "sha256": state.get("sha256"),
                   "epoch": user_epoch(state)},
        "classes": list(spec.classes), "open_classes": list(spec.open_classes),
        "input": {"name": "images", "shape": [None, spec.in_chans, spec.image_size, spec.image_size],
                  "dtype": "float32", "layout": "NCHW", "mode": spec.mode},
        "decoding": decoding(spec.mode),  # file -> PIL image of input.mode, before the transform
        "transform": spec.transform,
        "outputs": {name: {"logits": "(B, K) float32", "feature": "(B, D) float32",
                           "reachability": "(B,) float32"}[name] for name in names},
        "model": {**to_dict(cfg.model), "pretrained": None, "small_input": resolved_small_input(cfg, spec),
                  "num_classes": spec.num_classes, "in_chans": spec.in_chans, "image_size": spec.image_size},
        "open_score": {"name": scorer.name, "options": scorer.options(), "higher_is_known": True,
                       "state_file": FILES["open_score"] if scorer.requires_fit else None},
        # None: the run's evaluation rejects nothing (a closed-set run without validation)
        "threshold": None if rejector is None else {"value": rejector.threshold, "source": rejector.source,
                                                    "rule": "rejected (unknown) when open_score < value"},
    }


def export_run(run: Run, out: str | Path, fmt: str = "safetensors", checkpoint: str = "best",
               force: bool = False, threshold: float | None = None) -> dict:
    """Write the bundle of `run`'s `checkpoint` into the folder `out` (see the module docstring); `fmt`
    safetensors (weights and description only) | torchscript | onnx; `threshold` a fixed rejection threshold
    instead of the run's calibration.json. The bundle is written into a hidden sibling folder and renamed into
    place when complete: OUT then holds exactly its files (with `force`, a previous bundle is replaced whole).
    Returns the description written to openlt.json (its "files" name what OUT holds, "checks" the exported
    network's largest differences from the PyTorch model).

    ConfigError for an unknown format, a non-empty OUT without `force`, or an OUT holding other files than a
    bundle; RunDirError / NotFittedError for what the run lacks: a run never evaluated without `threshold` (as
    `openlt predict`), a calibration or fitted score of another checkpoint; OpenLTError when the exported
    network's outputs differ from the model's (nothing is kept then)."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}; known: {', '.join(FORMATS)}")
    out = Path(out)
    problem = _bundle_problem(out, force)
    if problem:
        raise ConfigError(problem)
    # config.yaml as the run was trained (before any work); a decoupled run's stage-1 checkpoint is not read: the
    # run's own checkpoint holds its whole network (stage-1 body and head)
    cfg = trained_config(run, checkpoint, "export", stage1=False)
    using = checkpoint_identity(run, checkpoint)
    rejector = saved_decision(run, cfg, using, threshold)
    scorer = saved_score(run, cfg.eval.open_score if rejector is None else rejector.score, cfg, using)
    spec = inference_spec(run, cfg)
    cfg.train.channels_last = False  # the exported graph takes plain contiguous NCHW
    model, state = build_run_model(run, cfg, spec, checkpoint, torch.device("cpu"))
    names = output_names(model, spec)
    stage = _staging(out)
    try:
        description = _description(run, cfg, spec, {**state, **using}, checkpoint, names, scorer, rejector)
        description["amp"] = bundle_amp(run, state, rejector)
        description["files"], description["checks"] = _write_files(stage, model, names, spec, scorer, fmt)
        description["files"]["readme"] = FILES["readme"]
        write_json(stage / FILES["description"], description)
        write_text(stage / FILES["readme"], readme(description))
        problem = _bundle_problem(out, force)  # again: another export may have written OUT meanwhile
        if problem:
            raise ConfigError(f"{problem} (written by another process while this export ran)")
        _publish(stage, out)
    finally:
        shutil.rmtree(stage, ignore_errors=True)  # gone already once published
    return description


def bundle_amp(run: Run, state: dict, rejector: Rejector | None) -> dict:
    """openlt.json "amp" (issue 14 D6): the precision the bundle's network computes in ("network": "none", float32:
    the exported graph has no autocast), the one the run trained in ("trained": its checkpoint's record, None for
    an older run) and the one its threshold was chosen in ("threshold": calibration.json's fitted_on "amp"; None
    for a fixed threshold or an older file). A threshold chosen in another precision than float32 is noted: the
    bundle's scores differ from those it was chosen on at rounding level (up to ~1e-3 in bf16)."""
    fitted = (rejector.fitted_on or {}).get("amp") if rejector is not None and rejector.calibrated else None
    if fitted not in (None, "none"):
        _LOG.warning("the bundle's network computes in float32, and %s's threshold was chosen on scores "
                     "computed in %s (openlt.json \"amp\" records both): near the threshold a decision may differ "
                     "from `openlt predict %s`'s", run.calibration_file.name, fitted, run.path)
    return {"network": "none", "trained": recorded_amp(state), "threshold": fitted}


def readme(bundle: dict) -> str:
    """The bundle's README.md: how to label an image with it without openlt, from its openlt.json `bundle`
    (decoding, transform, network, threshold), in words."""
    t, d = bundle["transform"], bundle["decoding"]
    network = ", ".join(f"{FILES[k]}" for k in ("onnx", "torchscript") if k in bundle["files"]) or FILES["weights"]
    rule = ("nothing is rejected (no threshold)" if bundle["threshold"] is None else
            f"{bundle['threshold']['rule']} ({threshold_text(bundle['threshold']['value'])}, "
            f"{bundle['threshold']['source']})")  # never rounded: 0.99999475 read 0.999995 with :g
    steps = [
        f"Decode the file as openlt does (openlt.json `decoding`): {d['reader']}.",
        *(f"{key.replace('_', ' ').capitalize()}: {d[key]}." for key in ("sixteen_bit", "float", "alpha")),
        f"Channels {d['channels']}.",
        f"EXIF orientation: {d['exif_orientation']}; to give `openlt predict`'s answers, do not apply it (rotate "
        f"the files themselves, e.g. with PIL.ImageOps.exif_transpose, for training and prediction alike).",
        f"Transform (openlt.json `transform`, family {t['family']}): resize to {t['resize']} ("
        f"{'the shorter side, aspect kept' if isinstance(t['resize'], int) else '[H, W] exactly'}; bilinear, "
        f"antialiased), center crop {t['crop'] or 'none'}, uint8 / 255 to float32 in [0, 1], then (x - mean) / std "
        f"per channel with mean {t['mean']} and std {t['std']}.",
        f"Run the network ({network}) on the (B, {bundle['input']['shape'][1]}, {bundle['input']['shape'][2]}, "
        f"{bundle['input']['shape'][3]}) float32 batch `images`: outputs {', '.join(bundle['outputs'])}."
        + ("" if network != FILES["weights"] else f" {FILES['weights']} holds the weights alone (openlt.json "
           f"`model` names the architecture): to run the network without openlt, export with --format onnx or "
           f"torchscript."),
        f"Open-set score {bundle['open_score']['name']} (higher = more known); {rule}. The label is the class "
        f"(openlt.json `classes`, in logit order) of the largest logit.",
    ]
    return (f"# openlt export bundle ({bundle['format']})\n\nFrom the run {bundle['source']['run']} (checkpoint "
            f"{bundle['source']['checkpoint']}, epoch {bundle['source']['epoch']}), {len(bundle['classes'])} known "
            f"classes. openlt.json describes everything as data; to label an image as `openlt predict` does:\n\n"
            + "".join(f"{i}. {step}\n" for i, step in enumerate(steps, 1)))


def _version() -> str | None:
    """The installed openlt's version (None when it runs from a source tree that is not installed)."""
    try:
        return metadata.version("openlt")
    except metadata.PackageNotFoundError:
        return None


def _write_files(out: Path, model: nn.Module, names: tuple[str, ...], spec: InferenceSpec, scorer,
                 fmt: str) -> tuple[dict, dict]:
    """The weights, the fitted score's state and the exported network; returns (files, checks)."""
    files = {"weights": FILES["weights"]}
    tensors = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()}
    with atomic_path(out / FILES["weights"]) as tmp:
        save_file(tensors, str(tmp), metadata={"format": FORMAT})
    if scorer.requires_fit:
        save_score(out / FILES["open_score"], scorer)
        files["open_score"] = FILES["open_score"]
    checks = {}
    if fmt != "safetensors":
        net = ExportNet(model, names).eval()
        writer = _torchscript if fmt == "torchscript" else _onnx
        checks[fmt] = writer(net, test_batch(spec), out / FILES[fmt])
        files[fmt] = FILES[fmt]
    return files, checks
