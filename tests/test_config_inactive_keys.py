"""Config keys that only another choice uses (trial 8 D11): `train.milestones` / `train.step_gamma` under the
cosine schedule, an open-set score's options under another score, a decoupling method's options under another
method, ... set explicitly (in the config file named or by an override) to a non-default value are refused with one
line naming the key, where it was set and the choice that would use it -- never ignored without a word. A base
config's value, a default value, and a file's value after an override switched the choice are accepted. Every
shipped config and bench spec still builds. Also (D13): an out_dir too long for a run folder is refused naming
the key, the echo cut."""

from pathlib import Path

import pytest

from openlt.cli import main
from openlt.config import INACTIVE_RULES, build_config, packaged_configs
from openlt.errors import ConfigError


def _error(capsys, *args) -> tuple[int, list[str]]:
    capsys.readouterr()
    code = main(["config", *args])
    return code, capsys.readouterr().err.strip().splitlines()


def test_milestones_in_a_file_with_the_cosine_schedule_is_one_line_naming_file_line_and_schedule(tmp_path, capsys):
    path = tmp_path / "ms3.yaml"
    path.write_text("base: fmnist_lt/plain\ntrain:\n  epochs: 3\n  milestones: [2]\n  schedule: cosine\n")
    code, err = _error(capsys, str(path))
    assert code == 2 and err == [f"openlt config: error: {path}, line 4: config key 'train.milestones' has no effect "
                                 f"here: this config has train.schedule=cosine and only train.schedule=step uses it; "
                                 f"change train.schedule, or leave train.milestones out"]


def test_overrides_of_step_options_under_cosine_are_each_named(capsys):
    code, err = _error(capsys, "fmnist_lt/plain", "train.milestones=[0]", "train.step_gamma=0.001")
    assert code == 2 and len(err) == 1
    assert "override 'train.milestones=[0]': config key 'train.milestones' has no effect" in err[0]
    assert "override 'train.step_gamma=0.001': config key 'train.step_gamma' has no effect" in err[0]


@pytest.mark.parametrize("overrides, key, needs", [
    (["train.schedule=step", "train.milestones=[5]", "train.step_epochs=3"], "train.step_epochs",
     "train.schedule=step with train.milestones: []"),
    (["train.min_lr=0.01", "train.schedule=step"], "train.min_lr", "train.schedule=cosine"),
    (["train.centroid_lr=0.01"], "train.centroid_lr", "model.classifier=meta_embedding"),
    (["eval.open_threshold=0.5", "eval.keep_known=0.9"], "eval.keep_known", "eval.open_threshold=auto"),
    (["eval.knn_k=3"], "eval.knn_k", "eval.open_score=knn"),
    (["eval.open_score=energy", "eval.odin_temperature=10"], "eval.odin_temperature", "eval.open_score=odin"),
    (["eval.openmax_tail=5"], "eval.openmax_tail", "eval.open_score=openmax"),
    (["decouple.method=crt", "decouple.taus=[1.0]"], "decouple.taus", "decouple.method=tau_norm or logit_adjust"),
    (["decouple.method=ncm", "decouple.keep=best"], "decouple.keep", "decouple.method=crt or lws"),
    (["decouple.fslwf_shots=3"], "decouple.fslwf_shots", "decouple.method=fslwf"),
    (["decouple.cache_dtype=float16"], "decouple.cache_dtype", "a decouple.method"),
    (["model.head.ncm_center=true"], "model.head.ncm_center", "decouple.method=ncm"),
])
def test_a_key_of_another_choice_is_refused_naming_it_and_the_choice(overrides, key, needs):
    with pytest.raises(ConfigError) as info:
        build_config(None, overrides)
    message = str(info.value)
    assert "\n" not in message and f"config key '{key}' has no effect here" in message
    assert f"only {needs}" in message and f"leave {key} out" in message


@pytest.mark.parametrize("overrides", [
    ["train.schedule=step", "train.milestones=[5]", "train.step_gamma=0.5"],  # used
    ["train.milestones=[]", "train.step_gamma=0.1"],  # the defaults: the same with or without them
    ["eval.open_score=knn", "eval.knn_k=3"],
    ["decouple.method=lws", "decouple.lws_bias=false", "decouple.keep=best"],
    ["decouple.method=fslwf", "decouple.fslwf_shots=3", "decouple.features=augmented"],
])
def test_a_key_its_choice_uses_or_a_default_value_is_accepted(overrides):
    build_config(None, overrides)


def test_a_file_s_step_options_stay_inert_when_an_override_switches_the_schedule():
    cfg = build_config("cifar10_lt/ce", ["train.schedule=cosine"])  # the file sets milestones [160, 180]
    assert cfg.train.schedule == "cosine" and cfg.train.milestones == [160, 180]


def test_a_base_config_s_value_is_not_explicit(tmp_path):
    child = tmp_path / "child.yaml"  # cifar10_lt/ce (its base) sets step_gamma 0.01; the child switches to cosine
    child.write_text(f"base: {packaged_configs()['cifar10_lt/ce']}\ntrain:\n  schedule: cosine\n")
    assert build_config(child).train.step_gamma == 0.01


def test_a_saved_run_config_is_not_checked_again():
    saved = {"train": {"schedule": "cosine", "milestones": [3]}}  # a run from before the rule: still opens
    assert build_config(base=saved).train.milestones == [3]


def test_every_rule_names_a_real_key_and_choice():
    cfg = build_config()
    for key, choice, used, needs in INACTIVE_RULES:
        for dotted in (key, choice):
            node = cfg
            for part in dotted.split("."):
                node = getattr(node, part)
        assert isinstance(used(cfg), bool) and needs


def test_every_shipped_config_builds(recwarn):
    for name, path in packaged_configs().items():
        if not name.startswith("bench/"):
            build_config(path)


def test_an_out_dir_too_long_for_a_run_folder_is_one_line_naming_the_key(capsys):
    deep = "deep/" + "/".join(["d" * 60] * 70)
    code, err = _error(capsys, "fmnist_lt/plain", f"out_dir={deep}")
    assert code == 2 and len(err) == 1 and len(err[0]) < 500, err
    assert err[0].startswith(f"openlt config: error: override 'out_dir=deep/ddd")
    assert f"... ({len(deep) + 8} characters): config key 'out_dir' is " in err[0]
    assert "bytes long as an absolute path: at most 3712" in err[0] and f"({len(deep)} characters)" in err[0]


def test_an_out_dir_with_a_folder_name_over_255_bytes_is_refused(capsys):
    code, err = _error(capsys, "fmnist_lt/plain", "out_dir=runs/" + "é" * 130)
    assert code == 2 and "config key 'out_dir' has a folder name of 260 bytes (a file name holds at most 255)" in err[0]


def test_a_long_out_dir_within_the_limit_is_accepted():
    out_dir = "/".join(["d" * 60] * 50)
    assert build_config(None, [f"out_dir={out_dir}"]).out_dir == out_dir
