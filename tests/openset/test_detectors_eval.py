"""The detectors through `openlt eval` on a tiny trained run: the evaluator keeps the penultimate features for
the scores that need them, gives ViM / ReAct the linear head, computes ODIN batch by batch through the network,
writes the AUROC per shot band, and `predict` scores with a saved fitted detector."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("pytorch_ood", reason="the detectors wrap pytorch-ood (pip install 'openlt[ood]')")

from safetensors.torch import load_file  # noqa: E402

from tiny_run import train_with_cli  # noqa: E402  (tests/helpers)
from openlt.cli import main  # noqa: E402
from openlt.config import build_config  # noqa: E402
from openlt.data.transforms import normalisation  # noqa: E402
from openlt.engine.predict import Predictor  # noqa: E402
from openlt.engine.run import open_run  # noqa: E402
from openlt.engine.runtime import load_run_model, score_fit_args  # noqa: E402
from openlt.errors import ConfigError  # noqa: E402
from openlt.metrics import auroc  # noqa: E402
from openlt.models.model import build_model  # noqa: E402
from openlt.openset import build_score, load_score  # noqa: E402

REPORT_FIGURES = "unrasterized"  # tests/conftest.py: report.html figures built, not rendered (none is looked at)

CONFIGS = Path(__file__).parents[2] / "configs" / "fmnist_lt"
TINY = ["data.dataset=image-folder", "data.image_size=16", "model.backbone=resnet10", "train.epochs=1",
        "train.batch_size=16", "train.lr=0.05", "eval.batch_size=64", "eval.many_above=30", "eval.few_below=15",
        "data.split.n_max=40", "data.split.n_min=8", "data.split.open_classes=[eel]", "data.split.val_per_class=4",
        "data.split.test_per_class=6", "data.split.order=label", "train.device=cpu",
        "train.amp=none"]  # float32: the tests recompute features through the network in float32 (auto is bf16 on
# CPUs with bfloat16 units, and an evaluation runs in the run's recorded precision)


def cli(*args) -> int:
    return main([str(a) for a in args])


@pytest.fixture(scope="module")
def run(tmp_path_factory, single_thread):
    return open_run(train_with_cli(tmp_path_factory.mktemp("detectors"), TINY))


def network_view(run, split: str) -> tuple[torch.Tensor, torch.Tensor, list[float]]:
    """(images, penultimate features) of a split computed here, and the data's normalisation std."""
    _, data, model, _ = load_run_model(run)
    model.eval()
    dataset = data.dataset(split)
    images = torch.stack([dataset[i][0] for i in range(len(dataset))])
    with torch.no_grad():
        features = model.features(images)[1]
    return images, features, list(normalisation(data.cfg.data.dataset, data.in_chans, data.family)[1])


@pytest.mark.parametrize("name, options", [("mahalanobis", []), ("knn", ["eval.knn_k=5"])])
def test_a_feature_detector_is_fitted_on_the_train_features_and_scores_the_test_features(run, name, options):
    assert cli("eval", run.path, f"eval.open_score={name}", *options, "--tag", name, "--quiet") == 0
    metrics = json.loads(run.metrics_path(name).read_text())
    assert metrics["open_score"]["name"] == name
    samples = np.load(run.predictions_path(name))
    assert metrics["open"]["auroc"] == pytest.approx(auroc(samples["test_score"], samples["open_score"]))
    per_band = metrics["open"]["auroc_per_band"]
    assert set(per_band) == {"many", "medium", "few", "overall"} and per_band["overall"] == metrics["open"]["auroc"]
    bands = np.asarray(metrics["bands"]["per_class"])[samples["test_labels"]]
    for band in ("many", "medium", "few"):  # every band has test images in this split
        assert per_band[band] == pytest.approx(auroc(samples["test_score"][bands == band], samples["open_score"]))
    # the saved fit scores the network's own test features as the evaluation did
    _, features, _ = network_view(run, "test")
    scored = load_score(run.open_score_path(name)).score({"feature": features})
    np.testing.assert_allclose(scored.numpy(), samples["test_score"], rtol=1e-4, atol=1e-4)
    assert "AUROC, band vs open" in run.report_html_path(name).read_text()


def test_vim_and_react_get_the_linear_head_of_the_run(run):
    for name, options in (("vim", ["eval.vim_dim=32"]), ("react", [])):  # vim: below the 84 training images
        assert cli("eval", run.path, f"eval.open_score={name}", *options, "--tag", name, "--quiet") == 0
        metrics = json.loads(run.metrics_path(name).read_text())
        assert metrics["open_score"]["name"] == name and 0 <= metrics["open"]["auroc"] <= 1
    fitted = load_score(run.open_score_path("react"))
    _, _, model, _ = load_run_model(run)
    assert torch.equal(fitted.weight_, model.classifier.fc.weight.detach())
    assert torch.equal(fitted.bias_, model.classifier.fc.bias.detach())


