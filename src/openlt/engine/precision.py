"""Mixed precision (`train.amp`): auto | none | bf16 | fp16, through `torch.autocast`.

* auto (the default) is bf16 on a CUDA device that supports it and none (float32) elsewhere: on an H200,
  ResNet-10 at 224 px trained 2.19x as fast as float32 in NCHW with bf16 and channels-last (1.71x with
  channels-last alone), and 3 seeds of the embedded benchmark's 48-epoch joint model reached the same test top-1
  (bf16 75.6 +- 1.6, float32 75.3 +- 1.1; docs/scale.md "Mixed precision"); CPUs without bfloat16 units run bf16
  slower than float32, so the CPU keeps float32. It is resolved where it is used (:func:`resolve_amp`), so a
  run's config.yaml keeps `auto` and the same run evaluates in float32 on a CPU;

* bf16 runs on the CPU and on CUDA devices that support it; no loss scaling is needed (bf16 has float32's range);
* fp16 is CUDA-only and comes with a `torch.amp.GradScaler`, whose state is saved in checkpoints so that a
  resumed run continues with the same loss scale.

Heads and losses that need full precision (the cosine classifier, the centroid distances) already leave
autocast for their own arithmetic, so logits and losses stay float32.
"""

from __future__ import annotations

import contextlib
import functools
from typing import ContextManager

import torch

from openlt.errors import ConfigError

AMP_MODES = ("auto", "none", "bf16", "fp16")
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_amp(amp: str, device: torch.device) -> str:
    """`amp` with `auto` replaced by what it means on `device`: bf16 on a CUDA device that supports bfloat16,
    none anywhere else (module docstring)."""
    if amp != "auto":
        return amp
    return "bf16" if device.type == "cuda" and _cuda_has_bf16() else "none"


@functools.cache
def _cuda_has_bf16() -> bool:
    """torch.cuda.is_bf16_supported(), asked once per process: autocast resolves `auto` on every training step."""
    return torch.cuda.is_bf16_supported()


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
    """The autocast context of `amp` on `device` (a no-op context for `none`, and for `auto` off CUDA)."""
    amp = resolve_amp(amp, device)
    if amp == "none":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=DTYPES[amp])


def grad_scaler(amp: str, device: torch.device) -> torch.amp.GradScaler | None:
    """A GradScaler for fp16 (its gradients underflow without one); None otherwise (`auto` never means fp16)."""
    if amp != "fp16":
        return None
    return torch.amp.GradScaler(device.type)


def inference_amp(amp: str, device: torch.device) -> str:
    """The precision evaluation runs in: the training one where this device can run it (a run trained with fp16
    on a GPU and evaluated on the CPU falls back to float32; `auto` resolved for this device), never an error."""
    try:
        return check_amp(amp, device)
    except ConfigError:
        return "none"
