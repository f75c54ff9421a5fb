"""engine/override_scope.py: the keys `openlt eval` and `openlt identify` may override on a trained run, checked
without importing anything heavy (the command line checks them before torch loads)."""

import subprocess
import sys

import pytest

from openlt.config import parse_overrides
from openlt.engine.override_scope import EVAL_KEYS, IDENTIFY_KEYS, check_eval_overrides, check_identify_overrides
from openlt.errors import ConfigError


def test_evaluation_takes_eval_keys_and_where_the_data_is_now():
    check_eval_overrides(["eval.open_score=energy", "eval={few_below: 10}", *(f"{key}=x" for key in EVAL_KEYS)])
    check_eval_overrides(["data.root"])  # not key=value: left to the config's own check (parse_overrides)


@pytest.mark.parametrize("item", ["train.lr=0.1", "model.backbone=resnet10", "data.image_size=32", "evaluate.x=1"])
def test_evaluation_refuses_what_describes_the_trained_run(item):
    with pytest.raises(ConfigError, match=f"^{item.split('=')[0]} is not an evaluation setting"):
        check_eval_overrides(["eval.batch_size=8", item])


def test_identify_takes_the_evaluation_keys_and_the_batch_size_alone():
    check_identify_overrides([f"{key}=x" for key in IDENTIFY_KEYS])
    assert set(IDENTIFY_KEYS) == {*EVAL_KEYS, "eval.batch_size"}
    with pytest.raises(ConfigError, match="^eval.open_score is not an identify setting"):
        check_identify_overrides(["eval.open_score=energy"])


@pytest.mark.parametrize("overrides, message", [
    ("eval.knn_k=3", r"overrides must be a list of 'key=value' strings, got one string 'eval.knn_k=3': pass "),
    ([3], r"overrides must be 'key=value' strings, got 3 \(int\)"),
    ([("eval.knn_k", 3)], r"got \('eval.knn_k', 3\) \(tuple\)"),
])
def test_a_library_callers_overrides_that_are_no_list_of_strings_are_refused(overrides, message):
    """(Session 27: `run.evaluate(overrides="eval.knn_k=3")` said ` is not an evaluation setting`, [3] a TypeError.)"""
    for check in (check_eval_overrides, check_identify_overrides):
        with pytest.raises(ConfigError, match=message):
            check(overrides)


def test_an_override_without_a_key_is_refused():
    with pytest.raises(ConfigError, match="override '=1' has no key before '='"):
        parse_overrides(["=1"])
    with pytest.raises(ConfigError, match="override ' =' has no key"):
        parse_overrides([" ="])


def test_importing_it_loads_nothing_heavy():
    code = ("import sys, openlt.engine.override_scope; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'numpy', 'PIL', 'sklearn'}))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "[]"


def test_the_moved_data_hint_quotes_a_run_path_with_spaces(tmp_path):
    """(Helper trial, session 28: `openlt eval /tmp/x/moved run ü data.root=...` broke when pasted.)"""
    from openlt.config import build_config
    from openlt.engine.override_scope import check_data_folders
    from openlt.engine.run import Run
    from openlt.errors import DataError

    run = Run(tmp_path / "moved run ü")
    cfg = build_config(None, [f"data.split_dir={tmp_path / 'gone'}"])
    with pytest.raises(DataError, match=r"\(`openlt eval '.*/moved run ü' data.split_dir=NEW_FOLDER \.\.\.`\)$"):
        check_data_folders(run, cfg, set(), "eval")


def test_an_empty_quoted_folder_is_refused_not_read_as_the_current_folder(tmp_path):
    """(Helper trial, session 28: `openlt eval RUN "data.root=''"` passed as Path('') = '.'.)"""
    from openlt.config import build_config
    from openlt.engine.override_scope import check_data_folders
    from openlt.engine.run import Run

    cfg = build_config(None, ["data.root=''"])
    with pytest.raises(ConfigError, match=r"^the override data.root='' is an empty path \(it would read the current"):
        check_data_folders(Run(tmp_path), cfg, {"data.root"}, "eval")
