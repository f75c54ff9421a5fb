"""engine/init_from.py: loading a stage-1 run's weights (prefix stripped once, backbone exactly), and the heads'
own stage-1 initialisation through OpenLTModel.init_head_from_stage1."""

import pytest
import torch

from openlt.config import Config
from openlt.engine.checkpoint import read_checkpoint, save_checkpoint
from openlt.engine.init_from import load_stage1_weights, model_weights
from openlt.errors import ConfigError, RunDirError
from openlt.models.model import build_model


def model_of(classifier: str = "linear", attention: bool = False, backbone: str = "resnet10", classes: int = 4):
    cfg = Config()
    cfg.model.backbone, cfg.model.classifier, cfg.model.attention = backbone, classifier, attention
    return build_model(cfg, classes, 1, 28)


@pytest.fixture(scope="module")
def stage1(tmp_path_factory):
    torch.manual_seed(1)
    model = model_of()
    path = tmp_path_factory.mktemp("stage1") / "best.safetensors"
    save_checkpoint(path, model)
    return model, read_checkpoint(path)[0]


def test_model_weights_strip_the_checkpoint_prefix(stage1):
    model, tensors = stage1
    weights = model_weights(tensors)
    assert weights.keys() == model.state_dict().keys()
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())


def test_init_from_copies_the_backbone_exactly_and_what_else_fits(stage1):
    source, tensors = stage1
    target = model_of("meta_embedding", attention=True)
    copied = load_stage1_weights(target, model_weights(tensors), "RUN")
    assert all(torch.equal(target.state_dict()[k], v) for k, v in source.state_dict().items() if k.startswith("backbone."))
    assert copied == []  # the stage-1 head (classifier.fc.*) has no counterpart in the meta-embedding head
    with pytest.raises(RunDirError, match="the backbone of RUN does not match"):
        load_stage1_weights(model_of(backbone="resnet20"), model_weights(tensors), "RUN")


def test_decoupled_stage2_keeps_the_representation_and_leaves_the_head(stage1):
    source, tensors = stage1
    target = model_of(classes=4)
    head_before = target.classifier.fc.weight.clone()
    load_stage1_weights(target, model_weights(tensors), "RUN", head=False)
    assert torch.equal(target.classifier.fc.weight, head_before)
    with pytest.raises(ConfigError, match="does not match the model: missing .*attention"):
        load_stage1_weights(model_of(attention=True), model_weights(tensors), "RUN", head=False)


def test_the_meta_embedding_head_initialises_itself_from_stage1(stage1):
    source, tensors = stage1
    target = model_of("meta_embedding")
    means = torch.randn(4, target.backbone.out_dim)
    asked = []
    done = target.init_head_from_stage1(model_weights(tensors), lambda: asked.append(1) or means)
    assert done == ["hallucinator <- stage-1 classifier", "centroids <- class means of training features"]
    assert asked == [1] and torch.equal(target.classifier.centroids.data, means)
    assert torch.equal(target.classifier.hallucinator.weight.data, source.classifier.fc.weight.data)
    assert torch.equal(target.classifier.hallucinator.bias.data, source.classifier.fc.bias.data)


def test_heads_without_a_hook_are_left_alone_and_class_means_are_not_computed(stage1):
    _, tensors = stage1
    target = model_of()
    assert target.init_head_from_stage1(model_weights(tensors), lambda: pytest.fail("computed")) == []


def _fake_run(path, overrides, done=None):
    """A run directory holding only its config.yaml and metrics.jsonl (`done` epochs, default all of
    train.epochs): what check_stage1_run reads."""
    from openlt.config import build_config
    from openlt.engine.run import Run

    path.mkdir(parents=True)
    cfg = build_config(None, overrides)
    run = Run(path)
    run.write_config(cfg)
    epochs = cfg.train.epochs if done is None else done
    run.log_file.write_text("".join(f'{{"epoch": {e}}}\n' for e in range(1, epochs + 1)))
    return path


