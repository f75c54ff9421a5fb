"""LoadedRun.predict / features on a tensor of images: a ToTensor() output without Normalize lies in [0, 1], inside
the range a normalised image spans, so the range check (engine/api.py `_check_normalised`) passes it; a warning
says so (was: labelled wrongly without a word; trial 19). Normalised batches, which hold values below 0, pass in
silence."""

import logging

import torch

from openlt.engine.api import _check_normalised

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def test_a_batch_in_0_1_warns(caplog):
    with caplog.at_level(logging.WARNING, logger="openlt.engine.api"):
        _check_normalised(torch.rand(2, 3, 8, 8), MEAN, STD)
    assert len(caplog.records) == 1 and "lies in [0, 1]" in caplog.text and "Normalize" in caplog.text


def test_a_normalised_batch_is_silent(caplog):
    pixels = torch.rand(2, 3, 8, 8)
    normalised = (pixels - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    with caplog.at_level(logging.WARNING, logger="openlt.engine.api"):
        _check_normalised(normalised, MEAN, STD)
        _check_normalised(torch.rand(2, 1, 8, 8), [0.0], [1.0])  # a transform without a mean: [0, 1] is right
    assert caplog.records == []


def test_a_bright_image_normalised_from_8_bit_pixels_is_silent_and_its_to_tensor_output_warns(caplog):
    """(Helper trial, session 28: LoadedRun.transform of a light-grey image, values 0.45 - 0.81, was warned about.)
    8-bit pixels normalised with the run's mean and std are told from a ToTensor() output of the same pixels."""
    pixels = torch.full((1, 3, 16, 16), 150 / 255)
    pixels[0, :, :4] = torch.tensor([170, 160, 140]).view(3, 1, 1) / 255
    normalised = (pixels - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    assert 0 <= float(normalised.min()) and float(normalised.max()) <= 1  # inside [0, 1], yet normalised
    with caplog.at_level(logging.WARNING, logger="openlt.engine.api"):
        _check_normalised(normalised, MEAN, STD)
    assert caplog.records == []
    with caplog.at_level(logging.WARNING, logger="openlt.engine.api"):
        _check_normalised(pixels, MEAN, STD)  # the same pixels, not normalised
    assert len(caplog.records) == 1 and "lies in [0, 1]" in caplog.text
