"""The models package in timm's shape: importing it registers every backbone and head, and every head is
built from the `model.head` config section by its own `from_config`."""

import dataclasses
import inspect

import pytest
import torch

from openlt.config import HeadConfig, build_config
from openlt.errors import ConfigError
from openlt.models import BACKBONES, CLASSIFIERS, HeadFromConfig, build_classifier
from openlt.models.meta_embedding import head_outputs
from openlt.models.model import build_model


def test_the_package_import_registers_everything():
    assert {"resnet10", "resnet18", "resnet32", "resnet110"} <= set(BACKBONES.names())
    assert set(CLASSIFIERS.names()) >= {"linear", "normed_linear", "ncm", "cosine", "meta_embedding"}


@pytest.mark.parametrize("name", CLASSIFIERS.names())
def test_every_head_reads_only_head_keys_its_constructor_takes(name):
    cls = CLASSIFIERS.get(name)
    assert issubclass(cls, HeadFromConfig)
    keys = {f.name for f in dataclasses.fields(HeadConfig)}
    params = inspect.signature(cls).parameters
    assert set(cls.config_keys) <= keys & set(params), name
    head = build_classifier(name, 8, 3, HeadConfig())
    defaults = {k: params[k].default for k in cls.config_keys}
    assert head.__class__ is cls and head_outputs(head, torch.randn(2, 8))["logits"].shape == (2, 3)
    assert all(getattr(HeadConfig(), k) == v for k, v in defaults.items()), "model.head defaults = the head's own"


def test_from_config_passes_the_head_section():
    head = build_classifier("ncm", 8, 3, HeadConfig(scale=4.0, ncm_metric="euclidean", ncm_center=True))
    assert (head.scale, head.metric, head.center) == (4.0, "euclidean", True)
    meta = build_classifier("meta_embedding", 8, 3, HeadConfig(use_memory=False, reach_scale=2.0))
    assert meta.hallucinator is None and meta.reach_scale == 2.0
    with pytest.raises(ConfigError, match="ncm_metric"):
        build_classifier("ncm", 8, 3, HeadConfig(ncm_metric="manhattan"))
    with pytest.raises(TypeError, match="not both"):
        build_classifier("linear", 8, 3, HeadConfig(), bias=False)


def test_build_model_builds_the_head_from_model_head():
    cfg = build_config(None, ["model.backbone=resnet20", "model.classifier=cosine", "model.head.scale=5",
                              "model.head.squash=false"])
    model = build_model(cfg, num_classes=4, in_chans=1, image_size=28)
    assert model.classifier.scale == 5.0 and not model.classifier.squash
