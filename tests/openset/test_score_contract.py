"""Every registered open-set score through the one interface: build, fit where needed, score a batch."""

import pytest
import torch

from openlt.openset import SCORES, OpenSetScore, build_score, load_score, max_logit, negative_energy, save_score

K, N = 5, 60  # N above KNN's default k = 50


def toy_outputs(n: int = N, seed: int = 0) -> dict:
    """What the evaluator collects for any score: logits, labels, reachability, the (N, 12) penultimate features
    (scores that need_features) and the images' score (those that need_model, computed from the network)."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % K
    feature = torch.relu(torch.randn(n, 12, generator=g)) + 3 * torch.eye(K, 12)[labels]
    logits = 5 * torch.eye(K)[labels] + torch.randn(n, K, generator=g)
    return {"logits": logits, "labels": labels, "reachability": torch.rand(n, generator=g) + 0.1,
            "feature": feature, "model_score": torch.rand(n, generator=g)}


@pytest.mark.parametrize("name", SCORES.names())
def test_every_score_fits_and_scores_a_batch(name, tmp_path):
    scorer = build_score(name)
    assert isinstance(scorer, OpenSetScore) and scorer.name == name
    linear = (torch.randn(K, 12, generator=torch.Generator().manual_seed(1)), torch.zeros(K))
    assert scorer.fit(toy_outputs(), **({"head": linear} if scorer.needs_head else {})) is scorer
    scores = scorer.score(toy_outputs(7, seed=1))
    assert scores.shape == (7,) and scores.dtype == torch.float32 and torch.isfinite(scores).all()
    assert scorer.summary()["name"] == name
    save_score(tmp_path / "s.safetensors", scorer)  # every score, fitted or not, round-trips
    assert torch.equal(load_score(tmp_path / "s.safetensors").score(toy_outputs(7, seed=1)), scores)


def test_the_plain_functions_and_the_objects_agree():
    out = toy_outputs()
    assert torch.equal(build_score("max_logit").score(out), max_logit(out))
    assert torch.equal(build_score("energy").score(out), negative_energy(out))


def test_energy_and_max_logit_order_by_logit_magnitude():
    # the same argmax and softmax shape, ever larger logits: both scores rise, max-softmax stays put
    base = torch.tensor([2.0, 1.0, 0.0, 0.0, 0.0])
    out = {"logits": torch.stack([base, base + 3, base + 6])}
    for name in ("energy", "max_logit"):
        s = build_score(name).score(out)
        assert s[0] < s[1] < s[2], name
    msp = build_score("msp").score(out)
    assert torch.allclose(msp, msp[0].expand(3))
    # a confident image (one large logit) scores above a confused one (all equal) on every stateless score
    out = {"logits": torch.tensor([[8.0, 0.0, 0.0, 0.0, 0.0], [1.6, 1.6, 1.6, 1.6, 1.6]])}
    for name in ("msp", "max_logit", "energy"):
        s = build_score(name).score(out)
        assert s[0] > s[1], name


def test_unknown_names_list_the_known_ones():
    from openlt.errors import ConfigError

    with pytest.raises(ConfigError, match="openmax"):
        build_score("openmx")
