"""scripts/bench_scale.py fits Mahalanobis and ViM on every training row (their fits are chunked: linear in N and
K, memory a chunk, openset/detectors.py), measured, not an "upper bound" scaled up from a subset; ReAct's fit is
still bounded by FIT_ELEMENTS and says so; KNN keeps every row. Checked with FIT_ELEMENTS lowered so that the
subset rule would apply (at the script's tiny size it never does)."""

from __future__ import annotations

import pytest
import torch
from script_loader import load_script  # tests/helpers

pytest.importorskip("pytorch_ood")


class Recorder:
    """The script's Stages as _detector calls it: each stage's (name, scale, note), its function run."""

    def __init__(self) -> None:
        self.rows = []

    def run(self, name, work, fn, scale=1.0, note="", extrapolate=None):
        fn()
        self.rows.append((name, scale, note))


def test_mahalanobis_and_vim_fit_on_every_row_and_react_on_a_bounded_part(monkeypatch):
    scale = load_script("bench_scale")
    n, d, k = 300, 16, 5
    monkeypatch.setattr(scale, "FIT_ELEMENTS", 100 * d)  # the subset rule: 100 of 300 rows
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(n) % k
    feats = {split: {"features": torch.randn(rows, d, generator=g).half(), "labels": labels[:rows]}
             for split, rows in (("train", n), ("test", 40), ("open", 20))}
    st = Recorder()
    for name in ("mahalanobis", "vim", "react", "knn"):
        scale._detector(st, name, feats, k)
    fits = {name.split(":")[0]: (factor, note) for name, factor, note in st.rows if "fit on" in name}
    assert fits["mahalanobis"] == (1.0, "") and fits["vim"] == (1.0, "") and fits["knn"] == (1.0, "")
    assert fits["react"] == (3.0, "upper bound: 100 of 300 rows, the whole fit x 3.0")
