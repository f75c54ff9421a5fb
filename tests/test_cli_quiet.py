"""Trial 12 D6: `--quiet` had no help line on eval, features, bench and identify (`--help` listed it bare), and a
user read it as "print less" (eval --quiet still prints the results table). It means what it means for train on
every command: no progress bars, nor the feature cache's lines; results, notes and warnings are still printed."""

import argparse

from openlt.cli import QUIET_HELP, build_parser


def _commands() -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def test_every_quiet_option_says_what_it_does():
    quiet = {name: next((a for a in p._actions if "--quiet" in a.option_strings), None)
             for name, p in _commands().items()}
    having = sorted(name for name, action in quiet.items() if action is not None)
    assert having == ["bench", "eval", "features", "identify", "train"]
    for name in having:
        assert quiet[name].help == QUIET_HELP, name
    assert QUIET_HELP.startswith("no progress bars") and "still printed" in QUIET_HELP


def test_eval_help_describes_quiet(capsys):
    import pytest

    with pytest.raises(SystemExit):
        build_parser().parse_args(["eval", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--quiet no progress bars, nor the feature cache's lines" in text
