"""precision.check_amp_override reads the `train.amp=` override from the config it was applied to
(config.explicit_keys), not from the override strings: an override is checked on the device as `openlt train`
checks it; the run's own config.yaml value (no override) is not (it falls back as precision.inference_amp says)."""

from __future__ import annotations

import pytest
import torch

from openlt.config import build_config, to_dict
from openlt.engine.precision import check_amp_override
from openlt.errors import ConfigError

CPU = torch.device("cpu")


def test_an_fp16_override_is_refused_on_a_cpu_and_the_run_s_own_fp16_is_not():
    saved = to_dict(build_config("fmnist_lt/plain", overrides=["train.amp=fp16"]))  # a run trained with fp16
    run_cfg = build_config(base=saved)  # its config.yaml: no key is explicit
    check_amp_override(run_cfg, CPU)
    with pytest.raises(ConfigError, match="train.amp=fp16 needs a CUDA device"):
        check_amp_override(build_config(base=saved, overrides=["train.amp=fp16"]), CPU)
    check_amp_override(build_config(base=saved, overrides=["train.amp=none"]), CPU)
    check_amp_override(build_config(base=saved, overrides=["eval.batch_size=8"]), CPU)
