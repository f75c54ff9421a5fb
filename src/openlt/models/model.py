"""The whole network: backbone -> (modulated attention) -> pooled feature -> (fc) -> classifier head."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import Tensor, nn

from openlt.config import Config
from openlt.models.attention import ModulatedAttention
from openlt.models.backbones import build_backbone
from openlt.models.classifier import build_classifier
from openlt.models.meta_embedding import head_outputs


FEATURE_MODULES = ("backbone", "attention", "feature_fc")  # the representation; the head is "classifier"
HEAD_PREFIX = "classifier."  # the head's tensors in the model's state_dict


class OpenLTModel(nn.Module):
    """forward(x) -> dict with "logits", "feature" (what the head sees), "feature_map", plus whatever the
    head adds (the meta-embedding head: "direct", "reachability", "centroids", ...).

    Two optional hooks let a head speak for itself to the trainer (no name probes there): ``param_groups()``
    -> {group name: [parameters]} for head parameters with a learning rate of their own, and
    ``init_from_stage1(weights, class_means)`` -> [what was initialised] for a head that starts from a
    stage-1 run (:class:`~openlt.models.meta_embedding.MetaEmbeddingHead` has both)."""

    def __init__(self, backbone: nn.Module, classifier: nn.Module, attention: nn.Module | None = None,
                 feature_fc: nn.Module | None = None) -> None:
        super().__init__()
        self.backbone = backbone
        self.attention = attention
        self.feature_fc = feature_fc
        self.classifier = classifier

    def features(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Images (B, in_chans, H, W) -> ``(feature_map, feature)``.

        ``feature_map``: the backbone's last map (B, C, H', W'), after modulated attention when the model has it;
        ``feature``: its pooled vector (B, C), through ``feature_fc`` (Linear + ReLU, same width) when present -- what
        the head sees.
        """
        feature_map = self.backbone.forward_map(x)
        if self.attention is not None:
            feature_map = self.attention(feature_map)
        feature = self.backbone.pool(feature_map)
        if self.feature_fc is not None:
            feature = self.feature_fc(feature)
        return feature_map, feature

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """Images (B, in_chans, H, W) -> the head's output dict (``"logits"`` (B, num_classes) at least), plus
        ``"feature"`` (B, C) and ``"feature_map"`` (B, C, H', W') (see :meth:`features`).
        """
        feature_map, feature = self.features(x)
        out = head_outputs(self.classifier, feature)
        out["feature"], out["feature_map"] = feature, feature_map
        return out

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """Trainable parameters (requires_grad) by learning-rate group, each in ``named_parameters`` order:
        "backbone" (backbone, modulated attention and extra fc: the feature model, as in the public OLTR code's
        lr groups), "head", then the groups the head declares in its ``param_groups()`` (the meta-embedding
        head: "centroids"), whose parameters leave "head". Groups may be empty; the order is the optimizer's."""
        declared = getattr(self.classifier, "param_groups", None)
        own = declared() if declared is not None else {}
        group_of = {id(p): name for name, params in own.items() for p in params}
        groups: dict[str, list[nn.Parameter]] = {"backbone": [], "head": [], **{name: [] for name in own}}
        for name, param in self.named_parameters():
            if param.requires_grad:
                key = "backbone" if name.split(".", 1)[0] in FEATURE_MODULES else group_of.get(id(param), "head")
                groups[key].append(param)
        return groups

    def init_head_from_stage1(self, weights: Mapping[str, Tensor], class_means: Callable[[], Tensor]) -> list[str]:
        """Let the head initialise itself from a stage-1 run (its ``init_from_stage1`` hook; heads without one
        keep what the state-dict copy gave them). ``weights``: the stage-1 model's tensors by state-dict name;
        the head sees those under ``classifier.``, without that prefix. ``class_means()``: the (num_classes, D)
        float32 per-class means of the training features, computed only when the head asks. Returns what was
        initialised (for the log)."""
        hook = getattr(self.classifier, "init_from_stage1", None)
        if hook is None:
            return []
        head = {k[len(HEAD_PREFIX):]: v for k, v in weights.items() if k.startswith(HEAD_PREFIX)}
        return hook(head, class_means)


@torch.no_grad()
def feature_map_size(backbone: nn.Module, in_chans: int, image_size: int) -> tuple[int, int]:
    """(H', W') of the backbone's last map for one ``image_size`` x ``image_size`` image: one forward of zeros in
    eval mode (no batch-norm statistic moves, no random draw), the train / eval mode restored. Fixes the size of
    ``model.attention_spatial=fc``."""
    was_training = backbone.training
    backbone.eval()
    try:
        feature_map = backbone.forward_map(torch.zeros(1, in_chans, image_size, image_size))
    finally:
        backbone.train(was_training)
    return int(feature_map.shape[-2]), int(feature_map.shape[-1])


def build_model(cfg: Config, num_classes: int, in_chans: int, image_size: int) -> OpenLTModel:
    """The network of `cfg.model` for `num_classes` classes and `in_chans`-channel images of `image_size` px
    (the stem is the small-input one at 64 px or less unless model.small_input says otherwise). With
    model.attention_spatial=fc the attention's layer is sized for the backbone's map at `image_size`."""
    m = cfg.model
    small_input = m.small_input if m.small_input is not None else image_size <= 64
    backbone = build_backbone(m.backbone, small_input=small_input, in_chans=in_chans, pretrained=m.pretrained)
    dim = backbone.out_dim
    attention = None
    if m.attention:
        map_size = feature_map_size(backbone, in_chans, image_size) if m.attention_spatial == "fc" else None
        attention = ModulatedAttention(dim, spatial=m.attention_spatial, map_size=map_size)
    feature_fc = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(inplace=True)) if m.feature_fc else None
    classifier = build_classifier(m.classifier, dim, num_classes, m.head)  # each head reads its own model.head keys
    return OpenLTModel(backbone, classifier, attention, feature_fc)
