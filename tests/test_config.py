import pytest

from openlt.config import build_config, parse_overrides
from openlt.errors import ConfigError


def test_defaults_yaml_and_overrides_apply_in_order(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: x\ntrain:\n  epochs: 5\n  lr: 0.2\n")
    cfg = build_config(path, ["train.epochs=2", "data.split.open_classes=[bag, sandal]", "model.pretrained=null"])
    assert cfg.name == "x" and cfg.train.epochs == 2 and cfg.train.lr == 0.2
    assert cfg.data.split.open_classes == ["bag", "sandal"]
    assert cfg.model.pretrained is None and cfg.train.momentum == 0.9


def test_base_config_is_merged(tmp_path):
    (tmp_path / "base.yaml").write_text("train:\n  epochs: 7\n  lr: 0.3\n")
    (tmp_path / "child.yaml").write_text("base: base.yaml\ntrain:\n  lr: 0.01\n")
    cfg = build_config(tmp_path / "child.yaml")
    assert cfg.train.epochs == 7 and cfg.train.lr == 0.01


@pytest.mark.parametrize("override, message", [
    (["train.epoch=3"], "did you mean 'train.'epochs'|unknown config key 'train.epoch'"),
    (["trian.epochs=3"], "unknown config key 'trian'"),
    (["train.epochs=many"], "must be an integer"),
    (["train.lr=abc"], "must be a number"),
    (["train.nesterov=3"], "true or false"),
    (["train=3"], "is a section"),
    (["epochs"], "key=value"),
])
def test_bad_keys_and_values_are_named(override, message):
    with pytest.raises(ConfigError, match=message):
        build_config(None, override)


def test_missing_or_broken_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        build_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        build_config(bad)


def test_parse_overrides_nested():
    assert parse_overrides(["a.b=1", "a.c=x", "d=0.5"]) == {"a": {"b": 1, "c": "x"}, "d": 0.5}


def test_every_shipped_config_loads():
    from pathlib import Path

    configs = sorted((Path(__file__).parent.parent / "configs").rglob("*.yaml"))
    assert configs, "no configs found"
    for path in configs:
        build_config(path)
