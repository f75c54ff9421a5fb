"""Checkpoints as one safetensors file: model and optimizer tensors, the rest as JSON in its metadata.

Loading runs no pickle code, so a checkpoint from elsewhere cannot execute anything; writes are atomic.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from openlt.config import TRAINED_AMPS
from openlt.errors import RunDirError
from openlt.io import atomic_path, safetensors_header

FORMAT = "openlt-checkpoint/1"


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for idx, slots in state["state"].items():
        for key, value in slots.items():
            if torch.is_tensor(value):
                tensors[f"optim.{idx}.{key}"] = value
            else:
                scalars[f"{idx}.{key}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def save_checkpoint(path: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer | None = None,
                    state: dict[str, Any] | None = None, *, parents: bool = True) -> None:
    """Write ``model``'s state dict (keys prefixed ``model.``), and ``optimizer``'s state when given, as one
    safetensors file at ``path``; ``state`` (JSON-ready: epoch, best metric, ...) goes into its metadata.

    Tensors are stored as contiguous CPU copies; the write is atomic (WriteError when the file cannot be
    written, the previous one kept). `parents` False: the checkpoint's folder is created only inside an existing
    directory (:func:`openlt.io.atomic_path`), so a run directory moved away is never recreated.
    """
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    meta: dict[str, Any] = {"format": FORMAT, "state": state or {}}
    if optimizer is not None:
        optim_tensors, meta["optimizer"] = _optimizer_tensors(optimizer)
        tensors.update(optim_tensors)
    # safetensors refuses shared or non-contiguous storage: give it plain CPU copies.
    tensors = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in tensors.items()}
    with atomic_path(path, parents=parents) as tmp:
        save_file(tensors, str(tmp), metadata={"openlt": json.dumps(meta)})


def _looks_like_pickle(path: Path) -> bool:
    """torch.save writes a zip archive (PK..) or, in its legacy format, a raw pickle (protocol 2+: 0x80 n).
    A safetensors file starts with an 8-byte header length and then its JSON header ('{')."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(9)
    except OSError:
        return False
    if head[8:9] == b"{":
        return False
    return head.startswith(b"PK\x03\x04") or (len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5)


