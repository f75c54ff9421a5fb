"""README pass (session of helpers): `openlt train --help` said `--resume` lets "train.* (e.g. train.epochs)" be
edited, but a resumed run refuses a changed train.lr, train.sampler, train.loss, train.init_from, ... (runtime
RESUME_KEYS; the README's command reference lists them): the help names what may change and what may not."""

import argparse

from openlt.cli import build_parser
from openlt.engine.runtime import RESUME_KEYS


def _resume_help() -> str:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    action = next(a for a in sub.choices["train"]._actions if "--resume" in a.option_strings)
    return " ".join(action.help.split())


def test_resume_help_does_not_call_every_train_key_editable():
    text = _resume_help()
    assert "train.*" not in text
    assert "train.epochs" in text and "eval.*" in text and "data.workers" in text
    for word in ("train.init_from", "optimizer", "seed", "loss", "sampler"):
        assert word in text, word
    assert {"train.init_from", "train.lr", "seed", "train.loss", "train.sampler"} <= set(RESUME_KEYS)
