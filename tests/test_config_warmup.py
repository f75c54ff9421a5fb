"""train.warmup_epochs >= train.epochs (config.py `config_warnings`): the whole run is the linear warm-up. Not
refused: the CIFAR configs' 5 warm-up epochs and fmnist_lt/plain's 1 are run for 1 epoch as smoke runs (tests,
the packaging check), so it is one `openlt: warning:` line naming both keys; a saved run's config (resume) says
nothing again."""

import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from openlt.config import build_config

CONFIGS = Path(__file__).parent.parent / "configs"


@pytest.mark.parametrize("overrides, text", [
    (["train.epochs=2", "train.warmup_epochs=5"], "train.warmup_epochs=5 >= train.epochs=2: the whole run is the "
     "linear warm-up (the learning rate only rises, to 0.4 x train.lr at the end) and the cosine schedule never "
     "starts; lower train.warmup_epochs (e.g. 0) or raise train.epochs, unless this is a short smoke run"),
    (["train.epochs=3", "train.warmup_epochs=3"], "train.warmup_epochs=3 >= train.epochs=3: the whole run is the "
     "linear warm-up (the learning rate only rises, to 1 x train.lr"),
    (["train.epochs=1", "train.warmup_epochs=1.5", "train.schedule=step"], "train.warmup_epochs=1.5 >= "
     "train.epochs=1: the whole run is the linear warm-up (the learning rate only rises, to 0.67 x train.lr at the "
     "end) and the step schedule never starts"),
])
def test_a_warm_up_as_long_as_the_run_is_a_warning_naming_both_keys(overrides, text):
    with pytest.warns(UserWarning) as caught:
        build_config(None, overrides)
    assert [str(w.message) for w in caught if "warmup" in str(w.message)] == [str(caught[0].message)]
    assert str(caught[0].message).startswith(text)


def test_a_shorter_warm_up_a_saved_config_and_no_warm_up_say_nothing():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        build_config(None, ["train.epochs=2", "train.warmup_epochs=1.5"])
        build_config(None, ["train.epochs=1", "train.warmup_epochs=0"])
        build_config(base={"train": {"epochs": 2, "warmup_epochs": 5}})  # a saved run's config: said when it began
    cifar = build_config(CONFIGS / "cifar10_lt" / "ce.yaml")  # its own budget: 5 of 200 epochs
    assert (cifar.train.warmup_epochs, cifar.train.epochs) == (5, 200)


def test_the_cifar_smoke_run_gets_one_warning_line_and_goes_on():
    done = subprocess.run([sys.executable, "-m", "openlt", "config", str(CONFIGS / "cifar10_lt" / "ce.yaml"),
                           "train.epochs=1"], capture_output=True, text=True, timeout=300)
    err = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 0 and err == [
        "openlt: warning: train.warmup_epochs=5 >= train.epochs=1: the whole run is the linear warm-up (the learning "
        "rate only rises, to 0.2 x train.lr at the end) and the step schedule never starts; lower "
        "train.warmup_epochs (e.g. 0) or raise train.epochs, unless this is a short smoke run"], err