def _open_checked(path: Path) -> None:
    """RunDirError for a missing checkpoint or a pickle under a checkpoint's name."""
    if not path.is_file():
        raise RunDirError(f"checkpoint not found: {path}")
    if _looks_like_pickle(path):
        raise RunDirError(f"checkpoint {path} is a torch.save / pickle file, not an openlt safetensors checkpoint "
                          "(pickles are never loaded: they can run code)")


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """Return (tensors, metadata); a missing, corrupt or foreign file, or one whose openlt metadata is missing or
    malformed (:func:`metadata_problem`), is a RunDirError naming it."""
    path = Path(path)
    _open_checked(path)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as fh:
            metadata = fh.metadata() or {}
            tensors = {key: fh.get_tensor(key) for key in fh.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise RunDirError(f"checkpoint {path} is corrupt or not a safetensors file ({exc})") from None
    return tensors, _parse_metadata(path, metadata, tensors)


def checkpoint_state(path: str | Path) -> dict:
    """The `state` a checkpoint was saved with (epoch, best score, the epoch's log record, ...), read from its
    header alone (no tensor is loaded); RunDirError as :func:`read_checkpoint`."""
    path = Path(path)
    _open_checked(path)
    try:
        metadata, keys = safetensors_header(path)
    except (OSError, ValueError, RuntimeError) as exc:
        raise RunDirError(f"checkpoint {path} is corrupt or not a safetensors file ({exc})") from None
    return _parse_metadata(path, metadata, dict.fromkeys(keys))["state"]


def recorded_amp(state: dict) -> str | None:
    """The precision (none | bf16 | fp16: train.amp with `auto` resolved) a checkpoint's `state` records that its
    run trained in, or None for a checkpoint written before openlt recorded it (`auto` then meant float32 on every
    CPU: precision.legacy_auto), or a decoupled stage 2's (it trains no network: its features are its stage-1
    run's). Checked by :func:`metadata_problem`."""
    return state.get("amp")


def user_epoch(state: dict) -> int | None:
    """The epoch of a checkpoint's `state` as the user reads it everywhere (the training log, report.md,
    metrics.json, an export's openlt.json): 1-based; the checkpoint's own counter counts from 0. None without one."""
    epoch = state.get("epoch")
    return epoch + 1 if isinstance(epoch, int) and not isinstance(epoch, bool) else None


def _parse_metadata(path: Path, metadata: dict, tensors: dict) -> dict:
    try:
        meta = json.loads(metadata["openlt"])
        assert isinstance(meta, dict) and meta.get("format") == FORMAT and isinstance(meta.get("state"), dict)
    except (KeyError, json.JSONDecodeError, AssertionError):
        raise RunDirError(f"checkpoint {path} was not written by openlt (no {FORMAT} metadata)") from None
    problem = metadata_problem(meta, tensors)
    if problem:
        raise RunDirError(f"checkpoint {path} has malformed openlt metadata: {problem}")
    return meta


def metadata_problem(meta: dict, tensors: dict) -> str | None:
    """What is wrong with a checkpoint's parsed openlt metadata (`tensors`: its tensor names), or None.

    state: epoch an integer >= 0, best_val / val_overall null or a number, grad_scaler and record objects (a
    record with the 1-based epoch after `epoch`), amp one of :data:`TRAINED_AMPS` when present; optimizer: param_groups a list of objects, scalars keyed
    "INDEX.SLOT"; tensor names model.* or optim.INDEX.SLOT."""
    state = meta["state"]
    epoch = state.get("epoch", 0)
    if type(epoch) is not int or epoch < 0:
        return f"state.epoch must be an integer >= 0, got {epoch!r}"
    for key in ("best_val", "val_overall"):
        value = state.get(key)
        if value is not None and (type(value) not in (int, float)):
            return f"state.{key} must be null or a number, got {value!r}"
    for key in ("grad_scaler", "record"):
        if key in state and not isinstance(state[key], dict):
            return f"state.{key} must be an object"
    amp = state.get("amp")  # the precision the run trained in (recorded_amp)
    if "amp" in state and amp not in TRAINED_AMPS:
        return f"state.amp must be one of {', '.join(TRAINED_AMPS)}, got {amp!r}"
    stage1 = state.get("stage1")  # a decoupled stage 2's stage-1 checkpoint (stage1_record.stage1_record)
    if stage1 is not None and not (isinstance(stage1, dict) and isinstance(stage1.get("sha256"), str)
                                   and stage1.get("checkpoint") in ("best", "last")):
        return "state.stage1 must be an object with checkpoint (best or last) and sha256"
    if "record" in state and state["record"].get("epoch") != epoch + 1:
        return f"state.record is of epoch {state['record'].get('epoch')!r}, not {epoch + 1}"
    optim_keys = [k for k in tensors if not k.startswith("model.")]
    if "optimizer" in meta:
        opt = meta["optimizer"]
        if not (isinstance(opt, dict) and isinstance(opt.get("param_groups"), list)
                and all(isinstance(g, dict) and isinstance(g.get("params"), list) for g in opt["param_groups"])
                and isinstance(opt.get("scalars"), dict)):
            return "optimizer must hold param_groups (a list of objects with params) and scalars (an object)"
        optim_keys += [f"optim.{k}" for k in opt["scalars"]]
    bad = [k for k in optim_keys if not re.fullmatch(r"optim\.\d+\.\w+", k)]
    return f"unexpected entry {bad[0]!r} (model.* or optim.INDEX.SLOT)" if bad else None


def load_checkpoint(path: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer | None = None) -> dict:
    """Load weights (strictly: a checkpoint of another architecture is an error) and optimizer state."""
    tensors, meta = read_checkpoint(path)
    weights = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    expected = model.state_dict()
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    wrong = sorted(k for k in set(expected) & set(weights) if expected[k].shape != weights[k].shape)
    if missing or unexpected or wrong:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", wrong)):
            if keys:
                parts.append(f"{label}: {', '.join(keys[:5])}{' ...' if len(keys) > 5 else ''}")
        raise RunDirError(f"checkpoint {path} does not match the model of this config ({'; '.join(parts)})")
    model.load_state_dict(weights)
    if optimizer is not None:
        if "optimizer" not in meta:
            raise RunDirError(f"checkpoint {path} has no optimizer state to resume from")
        state: dict = {}
        for key, value in tensors.items():
            if key.startswith("optim."):
                _, idx, slot = key.split(".", 2)
                state.setdefault(int(idx), {})[slot] = value
        for key, value in meta["optimizer"]["scalars"].items():
            idx, slot = key.split(".", 1)
            state.setdefault(int(idx), {})[slot] = value
        try:
            optimizer.load_state_dict({"state": state, "param_groups": meta["optimizer"]["param_groups"]})
        except (ValueError, KeyError, TypeError, RuntimeError) as exc:
            raise RunDirError(f"checkpoint {path} has optimizer state that does not fit this config's optimizer "
                              f"({_first_line(exc)})") from None
    return meta["state"]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
