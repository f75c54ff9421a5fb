import math

import pytest
import torch

from openlt.errors import ConfigError
from openlt.openset import SCORES, open_score


def test_scores_by_hand():
    logits = torch.tensor([[2.0, 0.0], [0.0, 0.0], [5.0, 5.0]])
    out = {"logits": logits}
    assert open_score("msp", out).tolist() == pytest.approx([math.exp(2) / (math.exp(2) + 1), 0.5, 0.5])
    assert open_score("max_logit", out).tolist() == [2.0, 0.0, 5.0]
    assert open_score("energy", out).tolist() == pytest.approx([math.log(math.exp(2) + 1), math.log(2), 5 + math.log(2)])


def test_energy_and_max_logit_rank_confident_large_logits_first_msp_does_not():
    # equal softmax (both uniform) but very different logit magnitudes: energy and max-logit tell them apart
    out = {"logits": torch.tensor([[10.0, 10.0], [0.0, 0.0]])}
    assert open_score("msp", out)[0] == open_score("msp", out)[1]
    assert open_score("energy", out)[0] > open_score("energy", out)[1]
    assert open_score("max_logit", out)[0] > open_score("max_logit", out)[1]


def test_reachability_needs_the_meta_embedding_head():
    with pytest.raises(ConfigError, match="meta-embedding"):
        open_score("reachability", {"logits": torch.zeros(2, 3)})
    assert open_score("reachability", {"logits": torch.zeros(2, 3), "reachability": torch.tensor([1.0, 2.0])}).tolist() == [1.0, 2.0]
    assert {"msp", "max_logit", "energy", "reachability"} <= set(SCORES.names())
