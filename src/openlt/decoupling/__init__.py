"""Decoupled classifier re-balancing on cached features (Kang et al., ICLR 2020): NCM, tau-normalisation,
LWS and cRT (:func:`train_on_features` on a fresh :class:`torch.nn.Linear`)."""

from openlt.decoupling.classifiers import (
    DEFAULT_TAUS,
    LWSClassifier,
    NCMClassifier,
    NotFittedError,
    TauNormClassifier,
    new_linear,
    search_tau,
    tau_normalize,
    train_on_features,
)

__all__ = [
    "DEFAULT_TAUS",
    "LWSClassifier",
    "NCMClassifier",
    "NotFittedError",
    "TauNormClassifier",
    "new_linear",
    "search_tau",
    "tau_normalize",
    "train_on_features",
]
