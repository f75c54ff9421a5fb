"""Where a config problem is placed (issue 14): an override that replaces a key's whole value (name={a: 1},
train.lr.x=5) is the only place named, not also the config file's line of the value it replaced; a problem whose
values come from both still names both."""

import pytest

from openlt.cli import main
from openlt.config import build_config
from openlt.errors import ConfigError


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: mine\ntrain:\n  lr: 0.1\n  loss: focal\n  loss_args: {gamma: 2.0}\n  epochs: 4\n")
    return path


@pytest.mark.parametrize("override, says", [
    ("name={a: 1}", "config key 'name' must be a string, got {'a': 1}"),
    ("train.lr.x=5", "config key 'train.lr' must be a number, got {'x': 5}"),
    ("train.lr=abc", "config key 'train.lr' must be a number, got 'abc'"),
    ("train.loss_args.gamma=x", "config key 'train.loss_args' gamma must be >= 0 and <= 1000 (a focusing exponent), "
                                "got 'x'"),
])
def test_an_override_that_alone_is_wrong_is_named_alone(config, capsys, override, says):
    assert main(["config", str(config), override]) == 2
    out, err = capsys.readouterr()
    assert err.strip().splitlines() == [f"openlt config: error: override {override!r}: {says}"] and out == "", err


def test_a_packaged_base_line_is_not_blamed_for_an_override(tmp_path, capsys):
    (tmp_path / "tiny.yaml").write_text("base: fmnist_lt/plain\ntrain: {epochs: 1}\n")
    assert main(["config", str(tmp_path / "tiny.yaml"), "name={a: 1}"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == ("openlt config: error: override 'name={a: 1}': config key 'name' must be a string, "
                           "got {'a': 1}")


def test_a_wrong_file_value_and_a_wrong_override_are_each_named_where_they_are(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: {a: 1}\n")
    with pytest.raises(ConfigError) as info:
        build_config(path, ["name.b=2"])
    assert str(info.value).splitlines() == [f"{path}, line 1: config key 'name' must be a string, got {{'a': 1}}",
                                            "override 'name.b=2': config key 'name' must be a string, got {'b': 2}"]


def test_a_relation_of_a_file_value_and_an_override_still_names_both(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: x\neval:\n  few_below: 20\n")
    with pytest.raises(ConfigError) as info:
        build_config(path, ["eval.many_above=5"])
    assert str(info.value).startswith(f"{path}, line 3 and override 'eval.many_above=5': "), str(info.value)


def test_an_override_of_a_section_s_key_keeps_the_file_s_other_keys_placed(config):
    with pytest.raises(ConfigError) as info:
        build_config(config, ["train.epochs=2", "train.lr=-1"])
    assert str(info.value).startswith("override 'train.lr=-1': config key 'train.lr' must be"), str(info.value)
    with pytest.raises(ConfigError) as info:
        build_config(config, ["train.epochs=2", "train.loss=nope"])
    assert str(info.value).startswith("override 'train.loss=nope'"), str(info.value)
