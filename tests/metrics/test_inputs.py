"""The metrics take class ids, (N, K) logits / probabilities (their argmax) or an outputs dict, as numpy arrays,
torch tensors or lists."""

import numpy as np
import pytest
import torch

from openlt.metrics import confusion, open_set_f_measure, per_class_accuracy, reject, shot_accuracy, top1

LOGITS = np.array([[2.0, 0.1, 0.0], [0.0, 3.0, 1.0], [0.5, 0.2, 0.9], [1.0, 1.0, 0.0], [0.0, 0.0, 4.0]])
LABELS = np.array([0, 1, 1, 1, -1])
IDS = np.array([0, 1, 2, 0, 2])  # the argmax; ties to the lowest id (row 3)


@pytest.mark.parametrize("preds", [LOGITS, torch.from_numpy(LOGITS), torch.from_numpy(LOGITS).float().softmax(1),
                                   {"logits": torch.from_numpy(LOGITS)}, LOGITS.tolist()],
                         ids=["numpy", "tensor", "probabilities", "dict", "list"])
def test_scores_stand_for_their_argmax(preds):
    assert top1(preds, labels=LABELS) == top1(IDS, labels=LABELS) == 0.5
    np.testing.assert_array_equal(per_class_accuracy(preds, labels=LABELS, num_classes=3), per_class_accuracy(IDS, labels=LABELS, num_classes=3))
    assert shot_accuracy(preds, labels=LABELS, train_counts=[50, 10, 2]) == shot_accuracy(IDS, labels=LABELS, train_counts=[50, 10, 2])
    np.testing.assert_array_equal(confusion(preds, labels=LABELS, num_classes=3), confusion(IDS, labels=LABELS, num_classes=3))
    assert open_set_f_measure(preds, labels=LABELS) == open_set_f_measure(IDS, labels=LABELS)
    scores = np.array([0.9, 0.8, 0.1, 0.7, 0.2])
    np.testing.assert_array_equal(reject(preds, scores, 0.5), [0, 1, -1, 0, -1])


def test_bad_scores_are_refused():
    with pytest.raises(ValueError, match="need 'logits'"):
        top1({"probs": LOGITS}, labels=LABELS)
    with pytest.raises(ValueError, match="C >= 2"):
        top1(np.zeros((5, 0)), labels=LABELS)
    with pytest.raises(ValueError, match=r"shape \(5, 3, 1\); accepted: \(N,\) int class ids"):
        top1(np.zeros((5, 3, 1)), labels=LABELS)


KEYWORD_ONLY = {"per_class_accuracy": ("labels", "num_classes"), "top1": ("labels",),
                "shot_accuracy": ("labels", "train_counts", "bands"), "confusion": ("labels", "num_classes"),
                "open_set_f_measure": ("labels",), "sparse_confusion": ("labels", "num_classes"),
                "top_confusions": ("labels", "num_classes", "n"), "band_confusion": ("labels", "band_of_class"),
                "rejection_curves": ("known_preds", "known_labels", "open_scores", "thresholds"),
                "rank1_by_band": ("probe_labels", "enrolled", "train_counts", "bands")}


@pytest.mark.parametrize("name", sorted(KEYWORD_ONLY))
def test_metric_arguments_after_the_first_are_keyword_only(name):
    """scikit-learn takes (y_true, y_pred), openlt's metrics the predictions first: every argument after the first
    is keyword-only, so a call in scikit-learn's order cannot give a silently wrong number."""
    import inspect

    import openlt.metrics as M
    params = list(inspect.signature(getattr(M, name)).parameters.values())
    assert params[0].kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
    assert tuple(p.name for p in params[1:]) == KEYWORD_ONLY[name]
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params[1:])
    assert "by keyword" in getattr(M, name).__doc__


def test_swapped_labels_and_predictions_are_a_type_error_not_a_wrong_number():
    from openlt.metrics import shot_accuracy, top1
    labels, preds, counts = np.array([0, 0, 0, 0, 1, 2, 3]), np.zeros(7, int), [200, 50, 10, 5]
    with pytest.raises(TypeError, match="positional argument"):
        shot_accuracy(labels, preds, counts)
    with pytest.raises(TypeError, match="positional argument"):
        top1(labels, preds)
    out = shot_accuracy(preds, labels=labels, train_counts=counts)
    assert (out["many"], out["medium"], out["few"]) == (1.0, 0.0, 0.0) and out["overall"] == 4 / 7


@pytest.mark.parametrize("name", ["auroc", "aupr_in", "aupr_out", "fpr_at_tpr", "open_set_metrics"])
def test_open_set_metrics_in_scikit_learns_order_are_a_type_error_not_a_wrong_number(name):
    """auroc(y, scores) in roc_auc_score's order gave 0.6 for a perfect ranking (helper trial, session 28): 0 / 1
    whole numbers beside as many scores are refused; the same samples in openlt's order give 1.0."""
    import openlt.metrics as M
    y, scores = np.array([1, 1, 1, 0, 0]), np.array([0.9, 0.8, 0.7, 0.2, 0.1])
    with pytest.raises(TypeError, match=r"scikit-learn's order \(y_true, y_score\)\? .*auroc\(scores\[y == 1\]"):
        getattr(M, name)(y, scores)
    with pytest.raises(TypeError, match="scikit-learn's order"):
        getattr(M, name)(y.tolist(), scores.tolist())
    getattr(M, name)(scores[y == 1], scores[y == 0])
    assert M.auroc(scores[y == 1], scores[y == 0]) == 1.0
    assert M.auroc(np.array([1, 0, 1]), np.array([0, 1, 0])) == pytest.approx(2 / 3)  # 0 / 1 on both sides: scores


def test_whole_number_scores_of_other_values_or_lengths_are_taken_as_scores():
    from openlt.metrics import auroc
    assert auroc(np.array([3, 2, 2]), np.array([0.5, 1.5, 0.1])) == 1.0
    assert auroc(np.array([1, 1, 0]), np.array([0.5, 0.2])) == pytest.approx(4 / 6)  # lengths differ
