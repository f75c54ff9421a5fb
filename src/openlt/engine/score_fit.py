"""Fitting an open-set score on the training split without holding its N x K logits.

OpenMax learns from the logits of every training image; at iNaturalist 2018's size (437,513 images x 8,142
classes) those are 14 GB of float32. A score with ``fit_chunks`` (:meth:`openlt.openset.OpenMax.fit_chunks`) is
fitted instead from the training *features* (N x D: 0.9 GB at D = 512, 3.6 GB at D = 2,048; already in memory for
a decoupled run's feature cache), its logits recomputed by the model's head :data:`FIT_ROWS` rows at a time in
each of the fit's passes. The head computes the logits as the network does (same features, same autocast), on
other batch sizes: equal to float rounding (bit for bit on one thread), and the fit is the one of ``fit`` on
those logits. (OpenMax's Weibull shapes are ill-conditioned in the last bits, its scores are not.)"""

from __future__ import annotations

from typing import Callable, Iterator

import torch

from openlt.engine.precision import autocast
from openlt.models.meta_embedding import head_outputs
from openlt.models.model import OpenLTModel
from openlt.openset import OpenSetScore

FIT_ROWS = 8192  # training rows whose logits exist at once: 8,192 x 8,142 float32 = 267 MB at iNaturalist

OutputsOf = Callable[..., dict[str, torch.Tensor]]


def fit_open_score(scorer: OpenSetScore, outputs_of: OutputsOf, model: OpenLTModel, device: torch.device,
                   amp: str = "none", fit_args: dict | None = None) -> None:
    """Fit `scorer` (``requires_fit``) on the train split. `outputs_of(split, keep)` gives a split's outputs
    (``keep``: the model outputs kept, e.g. ("feature",)) and "labels"; the training split is asked for once.
    A score with ``fit_chunks`` gets chunks of head logits computed from the features; a score that
    ``needs_features`` gets ``fit({"feature", "labels"}, **fit_args)`` (no N x K training logits, which no such fit
    reads; float16 features of a feature cache as they are for a score that ``fits_half_features`` (KNN,
    Mahalanobis, ViM: converted a chunk of rows at a time), else converted to float32 once, the float16 let go
    (ReAct: pytorch-ood's quantile takes one whole float32 tensor); any other gets
    ``fit(outputs_of("train"), **fit_args)``."""
    if not hasattr(scorer, "fit_chunks"):
        if not scorer.needs_features:
            scorer.fit(outputs_of("train"), **(fit_args or {}))
            return
        train = outputs_of("train", ("feature",))
        if train["feature"].dtype in (torch.float16, torch.bfloat16) and not scorer.fits_half_features:
            train["feature"] = train["feature"].float()  # the dict held the cache's only reference: one copy at a time
        scorer.fit(train, **(fit_args or {}))
        return
    train = outputs_of("train", ("feature",))
    features, labels = train["feature"], train["labels"]
    model.eval()

    def chunks() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:  # each pass over the features in memory
        for rows, row_labels in zip(features.split(FIT_ROWS), labels.split(FIT_ROWS)):
            with torch.no_grad(), autocast(amp, device):  # float16 cached rows: this chunk converted to float32
                logits = head_outputs(model.classifier, rows.to(device, torch.float32))["logits"]
            yield logits.float().cpu(), row_labels

    scorer.fit_chunks(chunks)
