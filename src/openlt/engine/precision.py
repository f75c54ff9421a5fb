"""Mixed precision (`train.amp`): auto | none | bf16 | fp16, through `torch.autocast`.

* auto (the default) is bf16 on a device with native bfloat16 arithmetic -- a CUDA device that supports it, a
  CPU with avx512_bf16 or AMX -- and none (float32) elsewhere. On an H200, ResNet-10 at 224 px trained 2.19x as
  fast as float32 in NCHW with bf16 and channels-last (1.71x with channels-last alone); on a CPU with
  avx512_bf16 (one thread, `scripts/bench_cpu_step.py`) 3.45x (1.47x), and 2.61x (1.56x) at the embedded
  benchmark's 28 px; 3 seeds of the embedded benchmark's 48-epoch joint model reached the same test top-1 (bf16
  75.6 +- 1.6, float32 75.3 +- 1.1; docs/scale.md "Mixed precision"). A CPU without bfloat16 units emulates it,
  so it keeps float32.
* A run records the precision it trained in (:func:`resolve_amp` when it started) in its checkpoints' state
  ("amp"; checkpoint.recorded_amp); config.yaml keeps `auto`. `--resume` continues in the recorded precision
  (:func:`run_amp`), and eval / predict / feature extraction / identify run in it where the device has it
  (:func:`inference_amp`), so a run's numbers do not depend on the machine that reads it. A checkpoint written
  before openlt recorded it (auto was then float32 on every CPU) keeps that meaning: `auto` is float32 on any
  CPU for such a run (:func:`legacy_auto`), also when it is resumed or matched by `openlt bench`.
* bf16 runs on the CPU and on CUDA devices that support it; no loss scaling is needed (bf16 has float32's range);
* fp16 is CUDA-only and comes with a `torch.amp.GradScaler`, whose state is saved in checkpoints so that a
  resumed run continues with the same loss scale.

Heads and losses that need full precision (the cosine classifier, the centroid distances) already leave
autocast for their own arithmetic, so logits and losses stay float32.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from typing import ContextManager

import torch

from openlt.config import TRAINED_AMPS, Config, explicit_keys
from openlt.errors import ConfigError

AMP_MODES = ("auto", *TRAINED_AMPS)
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def precision_name(amp: str) -> str:
    """A resolved precision in words for messages: "float32" for "none", "bf16 autocast" / "fp16 autocast"."""
    return "float32" if amp == "none" else f"{amp} autocast"


def resolve_amp(amp: str, device: torch.device) -> str:
    """`amp` with `auto` replaced by what it means for a new run on `device`: bf16 where the device has native
    bfloat16 arithmetic (:func:`native_bf16`), none anywhere else (module docstring)."""
    if amp != "auto":
        return amp
    return "bf16" if native_bf16(device) else "none"


def legacy_auto(device: torch.device) -> str:
    """What `auto` meant before runs recorded their precision: bf16 on a CUDA device that supports bfloat16,
    none (float32) anywhere else, a CPU with bfloat16 units too. A run whose checkpoints record no precision was
    trained (and evaluated) that way, so `auto` keeps this meaning for it (:func:`run_amp`)."""
    return "bf16" if device.type == "cuda" and _cuda_has_bf16() else "none"


def run_amp(amp: str, device: torch.device | Callable[[], torch.device], trained: str | None) -> str:
    """The precision an existing run trains in on `device` (`--resume`; `openlt bench` compares it): `amp`
    (train.amp) when explicit; for `auto`, `trained` (the precision its checkpoint records,
    checkpoint.recorded_amp), or :func:`legacy_auto` when it records none (a checkpoint written before openlt
    recorded it: auto was float32 on every CPU then). `device` may be a function giving it, called only for that
    last case (a bench compares configs whose device this machine may lack: resolving it would raise)."""
    if amp != "auto":
        return amp
    if trained is not None:
        return trained
    return legacy_auto(device() if callable(device) else device)


def native_bf16(device: torch.device) -> bool:
    """Whether `device` has native bfloat16 arithmetic: a CUDA device that supports it, a CPU with avx512_bf16 or
    AMX (others emulate bfloat16, slower than float32)."""
    if device.type == "cuda":
        return _cuda_has_bf16()
    return device.type == "cpu" and _cpu_has_bf16()


@functools.cache
def _cuda_has_bf16() -> bool:
    """torch.cuda.is_bf16_supported(), asked once per process: autocast resolves `auto` on every training step."""
    return torch.cuda.is_bf16_supported()


@functools.cache
def _cpu_has_bf16() -> bool:
    """Whether this CPU has avx512_bf16 or AMX (oneDNN's native bfloat16 kernels), asked once per process; False
    when this torch cannot tell (torch.cpu._is_avx512_bf16_supported / _is_amx_tile_supported are private)."""
    checks = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    try:
        return any(bool(check()) for check in checks if check is not None)
    except (RuntimeError, AttributeError):
        return False


def check_amp(amp: str, device: torch.device) -> str:
    """`amp` (`auto` resolved) when this device can run it, else a ConfigError that says what to use instead."""
    if amp not in AMP_MODES:
        raise ConfigError(f"unknown train.amp {amp!r}; known: {', '.join(AMP_MODES)}")
    amp = resolve_amp(amp, device)
    if amp == "fp16" and device.type != "cuda":
        raise ConfigError(f"train.amp=fp16 needs a CUDA device (float16 autocast with loss scaling), and this run "
                          f"is on {device.type}; use train.amp=bf16 on the CPU, or train.amp=none")
    if amp == "bf16" and device.type == "cuda" and not _cuda_has_bf16():
        raise ConfigError("train.amp=bf16: this GPU does not support bfloat16; use train.amp=fp16")
    return amp


def autocast(amp: str, device: torch.device) -> ContextManager:
    """The autocast context of `amp` on `device` (a no-op context for `none`, and for `auto` where it means none)."""
    amp = resolve_amp(amp, device)
    if amp == "none":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=DTYPES[amp])


def grad_scaler(amp: str, device: torch.device) -> torch.amp.GradScaler | None:
    """A GradScaler for fp16 (its gradients underflow without one); None otherwise (`auto` never means fp16)."""
    if amp != "fp16":
        return None
    return torch.amp.GradScaler(device.type)


def inference_amp(amp: str, device: torch.device, trained: str | None = None) -> str:
    """The precision evaluation of a run runs in (eval, predict, feature extraction, identify): the training one
    where this device can run it (a run trained with fp16 on a GPU and evaluated on the CPU falls back to float32),
    never an error. For `auto`: `trained` (what the run's checkpoint records, checkpoint.recorded_amp) -- bf16
    only where the device has native bfloat16 arithmetic, else float32 as `auto` means there -- or, when the
    checkpoint records none (written before openlt recorded it), :func:`legacy_auto`, so that such a run's
    numbers do not change: float32 on any CPU."""
    if amp == "auto" and trained == "bf16" and not native_bf16(device):
        return "none"  # `auto` where this device emulates bfloat16
    try:
        return check_amp(run_amp(amp, device, trained), device)
    except ConfigError:
        return "none"


def check_amp_override(cfg: Config, device: torch.device) -> None:
    """The boundary check of a `train.amp=` override of a command that evaluates a trained run (`openlt eval`,
    `identify`): the override is refused as `openlt train` refuses it (:func:`check_amp`: fp16 on a CPU, bf16 on a
    GPU without it), never silently replaced by float32. `cfg`: the run's config with the command's overrides
    applied (`config.explicit_keys` names them); nothing is checked without a `train.amp=` override (the run's own
    config.yaml value falls back as :func:`inference_amp` says: a run trained with fp16 on a GPU is evaluated in
    float32 on a CPU)."""
    if "train.amp" in explicit_keys(cfg):
        check_amp(cfg.train.amp, device)
