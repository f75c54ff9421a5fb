"""An override of one entry of a mapping-valued option (train.loss_args.gamma=0.5) sets that entry and keeps the
file's others, as a config's `base:` chain merges mappings (it replaced the whole mapping: alpha from the file was
dropped without a word; issue 14); `train.loss_args={...}` still replaces the mapping as written."""

import pytest

from openlt.config import build_config, explicit_keys


ALPHA = [1, 1, 1, 1, 1, 1, 1, 2]  # one weight per class of fmnist_lt's 8


@pytest.fixture
def focal(tmp_path):
    path = tmp_path / "focal.yaml"
    path.write_text("base: fmnist_lt/plain\ntrain:\n  loss: focal\n  loss_args: {gamma: 2.0, alpha: [1, 1, 1, 1, 1, 1, 1, 2]}\n")
    return path


@pytest.mark.parametrize("overrides, expected", [
    (["train.loss_args.gamma=0.5"], {"gamma": 0.5, "alpha": ALPHA}),
    (["train.loss_args.gamma=0.5", "train.loss_args.alpha=[2, 1, 1, 1, 1, 1, 1, 1]"],
     {"gamma": 0.5, "alpha": [2, 1, 1, 1, 1, 1, 1, 1]}),
    (["train.loss_args={gamma: 0.5}"], {"gamma": 0.5}),  # the whole mapping, as written
    (["train.loss_args={}"], {}),
    ([], {"gamma": 2.0, "alpha": ALPHA}),
])
def test_an_entry_override_keeps_the_files_other_entries(focal, overrides, expected):
    assert build_config(focal, overrides).train.loss_args == expected


def test_the_entry_is_named_as_the_override_and_the_others_keep_their_file_line(focal):
    where = explicit_keys(build_config(focal, ["train.loss_args.gamma=0.5"]))
    assert where["train.loss_args.gamma"] == "override 'train.loss_args.gamma=0.5'"
    assert where["train.loss_args.alpha"] == f"{focal}, line 4"


def test_a_merged_mapping_is_still_checked_as_a_whole(focal, capsys):
    from openlt.cli import main
    assert main(["config", str(focal), "train.loss_args.bogus=1"]) == 2  # the loss's own check (losses.check_train_loss)
    assert "takes no argument 'bogus'; its arguments: gamma (default 2.0)" in capsys.readouterr().err


def test_a_saved_configs_mapping_is_merged_too(focal):
    """`openlt eval RUN key=value` builds on the run's saved config (base=): the same merge."""
    from openlt.config import to_dict
    saved = to_dict(build_config(focal))
    assert build_config(base=saved, overrides=["train.loss_args.gamma=0.5"]).train.loss_args == {"gamma": 0.5,
                                                                                                  "alpha": ALPHA}
