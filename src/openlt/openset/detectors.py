"""Feature-based open-set detectors, each a thin wrapper of pytorch-ood's implementation (the optional extra
``pip install 'openlt[ood]'``; pytorch-ood 0.4 needs only torch, torchvision, scipy, numpy and
typing-extensions, all openlt's own dependencies), fitted on the training split's penultimate features
("feature", N x D: what the classifier head sees) and scored "higher = more known" (pytorch-ood's outlier
scores negated):

* ``mahalanobis`` (Lee et al., NeurIPS 2018): class-conditional Gaussians with one tied covariance; score
  -1/2 min_k (z - mu_k)^T S^-1 (z - mu_k), with pytorch-ood's S the *sum* of the centred outer products
  (not divided by N) plus 1e-6 I: the paper's Mahalanobis distance under the covariance S / N, divided by N
  (the same ranking; the threshold lives in these units). pytorch-ood's fit and scoring, both computed by openlt:
  the fit in one pass of class sums and one of the centred scatter over chunks of rows (:func:`class_means`,
  :func:`centred_scatter`, O(N D^2 + D^3); pytorch-ood's loop over the classes adds O(N K + K D^2)), the scoring
  by :func:`min_quadratic_distance` (pytorch-ood's loop over the classes costs O(K N D^2)).
* ``knn`` (Sun et al., ICML 2022, "Out-of-Distribution Detection with Deep Nearest Neighbors"): minus the
  Euclidean distance of the L2-normalised feature to its k-th nearest normalised training feature. The search
  is openlt's own (:func:`knn_distance`, equal to pytorch-ood's KNN to float32 rounding), in memory bounded by a
  chunk: pytorch-ood's fit holds three copies of the N x D training features (10 GB at iNaturalist size).
* ``vim`` (Wang et al., CVPR 2022, "ViM: Out-Of-Distribution with Virtual-logit Matching"): energy of the
  logits minus the virtual logit alpha ||x^{P perp}||, the norm of the feature (centred at u = -W^+ b) outside
  its principal subspace of dimension d, alpha = mean max-logit / mean residual norm on the training split.
  pytorch-ood's origin and scoring; its fit computed by openlt in chunks of rows (:func:`centred_scatter`,
  :func:`vim_alpha`), without pytorch-ood's N x K training logits and N x D centred copy.
* ``react`` (Sun et al., NeurIPS 2021, "ReAct: Out-of-distribution Detection With Rectified Activations"):
  the features clipped at the p-th percentile of the training activations, the logits recomputed through
  the linear head, then their energy logsumexp (the paper's ReAct + energy).

Each takes the features as an outputs dict (``{"feature": (N, D), "labels": (N,)}``, what openlt eval collects)
or as they are: ``fit(X, y)`` with X (N, D) and y (N,) class ids (numpy arrays, tensors or lists), ``score(X)``
with X (M, D) of the training features' width D, giving (M,) float32 (an empty X gives an empty score). A
score before ``fit`` is a NotFittedError, features of another width a ValueError naming the expected shape.

ViM and ReAct need the classifier's linear map (``needs_head``: ``fit(..., head=(W, b))``); openlt eval gives
it for a linear head (plain, cRT, LWS, tau-norm, logit adjustment) and refuses other heads (cosine,
meta-embedding, NCM, normed linear) with a ConfigError. Each score keeps what it learnt as tensors
(``state_dict``), so a run's open-score.safetensors restores it without the training data.
"""

from __future__ import annotations

import numbers

from typing import Any, Callable, Mapping

import numpy as np
import torch

from openlt.errors import ConfigError, DataError
from openlt.openset.base import (SCORES, Head, NotFittedError, OpenSetScore, Outputs, as_outputs, as_tensor,
                                 features_of, features_warning, no_linear_head, number_check)


def ood_detectors(score: str) -> Any:
    """The ``pytorch_ood.detector`` module; ConfigError naming the optional extra when pytorch-ood is missing."""
    try:
        import pytorch_ood.detector as detectors  # optional dependency: the `ood` extra
    except ImportError as exc:
        raise ConfigError(f"eval.open_score={score} wraps pytorch-ood, which is not installed here "
                          f"({exc}): pip install 'openlt[ood]'") from None
    return detectors


