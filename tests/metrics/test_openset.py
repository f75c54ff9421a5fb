"""Open-set metrics against small hand-computed cases."""

import numpy as np
import pytest
import torch

from openlt.metrics import (
    aupr_in,
    aupr_out,
    auroc,
    fpr_at_tpr,
    open_set_f_measure,
    open_set_metrics,
    reject,
    threshold_at_tpr,
)


def test_reject_at_threshold_boundary():
    preds = np.array([0, 1, 2, 3])
    scores = [0.5, 0.49, 0.51, float("nan")]
    out = reject(preds, scores, 0.5)
    # == threshold is kept, below is rejected, a nan score is rejected
    np.testing.assert_array_equal(out, [0, -1, 2, -1])
    np.testing.assert_array_equal(preds, [0, 1, 2, 3])  # input untouched


def test_open_set_f_measure_hand_case():
    labels = [0, 1, 2, 1, 0, -1, -1, -1, -1, -1]
    preds = [0, 1, 1, -1, 0, 2, -1, 0, -1, 1]
    # TP: idx 0, 1, 4                       -> 3
    # FP: idx 2 (wrong), idx 3 (known rejected) -> 2
    # FN: idx 5, 7, 9 (open accepted as known) -> 3
    # idx 6, 8: open rejected = true negatives, not counted
    # P = 3/5, R = 3/6, F = 2 * 0.6 * 0.5 / 1.1 = 6/11
    res = open_set_f_measure(preds, labels=labels)
    assert (res["tp"], res["fp"], res["fn"]) == (3, 2, 3)
    assert res["precision"] == pytest.approx(0.6)
    assert res["recall"] == pytest.approx(0.5)
    assert res["f_measure"] == pytest.approx(6 / 11)


def test_open_set_f_measure_zero_denominators():
    res = open_set_f_measure([-1, -1], labels=[-1, -1])  # only true negatives
    assert res == {"f_measure": 0.0, "precision": 0.0, "recall": 0.0, "tp": 0, "fp": 0, "fn": 0}


def test_open_set_f_measure_with_reject_pipeline():
    labels = torch.tensor([0, 1, -1, -1])
    preds = torch.tensor([0, 1, 0, 1])
    scores = torch.tensor([0.9, 0.3, 0.2, 0.8])
    res = open_set_f_measure(reject(preds, scores, 0.5), labels=labels)
    # after rejection preds = [0, -1, -1, 1]: TP 1, FP 1 (known rejected), FN 1 (idx 3)
    assert (res["tp"], res["fp"], res["fn"]) == (1, 1, 1)
    assert res["f_measure"] == pytest.approx(0.5)


def test_auroc_perfect_reversed_and_chance():
    assert auroc([0.9, 0.8, 0.7], [0.1, 0.2]) == 1.0
    assert auroc([0.1, 0.2], [0.9, 0.8, 0.7]) == 0.0
    assert auroc([0.5] * 3, [0.5] * 4) == 0.5


def test_aupr_in_and_out_not_swapped():
    known = [0.9, 0.8, 0.7, 0.6]
    open_ = [0.65]
    # descending scores: 0.9K 0.8K 0.7K 0.65O 0.6K
    # AUPR-IN (known positive): precisions at the known hits 1, 1, 1, 4/5 -> mean 0.95
    # AUPR-OUT (open positive, ranked by -score): 0.6K then 0.65O -> precision 1/2 -> 0.5
    #   (ranking open by the raw score instead would give 1/4)
    # AUROC: the open score is below 3 of 4 known -> 0.75
    assert aupr_in(known, open_) == pytest.approx(0.95)
    assert aupr_out(known, open_) == pytest.approx(0.5)
    assert auroc(known, open_) == pytest.approx(0.75)


def test_aupr_chance_levels_follow_class_ratio():
    # 8 known, 2 open, all tied: AP is the positive-class prevalence
    known, open_ = [0.5] * 8, [0.5] * 2
    assert aupr_in(known, open_) == pytest.approx(0.8)
    assert aupr_out(known, open_) == pytest.approx(0.2)


@pytest.mark.parametrize("fn", [auroc, aupr_in, aupr_out, fpr_at_tpr, open_set_metrics])
def test_empty_inputs_raise(fn):
    with pytest.raises(ValueError, match="open_scores is empty"):
        fn([0.1, 0.2], [])
    with pytest.raises(ValueError, match="known_scores is empty"):
        fn([], [0.1])


def test_threshold_at_tpr_hand_case():
    scores = np.arange(1, 11) / 10  # 0.1 .. 1.0
    rng = np.random.default_rng(0)
    shuffled = rng.permutation(scores)
    assert threshold_at_tpr(shuffled, 0.9) == pytest.approx(0.2)  # 9 of 10 are >= 0.2
    assert threshold_at_tpr(shuffled, 1.0) == pytest.approx(0.1)
    assert threshold_at_tpr(shuffled, 0.95) == pytest.approx(0.1)  # ceil(9.5) = 10
    assert threshold_at_tpr(shuffled, 0.7) == pytest.approx(0.4)
    # 0.28 * 25 is 7.000000000000001 in floats: k must be 7 (7th largest of 1..25 is 19), not 8
    assert threshold_at_tpr(np.arange(1, 26), 0.28) == 19.0
    assert threshold_at_tpr(shuffled, 0.05) == pytest.approx(1.0)
    # ties: 3 of 4 are >= 0.5, so t = 0.5 is the largest with a fraction >= 0.5
    assert threshold_at_tpr([0.5, 0.5, 0.5, 0.1], 0.5) == 0.5
    with pytest.raises(ValueError):
        threshold_at_tpr(scores, 0.0)


def test_fpr_at_tpr_hand_case():
    known = torch.arange(1, 11, dtype=torch.float64) / 10
    open_ = [0.15, 0.2, 0.25, 0.05]
    # t = 0.2; open scores >= 0.2: 0.2 and 0.25 -> 2/4
    assert fpr_at_tpr(known, open_, 0.9) == pytest.approx(0.5)
    # t = 0.1 at tpr 1.0; open >= 0.1: 0.15, 0.2, 0.25 -> 3/4
    assert fpr_at_tpr(known, open_, 1.0) == pytest.approx(0.75)


def test_open_set_metrics_keys_and_values():
    res = open_set_metrics([0.9, 0.8, 0.7], [0.1, 0.2])
    assert set(res) == {"auroc", "aupr_in", "aupr_out", "fpr95"}
    assert res["auroc"] == 1.0 and res["aupr_in"] == 1.0 and res["aupr_out"] == 1.0
    assert res["fpr95"] == 0.0


def test_aupr_of_a_perfect_separation_is_one_not_above():
    """21 known scores above 10 open ones: scikit-learn's average precision summed to 1.0000000000000004, which
    openlt eval wrote to metrics.json and its own metrics-file check (summary, bench) then refused."""
    from openlt.reporting.summary import open_shape_problem

    known, unknown = np.arange(21) + 100.0, np.arange(10.0)
    assert aupr_in(known, unknown) == 1.0 and aupr_out(known, unknown) == pytest.approx(1.0, abs=1e-12)
    assert aupr_in(unknown, known) <= 1.0 and aupr_out(unknown, known) <= 1.0
    assert open_shape_problem(open_set_metrics(known, unknown)) is None
    rng = np.random.default_rng(0)
    for _ in range(300):
        k, o = rng.random(rng.integers(1, 40)) + 1, rng.random(rng.integers(1, 40))
        assert 0.0 <= aupr_in(k, o) <= 1.0 and 0.0 <= aupr_out(k, o) <= 1.0
