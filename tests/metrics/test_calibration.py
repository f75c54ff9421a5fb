import numpy as np
import pytest

from openlt.metrics import ece_by_band, expected_calibration_error, reliability_bins


def test_ece_by_hand():
    # two bins of 10: confidences 0.25 (acc 0.5) and 0.95 (acc 1.0): ECE = 0.5 * 0.25 + 0.5 * 0.05
    conf = np.array([0.25] * 4 + [0.95] * 4)
    correct = np.array([1, 1, 0, 0, 1, 1, 1, 1], dtype=bool)
    assert expected_calibration_error(conf, correct, n_bins=10) == pytest.approx(0.15)
    bins = reliability_bins(conf, correct, n_bins=10)
    assert bins["count"].tolist() == [0, 0, 4, 0, 0, 0, 0, 0, 0, 4]
    assert bins["accuracy"][2] == 0.5 and bins["confidence"][9] == pytest.approx(0.95)
    assert np.isnan(bins["accuracy"][0])


def test_perfectly_calibrated_is_zero_and_edges_fall_in_bins():
    conf = np.array([0.0, 1.0, 1.0])
    assert expected_calibration_error(conf, np.array([False, True, True]), n_bins=5) == 0.0
    assert np.isnan(expected_calibration_error(np.zeros(0), np.zeros(0, dtype=bool)))


def test_ece_per_band_uses_the_true_class_band():
    conf = np.array([0.9, 0.9, 0.6, 0.6])
    correct = np.array([True, True, False, False])
    labels = np.array([0, 0, 1, 1])
    out = ece_by_band(conf, correct, labels, ["many", "few"], n_bins=10)
    assert out["many"] == pytest.approx(0.1) and out["few"] == pytest.approx(0.6) and out["medium"] is None
    assert out["overall"] == pytest.approx(0.35)


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="probabilities"):
        expected_calibration_error(np.array([1.5]), np.array([True]))
    with pytest.raises(ValueError, match="confidences and correct differ in length: 2 vs 1"):
        reliability_bins(np.array([0.5, 0.5]), np.array([True]))
