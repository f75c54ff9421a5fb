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