def feature_input(outputs: Outputs | Any, name: str, labels: Any = None) -> dict[str, torch.Tensor]:
    """The outputs dict of a feature-based score: a mapping with ``"feature"`` (N, D) as it is, or the (N, D)
    features themselves as a numpy array, a tensor or a list of rows (what ``fit(X, y)`` / ``score(X)`` pass);
    `labels` (N,) are added as ``"labels"``. TypeError for anything else."""
    if isinstance(outputs, (np.ndarray, torch.Tensor, list, tuple)):
        outputs = {"feature": as_tensor(outputs, "features")}
    elif not isinstance(outputs, Mapping):
        raise TypeError(f"open-set score {name!r} takes (N, D) features (an array or tensor) or an outputs dict "
                        f"with 'feature', got {type(outputs).__name__}")
    return as_outputs(outputs, labels)


def scored_features(score: OpenSetScore, outputs: Outputs | Any, fitted: str, width: Callable[[], int]) -> torch.Tensor:
    """The (N, D) float32 features `score` is asked to score, once it is fitted (NotFittedError naming `fitted`
    first), D the width of the training features (`width()`): ValueError naming the expected shape otherwise."""
    _fitted(score, fitted)
    feats = features_of(feature_input(outputs, score.name), score.name)
    if not torch.isfinite(feats).all():
        raise DataError(f"{score.name}.score: the features contain NaN or infinite values")
    if feats.shape[1] != width():
        raise ValueError(f"{score.name}.score: features must be (N, {width()}), as wide as the training features; "
                         f"got shape {tuple(feats.shape)}")
    return feats


