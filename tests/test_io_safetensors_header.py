"""io.safetensors_header: the one torch-free reader of a safetensors file's header, used by the engine
(checkpoint.checkpoint_state: a RunDirError naming the file) and by reporting (summary's recorded precision: None)."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
import torch
from safetensors.torch import save_file

from openlt.engine.checkpoint import checkpoint_state
from openlt.errors import RunDirError
from openlt.io import safetensors_header
from openlt.reporting.summary import recorded_run_amp

STATE = {"epoch": 0, "amp": "bf16"}


def _checkpoint(path, metadata=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"model.w": torch.zeros(3, dtype=torch.bfloat16), "model.b": torch.ones(2)}, str(path),
              metadata=metadata)
    return path


def _openlt(path):
    return _checkpoint(path, {"openlt": json.dumps({"format": "openlt-checkpoint/1", "state": STATE})})


def test_metadata_and_tensor_names_are_read_from_the_header(tmp_path):
    metadata, keys = safetensors_header(_openlt(tmp_path / "c.safetensors"))
    assert json.loads(metadata["openlt"])["state"] == STATE and sorted(keys) == ["model.b", "model.w"]
    assert safetensors_header(_checkpoint(tmp_path / "bare.safetensors")) == ({}, ["model.b", "model.w"])


def test_a_file_that_is_not_safetensors_is_a_value_error_in_safetensors_words_and_a_missing_one_os_error(tmp_path):
    (tmp_path / "junk").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(ValueError, match="^Error while deserializing header: header too large$"):
        safetensors_header(tmp_path / "junk")
    cut = _openlt(tmp_path / "cut.safetensors")
    cut.write_bytes(cut.read_bytes()[:-4])
    with pytest.raises(ValueError, match="^Error while deserializing header: incomplete metadata, file not fully "
                                         "covered$"):
        safetensors_header(cut)
    with pytest.raises(FileNotFoundError):
        safetensors_header(tmp_path / "missing.safetensors")


def test_it_needs_no_torch(tmp_path):
    path = _openlt(tmp_path / "c.safetensors")
    code = ("import sys; sys.modules['torch'] = None\n"
            "from openlt.io import safetensors_header\n"
            f"print(sorted(safetensors_header({str(path)!r})[1]))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout == "['model.b', 'model.w']\n", done.stderr


def test_the_engine_refuses_a_corrupt_header_naming_the_file_and_reporting_reads_none(tmp_path):
    run = tmp_path / "run"
    last = _openlt(run / "checkpoints" / "last.safetensors")
    assert checkpoint_state(last) == STATE and recorded_run_amp(run) == "bf16"
    last.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(RunDirError, match=f"^checkpoint {re.escape(str(last))} is corrupt or not a safetensors file "
                                          r"\(Error while deserializing header: header too large\)$"):
        checkpoint_state(last)
    assert recorded_run_amp(run) is None
    _openlt(run / "checkpoints" / "best.safetensors")  # the last one unreadable: the best one's record
    assert recorded_run_amp(run) == "bf16"
