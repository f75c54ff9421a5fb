"""build_config parses the overrides once: a bench spec's shared overrides with a method's own (`shared`) are parsed
where the keys only they set are found, and that parse is the one applied; without `shared`, after the config
file (whose errors come first, as before)."""

from __future__ import annotations

import pytest

from openlt import config as config_module
from openlt.config import build_config, explicit_keys
from openlt.errors import ConfigError


@pytest.fixture
def parses(monkeypatch) -> list[list[str]]:
    calls, parse = [], config_module.parse_overrides

    def counting(overrides):
        calls.append(list(overrides))
        return parse(overrides)

    monkeypatch.setattr(config_module, "parse_overrides", counting)
    return calls


def test_shared_and_own_overrides_are_parsed_once_and_applied(parses):
    cfg = build_config("fmnist_lt/plain", overrides=["train.epochs=3"], shared=["train.epochs=2", "seed=7"])
    assert parses == [["train.epochs=2", "seed=7", "train.epochs=3"]]
    assert cfg.train.epochs == 3 and cfg.seed == 7  # the method's own value wins
    assert explicit_keys(cfg)["train.epochs"] == "override 'train.epochs=3'"
    assert explicit_keys(cfg)["seed"] == "override 'seed=7'"
    parses.clear()
    build_config("fmnist_lt/plain", overrides=["train.epochs=3"])
    assert parses == [["train.epochs=3"]]


def test_a_missing_config_file_is_said_before_a_malformed_override():
    with pytest.raises(ConfigError) as caught:
        build_config("no/such/config", overrides=["train.epochs"])
    assert "no/such/config" in str(caught.value) and "key=value" not in str(caught.value)
    with pytest.raises(ConfigError, match="override 'train.epochs' is not of the form key=value"):
        build_config("fmnist_lt/plain", overrides=["train.epochs"], shared=["seed=1"])
