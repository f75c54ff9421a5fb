"""Issue 17: a float16 feature cache is kept as float16 (load_features returns the cache's dtype) and every
stage-2 method converts a batch or chunk of rows at a time. Each method fitted on the float16 features gives
exactly (bit for bit) the head it gives on the same features converted to float32 first, as before the change,
and never converts the training features whole."""

from __future__ import annotations

import pytest
import torch

from stage2_config import stage2_config  # tests/helpers
from openlt.decoupling import Stage2Data, build_method
from openlt.decoupling._validate import _features, compute_dtype
from openlt.decoupling.classifiers import new_linear, train_on_features
from openlt.decoupling.ncm import NCMClassifier
from openlt.errors import DataError
from openlt.metrics import ShotBands

pytestmark = pytest.mark.usefixtures("single_thread")

C, D = 5, 12
METHODS = ["crt", "lws", "tau_norm", "logit_adjust", "ncm"]


def _data(dtype: torch.dtype) -> Stage2Data:
    g = torch.Generator().manual_seed(4)
    train_y, val_y = torch.arange(60) % C, torch.cat([torch.arange(20) % C, torch.tensor([-1, -1])])
    train_x = torch.randn(60, D, generator=g).relu().half()  # what a float16 cache holds
    val_x = torch.randn(len(val_y), D, generator=g).half()
    weight, bias = torch.randn(C, D, generator=g), torch.randn(C, generator=g)
    return Stage2Data(train_x=train_x.to(dtype), train_y=train_y, num_classes=C,
                      train_counts=[int((train_y == c).sum()) for c in range(C)], bands=ShotBands(15, 5),
                      val_x=val_x.to(dtype), val_y=val_y, weight=weight, bias=bias)


@pytest.mark.parametrize("method", METHODS)
def test_every_method_on_float16_features_equals_its_fit_on_them_in_float32(method):
    half = build_method(stage2_config(method, epochs=2)).fit(_data(torch.float16))
    whole = build_method(stage2_config(method, epochs=2)).fit(_data(torch.float32))
    assert half.state.keys() == whole.state.keys()
    for key, tensor in whole.state.items():
        assert half.state[key].dtype == tensor.dtype == torch.float32, key
        assert torch.equal(half.state[key], tensor), key
    assert half.details == whole.details


def test_ncm_centred_on_float16_features_equals_float32_and_keeps_float32_means():
    data16, data32 = _data(torch.float16), _data(torch.float32)
    half = NCMClassifier(center=True).fit(data16.train_x, data16.train_y, C)
    whole = NCMClassifier(center=True).fit(data32.train_x, data32.train_y, C)
    assert half.means_.dtype == half.feature_mean_.dtype == torch.float32
    assert torch.equal(half.means_, whole.means_) and torch.equal(half.feature_mean_, whole.feature_mean_)


def test_training_converts_one_batch_at_a_time_never_the_whole_features(monkeypatch):
    data = _data(torch.float16)
    seen = []

    class Spy(torch.nn.Linear):
        def forward(self, x):
            seen.append((x.dtype, len(x)))
            return super().forward(x)

    module = Spy(D, C)
    module.load_state_dict(new_linear(D, C, seed=1).state_dict())
    real_float = torch.Tensor.float
    converted = []

    def spy_float(t, *args, **kwargs):
        converted.append(tuple(t.shape))
        return real_float(t, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "float", spy_float)
    train_on_features(module, data.train_x, data.train_y, epochs=1, batch_size=8, lr=0.1, sampler="instance")
    assert seen and all(dtype == torch.float32 and n <= 8 for dtype, n in seen)
    assert (60, D) not in converted  # the (N, D) training features were never converted whole
    assert data.train_x.dtype == torch.float16  # the caller's features are left as they are


def test_augmented_epoch_features_are_not_rounded_to_the_cache_dtype():
    """decouple.features=augmented replaces float16 cached features with fresh float32 ones every epoch: they are
    used in float32 (the module's dtype), as before, not rounded to float16."""
    data = _data(torch.float16)
    fresh = torch.randn(60, D, generator=torch.Generator().manual_seed(9))
    got = []

    class Spy(torch.nn.Linear):
        def forward(self, x):
            got.append(x.detach().clone())
            return super().forward(x)

    train_on_features(Spy(D, C), data.train_x, data.train_y, epochs=1, batch_size=60, lr=0.1, sampler="instance",
                      epoch_features=lambda epoch: fresh)
    assert torch.equal(got[0].sort(0).values, fresh.sort(0).values)


def test_features_keep_half_only_when_asked_and_still_check_finiteness():
    x = torch.ones(3, 2, dtype=torch.float16)
    assert _features(x).dtype == torch.float32
    assert _features(x, keep_half=True) is x and compute_dtype(x) == torch.float32
    assert compute_dtype(torch.ones(1, 1, dtype=torch.float64)) == torch.float64
    x[1, 1] = float("inf")
    with pytest.raises(DataError, match="non-finite"):
        _features(x, keep_half=True)
