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
    assert top1(preds, LABELS) == top1(IDS, LABELS) == 0.5
    np.testing.assert_array_equal(per_class_accuracy(preds, LABELS, 3), per_class_accuracy(IDS, LABELS, 3))
    assert shot_accuracy(preds, LABELS, [50, 10, 2]) == shot_accuracy(IDS, LABELS, [50, 10, 2])
    np.testing.assert_array_equal(confusion(preds, LABELS, 3), confusion(IDS, LABELS, 3))
    assert open_set_f_measure(preds, LABELS) == open_set_f_measure(IDS, LABELS)
    scores = np.array([0.9, 0.8, 0.1, 0.7, 0.2])
    np.testing.assert_array_equal(reject(preds, scores, 0.5), [0, 1, -1, 0, -1])


def test_bad_scores_are_refused():
    with pytest.raises(ValueError, match="need 'logits'"):
        top1({"probs": LOGITS}, LABELS)
    with pytest.raises(ValueError, match="K >= 1"):
        top1(np.zeros((5, 0)), LABELS)
    with pytest.raises(ValueError, match="1-D"):
        top1(np.zeros((5, 3, 1)), LABELS)
