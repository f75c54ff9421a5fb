"""ViM's principal subspace against the training set it is fitted on (issue 14): eval.vim_dim (or the paper's rule
when it is null) at or above the number of training images N holds every training feature, leaving no residual
and a meaningless alpha; refused at fit time in one line naming the key, its value and the most it may be."""

import pytest
import torch

pytest.importorskip("pytorch_ood", reason="ViM wraps pytorch-ood (pip install 'openlt[ood]')")

from openlt.errors import ConfigError  # noqa: E402
from openlt.openset import ViM  # noqa: E402
from openlt.openset.detectors import vim_dim  # noqa: E402

K, D = 3, 32


def training(n: int) -> tuple[dict, tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(n) % K
    feature = torch.rand(n, D, generator=g)
    feature[torch.arange(n), labels] += 3.0
    weight = torch.zeros(K, D)
    weight[:, :K] = torch.eye(K)
    return {"feature": feature, "labels": labels}, (weight, torch.zeros(K))


@pytest.mark.parametrize("dim,n,message", [
    (10, 10, "eval.vim_dim=10 must be below the 10 training images ViM is fitted on (their features span at most 10 "
             "directions, leaving no residual): set eval.vim_dim to at most 9"),
    (20, 12, "eval.vim_dim=20 must be below the 12 training images ViM is fitted on (their features span at most 12 "
             "directions, leaving no residual): set eval.vim_dim to at most 11"),
    (None, 9, "eval.vim_dim=null (the paper's rule: 16 for width 32) must be below the 9 training images ViM is "
              "fitted on (their features span at most 9 directions, leaving no residual): set eval.vim_dim to at "
              "most 8"),
], ids=["equal", "above", "paper-rule"])
def test_a_subspace_not_below_the_training_images_is_refused(dim, n, message):
    train, head = training(n)
    with pytest.raises(ConfigError) as info:
        ViM(dim).fit(train, head=head)
    assert str(info.value) == message


def test_below_the_training_images_fits_and_separates_nothing_silently():
    train, head = training(12)
    vim = ViM(11).fit(train, head=head)
    assert vim.summary()["dim_used"] == 11 and vim.alpha_ > 0 and torch.isfinite(torch.tensor(vim.alpha_))
    assert ViM(None).fit(training(17)[0], head=head).summary()["dim_used"] == 16  # the paper's rule, N = 17


def test_the_width_is_checked_first_and_without_n_as_before():
    assert vim_dim(8, 32) == 8 and vim_dim(None, 32) == 16
    with pytest.raises(ConfigError, match=r"^eval.vim_dim=32 must be between 1 and the feature width 32 - 1$"):
        vim_dim(32, 32, n_train=5)


def test_the_precheck_refuses_before_training_when_the_images_are_known():
    from openlt.openset import check_score_setting

    setting = {"head": "linear", "feature_dim": 512, "num_classes": 4, "num_train": 100}
    with pytest.raises(ConfigError, match=r"^eval.vim_dim=null \(the paper's rule: 256 for width 512\) must be below "
                                          r"the 100 training images .* set eval.vim_dim to at most 99$"):
        check_score_setting(ViM(), setting)
    with pytest.raises(ConfigError, match=r"^eval.vim_dim=100 must be below the 100 training images"):
        check_score_setting(ViM(100), {**setting, "feature_dim": None})  # the width unknown: dim against N alone
    check_score_setting(ViM(99), setting)
    check_score_setting(ViM(), {**setting, "num_train": None})  # N unknown: not checked
