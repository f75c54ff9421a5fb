"""ODIN (Liang et al., ICLR 2018, "Enhancing The Reliability of Out-of-distribution Image Detection in Neural
Networks"), a wrapper of pytorch-ood's ``ODIN`` (the optional extra ``pip install 'openlt[ood]'``).

Each image is moved a step against the gradient of the cross-entropy of its own prediction at temperature T,
x' = x - eps * sign(-grad_x log S_yhat(x; T)) / std (the step in units of the [0, 1] pixel scale: the sign
gradient divided by the channel's normalisation std, as the paper's code does), and scored by the maximum
softmax probability at temperature T of x': higher = more known, in [1/K, 1].

It needs the network and a gradient with respect to the input, so it cannot work from cached outputs: the score
declares ``needs_model`` and openlt eval calls :meth:`ODIN.score_images` on every batch of the val / test / open
images (through the network, also for a decoupled run), keeping the result as ``outputs["model_score"]`` for
:meth:`ODIN.score`. Closed-set predictions stay the argmax of the unperturbed logits.
"""

from __future__ import annotations

import math
import numbers

from typing import Any, Callable, Sequence

import torch

from openlt.config import MAX_TEMPERATURE
from openlt.errors import ConfigError
from openlt.openset.base import MODEL_SCORE, SCORES, OpenSetScore, Outputs, as_outputs, number_check
from openlt.openset.detectors import ood_detectors


@SCORES.register("odin")
class ODIN(OpenSetScore):
    """``odin``: maximum softmax probability at ``temperature`` T of the input perturbed by ``eps`` (see the
    module doc; pytorch-ood's ``ODIN``). Parameters: ``temperature`` > 0 (the paper's 1000), ``eps`` >= 0 (the
    step on the [0, 1] pixel scale; 0.0014 in pytorch-ood, the paper tunes it in [0, 0.004]). Nothing is fitted."""

    name = "odin"
    value_range = (0.0, 1.0)  # a probability: a threshold outside it is refused (rejector.check_threshold_range)
    needs_model = True

    param_checks = {
        "temperature": number_check(f"eval.odin_temperature (ODIN's temperature) must be a finite number > 0 and "
                                    f"<= {MAX_TEMPERATURE:g}", numbers.Real,
                                    lambda t: math.isfinite(t) and 0 < t <= MAX_TEMPERATURE),
        "eps": number_check("eval.odin_eps (ODIN's eps) must be a finite number >= 0", numbers.Real,
                            lambda e: math.isfinite(e) and e >= 0),
    }

    def __init__(self, temperature: float = 1000.0, eps: float = 0.0014) -> None:
        self.temperature, self.eps = temperature, eps
        self.check_params()
        ood_detectors(self.name)

    @classmethod
    def from_config(cls, eval_cfg: Any) -> "ODIN":
        """Build from the ``eval`` section: ``odin_temperature``, ``odin_eps``."""
        return cls(eval_cfg.odin_temperature, eval_cfg.odin_eps)

    def score_images(self, logits_of_images: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor,
                     norm_std: Sequence[float] | None = None) -> torch.Tensor:
        """(B,) float32 CPU ODIN score of a batch of normalised images (B, C, H, W) on the network's device:
        `logits_of_images` maps images to (B, K) logits (the model in eval mode; gradients flow to the input
        only), `norm_std` the per-channel normalisation std (None: eps in the normalised units)."""
        self.check_params()  # set_params / an assigned attribute get past the constructor
        detector = ood_detectors(self.name).ODIN(logits_of_images, eps=float(self.eps),
                                                 temperature=float(self.temperature),
                                                 norm_std=None if norm_std is None else [float(s) for s in norm_std])
        return -detector.predict(images).detach().float().cpu()

    def score(self, outputs: Outputs | Any) -> torch.Tensor:
        """(N,) float32 ``outputs["model_score"]``, the :meth:`score_images` values the evaluator computed.

        ConfigError when the outputs have none (cached outputs, bare logits): ODIN needs the images."""
        self.check_params()
        outputs = as_outputs(outputs)
        if MODEL_SCORE not in outputs:
            raise ConfigError("eval.open_score=odin perturbs the input images through the network: it is computed "
                              "by openlt eval batch by batch, not from logits or cached outputs")
        return outputs[MODEL_SCORE].float()

    def summary(self) -> dict:
        """Name and options, and what the score is."""
        return {"name": self.name, "temperature": self.temperature, "eps": self.eps,
                "score": "max softmax at T of the input perturbed by eps * sign(grad) / std"}
