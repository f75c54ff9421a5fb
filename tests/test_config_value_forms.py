"""Trial 12 D5: numbers written as strings, and a key given twice on one command line.

- An integer key reads a number written as a string as a float key does (`lr: "1e-3"` was 0.001 while
  `epochs: "2"` was refused): a plain decimal string with a whole value is that integer (`"2"`, `"2.0"`, YAML 1.1's
  unquoted `1e3`); another string, or a fractional one, is refused naming the key and line.
- `train.lr=0.2 train.lr=0.3` on one command line kept the last without a word (a key twice in a YAML file is
  refused): refused naming the key and both overrides; lists merged on purpose (a bench's shared and method
  overrides) are not one list.
"""

from __future__ import annotations

import warnings

import pytest

from openlt.cli import main
from openlt.config import ConfigWarning, build_config, check_override_keys
from openlt.errors import ConfigError


@pytest.mark.parametrize("text, epochs", [('"2"', 2), ("'+3'", 3), ('"2.0"', 2), ("1e3", 1000), ('"1e3"', 1000)])
def test_an_integer_key_takes_a_whole_number_written_as_a_string(tmp_path, text, epochs):
    path = tmp_path / "c.yaml"
    path.write_text(f'train: {{epochs: {text}, lr: "1e-3"}}\n')
    cfg = build_config(path)
    assert cfg.train.epochs == epochs and type(cfg.train.epochs) is int
    assert cfg.train.lr == 0.001


@pytest.mark.parametrize("text, shown", [('"2.5"', "'2.5'"), ('"two"', "'two'"), ('" 2"', "' 2'"), ('"1_0"', "'1_0'"),
                                         ('"0x10"', "'0x10'"), ('"1e400"', "'1e400'")])
def test_an_integer_key_refuses_other_strings_naming_key_and_line(tmp_path, text, shown):
    path = tmp_path / "c.yaml"
    path.write_text(f"train:\n  epochs: {text}\n")
    with pytest.raises(ConfigError) as info:
        build_config(path)
    assert str(info.value) == f"{path}, line 2: config key 'train.epochs' must be an integer, got {shown}"


def test_an_integer_override_written_as_a_string_is_the_integer():
    assert build_config(None, ['train.epochs="4"', "train.batch_size=8.0"]).train.epochs == 4


def test_a_key_twice_on_the_command_line_warns_and_the_last_wins(tmp_path, capsys):
    path = tmp_path / "lr.yaml"
    path.write_text("train: {lr: 0.1}\n")
    with pytest.warns(ConfigWarning) as caught:
        assert main(["config", str(path), "train.lr=0.2", "train.lr=0.3"]) == 0
    assert "lr: 0.3" in capsys.readouterr().out
    assert [str(w.message) for w in caught] == [
        "train.lr is given twice on the command line ('train.lr=0.2', then 'train.lr=0.3'): the last wins"]
    with pytest.warns(ConfigWarning) as caught:
        assert main(["config", str(path), "train.lr=0.2", "train={lr: 0.3}"]) == 0
    assert "lr: 0.3" in capsys.readouterr().out
    assert [str(w.message) for w in caught] == [
        "train and train.lr, a key inside it, are both given on the command line ('train.lr=0.2', then "
        "'train={lr: 0.3}'): the last wins"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConfigWarning)
        assert main(["config", str(path), "train.lr=0.2", "train.epochs=3"]) == 0
    assert "lr: 0.2" in capsys.readouterr().out


def test_a_key_set_twice_with_spaces_is_the_same_key():
    with pytest.warns(ConfigWarning, match=r"^train\.epochs is given twice on the command line"):
        check_override_keys(["train.epochs=2", " train.epochs =3"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_override_keys(["train.lr=0.2", "train.lr_schedule=cosine", "eval.batch_size=8", "not-an-override"])


def test_shared_and_own_overrides_are_separate_lists():
    """A bench spec's `overrides:` (shared) and a method's own are merged on purpose: the method's wins."""
    cfg = build_config(None, ["train.epochs=3"], shared=["train.epochs=2"])
    assert cfg.train.epochs == 3
