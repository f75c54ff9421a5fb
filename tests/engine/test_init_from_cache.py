"""OLTR's stage-2 centroids from the stage-1 run's feature cache (engine/init_from.py): the same class means as a
pass through the network, one pass per stage-1 run, and the pass itself where the cache cannot give them."""

import shutil
from pathlib import Path

import pytest
import torch

from openlt.config import build_config
from openlt.data.build import prepare_data
from openlt.engine import init_from
from openlt.engine.run import open_run
from openlt.models.model import build_model
from tiny_run import TINY, the_run, train_tiny_run

REPORT_FIGURES = "unrasterized"  # tests/conftest.py: report.html figures built, not rendered (none is looked at)

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def stage1(tmp_path_factory, shared_run):
    # float32: its cache is extracted in float32, as the pass through the network computes (a bf16 run: below);
    # train_tiny_run(root, "train.amp=none") there
    return the_run(shared_run("api-fp32", tmp_path_factory.mktemp("stage1")) / "runs")


def _stage2(run, *extra, root=None):
    """A meta-embedding stage 2 of `run` (modulated attention) on its split: (model, data), nothing loaded yet;
    its images under `root` (None: the run's data.root)."""
    cfg = build_config(None, [f"data.root={root or run.config().data.root}", *TINY,
                              f"data.split_dir={run.path / 'splits'}",
                              "model.classifier=meta_embedding", "model.attention=true",
                              f"train.init_from={run.path}", *extra])
    data = prepare_data(cfg)
    torch.manual_seed(0)
    return build_model(cfg, data.num_classes, data.in_chans, data.image_size), data


def _init(run, model, data):
    lines = []
    init_from.init_from_run(model, str(run.path), data, CPU, 64, 0, False, lines.append, quiet=True)
    return lines[0]


def _network_means(run, *extra, root=None):
    """The centroids the pass through the network gives (the cache not asked)."""
    model, data = _stage2(run, *extra, root=root)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(init_from, "cached_class_means", lambda *a, **k: pytest.fail("cache used"))
        mp.setattr(init_from, "head_input_from_stage1", lambda *a: (False, None))
        _init(run, model, data)
    return model.classifier.centroids.detach().clone()


def _forbid_network(mp):
    mp.setattr(init_from, "class_means", lambda *a, **k: pytest.fail("a pass through the network"))


def test_centroids_from_the_cache_equal_the_pass_through_the_network_and_the_cache_is_made_once(stage1, monkeypatch):
    cache = Path(stage1.path) / "features" / "train.safetensors"
    assert not cache.exists()
    expected = _network_means(stage1)
    _forbid_network(monkeypatch)
    model, data = _stage2(stage1)
    line = _init(stage1, model, data)
    assert "centroids <- class means of training features (the stage-1 run's feature cache)" in line
    assert cache.is_file()  # extracted once, into the stage-1 run, for the next stage 2 (and any decoupled one)
    torch.testing.assert_close(model.classifier.centroids.detach(), expected, rtol=1e-5, atol=1e-5)
    assert expected.abs().sum() > 0

    from openlt.engine import features

    monkeypatch.setattr(features, "extract_features", lambda *a, **k: pytest.fail("extracted again"))
    again, data = _stage2(stage1)
    _init(stage1, again, data)  # the cache is fresh: read, not rebuilt
    assert torch.equal(again.classifier.centroids, model.classifier.centroids)


def test_a_new_feature_fc_maps_the_cached_features(stage1, monkeypatch):
    expected = _network_means(stage1, "model.feature_fc=true")
    _forbid_network(monkeypatch)
    model, data = _stage2(stage1, "model.feature_fc=true")
    assert "feature cache" in _init(stage1, model, data)
    torch.testing.assert_close(model.classifier.centroids.detach(), expected, rtol=1e-5, atol=1e-5)


def test_features_that_do_not_follow_from_the_stage1_runs_are_passed_through_the_network(stage1, monkeypatch):
    model, data = _stage2(stage1)
    weights = init_from.model_weights(init_from.read_checkpoint(stage1.checkpoint("best"))[0])
    copied = init_from.load_stage1_weights(model, weights, "RUN")
    source = open_run(stage1.path)
    assert init_from.head_input_from_stage1(model, weights, copied, source, data) == (True, None)
    with torch.no_grad():
        model.attention.out.weight[0, 0] = 1.0  # an attention that is no longer the identity
    assert init_from.head_input_from_stage1(model, weights, copied, source, data) == (False, None)
    other, other_data = _stage2(stage1, "data.image_size=20")  # another evaluation transform
    assert init_from.head_input_from_stage1(other, weights, copied, source, other_data) == (False, None)
    with_fc = dict(weights, **{"feature_fc.0.weight": torch.zeros(1)})  # the run had a module the model lacks
    assert init_from.head_input_from_stage1(model, with_fc, copied, source, data) == (False, None)
    (Path(stage1.path) / "inference.json").rename(Path(stage1.path) / "inference.json.away")  # an older run
    try:
        assert init_from.head_input_from_stage1(_stage2(stage1)[0], weights, [], source, data) == (False, None)
    finally:
        (Path(stage1.path) / "inference.json.away").rename(Path(stage1.path) / "inference.json")


def test_a_stage2_reading_another_copy_of_the_images_passes_them_through_the_network(stage1, tmp_path, monkeypatch):
    # the cache is keyed by the split files, not the images: a data.root with other pixels under the same names (a
    # resized copy, say) took the stage-1 folder's cached features (centroids 100% off); now its own images
    from PIL import Image, ImageOps

    copy = tmp_path / "images"
    shutil.copytree(stage1.config().data.root, copy)
    for path in copy.rglob("*.png"):
        ImageOps.invert(Image.open(path).convert("RGB")).save(path)
    _init(stage1, *_stage2(stage1))  # the stage-1 folder's cache is there
    expected = _network_means(stage1, root=copy)
    model, data = _stage2(stage1, root=copy)
    assert "feature cache" not in _init(stage1, model, data)
    torch.testing.assert_close(model.classifier.centroids.detach(), expected)
    again, data = _stage2(stage1, root=f"{stage1.config().data.root}/../images/")  # the same folder, spelt otherwise
    _forbid_network(monkeypatch)
    assert "feature cache" in _init(stage1, again, data)


def test_mean_per_class_sums_in_chunks_and_leaves_an_empty_class_at_zero():
    features = torch.randn(50, 3, generator=torch.Generator().manual_seed(0)).half()
    labels = torch.tensor([0, 2] * 25)
    means = init_from.mean_per_class(features, labels, 4, chunk=7)
    assert means.dtype == torch.float32 and means.shape == (4, 3)
    torch.testing.assert_close(means[0], features[0::2].double().mean(0).float())
    assert torch.equal(means[1], torch.zeros(3)) and torch.equal(means[3], torch.zeros(3))
    doubled = init_from.mean_per_class(features, labels, 4, transform=lambda rows: 2 * rows, chunk=9)
    torch.testing.assert_close(doubled, 2 * means)


def test_a_bf16_run_gives_its_centroids_from_bf16_features(tmp_path, monkeypatch):
    # the cache holds the features the run is evaluated with: in the precision it trained in (as a decoupled stage
    # 2 of it is fitted on); the float32 pass differs by bf16's rounding
    run = train_tiny_run(tmp_path, "train.amp=bf16")
    expected = _network_means(run)
    _forbid_network(monkeypatch)
    model, data = _stage2(run)
    assert "feature cache" in _init(run, model, data)
    got = model.classifier.centroids.detach()
    assert not torch.equal(got, expected)
    assert (got - expected).norm() / expected.norm() < 2e-2
