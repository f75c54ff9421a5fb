import numpy as np
import pytest

from openlt.metrics import open_set_f_measure, reject, rejection_curves, threshold_grid


def test_curves_match_the_f_measure_of_the_rejected_predictions_at_every_threshold():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 200)
    preds = np.where(rng.random(200) < 0.7, labels, rng.integers(0, 4, 200))
    scores, open_scores = rng.random(200), rng.random(80) * 0.8
    open_preds = rng.integers(0, 4, 80)
    grid = threshold_grid(scores, open_scores, n=50)
    curves = rejection_curves(scores, known_preds=preds, known_labels=labels, open_scores=open_scores, thresholds=grid)
    for i in (0, 10, 25, len(grid) - 1):
        t = grid[i]
        all_pred = reject(np.concatenate([preds, open_preds]), np.concatenate([scores, open_scores]), t)
        f = open_set_f_measure(all_pred, labels=np.concatenate([labels, -np.ones(80, dtype=int)]))
        assert curves["f_measure"][i] == pytest.approx(f["f_measure"])
        assert curves["known_accuracy"][i] == pytest.approx(f["precision"])
        assert curves["recall"][i] == pytest.approx(f["recall"])
        assert curves["open_rejected"][i] == pytest.approx(np.mean(all_pred[200:] == -1))
        assert curves["known_kept"][i] == pytest.approx(np.mean(scores >= t))


def test_without_open_images_only_the_known_curves():
    curves = rejection_curves([0.2, 0.8], known_preds=[1, 0], known_labels=[1, 1], open_scores=None, thresholds=[0.0, 0.5, 1.0])  # the right one scores 0.2
    assert set(curves) == {"thresholds", "known_accuracy", "known_kept"}
    assert curves["known_accuracy"].tolist() == [0.5, 0.0, 0.0] and curves["known_kept"].tolist() == [1.0, 0.5, 0.0]


def test_grid_spans_the_scores():
    grid = threshold_grid(np.array([3.0, 1.0]), np.array([2.0]), n=10)
    assert grid[0] == 1.0 and grid[-1] == 3.0 and np.all(np.diff(grid) > 0)
