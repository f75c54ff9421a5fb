"""The whole network: a backbone giving (feature map, pooled feature) and a classifier head on top."""

from __future__ import annotations

from torch import Tensor, nn

from openlt.config import Config
from openlt.models.backbones import build_backbone
from openlt.models.classifier import build_classifier


class OpenLTModel(nn.Module):
    """forward(x) -> {"logits", "feature", "feature_map"}: the head's logits and what open-set scores need."""

    def __init__(self, backbone: nn.Module, classifier: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.classifier = classifier

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        feature_map, feature = self.backbone(x)
        return {"logits": self.classifier(feature), "feature": feature, "feature_map": feature_map}


def build_model(cfg: Config, num_classes: int, in_chans: int, image_size: int) -> OpenLTModel:
    small_input = cfg.model.small_input if cfg.model.small_input is not None else image_size <= 64
    backbone = build_backbone(cfg.model.backbone, small_input=small_input, in_chans=in_chans,
                              pretrained=cfg.model.pretrained)
    classifier = build_classifier(cfg.model.classifier, backbone.out_dim, num_classes)
    return OpenLTModel(backbone, classifier)
