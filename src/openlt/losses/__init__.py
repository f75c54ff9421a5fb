"""Training losses, registered by name so that configs choose them (`train.loss`, `train.loss_args`).

Every loss is an nn.Module called as `loss(outputs, targets)`, where `outputs` is the model's dict
(`logits`, `feature`, and whatever a head adds): a loss on logits, on features, or both, fits one shape.
Learnable state (e.g. OLTR's centroids) lives in the model, which returns it in `outputs`; losses own no
parameters, so that one checkpoint of the model holds everything a run needs.

The registry lives in :mod:`openlt.losses._registry`; each implementation module registers into it, and this
package imports them all (timm's shape).
"""

from openlt.losses import centroid, cross_entropy, focal, metric, rebalance  # noqa: F401  (they register)
from openlt.losses._registry import (CLASS_WEIGHT_ARGS, LOSSES, build_loss, check_class_weights, check_loss_args,
                                     check_train_loss)
from openlt.losses.cross_entropy import CrossEntropy

__all__ = ["CLASS_WEIGHT_ARGS", "LOSSES", "CrossEntropy", "build_loss", "check_class_weights", "check_loss_args",
           "check_train_loss"]
