"""`openlt config` / `openlt train` with a KEY=VALUE first argument, and `--name` with a control character
(trial 14b D4, D6)."""

from __future__ import annotations

import os

import pytest

from openlt.cli import main


def _run(args: list[str], capsys) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_config_takes_a_first_key_value_argument_as_an_override_of_the_defaults(capsys):
    """`openlt config train.epochs=2` printed "config file not found: train.epochs=2"; --help says the config is
    optional (none: the defaults), so a KEY=VALUE first is an override of them, as after a config."""
    code, out, err = _run(["config", "train.epochs=2", "train.lr=0.5"], capsys)
    assert code == 0, err
    code2, out2, _ = _run(["config", "fmnist_lt/plain"], capsys)  # (a config given still works)
    assert code2 == 0
    assert "\n  epochs: 2\n" in out and "\n  lr: 0.5\n" in out
    from openlt.config import build_config, dump_yaml

    assert out == dump_yaml(build_config(None, ["train.epochs=2", "train.lr=0.5"]))


def test_config_reads_a_file_whose_name_looks_like_an_override(tmp_path, capsys):
    config = tmp_path / "a=b.yaml"
    config.write_text("name: fromfile\n")
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        code, out, err = _run(["config", "a=b.yaml"], capsys)
    finally:
        os.chdir(cwd)
    assert code == 0, err
    assert out.startswith("name: fromfile\n")


def test_train_refuses_an_override_given_first_saying_to_give_the_config_first(tmp_path, capsys):
    code, out, err = _run(["train", "train.epochs=1", f"out_dir={tmp_path / 'runs'}"], capsys)
    assert code == 2
    assert err.splitlines() == ["openlt train: error: 'train.epochs=1' is an override (KEY=VALUE), not a config: give "
                                "the config first, then the overrides (openlt train fmnist_lt/plain train.epochs=1; "
                                "`openlt configs` lists the packaged configs)"]
    assert not (tmp_path / "runs").exists()


def test_help_says_what_the_first_argument_may_be(capsys):
    for command, needle in (("config", "a first argument KEY=VALUE is an override of the defaults"),
                            ("train", "required (but with --resume), before the overrides")):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        assert needle in " ".join(capsys.readouterr().out.split()), command


@pytest.mark.parametrize("name, shown", [("x\ny", "'x\\ny'"), ("x\ty", "'x\\ty'"), ("x\ry", "'x\\ry'"),
                                         ("x\x7fy", "'x\\x7fy'"), ("x\x85y", "'x\\x85y'"), ("x\x01y", "'x\\x01y'")])
def test_train_name_with_a_control_character_is_refused(name, shown, tmp_path, capsys):
    code, out, err = _run(["train", "fmnist_lt/plain", "--name", name, f"out_dir={tmp_path / 'runs'}"], capsys)
    assert code == 2
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("openlt train: error: --name must not contain the control "
                                                   f"character {shown[0]}"), err
    assert f"got {shown}" in lines[0]
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("argv, message", [
    (["config", "fmnist_lt/plain", "--quiet", "train.epochs"], "override 'train.epochs' is not of the form key=value "
                                                                "(train.epochs=VALUE)"),
    (["identify", "RUN", "--probe", "p.txt", "data.workers"], "override 'data.workers' is not of the form key=value"),
])
def test_an_override_without_its_value_after_the_options_is_named(argv, message, capsys):
    """(Session 27: after an option it was argparse's `unrecognized arguments: data.workers`; before, the key=value
    line.)"""
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2 and message in capsys.readouterr().err


def test_a_double_dash_before_the_overrides_after_an_option_is_accepted(tmp_path, capsys):
    """`openlt identify RUN --probe P -- data.workers=0` (was: `unrecognized arguments: --`): the override reaches
    the command, whose first check here is RUN's."""
    code, _, err = _run(["identify", str(tmp_path / "norun"), "--probe", "p.txt", "--", "data.workers=0"], capsys)
    assert code == 2 and "unrecognized" not in err and "norun" in err, err