NOT_STAGE1 = [
    ("decoupled", ["decouple.method=crt", "train.init_from=/x/plain", "model.classifier=linear"],
     "a decoupled stage-2 run (decouple.method=crt)"),
    ("oltr", ["train.init_from=/x/plain", "model.classifier=meta_embedding", "model.attention=true"],
     "itself a stage-2 run (train.init_from=/x/plain, model.classifier=meta_embedding)"),
    ("stage2-plain", ["train.init_from=/x/plain"], "itself a stage-2 run (train.init_from=/x/plain"),
]


@pytest.mark.parametrize("kind, overrides, says", NOT_STAGE1, ids=[k for k, _, _ in NOT_STAGE1])
@pytest.mark.parametrize("stage2", ["oltr_stage2", "stage2_plain"])
def test_a_stage2_refuses_a_run_that_is_not_stage1_before_any_work(tmp_path, capsys, kind, overrides, says, stage2):
    from pathlib import Path

    from openlt.cli import main

    source = _fake_run(tmp_path / "source", overrides)
    config = Path(__file__).parents[2] / "configs" / "fmnist_lt" / f"{stage2}.yaml"
    code = main(["train", str(config), f"train.init_from={source}", f"out_dir={tmp_path / 'runs'}", "--quiet"])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(err) == 1, err
    assert f"train.init_from={source} is {says}" in err[0] and "not a stage-1 run" in err[0], err[0]
    assert not (tmp_path / "runs").exists()


def test_oltr_stage2_needs_a_linear_stage1_head(tmp_path):
    from openlt.config import build_config
    from openlt.engine.init_from import check_stage1_run

    for head in ("normed_linear", "cosine"):
        source = _fake_run(tmp_path / head, [f"model.classifier={head}"])
        oltr = build_config(None, [f"train.init_from={source}", "model.classifier=meta_embedding"])
        with pytest.raises(ConfigError, match=f"model.classifier={head}: OLTR stage 2 starts its hallucinator"):
            check_stage1_run(oltr)
        # without the memory there is no hallucinator to start: any stage-1 head will do
        check_stage1_run(build_config(None, [f"train.init_from={source}", "model.classifier=meta_embedding",
                                             "model.head.use_memory=false"]))
    plain = _fake_run(tmp_path / "plain", [])
    check_stage1_run(build_config(None, [f"train.init_from={plain}", "model.classifier=meta_embedding"]))


def _train(tmp_path, config, *args):
    from pathlib import Path

    from openlt.cli import main

    path = Path(__file__).parents[2] / "configs" / "fmnist_lt" / f"{config}.yaml"
    return main(["train", str(path), f"out_dir={tmp_path / 'runs'}", "--quiet", *args])


@pytest.mark.parametrize("stage2", ["oltr_stage2", "stage2_plain", "decouple_ncm", "decouple_crt"])
def test_a_stage2_refuses_an_interrupted_stage1_run_before_any_work(tmp_path, capsys, stage2):
    source = _fake_run(tmp_path / "source", ["model.backbone=resnet10", "train.epochs=30"], done=7)
    code = _train(tmp_path, stage2, f"train.init_from={source}")
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(err) == 1, err
    assert str(source) in err[0] and "after 7 of its 30 epochs" in err[0], err[0]
    assert f"openlt train --resume {source}" in err[0], err[0]
    assert not (tmp_path / "runs").exists()


def test_oltr_stage2_refuses_another_backbone_than_stage1s_before_any_work(tmp_path, capsys):
    source = _fake_run(tmp_path / "source", ["model.backbone=resnet10"])
    code = _train(tmp_path, "oltr_stage2", f"train.init_from={source}", "model.backbone=resnet18")
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(err) == 1, err
    assert "model.backbone=resnet18 differs from the stage-1 run's model.backbone=resnet10" in err[0], err[0]
    assert not (tmp_path / "runs").exists()


def test_bad_loss_args_are_refused_before_the_run_directory_exists(tmp_path, capsys):
    code = _train(tmp_path, "plain", "train.loss_args.bogus=3")
    err = capsys.readouterr().err
    assert code == 2 and "bad arguments for loss 'ce'" in err and "bogus" in err, err
    assert not (tmp_path / "runs").exists()
