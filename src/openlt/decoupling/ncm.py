"""Nearest class mean (Kang et al., ICLR 2020, "Decoupling Representation and Classifier for Long-Tailed
Recognition", Sec. 4.2), in one place.

The three steps, as pure functions on tensors:

    z      = normalize(x - m)                       (:func:`ncm_transform`; m: the training features' mean with
                                                     centring, the public code's ``cl2n``, else nothing: ``l2n``)
    mu_c   = mean of z over the training samples of class c          (:func:`class_means`)
    logits = scale * z . normalize(mu_c)  or  -scale * ||z - mu_c||_2  (:func:`ncm_logits`)

They serve both faces of NCM: :class:`NCMClassifier`, an estimator fitted on cached features (``fit`` /
``logits`` / ``predict``), and the model head :class:`openlt.models.classifier.NCMHead`, which holds the fitted
means as buffers (filled from :meth:`NCMClassifier.head_state`) so that an NCM run saves, evaluates and
predicts like any other run.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.base import BaseEstimator
from torch import Tensor

from openlt.openset.base import CheckedParams
from openlt.decoupling._validate import _check_dim, _features, _labels, compute_dtype
from openlt.errors import ConfigError, DataError, NotFittedError

__all__ = ["METRICS", "NCMClassifier", "class_means", "class_sums", "ncm_logits", "ncm_transform"]

METRICS = ("cosine", "euclidean")


def ncm_transform(x: Tensor, feature_mean: Tensor | None = None, normalize: bool = True) -> Tensor:
    """(N, D) features -> (N, D) NCM space, in x's dtype: ``x - feature_mean`` when a (D,) mean is given (the
    public code's cl2n centring), then every row L2-normalised when ``normalize`` (its l2n)."""
    if feature_mean is not None:
        x = x - feature_mean.to(x)
    return F.normalize(x, dim=1) if normalize else x


def ncm_logits(z: Tensor, means: Tensor, metric: str, scale: float = 1.0) -> Tensor:
    """(N, C) logits of queries ``z`` (N, D, already in NCM space, see :func:`ncm_transform`) against class means
    (C, D) of the same dtype and device: ``scale * z . mu_c / ||mu_c||`` ("cosine"; z is taken as unit rows) or
    ``-scale * ||z - mu_c||_2`` ("euclidean"). Higher = nearer."""
    if metric == "cosine":
        return scale * z @ F.normalize(means, dim=1).t()
    return -scale * torch.cdist(z, means)


def class_means(z: Tensor, labels: Tensor, num_classes: int,
                transform: Callable[[Tensor], Tensor] | None = None, chunk: int = 8192) -> Tensor:
    """(C, D) float64 mean of the rows of ``z`` (N, D) per class, from (N,) int64 ``labels`` in [0, C), each row
    first passed through ``transform`` (row-wise, e.g. :func:`ncm_transform`) when given; DataError naming the
    classes without a sample. Sums in float64, ``chunk`` rows at a time (the same sums, in the same order, as all at
    once), so memory stays O(chunk x D) beyond ``z``: a float64 copy of iNaturalist's 437k x 2048 features is 7 GB."""
    counts = torch.bincount(labels, minlength=num_classes)
    empty = torch.nonzero(counts == 0).flatten().tolist()
    if empty:
        shown = ", ".join(map(str, empty[:10])) + (" ..." if len(empty) > 10 else "")
        raise DataError(f"NCM: {len(empty)} class(es) have no training sample, so no mean: {shown}")
    sums = class_sums(z, labels, num_classes, transform, chunk)
    return sums / counts.to(sums).unsqueeze(1)


def class_sums(z: Tensor, labels: Tensor, num_classes: int,
               transform: Callable[[Tensor], Tensor] | None = None, chunk: int = 8192) -> Tensor:
    """(C, D') float64 sums of the rows of ``z`` (N, D), any float dtype, per class of (N,) int64 ``labels`` in
    [0, C), each row first converted to float64 and passed through ``transform`` when given (row-wise, (n, D) ->
    (n, D'): :func:`ncm_transform`, OLTR's new feature fc); a class without rows sums to zeros. ``chunk`` rows at a
    time (the same sums, in the same order, as all at once), on the device of ``transform``'s output (``z``'s
    without one)."""
    sums = None
    labels = labels.to(z.device)
    for start in range(0, len(z), chunk):
        rows = z[start:start + chunk].double()
        rows = rows if transform is None else transform(rows).double()
        if sums is None:
            sums = torch.zeros(num_classes, rows.shape[1], dtype=torch.float64, device=rows.device)
        sums.index_add_(0, labels[start:start + chunk].to(rows.device), rows)
    return torch.zeros(num_classes, z.shape[1], dtype=torch.float64, device=z.device) if sums is None else sums


def _check_metric(metric: Any) -> None:
    """ConfigError unless `metric` is one of METRICS."""
    if not isinstance(metric, str) or metric not in METRICS:
        raise ConfigError(f"NCM metric must be 'cosine' or 'euclidean', got {metric!r}")


def _check_flag(value: Any, name: str) -> None:
    """ConfigError unless `value` is a bool (Python's or numpy's): NCM's ``normalize`` / ``center``."""
    if not isinstance(value, (bool, np.bool_)):
        raise ConfigError(f"NCM {name} must be True or False, got {value!r}")


