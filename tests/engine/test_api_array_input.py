"""LoadedRun.predict / features on an array or tensor of images (engine/api.py `_as_batch`): a numpy array is
described as a numpy array (its dtype and shape as given), never as a torch tensor (trial 14b D7b:
`run.predict(np.zeros((12, 12, 3), np.uint8))` said "got torch.uint8 (12, 12, 3)"); an (H, W, C) picture gets a
hint; an array of text / objects and a view with negative strides are not torch's raw errors."""

import re

import numpy as np
import pytest
import torch

from openlt.engine.api import _as_batch
from openlt.errors import DataError

RULE = ("must be float (N, 3, 12, 12), already transformed as the run was trained (see LoadedRun.transform; or "
        "give paths / PIL images); got ")


def refusal(images) -> str:
    with pytest.raises(DataError) as caught:
        _as_batch(images, 3, 12)
    return str(caught.value)


def test_a_numpy_picture_is_named_as_a_numpy_array_with_a_hint():
    assert refusal(np.zeros((12, 12, 3), np.uint8)) == (
        "a numpy array of images " + RULE + "a numpy array of dtype uint8, shape (12, 12, 3); an (H, W, C) picture? "
        "give PIL.Image.fromarray(it), or its path")
    assert refusal(np.zeros((12, 12), np.uint8)).endswith("shape (12, 12); an (H, W, C) picture? give "
                                                          "PIL.Image.fromarray(it), or its path")


@pytest.mark.parametrize("array", [np.zeros((2, 3, 10, 10), np.float32), np.zeros((2, 3, 12, 12), np.uint8),
                                   np.zeros((3, 12, 12), np.float64)[None, None], np.zeros((12, 12, 3), np.float32)])
def test_other_numpy_arrays_are_named_with_their_dtype_and_shape(array):
    message = refusal(array)
    assert message == f"a numpy array of images {RULE}a numpy array of dtype {array.dtype}, shape {array.shape}"
    assert "torch" not in message


def test_a_tensor_is_named_as_a_tensor():
    assert refusal(torch.zeros(1, 3, 12, 12, dtype=torch.uint8)) == (
        "a tensor of images " + RULE + "a tensor of dtype torch.uint8, shape (1, 3, 12, 12)")
    assert refusal(torch.zeros(3, 15, 12)) == "a tensor of images " + RULE + "a tensor of dtype torch.float32, shape (3, 15, 12)"


@pytest.mark.parametrize("array", [np.array([["a"] * 12] * 12), np.full((3, 12, 12), None, dtype=object),
                                   np.zeros((3, 12, 12), complex)])
def test_an_array_of_text_or_objects_is_a_data_error(array):
    assert re.fullmatch(re.escape(f"a numpy array of images {RULE}a numpy array of dtype {array.dtype}, shape "
                                  f"{array.shape}"), refusal(array))


def test_valid_arrays_become_batches_also_with_negative_strides():
    flipped = np.arange(3 * 12 * 12, dtype=np.float32).reshape(3, 12, 12)[:, ::-1]  # torch.as_tensor refuses it
    batch = _as_batch(flipped, 3, 12)
    assert batch.shape == (1, 3, 12, 12) and torch.equal(batch[0], torch.from_numpy(flipped.copy()))
    assert _as_batch(np.zeros((2, 3, 12, 12), np.float32), 3, 12).shape == (2, 3, 12, 12)
