"""One ranking per image (trial 10 D10): on equal logits (common in bf16) the label of a per-image record is the
first of its top-k, never another class that max() picked while topk() picked this one."""

import numpy as np
import torch

from openlt.reporting.samples import rank_classes, summarize_outputs

TIED = torch.tensor([[0.2314, -0.8047, -0.0132, 0.3340, 0.3340],   # max() says 3, topk(1) says 4 on this CPU
                     [1.0, 1.0, 1.0, 1.0, 1.0],
                     [0.0, 2.0, 0.5, 2.0, -1.0]])


def test_rank_classes_breaks_ties_by_class_index_like_argmax():
    probs, classes = rank_classes(TIED, 3)
    assert classes.tolist() == [[3, 4, 0], [0, 1, 2], [1, 3, 2]]
    assert torch.equal(classes[:, 0], TIED.argmax(dim=1))
    assert torch.allclose(probs, torch.softmax(TIED, dim=1).gather(1, classes))
    assert (probs[:, :-1] >= probs[:, 1:]).all()


def test_predictions_npz_label_is_the_first_of_its_top_classes():
    record = summarize_outputs({"logits": TIED, "labels": torch.tensor([3, 0, 1])}, torch.zeros(3))
    assert record["preds"].tolist() == [3, 0, 1]
    assert np.array_equal(record["preds"], record["top_classes"][:, 0])
    assert np.array_equal(record["max_prob"], record["top_probs"][:, 0])
