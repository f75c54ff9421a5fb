"""Decoupled classifier re-balancing on cached features (Kang et al., ICLR 2020): the building blocks (NCM,
tau-normalisation, LWS, cRT's :func:`train_on_features` on a fresh :class:`torch.nn.Linear`) and the stage-2
methods built on them, registered by ``decouple.method`` name in :data:`STAGE2_METHODS`."""

from openlt.decoupling import methods  # noqa: F401  (registers the stage-2 methods)
from openlt.decoupling import fslwf  # noqa: F401  (registers FSLwF)
from openlt.decoupling._registry import STAGE2_METHODS, build_method, register_method
from openlt.decoupling.base import FittedHead, Stage2Data, Stage2Hooks, Stage2Method
from openlt.decoupling.classifiers import (
    DEFAULT_TAUS,
    LWS,
    LWSClassifier,
    TauNormClassifier,
    new_linear,
    search_tau,
    tau_normalize,
    train_on_features,
)
from openlt.decoupling.ncm import NCMClassifier
from openlt.errors import NotFittedError

__all__ = [
    "DEFAULT_TAUS",
    "STAGE2_METHODS",
    "FittedHead",
    "LWS",
    "LWSClassifier",
    "NCMClassifier",
    "NotFittedError",
    "Stage2Data",
    "Stage2Hooks",
    "Stage2Method",
    "TauNormClassifier",
    "build_method",
    "new_linear",
    "register_method",
    "search_tau",
    "tau_normalize",
    "train_on_features",
]