def test_vim_with_a_subspace_of_all_the_training_images_is_refused_before_the_fit(run, capsys):
    """Issue 14: the paper's rule gives d = 256 for 512-wide features; this run has 84 training images, which span
    at most 84 directions: ViM fitted so had no residual (alpha ~1e6) and scored nothing, without a word."""
    capsys.readouterr()
    assert cli("eval", run.path, "eval.open_score=vim", "--tag", "vim-null", "--quiet") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and ("eval.vim_dim=null (the paper's rule: 256 for width 512) must be below the 84 "
                                      "training images ViM is fitted on (their features span at most 84 directions, "
                                      "leaving no residual): set eval.vim_dim to at most 83") in err, err
    assert not run.metrics_path("vim-null").exists()


def test_odin_is_computed_through_the_network_batch_by_batch(run):
    assert cli("eval", run.path, "eval.open_score=odin", "eval.odin_temperature=10", "eval.odin_eps=0.002",
               "--tag", "odin", "--quiet") == 0
    metrics = json.loads(run.metrics_path("odin").read_text())
    assert metrics["open_score"]["name"] == "odin" and metrics["open_score"]["temperature"] == 10
    assert metrics["calibration"]["score"] == "odin" and metrics["calibration"]["source"] != "fixed"
    samples = np.load(run.predictions_path("odin"))
    images, _, std = network_view(run, "test")
    _, _, model, _ = load_run_model(run)
    model.eval()
    odin = ["eval.open_score=odin", "eval.odin_temperature=10", "eval.odin_eps=0.002"]  # (options of another score: refused)
    direct = build_score("odin", build_config(None, odin).eval)
    expected = direct.score_images(lambda x: model(x)["logits"], images, std)
    np.testing.assert_allclose(samples["test_score"], expected.numpy(), rtol=1e-5, atol=1e-6)
    assert not np.allclose(samples["test_score"], samples["test_max_prob"])  # not the plain softmax


def test_predict_scores_with_a_saved_detector_and_with_odin(run, capsys):
    assert cli("eval", run.path, "eval.open_score=mahalanobis", "--quiet") == 0
    capsys.readouterr()
    images = sorted((run.path.parent.parent / "images" / "ant").glob("*.png"))[:2]
    assert cli("predict", run.path, *images, "--json") == 0
    preds = json.loads(capsys.readouterr().out)
    assert all(p["score"] == "mahalanobis" and p["open_score"] <= 0 for p in preds)
    # ODIN too: predict perturbs each batch through the network, as openlt eval does
    assert cli("eval", run.path, "eval.open_score=odin", "eval.odin_temperature=10", "--quiet") == 0
    predictor = Predictor.load(run, device="cpu")
    batch = predictor.preprocess([Image.open(path) for path in images])
    records = predictor.label(batch)
    _, _, std = network_view(run, "test")
    expected = predictor.scorer.score_images(lambda x: predictor.model(x)["logits"], batch, std)
    assert [r["score"] for r in records] == ["odin", "odin"]
    np.testing.assert_allclose([r["open_score"] for r in records], expected.numpy(), rtol=1e-6)


def test_a_decoupled_run_gives_the_detectors_its_cached_features(run, tmp_path):
    out = tmp_path / "crt"
    assert cli("train", CONFIGS / "decouple_crt.yaml", f"train.init_from={run.path}", f"out_dir={out}",
               "train.epochs=1", "train.batch_size=16", "train.device=cpu", "--quiet") == 0
    crt = open_run(next(out.iterdir()))
    assert cli("eval", crt.path, "eval.open_score=react", "--tag", "react", "--quiet") == 0
    fitted = load_score(crt.open_score_path("react"))
    cached = load_file(run.feature_cache("test"))["features"]  # what cRT was trained on: the stage-1 cache
    np.testing.assert_allclose(np.load(crt.predictions_path("react"))["test_score"],
                               fitted.score({"feature": cached}).numpy(), rtol=1e-6)
    _, _, model, _ = load_run_model(crt)
    assert torch.equal(fitted.weight_, model.classifier.fc.weight.detach())  # cRT's new head, not stage 1's


def test_vim_refuses_a_head_that_is_not_linear():
    cfg = build_config(None, ["model.backbone=resnet10", "model.classifier=cosine"])
    model = build_model(cfg, 3, 3, 16)
    with pytest.raises(ConfigError, match="needs a linear classifier head.*CosineClassifier"):
        score_fit_args(build_score("vim"), model)
    assert score_fit_args(build_score("mahalanobis"), model) == {}
