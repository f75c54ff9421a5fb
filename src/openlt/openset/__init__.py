"""Open-set scores, "higher = more known", registered by name (`eval.open_score`).

Every score is an :class:`OpenSetScore`: ``fit(train_outputs)`` where it learns from training data
(OpenMax; Mahalanobis, KNN, ViM, ReAct on the penultimate features), then ``score(outputs)`` on a batch of model
outputs ("logits", "reachability", "feature"); ODIN is computed from the images through the network
(``needs_model``). The feature-based detectors and ODIN wrap pytorch-ood (the optional extra ``ood``). The stateless
ones are also plain functions (:func:`max_softmax`, :func:`max_logit`, :func:`negative_energy`,
:func:`reachability`), and :func:`open_score` scores with them by name.

The decision on a score (a threshold, calibrated on the known validation images or fixed; saved as a run's
calibration.json) is a :class:`Rejector`.
"""

from openlt.openset.base import (SCORES, NotFittedError, OpenSetScore, build_score, check_score_setting, fitted_on_ok,
                                 load_score, open_score, save_score, score_fitted_on)
from openlt.openset.detectors import KNN, Mahalanobis, ReAct, ViM
from openlt.openset.odin import ODIN
from openlt.openset.openmax import OpenMax
from openlt.openset.rejector import Rejector, check_rejection_config, check_threshold_range, parse_threshold
from openlt.openset.scores import (Energy, MaxLogit, MaxSoftmax, Reachability, max_logit, max_softmax, negative_energy,
                                   reachability)

__all__ = ["KNN", "ODIN", "SCORES", "Energy", "Mahalanobis", "MaxLogit", "MaxSoftmax", "NotFittedError", "OpenMax",
           "OpenSetScore", "ReAct", "Reachability", "ViM",
           "Rejector", "build_score", "check_score_setting", "check_rejection_config", "fitted_on_ok", "load_score",
           "max_logit", "max_softmax",
           "negative_energy", "open_score", "parse_threshold", "check_threshold_range", "reachability", "save_score",
           "score_fitted_on"]
