"""FSLwF (decouple.method=fslwf): the generator's formula, the fake-novel episodes, base weights left as trained,
a fit on small random features, and a stage 2 from a tiny stage-1 run that evaluates like any run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from cli_ok import main_ok
from openlt.cli import main
from openlt.config import Config
from openlt.decoupling import Stage2Data, Stage2Hooks, build_method
from openlt.decoupling.fslwf import (EpisodeSampler, FewShotWithoutForgetting, WeightGenerator, class_means,
                                     cosine_logits, episode_loss, generator_lr_factor)
from openlt.errors import ConfigError
from openlt.metrics import ShotBands
from openlt.models.classifier import build_classifier

REPORT_FIGURES = "unrasterized"  # tests/conftest.py: report.html figures built, not rendered (none is looked at)

pytestmark = pytest.mark.usefixtures("single_thread")

D = 32
COUNTS = [150, 140, 130, 120, 115, 110, 105, 102, 40, 12, 4]  # bands (100, 20): 8 base classes, 1 medium, 2 few
BASE, NOVEL = list(range(8)), [8, 9, 10]


def clustered(counts, per_class_test=30, seed=0):
    """Non-negative features (like pooled ReLU features) around one random centre per class, and a test set."""
    g = torch.Generator().manual_seed(seed)
    centres = 2.0 * torch.randn(len(counts), D, generator=g)

    def draw(n, c):
        return (centres[c] + torch.randn(n, D, generator=g)).relu()

    train_x = torch.cat([draw(n, c) for c, n in enumerate(counts)])
    train_y = torch.arange(len(counts)).repeat_interleave(torch.tensor(counts))
    test_x = torch.cat([draw(per_class_test, c) for c in range(len(counts))])
    test_y = torch.arange(len(counts)).repeat_interleave(per_class_test)
    return Stage2Data(train_x=train_x, train_y=train_y, num_classes=len(counts), train_counts=counts,
                      bands=ShotBands(100, 20), val_x=test_x, val_y=test_y)


def method(**options) -> FewShotWithoutForgetting:
    settings = dict(scale=16.0, squash=False, novel_classes=2, shots=3, queries=2, episodes=4, generator_epochs=3,
                    steps=20, generator_lr=0.1, gamma=10.0, epochs=4, batch_size=32, lr=0.2, momentum=0.9,
                    weight_decay=5e-4, sampler="class_balanced", seed=1)
    return FewShotWithoutForgetting(**{**settings, **options})


def test_with_phi_att_zero_and_phi_avg_one_the_weight_is_the_normalised_class_mean():
    generator = WeightGenerator(D, num_base=3, gamma=10.0, seed=0)
    with torch.no_grad():
        generator.phi_att.zero_()
    assert torch.equal(generator.phi_avg.detach(), torch.ones(D))  # the paper's start
    features, labels = torch.randn(9, D).relu() + 0.1, torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2])
    weight = generator(features, labels, 3, base_weight=torch.randn(3, D))
    for c in range(3):
        expected = F.normalize(features[labels == c], dim=1).mean(0)
        torch.testing.assert_close(weight[c], expected)
        torch.testing.assert_close(F.normalize(weight[c], dim=0), F.normalize(expected, dim=0))


def test_the_attention_term_is_the_papers_formula():
    generator = WeightGenerator(D, num_base=4, gamma=3.0, seed=2)
    with torch.no_grad():
        for p in (generator.phi_avg, generator.phi_att, generator.query.bias):
            p.normal_()
    features, labels = torch.randn(5, D), torch.tensor([0, 1, 1, 0, 1])
    base = torch.randn(4, D)
    exclude = torch.zeros(5, 4, dtype=torch.bool)
    exclude[:, 2] = True  # e.g. a fake-novel class's own base weight
    z = F.normalize(features, dim=1)
    q = F.normalize(z @ generator.query.weight.t() + generator.query.bias, dim=1)
    scores = 3.0 * q @ F.normalize(generator.keys, dim=1).t()
    scores[:, 2] = float("-inf")
    attended = torch.softmax(scores, 1) @ F.normalize(base, dim=1)
    expected = torch.stack([generator.phi_avg * z[labels == c].mean(0)
                            + generator.phi_att * attended[labels == c].mean(0) for c in range(2)])
    torch.testing.assert_close(generator(features, labels, 2, base, exclude), expected)
    assert torch.all(generator.attention(z, exclude)[:, 2] == 0)
    torch.testing.assert_close(class_means(features, labels, 3)[2], torch.zeros(D))  # a class without rows


def test_episodes_draw_fake_novel_classes_from_the_base_and_hide_their_base_weights():
    labels = torch.tensor([0] * 7 + [1] * 6 + [2] * 9 + [3] * 5)[torch.randperm(27)]
    sampler = EpisodeSampler(labels, 4, novel=2, shots=3, queries=2, generator=torch.Generator().manual_seed(0))
    batch = sampler.draw(6)
    assert batch.novel.shape == (6, 2) and batch.support.shape == (6, 2, 3) and batch.query.shape == (6, 8)
    for e in range(6):
        novel = batch.novel[e]
        assert len(set(novel.tolist())) == 2 and batch.exclude[e].sum() == 2 and batch.exclude[e, novel].all()
        for j in range(2):
            support = batch.support[e, j]
            queries = batch.query[e, 2 * j:2 * j + 2]
            assert torch.all(labels[support] == novel[j]) and torch.all(labels[queries] == novel[j])
            assert len(set(support.tolist() + queries.tolist())) == 5  # distinct features
        assert batch.query_labels[e, :4].tolist() == [4, 4, 5, 5]  # fake novel j -> num_base + j
        base_queries = batch.query[e, 4:]
        assert torch.equal(labels[base_queries], batch.query_labels[e, 4:])
        assert not batch.exclude[e, batch.query_labels[e, 4:]].any()  # from the other base classes only
    loss = episode_loss(WeightGenerator(D, 4), torch.randn(4, D), torch.randn(27, D), batch, 16.0, False)
    assert loss.ndim == 0 and torch.isfinite(loss)
    with pytest.raises(ConfigError, match="fslwf_novel_classes=4 needs more base"):
        EpisodeSampler(labels, 4, novel=4, shots=1, queries=1, generator=torch.Generator())
    with pytest.raises(ConfigError, match="fewer than decouple.fslwf_shots"):
        EpisodeSampler(labels, 4, novel=2, shots=4, queries=2, generator=torch.Generator())


def test_base_class_weights_are_left_as_trained_and_only_the_others_generated():
    data = clustered(COUNTS)
    fsl = method()
    base, novel = fsl.split_classes(data)
    assert base.tolist() == BASE and novel.tolist() == NOVEL
    base_weight = fsl.fit_base(data, base)
    kept = base_weight.clone()
    generator, curve = fsl.fit_generator(data, base, novel, base_weight, Stage2Hooks())
    assert torch.equal(base_weight, kept)  # the generator's training never writes the base weights
    assert len(curve) == 3 and not torch.equal(generator.keys, WeightGenerator(D, len(BASE), seed=1).keys)  # trained
    fitted = fsl.fit(data)
    weight = fitted.state["weight"]
    assert torch.equal(weight[base], base_weight)  # same seed, same base classifier: the rows are those weights
    assert fitted.details["base_classes"] == BASE and fitted.details["generated_classes"] == NOVEL
    assert all(not torch.allclose(F.normalize(weight[c], dim=0), F.normalize(weight[b], dim=0))
               for c in novel for b in base)


def test_fits_on_small_random_features_and_the_cosine_head_loads_it():
    data = clustered(COUNTS, seed=3)
    curves = []
    fitted = method(generator_epochs=4, steps=40).fit(data, Stage2Hooks(validate=lambda head: {"overall": 0.0},
                                                                         log=curves.append))
    head = build_classifier("cosine", D, len(COUNTS), scale=16.0, squash=False)
    head.load_state_dict(fitted.state)  # strict: exactly the cosine head's tensors
    logits = head(data.val_x)
    torch.testing.assert_close(logits, cosine_logits(data.val_x, fitted.state["weight"], 16.0, False))
    correct = logits.argmax(1) == data.val_y
    assert correct.float().mean() > 0.9  # well-separated clusters: chance is 1/11
    assert correct[data.val_y >= 8].float().mean() > 0.8  # the generated (medium / few) classes too
    losses = [r["loss"] for r in fitted.details["generator_curve"]]
    assert losses[-1] < losses[0] and [r["epoch"] for r in fitted.details["generator_curve"]] == [1, 2, 3, 4]
    assert sum("fslwf generator epoch" in line for line in curves) == 4


def test_squash_trains_with_the_oltr_cosine_head_it_is_evaluated_with():
    data = clustered(COUNTS, seed=4)
    fitted = method(squash=True, generator_epochs=1, steps=5).fit(data)
    head = build_classifier("cosine", D, len(COUNTS), scale=16.0, squash=True)
    head.load_state_dict(fitted.state)
    torch.testing.assert_close(head(data.val_x), cosine_logits(data.val_x, fitted.state["weight"], 16.0, True))


def test_config_options_and_errors():
    cfg = Config(seed=5)
    cfg.decouple.method, cfg.decouple.fslwf_novel_classes, cfg.decouple.fslwf_gamma = "fslwf", 2, 7.0
    cfg.model.head.squash = False
    fsl = build_method(cfg)
    assert isinstance(fsl, FewShotWithoutForgetting) and fsl.head == "cosine" and fsl.epochwise
    assert fsl.episode == {"novel": 2, "shots": 5, "queries": 3} and fsl.gamma == 7.0 and fsl.seed == 5
    assert (fsl.episodes, fsl.generator_epochs, fsl.steps, fsl.generator_lr) == (8, 60, 1000, 0.1)  # the paper's
    assert (fsl.scale, fsl.squash) == (16.0, False)
    assert [generator_lr_factor(e, 60) for e in (0, 19, 20, 39, 40, 49, 50, 59)] == [1, 1, 0.06, 0.06, 0.012, 0.012,
                                                                                     0.0024, 0.0024]
    cfg.decouple.keep = "best"
    with pytest.raises(ConfigError, match="fslwf keeps the last epoch"):
        build_method(cfg).check(has_val=True)
    none_many = clustered([50, 40, 10])
    with pytest.raises(ConfigError, match="needs many-shot .base. classes"):
        method().fit(none_many)
    epochs = []
    with pytest.raises(ConfigError, match="fslwf_novel_classes=2 needs more base"):
        method().fit(clustered([150, 120, 30]), Stage2Hooks(on_epoch=lambda *args: epochs.append(args)))
    with pytest.raises(ConfigError, match="fewer than decouple.fslwf_shots"):
        method(shots=100, queries=20).fit(clustered(COUNTS), Stage2Hooks(on_epoch=lambda *args: epochs.append(args)))
    assert epochs == []  # refused before the base classifier trains


# -- end to end: stage 1 -> feature cache -> fslwf stage 2 -> openlt eval ---------------------------------------

CONFIG = Path(__file__).parents[2] / "configs" / "fmnist_lt" / "decouple_fslwf.yaml"
TINY = ["data.dataset=image-folder", "data.image_size=16", "model.backbone=resnet10", "train.epochs=2",
        "train.batch_size=16", "train.lr=0.05", "eval.batch_size=64", "eval.many_above=15", "eval.few_below=10",
        "data.split.n_max=40", "data.split.n_min=8", "data.split.open_classes=[fox]", "data.split.val_per_class=4",
        "data.split.test_per_class=6", "data.split.order=label", "train.device=cpu"]


@pytest.fixture(scope="module")
def stage1(tmp_path_factory, single_thread):
    from images import make_image_folder

    tmp = tmp_path_factory.mktemp("fslwf")
    images = make_image_folder(tmp / "images", {"ant": 50, "bee": 40, "cat": 30, "dog": 25, "eel": 20, "fox": 12})
    config = tmp / "tiny.yaml"
    config.write_text("name: tiny\n")
    main_ok(["train", str(config), f"data.root={images}", f"out_dir={tmp / 'runs'}", *TINY, "--quiet"])
    return next((tmp / "runs").iterdir())


def test_stage2_from_a_stage1_run_writes_a_run_that_evaluates(stage1, tmp_path):
    out = tmp_path / "s2"
    main_ok(["train", str(CONFIG), f"train.init_from={stage1}", f"out_dir={out}", "train.epochs=2",
             "train.batch_size=16", "train.device=cpu", "decouple.fslwf_novel_classes=1",
             "decouple.fslwf_shots=2", "decouple.fslwf_queries=2", "decouple.fslwf_epochs=2",
             "decouple.fslwf_steps=5", "--quiet"])
    run = next(out.iterdir())
    details = json.loads((run / "decouple.json").read_text())
    manifest = json.loads((stage1 / "split_manifest.json").read_text())
    bands = manifest["bands"]["per_class"]
    assert details["method"] == "fslwf" and details["base_classes"] == [c for c, b in enumerate(bands) if b == "many"]
    assert len(details["base_classes"]) >= 2 and len(details["generated_classes"]) >= 1
    assert len(details["generator_curve"]) == 2 and details["squash"] is False
    s1, s2 = load_file(stage1 / "checkpoints/best.safetensors"), load_file(run / "checkpoints/best.safetensors")
    body = [k for k in s1 if not k.startswith("model.classifier.")]
    assert body and all(torch.equal(s1[k], s2[k]) for k in body)  # the representation is stage 1's
    assert [k for k in s2 if k.startswith("model.classifier.")] == ["model.classifier.weight"]
    saved = (run / "config.yaml").read_text()
    assert "classifier: cosine" in saved and "squash: false" in saved
    first = json.loads((run / "metrics.json").read_text())
    (run / "metrics.json").unlink()
    assert main(["eval", str(run), "--quiet"]) == 0  # openlt eval rebuilds the cosine head from config.yaml
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["closed"] == first["closed"] and 0 <= metrics["closed"]["overall"] <= 1
    assert "f_measure" in metrics["open"]
