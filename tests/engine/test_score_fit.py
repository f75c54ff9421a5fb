"""engine/score_fit.py: OpenMax fitted from the training features in chunks of head logits equals, to float rounding,
the fit on the network's logits of every training image, for a linear and for OLTR's meta-embedding head."""

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from openlt.config import build_config
from openlt.engine import score_fit
from openlt.engine.runtime import collect_outputs
from openlt.models.model import build_model
from openlt.openset import OpenMax
from openlt.openset.base import OpenSetScore


def _model_and_outputs(overrides: tuple[str, ...]):
    cfg = build_config(None, ["model.backbone=resnet10", "train.device=cpu", *overrides])
    torch.manual_seed(0)
    model = build_model(cfg, 4, 3, 16)
    if "model.classifier=meta_embedding" in overrides:
        model.classifier.centroids.data.normal_()
    images = torch.randn(53, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    labels = torch.arange(53) % 4
    loader = DataLoader(TensorDataset(images, labels), batch_size=16)

    def outputs_of(split, kept=("logits",)):
        assert split == "train"
        return collect_outputs(model, loader, torch.device("cpu"), quiet=True, keep=kept)

    return model, outputs_of


@pytest.mark.parametrize("overrides", [(), ("model.attention=true", "model.classifier=meta_embedding")],
                         ids=["linear", "oltr"])
def test_openmax_from_feature_chunks_equals_the_fit_on_the_networks_logits(overrides, monkeypatch):
    model, outputs_of = _model_and_outputs(overrides)
    whole = OpenMax(tail_size=5).fit(outputs_of("train"))
    monkeypatch.setattr(score_fit, "FIT_ROWS", 7)  # 8 chunks of the 53 rows
    seen = []
    real_outputs_of = outputs_of

    def recording(split, kept=None):
        seen.append(kept)
        return real_outputs_of(split, kept or ("logits",))

    chunked = OpenMax(tail_size=5)
    score_fit.fit_open_score(chunked, recording, model, torch.device("cpu"))
    assert seen == [("feature",)]  # the features, never the N x K logits
    # the head on 7-row chunks rounds like the network on 16-image batches only on one thread: equal to rounding
    torch.testing.assert_close(chunked.means_, whole.means_, rtol=0, atol=1e-5)
    assert torch.equal(chunked.fallback_, whole.fallback_)
    probe = {"logits": whole.means_.repeat(10, 1) + torch.randn(40, 4, generator=torch.Generator().manual_seed(3))}
    # libMR's Weibull fit on a tail shifted to 10,000 turns last-bit differences of 5 distances into ~0.005 of score
    # on one CPU and up to 0.0165 on another (one probe of 40): most probes agree closely, none differs much
    difference = (chunked.score(probe) - whole.score(probe)).abs()
    assert difference.max() < 5e-2 and difference.median() < 5e-3, difference


def test_a_score_without_fit_chunks_gets_the_outputs_and_its_fit_arguments():
    class Recorder(OpenSetScore):
        name = "recorder"
        requires_fit = True

        def fit(self, outputs, head=None):
            self.fitted_ = (sorted(outputs), head)
            return self

    scorer = Recorder()
    score_fit.fit_open_score(scorer, lambda split, kept=None: {"logits": torch.zeros(2, 3), "labels": torch.zeros(2)},
                             model=None, device=torch.device("cpu"), fit_args={"head": "W"})
    assert scorer.fitted_ == (["labels", "logits"], "W")


@pytest.mark.parametrize("half_ok", [False, True], ids=["converts", "fits_half_features"])
def test_a_feature_score_asks_once_for_the_features_only_and_gets_float32_unless_it_takes_float16(half_ok):
    """Issue 17: a feature score's fit reads no training logits (N x K: 14 GB at iNaturalist); a float16 cache's
    features reach a score that `fits_half_features` (KNN) as they are, any other in float32 (the same values)."""
    feats = torch.randn(6, 4, generator=torch.Generator().manual_seed(0)).half()
    asked = []

    class Recorder(OpenSetScore):
        name = "recorder"
        requires_fit = True
        needs_features = True
        fits_half_features = half_ok

        def fit(self, outputs, head=None):
            self.fitted_ = (sorted(outputs), outputs["feature"], head)
            return self

    def outputs_of(split, kept=None):
        asked.append((split, kept))
        return {"feature": feats, "labels": torch.arange(6) % 2}

    scorer = Recorder()
    score_fit.fit_open_score(scorer, outputs_of, model=None, device=torch.device("cpu"), fit_args={"head": "W"})
    keys, given, head = scorer.fitted_
    assert asked == [("train", ("feature",))] and keys == ["feature", "labels"] and head == "W"
    if half_ok:
        assert given is feats
    else:
        assert given.dtype == torch.float32 and torch.equal(given, feats.float())


@pytest.mark.parametrize("name", ["mahalanobis", "vim"])
def test_mahalanobis_and_vim_fit_on_the_float16_cache_as_it_is(name, monkeypatch):
    """Their fits convert a chunk of rows at a time (openset/detectors.py): no float32 copy of the cache is made for
    them, and the fit equals the one on the float32 values (float64 sums: the same to float32 rounding)."""
    pytest.importorskip("pytorch_ood", reason="the detectors wrap pytorch-ood")
    from openlt.openset import Mahalanobis, ViM

    feats = (torch.randn(61, 8, generator=torch.Generator().manual_seed(0)) * torch.linspace(0.5, 2, 8)).half()
    labels = torch.arange(61) % 3
    head = (torch.randn(3, 8, generator=torch.Generator().manual_seed(1)), torch.zeros(3))
    given = []
    make = Mahalanobis if name == "mahalanobis" else lambda: ViM(dim=4)
    scorer = make()
    real_fit = scorer.fit
    monkeypatch.setattr(scorer, "fit", lambda outputs, **kw: given.append(outputs["feature"]) or real_fit(outputs, **kw))
    fit_args = {"head": head} if name == "vim" else {}
    score_fit.fit_open_score(scorer, lambda split, kept=None: {"feature": feats, "labels": labels}, model=None,
                             device=torch.device("cpu"), fit_args=fit_args)
    assert len(given) == 1 and given[0] is feats  # the cache itself, float16
    again = make().fit({"feature": feats.float(), "labels": labels}, **fit_args)
    for key, value in again.state_dict().items():
        torch.testing.assert_close(scorer.state_dict()[key], value, rtol=1e-6, atol=1e-6)
