"""The whole network: backbone -> (modulated attention) -> pooled feature -> (fc) -> classifier head."""

from __future__ import annotations

from torch import Tensor, nn

from openlt.config import Config
from openlt.models.attention import ModulatedAttention
from openlt.models.backbones import build_backbone
from openlt.models.classifier import build_classifier
from openlt.models.meta_embedding import head_outputs

HEAD_OPTIONS = {"linear": (), "normed_linear": (), "cosine": ("scale", "squash"), "ncm": ("scale", "ncm_metric", "ncm_center"),
                "meta_embedding": ("scale", "squash", "reach_scale", "use_memory", "use_selector", "use_reachability")}


class OpenLTModel(nn.Module):
    """forward(x) -> dict with "logits", "feature" (what the head sees), "feature_map", plus whatever the
    head adds (the meta-embedding head: "direct", "reachability", "centroids", ...)."""

    def __init__(self, backbone: nn.Module, classifier: nn.Module, attention: nn.Module | None = None,
                 feature_fc: nn.Module | None = None) -> None:
        super().__init__()
        self.backbone = backbone
        self.attention = attention
        self.feature_fc = feature_fc
        self.classifier = classifier

    def features(self, x: Tensor) -> tuple[Tensor, Tensor]:
        feature_map = self.backbone.forward_map(x)
        if self.attention is not None:
            feature_map = self.attention(feature_map)
        feature = self.backbone.pool(feature_map)
        if self.feature_fc is not None:
            feature = self.feature_fc(feature)
        return feature_map, feature

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        feature_map, feature = self.features(x)
        out = head_outputs(self.classifier, feature)
        out["feature"], out["feature_map"] = feature, feature_map
        return out


def build_model(cfg: Config, num_classes: int, in_chans: int, image_size: int) -> OpenLTModel:
    m = cfg.model
    small_input = m.small_input if m.small_input is not None else image_size <= 64
    backbone = build_backbone(m.backbone, small_input=small_input, in_chans=in_chans, pretrained=m.pretrained)
    dim = backbone.out_dim
    attention = ModulatedAttention(dim) if m.attention else None
    feature_fc = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(inplace=True)) if m.feature_fc else None
    options = {key: getattr(m.head, key) for key in HEAD_OPTIONS.get(m.classifier, ())}
    classifier = build_classifier(m.classifier, dim, num_classes, **options)
    return OpenLTModel(backbone, classifier, attention, feature_fc)
