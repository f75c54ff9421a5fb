"""AUROC per shot band: the known test images of one band against all the open images."""

import numpy as np
import pytest

from openlt.metrics.openset import auroc, auroc_per_band


def test_each_band_is_its_known_images_against_the_open_set():
    bands = ["many", "many", "medium", "few"]  # band of classes 0..3
    labels = np.array([0, 1, 2, 3, 3])
    known = np.array([0.9, 0.8, 0.4, 0.1, 0.7])
    opened = np.array([0.5, 0.3, 0.2])
    out = auroc_per_band(known, labels, opened, bands)
    # many: 0.9, 0.8 beat every open score; medium: 0.4 beats 2 of 3; few: 0.1 beats none, 0.7 all -> 3 of 6
    assert out == {"many": 1.0, "medium": pytest.approx(2 / 3), "few": 0.5, "overall": auroc(known, opened)}


def test_a_band_without_test_images_is_none_and_bad_input_is_refused():
    out = auroc_per_band([0.9, 0.2], [0, 0], [0.5], ["many", "few"])
    assert out["few"] is None and out["many"] == 0.5 == out["overall"]
    with pytest.raises(ValueError, match="known_labels must match"):
        auroc_per_band([0.9, 0.2], [0], [0.5], ["many"])
    with pytest.raises(ValueError, match=r"in \[0, 2\)"):
        auroc_per_band([0.9], [2], [0.5], ["many", "few"])
    with pytest.raises(ValueError, match="open_scores is empty"):
        auroc_per_band([0.9], [0], [], ["many"])
