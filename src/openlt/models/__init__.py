"""Backbones (feature extractors) and classifier heads."""

from openlt.models.backbones import BACKBONES, Backbone, build_backbone
from openlt.models.classifier import CLASSIFIERS, LinearClassifier, build_classifier

__all__ = ["BACKBONES", "CLASSIFIERS", "Backbone", "LinearClassifier", "build_backbone", "build_classifier"]
