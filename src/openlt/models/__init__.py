"""Backbones (feature extractors), classifier heads and the whole network.

The registries (``BACKBONES``, ``CLASSIFIERS``) live in :mod:`openlt.models._registry`; every implementation
module registers into them, and importing this package imports them all (timm's shape), so that a name is
known wherever anything from ``openlt.models`` is used.
"""

from openlt.models import backbones, cifar_resnet, classifier, meta_embedding  # noqa: F401  (they register)
from openlt.models._registry import BACKBONES, CLASSIFIERS, HeadFromConfig
from openlt.models.backbones import Backbone, build_backbone
from openlt.models.classifier import LinearClassifier, build_classifier

__all__ = ["BACKBONES", "CLASSIFIERS", "Backbone", "HeadFromConfig", "LinearClassifier", "build_backbone",
           "build_classifier"]
