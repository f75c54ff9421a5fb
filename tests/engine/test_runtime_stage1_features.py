"""engine/runtime.heads_on_stage1_features: the one predicate `openlt eval` (evaluate._split_outputs) and `openlt
predict` (predict.Predictor.outputs) share for computing a run's head on the stage-1 body's cached features (they
were two copies of one condition: a change to one would have made predict score otherwise than eval chose the
threshold on)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from openlt.config import build_config
from openlt.engine.runtime import heads_on_stage1_features
from openlt.openset.base import build_score


@pytest.mark.parametrize("method, score, expected", [
    ("none", "msp", False),  # a network trained end to end: the images through it
    ("crt", "msp", True), ("ncm", "energy", True), ("lws", "mahalanobis", True),
    ("crt", "odin", False),  # ODIN needs gradients through the whole network: the images
])
def test_decoupled_runs_use_the_cached_features_but_for_odin(method, score, expected):
    cfg = build_config(None, [f"decouple.method={method}"])
    assert heads_on_stage1_features(cfg, build_score(score, cfg.eval)) is expected
    assert heads_on_stage1_features(cfg, SimpleNamespace(needs_model=score == "odin")) is expected
