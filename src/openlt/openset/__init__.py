"""Open-set scores, "higher = more known", registered by name (`eval.open_score`).

Every score is an :class:`OpenSetScore`: ``fit(train_outputs)`` where it learns from training data
(OpenMax), then ``score(outputs)`` on a batch of model outputs ("logits", "reachability"). The stateless
ones are also plain functions (:func:`max_softmax`, :func:`max_logit`, :func:`negative_energy`,
:func:`reachability`), and :func:`open_score` scores with them by name.
"""

from openlt.openset.base import (SCORES, NotFittedError, OpenSetScore, build_score, load_score, open_score,
                                 save_score)
from openlt.openset.openmax import OpenMax
from openlt.openset.scores import (Energy, MaxLogit, MaxSoftmax, Reachability, max_logit, max_softmax, negative_energy,
                                   reachability)

__all__ = ["SCORES", "Energy", "MaxLogit", "MaxSoftmax", "NotFittedError", "OpenMax", "OpenSetScore", "Reachability",
           "build_score", "load_score", "max_logit", "max_softmax", "negative_energy", "open_score", "reachability",
           "save_score"]