def _num_classes(labels: Tensor, num_classes: int | None) -> int:
    """The class count: max(label) + 1 by default; ConfigError / DataError for a bad or too small value."""
    top = int(labels.max()) + 1
    if num_classes is None:
        return top
    if int(num_classes) != num_classes or num_classes < 1:
        raise ConfigError(f"num_classes must be a positive integer, got {num_classes!r}")
    if top > num_classes:
        raise DataError(f"label {top - 1} out of range for num_classes={num_classes}")
    return int(num_classes)


class NCMClassifier(CheckedParams, BaseEstimator):
    """Nearest class mean (Kang et al. 2020, Sec. 4.2): the mean feature of every class on the training set,
    then nearest neighbour by cosine similarity or Euclidean distance.

    * ``normalize=True`` L2-normalises every feature (training and query) before anything else, so the means
      are means of unit vectors (the public code's ``l2n`` features; ``center=True`` first subtracts the
      training mean of all features, its ``cl2n``).
    * ``metric="cosine"``: logits = cos(x, mu_c) (both sides normalised; the public code's ``cos`` instead
      takes raw dot products / D, which ranks identically only when the means have equal norms).
    * ``metric="euclidean"``: logits = -||x - mu_c||_2 (the public code returns the negative *squared*
      distance, which has the same argmax).

    ``fit(features, labels, num_classes=None)``: features (N, D) float (half precision upcast to float32),
    labels (N,) class ids; ``num_classes`` defaults to max(label) + 1; every class in ``[0, num_classes)`` needs
    at least one sample (otherwise DataError naming the empty classes). Fitted attributes: ``means_`` (C, D) in
    the features' dtype, ``num_classes_``, ``feature_mean_`` (D,) (None without ``center``). ``logits`` before
    ``fit`` raises :class:`openlt.errors.NotFittedError`. Features may be torch tensors or numpy arrays; the
    results are torch tensors.

    A scikit-learn estimator: ``metric``, ``normalize`` and ``center`` are its parameters (``get_params``,
    ``set_params``, ``sklearn.base.clone``); ``fit`` returns self.
    """

    fit_params = {"metric": "model.head.ncm_metric (NCM metric)", "normalize": "NCM normalize",
                  "center": "model.head.ncm_center (NCM center)"}  # the class means are computed with them
    param_checks = {"metric": lambda metric, _: _check_metric(metric),
                    "normalize": lambda normalize, _: _check_flag(normalize, "normalize"),
                    "center": lambda center, _: _check_flag(center, "center")}

    def __init__(self, metric: str = "cosine", normalize: bool = True, center: bool = False) -> None:
        self.metric = metric  # stored as given (scikit-learn parameters); read with bool() where used
        self.normalize = normalize
        self.center = center
        self.check_params()  # refused here, and again by fit / logits after set_params

    def _fitted(self, what: str) -> Tensor:
        """The fitted means; NotFittedError naming `what` was called before ``fit``."""
        if getattr(self, "means_", None) is None:
            raise NotFittedError(f"NCMClassifier: call fit(features, labels) before {what}()")
        return self.means_

    def fit(self, features: Any, labels: Any, num_classes: int | None = None) -> "NCMClassifier":
        """Fit the class means on features (N, D) float and labels (N,) class ids; returns self.

        ``num_classes`` defaults to max(label) + 1. Raises DataError for malformed or non-finite features (text
        arrays: naming the dtype), bad labels (text: "map class names to ids first"),
        a label >= ``num_classes`` or a class without a sample; ConfigError for a non-positive ``num_classes``.
        """
        self.check_params()  # set_params / an assigned attribute get past the constructor
        x = _features(features, keep_half=True)  # float16 stays float16: class_means converts a chunk at a time
        y = _labels(labels, len(x))
        if len(x) == 0:
            raise DataError("NCM needs at least one training feature")
        num_classes = _num_classes(y, num_classes)
        dtype = compute_dtype(x)  # float32 for half features, as if they had been upcast first
        # means of many unit vectors: accumulate in float64, a chunk of rows at a time (class_means); the
        # feature mean is the mean of one class holding every row (no float64 copy of all the features)
        self.feature_mean_ = None
        if self.center:
            everyone = torch.zeros(len(x), dtype=torch.int64)
            self.feature_mean_ = class_means(x, everyone, 1)[0].to(dtype)
        self.means_ = class_means(x, y, num_classes,
                                  lambda rows: ncm_transform(rows, self.feature_mean_, bool(self.normalize))).to(dtype)
        self.num_classes_ = num_classes
        return self

    def logits(self, features: Any) -> Tensor:
        """(N, C) logits of (N, D) features: cosine similarities in [-1, 1] or negative Euclidean distances."""
        self.check_params()
        means = self._fitted("logits")
        x = _features(features)
        _check_dim(x, means.shape[1], "NCM classifier")
        z = ncm_transform(x, self.feature_mean_, bool(self.normalize))
        if self.metric == "cosine":  # the query as a unit vector also when normalize=False
            z = F.normalize(z, dim=1)
        return ncm_logits(z, means.to(z), self.metric)

    def predict(self, features: Any) -> Tensor:
        """(N,) int64 index of the nearest class mean."""
        return self.logits(features).argmax(1)

    def head_state(self) -> dict[str, Tensor]:
        """The fitted means as entries of :class:`openlt.models.classifier.NCMHead`'s state dict: ``means``
        (C, D) and, when centred, ``feature_mean`` (D,)."""
        state = {"means": self._fitted("head_state")}
        if self.feature_mean_ is not None:
            state["feature_mean"] = self.feature_mean_
        return state