def training_features(outputs: Outputs | Any, labels: Any, name: str,
                      float32: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """(features (N, D) float32, labels (N,) int64) of training outputs (an outputs dict, or the (N, D) features
    with `labels`); every class 0 .. max label must have an image (DataError otherwise), ValueError for no
    feature, missing labels or mis-matched lengths. ``float32=False``: the features as given (float16 stays
    float16, a caller's tensor is not copied), for a score that converts them chunk by chunk (:class:`KNN`)."""
    outputs = feature_input(outputs, name, labels)
    feats = features_of(outputs, name) if float32 else _raw_features(outputs, name)
    if not len(feats) or not feats.shape[1]:
        raise ValueError(f"{name}.fit needs training features (N, D) with N >= 1 and D >= 1, got shape "
                         f"{tuple(feats.shape)}")
    if "labels" not in outputs:
        raise ValueError(f"{name}.fit needs the training labels: fit(features, labels) or outputs['labels']")
    if not _all_finite(feats):
        raise DataError(f"{name}.fit: the training features contain NaN or infinite values")
    y = outputs["labels"]
    if y.is_floating_point() and not torch.equal(y, y.round()):  # 0.9 would become class 0
        raise DataError(f"{name}.fit: training labels must be integer class ids, got non-integral values")
    y = y.long()
    if y.shape != (feats.shape[0],):
        raise ValueError(f"{name}.fit: labels must be ({feats.shape[0]},), one per feature, got {tuple(y.shape)}")
    if int(y.min()) < 0:
        raise DataError(f"{name}.fit: training labels must be >= 0 (known classes), got {int(y.min())}")
    missing = sorted(set(range(int(y.max()) + 1)) - set(y.unique().tolist()))
    if missing:
        raise DataError(f"{name}.fit: classes {missing[:10]} have no training image")
    return feats, y


def _raw_features(outputs: Mapping[str, torch.Tensor], name: str) -> torch.Tensor:
    """``outputs["feature"]`` (N, D) in its own dtype (features_of's checks, without its float32 copy)."""
    if "feature" not in outputs or outputs["feature"].dim() != 2:
        features_of(outputs, name)  # its ConfigError (no features) / ValueError (not 2-D)
    return outputs["feature"]


def _all_finite(feats: torch.Tensor) -> bool:
    """No NaN / inf in `feats`, checked a chunk of rows at a time (isfinite's bool copy of N x D is 0.9 GB at
    iNaturalist's training features); integer features are finite."""
    if not feats.is_floating_point():
        return True
    rows = max(1, _ROW_ELEMENTS // max(1, feats.shape[-1]))
    return all(bool(torch.isfinite(part).all()) for part in feats.split(rows))


def linear_head(head: Head | None, name: str, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight (K, D), bias (K,)) float32 of the classifier's linear map; ConfigError when there is none (a head
    that is not linear), ValueError for shapes that do not match the D-wide features."""
    if head is None:
        raise ConfigError(no_linear_head(name, "this model has none"))
    weight, bias = (torch.as_tensor(t).detach().float().cpu() for t in head)
    if weight.dim() != 2 or weight.shape[1] != dim or bias.shape != (weight.shape[0],):
        raise ValueError(f"{name}: head weight must be (K, {dim}) and bias (K,), got {tuple(weight.shape)} and "
                         f"{tuple(bias.shape)}")
    return weight, bias


def _fitted(score: OpenSetScore, attribute: str) -> None:
    if not hasattr(score, attribute):
        raise NotFittedError(f"open-set score {score.name!r} is not fitted: call fit(features, labels) (or "
                             f"fit(outputs) with 'feature' and 'labels') first")


@SCORES.register("mahalanobis")
class Mahalanobis(OpenSetScore):
    """``mahalanobis``: minus half the smallest Mahalanobis distance of the feature to a class mean, with one
    tied covariance (Lee et al. NeurIPS 2018; pytorch-ood's ``Mahalanobis``, see the module doc for its units).

    No parameters. Learnt by :meth:`fit`: ``means_`` (K, D) float32 class means, ``precision_`` (D, D) float32
    inverse of the summed within-class scatter."""

    name = "mahalanobis"
    requires_fit = True
    needs_features = True
    fits_half_features = True  # converted a chunk of rows at a time (centred_scatter)

    def __init__(self) -> None:
        ood_detectors(self.name)

    def fit(self, outputs: Outputs | Any, labels: Any = None, head: Head | None = None) -> "Mahalanobis":
        """Fit the class means and tied precision on the training ``"feature"`` (N, D) and ``"labels"`` (N,);
        returns self. DataError for a class without an image, ConfigError without features.

        pytorch-ood's fit, computed in O(N D^2 + D^3) time (:func:`class_means`, :func:`centred_scatter`): its loop
        over the classes compares all N labels with each class and adds a (D, D) product per class, O(N K + K D^2)
        on top (an upper bound of 273 s at iNaturalist size). The features stay as given (a float16 cache is
        converted a chunk of rows at a time); equal to pytorch-ood's fit to float32 rounding
        (tests/openset/test_detector_fits.py)."""
        feats, y = training_features(outputs, labels, self.name, float32=False)
        means = class_means(feats, y, int(y.max()) + 1)
        centres, y = means.to(fit_dtype(feats)), y.cpu()  # float32 as pytorch-ood's means (float64 features: float64)
        scatter = centred_scatter(feats, lambda start, stop: centres[y[start:stop]])
        scatter.diagonal().add_(1e-6)  # pytorch-ood's ridge: the summed scatter + 1e-6 I
        self.means_, self.precision_ = means.float(), torch.linalg.inv(scatter).float()
        self.warning_ = features_warning(self.name, feats)  # no spread: the AUROC is float rounding
        return self

    def score(self, outputs: Outputs | Any) -> torch.Tensor:
        """(N,) float32 ``-1/2 min_k (z - mu_k)^T precision (z - mu_k)`` of ``outputs["feature"]`` (N, D), <= 0.

        Computed as z^T P z - 2 z^T P mu_k + mu_k^T P mu_k in float64, chunk by chunk: O(N D^2 + N K D) time and
        memory bounded by the chunk, where pytorch-ood's class loop is O(K N D^2) (hours at iNaturalist's 8,142
        classes); equal to pytorch-ood's scores to float32 rounding (tests/openset/test_detectors.py)."""
        feats = scored_features(self, outputs, "means_", lambda: self.means_.shape[1])
        return -0.5 * min_quadratic_distance(feats, self.means_, self.precision_)

    def summary(self) -> dict:
        """Name and, once fitted, the number of classes and the feature width."""
        out = {"name": self.name, "covariance": "tied (pytorch-ood: summed scatter + 1e-6 I)"}
        if hasattr(self, "means_"):
            out.update({"num_classes": int(self.means_.shape[0]), "feature_dim": int(self.means_.shape[1])})
        return out

    def state_dict(self) -> dict[str, torch.Tensor]:
        """``means`` (K, D) and ``precision`` (D, D), float32; NotFittedError before :meth:`fit`."""
        _fitted(self, "means_")
        return {"means": self.means_, "precision": self.precision_}

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> "Mahalanobis":
        """Restore :meth:`state_dict`'s tensors (KeyError for a missing one); returns self."""
        self.means_, self.precision_ = state["means"].float(), state["precision"].float()
        return self


_ROW_ELEMENTS = 1 << 24  # (rows, K) float64 distances held at once: 128 MB


_FIT_ELEMENTS = 1 << 22  # feature values a fit converts at once: 2,048 x 2,048, 16 MB float32 (32 MB float64)


def _fit_rows(width: int) -> int:
    """Rows of `width` features a fit converts and multiplies at a time (at least one)."""
    return max(1, _FIT_ELEMENTS // max(1, width))


def class_means(feats: torch.Tensor, y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(K, D) float64 means of the rows of `feats` (N, D, any dtype) per class `y` (N,) in 0 .. K - 1, each class
    present: one pass of ``index_add_`` over chunks of rows converted to float64, the counts one ``bincount``.
    O(N D), where a mask per class costs O(N K)."""
    sums = torch.zeros(num_classes, feats.shape[1], dtype=torch.float64)
    rows = _fit_rows(feats.shape[1])
    for part, labels in zip(feats.split(rows), y.split(rows)):
        sums.index_add_(0, labels.cpu(), part.to("cpu", torch.float64))
    return sums / torch.bincount(y.cpu(), minlength=num_classes).unsqueeze(1).double()


def fit_dtype(feats: torch.Tensor) -> torch.dtype:
    """The dtype a fit centres and multiplies `feats` in: float32 (pytorch-ood's, and the BLAS rate), float64 for
    float64 features."""
    return torch.float64 if feats.dtype == torch.float64 else torch.float32


def centred_scatter(feats: torch.Tensor, centre: Callable[[int, int], torch.Tensor]) -> torch.Tensor:
    """(D, D) float64 ``sum_i (x_i - c_i)(x_i - c_i)^T`` over the rows x_i of `feats` (N, D, any dtype), with
    `centre(start, stop)` the centres of rows start:stop ((rows, D), or (D,) for one centre) in :func:`fit_dtype`.
    A chunk of rows at a time, centred and multiplied in that dtype (as pytorch-ood does in float32), the chunks'
    products summed in float64, on the CPU (the chunks of features elsewhere copied there). O(N D^2) time, memory a
    chunk and the sum."""
    dtype = fit_dtype(feats)
    out = torch.zeros(feats.shape[1], feats.shape[1], dtype=torch.float64)
    rows = _fit_rows(feats.shape[1])
    for start in range(0, len(feats), rows):
        part = feats[start:start + rows].to("cpu", dtype, copy=True).sub_(centre(start, start + rows))
        out += part.T @ part
    return out


def min_quadratic_distance(z: torch.Tensor, means: torch.Tensor, precision: torch.Tensor) -> torch.Tensor:
    """(N,) float32 ``min_k (z - mu_k)^T P (z - mu_k)`` of each row of `z` (N, D) over the rows of `means` (K, D),
    `precision` P (D, D) symmetric: the quadratic form expanded (z^T P z - 2 z^T P mu_k + mu_k^T P mu_k) in float64,
    rows in chunks of at most 2^24 / K, clamped at 0 (rounding)."""
    p = precision.double()
    p_means = p @ means.double().T  # (D, K)
    means_term = (means.double().T * p_means).sum(dim=0)  # (K,) mu_k^T P mu_k
    out = [torch.zeros(0)]
    for rows in z.split(max(1, _ROW_ELEMENTS // max(1, len(means)))):
        rows = rows.double()
        own = ((rows @ p) * rows).sum(dim=1, keepdim=True)  # (n, 1) z^T P z
        dist = own - 2 * (rows @ p_means) + means_term
        out.append(dist.min(dim=1).values.clamp_min(0).float())
    return torch.cat(out)


@SCORES.register("knn")
class KNN(OpenSetScore):
    """``knn``: minus the distance of the L2-normalised feature to its ``k``-th nearest normalised training feature
    (Sun et al. ICML 2022; pytorch-ood's ``KNN``, equal to its scores to float32 rounding, tests/openset/test_detectors_knn.py).

    openlt's own exact brute-force search, not pytorch-ood's: at iNaturalist size (N = 437,513 x 2,048) pytorch-ood
    holds three N x D float32 copies while it fits (openlt's float32 conversion, its ``z[known]``, the normalised
    ``z / |z|`` that scikit-learn keeps: ~10 GB), and scikit-learn searches in float64 chunks. Here :meth:`fit`
    keeps the training features as they are, without a copy (scikit-learn's ``NearestNeighbors`` keeps its input
    alike: do not change them in place after the fit), and their L2 norms; :meth:`score` multiplies chunks of
    queries by chunks of training rows, each converted to float32 and normalised when it is used, keeping a running
    top-k (:func:`knn_distance`): memory is the norms plus 2^24 similarities and one block of rows, whatever N and
    the number of queries (a float16 feature cache is never converted whole).

    Parameter ``k`` >= 1 (the paper's 50 for CIFAR-10; at most the number of training images). Learnt by
    :meth:`fit`: ``train_features_`` (N, D), the training features as given (float16, float32, ...), and
    ``train_norms_`` (N,) float32 their L2 norms clamped at 1e-12 (a zero feature stays zero once divided)."""

    name = "knn"
    requires_fit = True
    needs_features = True
    fits_half_features = True  # kept by reference, converted a block of rows at a time (knn_distance)

    param_checks = {"k": number_check("eval.knn_k (KNN's k) must be an integer >= 1 (the neighbour whose distance is "
                                      "the score)", numbers.Integral, lambda k: k >= 1)}

    def __init__(self, k: int = 50) -> None:
        self.k = k
        self.check_params()

    @classmethod
    def from_config(cls, eval_cfg: Any) -> "KNN":
        """Build from the ``eval`` section: ``knn_k``."""
        return cls(eval_cfg.knn_k)

    def fit(self, outputs: Outputs | Any, labels: Any = None, head: Head | None = None) -> "KNN":
        """Keep the training ``"feature"`` (N, D) and their norms (``"labels"`` (N,) checked); returns self.
        ConfigError for ``k`` above N or without features. The features are kept by reference, not copied and not
        changed (a non-contiguous tensor is made contiguous: one copy)."""
        self.check_params()  # set_params / an assigned attribute get past the constructor
        feats, _ = training_features(outputs, labels, self.name, float32=False)
        self.check_k(len(feats))
        self._keep(feats.contiguous())
        self.warning_ = features_warning(self.name, feats)  # no spread: the AUROC is float rounding
        return self

    def check_k(self, num_train: int) -> None:
        """ConfigError when ``k`` is more than the `num_train` training images (no k-th neighbour)."""
        if self.k > num_train:
            raise ConfigError(f"eval.knn_k={self.k} is more than the {num_train} training images")

    def check_setting(self, setting: Mapping[str, Any]) -> None:
        """`eval.knn_k` against the training images, when their number is known."""
        super().check_setting(setting)
        if setting.get("num_train") is not None:
            self.check_k(setting["num_train"])

    def _keep(self, feats: torch.Tensor) -> None:
        self.train_features_ = feats
        self.train_norms_ = row_norms(feats)

    def score(self, outputs: Outputs | Any) -> torch.Tensor:
        """(N,) float32 minus the k-th nearest-neighbour distance of ``outputs["feature"]`` (N, D), in [-2, 0]."""
        self.check_params()
        feats = scored_features(self, outputs, "train_features_", lambda: self.train_features_.shape[1])
        self.check_k(len(self.train_features_))
        return -knn_distance(feats, self.train_features_, self.k, self.train_norms_)

    def summary(self) -> dict:
        """Name, ``k`` and, once fitted, the number of training features searched."""
        out = {"name": self.name, "k": int(self.k), "normalised": True}
        if hasattr(self, "train_features_"):
            out["n_train"] = int(self.train_features_.shape[0])
        return out

    def state_dict(self) -> dict[str, torch.Tensor]:
        """``train_features`` (N, D) as fitted (normalised when searched); NotFittedError before :meth:`fit`."""
        _fitted(self, "train_features_")
        return {"train_features": self.train_features_}

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> "KNN":
        """Restore :meth:`state_dict`'s tensor (KeyError when missing); returns self. Features saved normalised by
        an older openlt are kept and searched alike (their norms are 1 up to rounding)."""
        self._keep(state["train_features"].contiguous())
        return self


_KNN_ROWS = 1 << 12  # rows converted / normalised at a time (4,096 x 2,048 float32: 32 MB)
_KNN_SIMILARITIES = 1 << 24  # (queries, training rows) similarities held at once: 64 MB float32
_KNN_QUERY_ROWS = 1 << 10  # queries searched together (their running top-k: 1,024 x k)


def row_norms(feats: torch.Tensor) -> torch.Tensor:
    """(N,) float32 L2 norms of the rows of `feats` (N, D) computed in float32 a chunk of rows at a time (a float16
    input is never converted whole), clamped at 1e-12 as pytorch-ood's KNN divides (``z / |z|.clamp(min=1e-12)``)."""
    if not len(feats):
        return torch.zeros(0)
    return torch.cat([part.float().norm(dim=1) for part in feats.split(_KNN_ROWS)]).clamp_(min=1e-12)


def normalised_rows(feats: torch.Tensor, norms: torch.Tensor | None = None) -> torch.Tensor:
    """`feats` (N, D) as a new float32 tensor divided by the rows' L2 norms (`norms`, :func:`row_norms` when None):
    a zero row stays zero. Used on one chunk at a time."""
    norms = row_norms(feats) if norms is None else norms
    return feats.float().div_(norms.unsqueeze(1)) if feats.dtype != torch.float32 else feats / norms.unsqueeze(1)


def knn_distance(queries: torch.Tensor, train: torch.Tensor, k: int, train_norms: torch.Tensor | None = None,
                 similarities: int | None = None) -> torch.Tensor:
    """(M,) float32 Euclidean distance of each L2-normalised row of `queries` (M, D) to its `k`-th nearest
    L2-normalised row of `train` (N, D, any float dtype, not normalised), exact brute force in bounded memory:
    queries in chunks of at most 1,024 rows, each multiplied by chunks of training rows (at most `similarities`
    products at once), each chunk converted to float32 and normalised when it is used, the k nearest so far kept
    per query (``torch.topk`` of 2 q.t - |t|^2 over the running best and the chunk, the ranking of the distance).
    The k-th neighbour's distance is then computed directly, ``|q - t|`` (no cancellation near 0). `train_norms`:
    the rows' norms (:func:`row_norms`, computed when None); `similarities`: default ``_KNN_SIMILARITIES`` (2^24,
    64 MB)."""
    if not len(queries):
        return torch.zeros(0)
    if train_norms is None:
        train_norms = row_norms(train)
    q_rows = min(len(queries), _KNN_QUERY_ROWS)
    t_rows = max(k, (similarities or _KNN_SIMILARITIES) // q_rows)
    out = []
    for q_start in range(0, len(queries), q_rows):
        q = normalised_rows(queries[q_start:q_start + q_rows])
        best_v = best_i = None
        for t_start in range(0, len(train), t_rows):
            block = normalised_rows(train[t_start:t_start + t_rows], train_norms[t_start:t_start + t_rows])
            closeness = torch.addmm((block * block).sum(dim=1), q, block.T, beta=-1, alpha=2)
            values, index = closeness.topk(min(k, block.shape[0]), dim=1)
            index += t_start
            if best_v is not None:
                values, index = torch.cat([best_v, values], dim=1), torch.cat([best_i, index], dim=1)
                values, pick = values.topk(k, dim=1)
                index = index.gather(1, pick)
            best_v, best_i = values, index
            del closeness, block
        kth = best_i[:, k - 1]  # topk is sorted: the k-th largest closeness, the k-th nearest row
        out.append((q - normalised_rows(train[kth], train_norms[kth])).norm(dim=1))
    return torch.cat(out)


def vim_dim(dim: int | None, width: int | None, n_train: int | None = None) -> int | None:
    """The principal-subspace dimension ViM uses for features of `width` D: `dim`, or with None the paper's
    choice (1000 for D >= 1500, 512 for D >= 768, else D / 2). ConfigError when it is not below D, or (`n_train`
    given: the training images, known before training and at fit time) not below the number of training features
    N: N features span at most N directions, so a principal subspace of N or more holds every training feature,
    the residual of each is zero and the virtual logit's scale alpha (max logit over residual norm) has no meaning
    (2.5e6 on 10 features). `width` None (not known yet): only an explicit `dim` is checked, against `n_train`;
    returns None when the dimension cannot be known."""
    if width is None:
        d = dim
    else:
        d = dim if dim is not None else 1000 if width >= 1500 else 512 if width >= 768 else width // 2
        if not 1 <= d < width:
            raise ConfigError(f"eval.vim_dim={d} must be between 1 and the feature width {width} - 1")
    if d is not None and n_train is not None and d >= n_train:
        given = (f"eval.vim_dim={d}" if dim is not None
                 else f"eval.vim_dim=null (the paper's rule: {d} for width {width})")
        raise ConfigError(f"{given} must be below the {n_train} training images ViM is fitted on (their features span "
                          f"at most {n_train} directions, leaving no residual): set eval.vim_dim to at most "
                          f"{n_train - 1}")
    return d


def vim_alpha(feats: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, origin: torch.Tensor,
              null_space: torch.Tensor) -> float:
    """ViM's alpha: the mean max logit ``max_k (W x + b)_k`` of the rows x of `feats` (N, D, any dtype) over their
    mean residual norm ``||(x - origin) null_space||``, as pytorch-ood computes them in float32, a chunk of rows
    at a time (at most 2^24 logits), the sums in float64. O(N K D + N D (D - d)), memory a chunk."""
    max_logits = residuals = 0.0
    for part in feats.split(max(1, _ROW_ELEMENTS // max(len(weight), feats.shape[1]))):
        part = part.to("cpu", torch.float32)
        max_logits += float(torch.addmm(bias, part, weight.T).max(dim=1).values.double().sum())
        residuals += float(((part - origin) @ null_space).norm(dim=1).double().sum())
    return max_logits / residuals


@SCORES.register("vim")
class ViM(OpenSetScore):
    """``vim``: energy minus the virtual logit (Wang et al. CVPR 2022; pytorch-ood's ``ViM``): see the module doc.

    Parameter ``dim``: the principal subspace's dimension d (None: the paper's rule, :func:`vim_dim`). Learnt by
    :meth:`fit` (with the head): ``weight_`` (K, D), ``bias_`` (K,), ``origin_`` (D,) u = -W^+ b,
    ``null_space_`` (D, D - d) the residual directions, ``alpha_`` the virtual logit's scale."""

    name = "vim"
    requires_fit = True
    needs_features = True
    fits_half_features = True  # converted a chunk of rows at a time (centred_scatter)
    needs_head = True

    fit_params = {"dim": "eval.vim_dim (ViM's dim)"}  # the principal subspace and alpha
    param_checks = {"dim": number_check("eval.vim_dim (ViM's dim) must be an integer >= 1 (principal subspace) or "
                                        "null for the paper's rule", numbers.Integral, lambda dim: dim >= 1,
                                        none_ok=True)}

    def __init__(self, dim: int | None = None) -> None:
        self.dim = dim
        self.check_params()
        ood_detectors(self.name)

    @classmethod
    def from_config(cls, eval_cfg: Any) -> "ViM":
        """Build from the ``eval`` section: ``vim_dim``."""
        return cls(eval_cfg.vim_dim)

    def check_setting(self, setting: Mapping[str, Any]) -> None:
        """The linear head, and `eval.vim_dim` below the feature width and the training images when they are
        known (:func:`vim_dim`): refused before training, not at the evaluation's fit."""
        super().check_setting(setting)
        vim_dim(self.dim, setting.get("feature_dim"), setting.get("num_train"))

    def _detector(self) -> Any:
        _fitted(self, "weight_")
        detector = ood_detectors(self.name).ViM(None, self.null_space_.shape[0] - self.null_space_.shape[1],
                                                self.weight_, self.bias_)
        detector.u, detector.principal_subspace, detector.alpha = self.origin_, self.null_space_, self.alpha_
        return detector

    def fit(self, outputs: Outputs | Any, labels: Any = None, head: Head | None = None) -> "ViM":
        """Fit the principal subspace and alpha on the training ``"feature"`` (N, D), with `head` = the linear
        classifier (weight (K, D), bias (K,)); returns self. ConfigError without a linear head or a ``dim``
        not below D and below N (:func:`vim_dim`).

        pytorch-ood's fit (its origin u = -W^+ b, its scoring), computed in chunks of rows: the covariance of the
        centred features (:func:`centred_scatter`, eigenvectors in float64), alpha from the chunks' max logits and
        residual norms (:func:`vim_alpha`). pytorch-ood holds the N x K training logits (14 GB at iNaturalist
        size), a centred float32 copy of the features and their (N, D - d) projection; here the memory is a
        chunk, O(N K D + N D^2 + D^3) time as before. Equal to pytorch-ood's fit to float32 rounding
        (tests/openset/test_detector_fits.py)."""
        self.check_params()  # set_params / an assigned attribute get past the constructor
        feats, _ = training_features(outputs, labels, self.name, float32=False)
        weight, bias = linear_head(head, self.name, feats.shape[1])
        dim = vim_dim(self.dim, feats.shape[1], len(feats))
        origin = ood_detectors(self.name).ViM(None, dim, weight, bias).u.float()  # pytorch-ood's u = -W^+ b
        centre = origin.to(fit_dtype(feats))
        cov = centred_scatter(feats, lambda start, stop: centre) / len(feats)
        null_space = torch.linalg.eigh(cov).eigenvectors[:, :feats.shape[1] - dim].float()  # ascending: residual
        self.weight_, self.bias_, self.origin_, self.null_space_ = weight, bias, origin, null_space.contiguous()
        self.alpha_ = vim_alpha(feats, weight, bias, origin, self.null_space_)
        self.warning_ = features_warning(self.name, feats)  # no spread: the AUROC is float rounding
        return self

    def score(self, outputs: Outputs | Any) -> torch.Tensor:
        """(N,) float32 ``logsumexp(W z + b) - alpha ||(z - u) P_perp||`` of ``outputs["feature"]`` (N, D)."""
        self.check_params()
        feats = scored_features(self, outputs, "weight_", lambda: self.weight_.shape[1])
        return -self._detector().predict_features(feats).float().cpu() if len(feats) else torch.zeros(0)

    def summary(self) -> dict:
        """Name, ``dim`` and, once fitted, the dimension used and alpha."""
        out = {"name": self.name, "dim": None if self.dim is None else int(self.dim)}
        if hasattr(self, "weight_"):
            out.update({"dim_used": int(self.null_space_.shape[0] - self.null_space_.shape[1]), "alpha": self.alpha_})
        return out

    def state_dict(self) -> dict[str, torch.Tensor]:
        """``weight``, ``bias``, ``origin``, ``null_space`` float32 and ``alpha`` (float64 scalar)."""
        _fitted(self, "weight_")
        return {"weight": self.weight_, "bias": self.bias_, "origin": self.origin_, "null_space": self.null_space_,
                "alpha": torch.tensor(self.alpha_, dtype=torch.float64)}

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> "ViM":
        """Restore :meth:`state_dict`'s tensors (KeyError for a missing one); returns self."""
        self.weight_, self.bias_, self.origin_, self.null_space_ = (
            state[k].float() for k in ("weight", "bias", "origin", "null_space"))
        self.alpha_ = float(state["alpha"])
        return self


@SCORES.register("react")
class ReAct(OpenSetScore):
    """``react``: ReAct + energy (Sun et al. NeurIPS 2021; pytorch-ood's ``ReAct`` with its energy score): the
    features clipped at the ``percentile`` of the training activations, logits recomputed as W min(z, c) + b,
    score logsumexp of them.

    Parameter ``percentile`` in (0, 1] (the paper's 0.9: the 90th percentile). Learnt by :meth:`fit` (with the
    head): ``threshold_`` c, ``weight_`` (K, D), ``bias_`` (K,)."""

    name = "react"
    requires_fit = True
    needs_features = True
    needs_head = True

    fit_params = {"percentile": "eval.react_percentile (ReAct's percentile)"}  # the clipping threshold
    param_checks = {"percentile": number_check("eval.react_percentile (ReAct's percentile) must be a fraction in "
                                               "(0, 1] (0.9: clip at the 90th percentile of the training activations)",
                                               numbers.Real, lambda p: 0 < p <= 1)}

    def __init__(self, percentile: float = 0.9) -> None:
        self.percentile = percentile
        self.check_params()
        ood_detectors(self.name)

    @classmethod
    def from_config(cls, eval_cfg: Any) -> "ReAct":
        """Build from the ``eval`` section: ``react_percentile``."""
        return cls(eval_cfg.react_percentile)

    def _detector(self) -> Any:
        _fitted(self, "threshold_")
        weight, bias = self.weight_, self.bias_
        return ood_detectors(self.name).ReAct(torch.nn.Identity(), lambda z: z @ weight.T + bias,
                                              threshold=self.threshold_, percentile=float(self.percentile))

    def fit(self, outputs: Outputs | Any, labels: Any = None, head: Head | None = None) -> "ReAct":
        """The clipping threshold from the training ``"feature"`` (N, D) and the linear `head` (weight (K, D),
        bias (K,)); returns self. ConfigError without a linear head."""
        self.check_params()  # set_params / an assigned attribute get past the constructor
        feats, y = training_features(outputs, labels, self.name)
        self.weight_, self.bias_ = linear_head(head, self.name, feats.shape[1])
        detector = ood_detectors(self.name).ReAct(torch.nn.Identity(), None, percentile=float(self.percentile))
        self.threshold_ = float(detector.fit_feature_maps(feats, y).threshold)
        self.warning_ = features_warning(self.name, feats)  # no spread: the AUROC is float rounding
        return self

    def score(self, outputs: Outputs | Any) -> torch.Tensor:
        """(N,) float32 ``logsumexp(W min(z, c) + b)`` of ``outputs["feature"]`` (N, D)."""
        self.check_params()
        feats = scored_features(self, outputs, "threshold_", lambda: self.weight_.shape[1])
        return -self._detector().predict_feature_maps(feats).float().cpu() if len(feats) else torch.zeros(0)

    def summary(self) -> dict:
        """Name, ``percentile`` and, once fitted, the clipping threshold."""
        out = {"name": self.name, "percentile": self.percentile, "then": "energy"}
        if hasattr(self, "threshold_"):
            out["threshold"] = self.threshold_
        return out

    def state_dict(self) -> dict[str, torch.Tensor]:
        """``threshold`` (float64 scalar), ``weight`` (K, D) and ``bias`` (K,) float32."""
        _fitted(self, "threshold_")
        return {"threshold": torch.tensor(self.threshold_, dtype=torch.float64), "weight": self.weight_,
                "bias": self.bias_}

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> "ReAct":
        """Restore :meth:`state_dict`'s tensors (KeyError for a missing one); returns self."""
        self.threshold_ = float(state["threshold"])
        self.weight_, self.bias_ = state["weight"].float(), state["bias"].float()
        return self

