"""Open-set scores fitted on training features (or logits) without spread -- every image gives the same feature,
e.g. identical images -- warn that their AUROC reflects float rounding, not the data (issue 14: it reported
perfect separation, AUROC 1.000, without a word); the evaluation records the warning in metrics["open"]["warning"]
and prints it under the result table (report.md too)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from openlt.openset import KNN, Mahalanobis, OpenMax, ReAct, ViM, build_score
from openlt.openset.base import open_score_warning, rows_have_no_spread
from openlt.reporting.run_report import format_table

N, D, K = 40, 16, 4


def _same(n: int = N, width: int = D, seed: int = 0) -> torch.Tensor:
    """`n` copies of one row, with float32 rounding noise (~1e-7 relative) as batches of identical images give."""
    g = torch.Generator().manual_seed(seed)
    row = torch.rand(width, generator=g) + 0.5
    return row * (1 + 1e-7 * torch.randn(n, width, generator=g))


def _spread(n: int = N, width: int = D, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, width, generator=torch.Generator().manual_seed(seed)) + 0.5


LABELS = torch.arange(N) % K
HEAD = (torch.randn(K, D, generator=torch.Generator().manual_seed(2)), torch.zeros(K))


def _fit(name: str, feats: torch.Tensor):
    outputs = {"feature": feats, "labels": LABELS, "logits": feats @ HEAD[0].T}
    scorer = {"knn": KNN(k=13), "vim": ViM(dim=12), "vim1": ViM(dim=1), "mahalanobis": Mahalanobis(),
              "react": ReAct()}[name]
    return scorer.fit(outputs, head=HEAD) if scorer.needs_head else scorer.fit(outputs)


@pytest.mark.parametrize("name", ["knn", "vim", "vim1", "mahalanobis", "react"])
def test_a_score_fitted_on_features_without_spread_warns(name):
    scorer = _fit(name, _same())
    label = "vim" if name == "vim1" else name
    assert scorer.warning_ == (f"eval.open_score={label}: the training features have no spread (every image gives the "
                               "same feature): the AUROC reflects float rounding, not the data")
    assert open_score_warning(scorer, np.arange(5.0), np.arange(5.0)) == scorer.warning_


@pytest.mark.parametrize("name", ["knn", "vim", "mahalanobis", "react"])
def test_a_score_fitted_on_real_features_does_not_warn(name):
    scorer = _fit(name, _spread())
    assert scorer.warning_ is None
    assert open_score_warning(scorer, np.array([1.0, 2.0]), np.array([0.5])) is None


def test_openmax_warns_on_training_logits_without_spread():
    logits = _same(width=K)
    logits[:, 0] += 1.0  # every image predicts class 0: the other classes' MAVs are the fallback ones
    scorer = OpenMax(tail_size=5).fit(logits, LABELS)
    assert scorer.warning_ == ("eval.open_score=openmax: the training logits have no spread (every image gives the "
                               "same logits): the AUROC reflects float rounding, not the data")
    assert OpenMax(tail_size=5).fit(_spread(width=K), LABELS).warning_ is None


def test_an_unfitted_score_warns_when_its_scores_have_no_spread():
    energy = build_score("energy")
    same = -3.1 * (1 + 1e-8 * np.arange(6))
    assert open_score_warning(energy, same[:4], same[4:]) == (
        "eval.open_score=energy: the scores of the test and open images have no spread (every image gets the same "
        "score): the AUROC reflects float rounding, not the data")
    assert open_score_warning(energy, np.array([-3.1, -2.0]), np.array([-4.0])) is None


def test_the_spread_rule():
    assert rows_have_no_spread(torch.zeros(5, 3))  # all zero: no spread
    assert not rows_have_no_spread(torch.ones(1, 3))  # one row: nothing to say
    assert not rows_have_no_spread(_same() + torch.tensor([1e-3] + [0.0] * (D - 1)) * torch.arange(N).unsqueeze(1))


def test_the_result_table_prints_the_warning():
    band = {"many": None, "medium": None, "few": 0.5, "overall": 0.5}
    metrics = {"bands": {"rule": "r"}, "closed": {**band, "n_classes": {"many": 0, "medium": 0, "few": 3}},
               "calibration": {"score": "knn", "source": "fixed"},
               "open": {"bands_with_rejection": band, "f_measure": 0.4, "auroc": 1.0, "fpr95": 0.0, "threshold": -1.0,
                        "warning": "eval.open_score=knn: the training features have no spread"}}
    last = format_table(metrics).splitlines()[-1]
    assert last == "warning: eval.open_score=knn: the training features have no spread"
    del metrics["open"]["warning"]
    assert "warning" not in format_table(metrics)


def test_compute_metrics_records_the_warning_in_metrics_open():
    from openlt.config import build_config
    from openlt.engine.evaluate import compute_metrics

    cfg = build_config(None, ["eval.open_score=energy", "eval.open_threshold=0.0"])
    same = torch.tensor([[2.0, 1.0, 0.5]]) * (1 + 1e-7 * torch.randn(12, 3, generator=torch.Generator().manual_seed(3)))
    outputs = {"test": {"logits": same[:8], "labels": torch.arange(8) % 3}, "open": {"logits": same[8:],
                                                                                   "labels": -torch.ones(4).long()}}
    metrics = compute_metrics(cfg, outputs, [5, 4, 3], ["a", "b", "c"])
    assert metrics["open"]["warning"] == (
        "eval.open_score=energy: the scores of the test and open images have no spread (every image gets the same "
        "score): the AUROC reflects float rounding, not the data")
    spread = {split: {**out, "logits": torch.randn(len(out["labels"]), 3)} for split, out in outputs.items()}
    assert "warning" not in compute_metrics(cfg, spread, [5, 4, 3], ["a", "b", "c"])["open"]
