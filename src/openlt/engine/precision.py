"""Mixed precision (`train.amp`): none | bf16 | fp16, through `torch.autocast`.

* bf16 runs on the CPU and on CUDA devices that support it; no loss scaling is needed (bf16 has float32's range);
* fp16 is CUDA-only and comes with a `torch.amp.GradScaler`, whose state is saved in checkpoints so that a
  resumed run continues with the same loss scale.

Heads and losses that need full precision (the cosine classifier, the centroid distances) already leave
autocast for their own arithmetic, so logits and losses stay float32.
"""

from __future__ import annotations

import contextlib
from typing import ContextManager

import torch

from openlt.errors import ConfigError

AMP_MODES = ("none", "bf16", "fp16")
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def check_amp(amp: str, device: torch.device) -> str:
    """`amp` when this device can run it, else a ConfigError that says what to use instead."""
    if amp not in AMP_MODES:
        raise ConfigError(f"unknown train.amp {amp!r}; known: {', '.join(AMP_MODES)}")
    if amp == "fp16" and device.type != "cuda":
        raise ConfigError(f"train.amp=fp16 needs a CUDA device (float16 autocast with loss scaling), and this run "
                          f"is on {device.type}; use train.amp=bf16 on the CPU, or train.amp=none")
    if amp == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError("train.amp=bf16: this GPU does not support bfloat16; use train.amp=fp16")
    return amp


def autocast(amp: str, device: torch.device) -> ContextManager:
    """The autocast context of `amp` on `device` (a no-op context for `none`)."""
    if amp == "none":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=DTYPES[amp])


def grad_scaler(amp: str, device: torch.device) -> torch.amp.GradScaler | None:
    """A GradScaler for fp16 (its gradients underflow without one); None otherwise."""
    if amp != "fp16":
        return None
    return torch.amp.GradScaler(device.type)


def inference_amp(amp: str, device: torch.device) -> str:
    """The precision evaluation runs in: the training one where this device can run it (a run trained with fp16
    on a GPU and evaluated on the CPU falls back to float32), never an error."""
    try:
        return check_amp(amp, device)
    except ConfigError:
        return "none"
