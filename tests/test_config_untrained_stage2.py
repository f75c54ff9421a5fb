"""A decoupled stage 2 that trains nothing (decouple.method ncm, tau_norm, logit_adjust: a head fitted in closed
form on the cached features) refuses a training setting set for it (issue 14, D11 gap): `train.epochs=50` or
`train.lr=0.01` on the command line, or in a config file with a `base:`, was ignored without a word. What the
stage does read (the feature extraction's precision, device and memory format, the seed, the stage-1 run, the
loaders, eval.batch_size) stays allowed; so do a resolved config (`openlt config` output, every key its own line)
and a bench spec's `overrides:` given to every method (seed_check.yaml's train.epochs=2 reaches its NCM and
tau-norm stages), which leave the key inert there."""

from pathlib import Path

import pytest

from openlt.cli import main
from openlt.config import TRAINS_NOTHING, UNTRAINED_TRAIN_KEYS, Config, build_config
from openlt.decoupling import STAGE2_METHODS
from openlt.engine.bench import load_bench
from openlt.errors import ConfigError

CONFIGS = {"ncm": "configs/fmnist_lt/decouple_ncm.yaml", "tau_norm": "configs/fmnist_lt/decouple_tau_norm.yaml",
           "logit_adjust": "configs/fmnist_lt/decouple_logit_adjust.yaml"}
# a value other than the default of each key (a default value is never refused)
VALUES = {"epochs": "50", "batch_size": "64", "lr": "0.01", "momentum": "0.5", "nesterov": "true",
          "weight_decay": "0.001", "warmup_epochs": "3", "schedule": "step", "step_epochs": "5", "step_gamma": "0.5",
          "milestones": "[2]", "min_lr": "0.001", "backbone_lr": "0.01", "sampler": "class_balanced", "eval_every": "2"}


def test_the_methods_that_train_nothing_are_the_registry_s_methods_not_trained_epoch_by_epoch():
    assert set(TRAINS_NOTHING) == {n for n in STAGE2_METHODS.names() if not STAGE2_METHODS.get(n).epochwise}
    assert set(VALUES) == set(UNTRAINED_TRAIN_KEYS)
    for key in UNTRAINED_TRAIN_KEYS:  # (each value differs from the default, or the test would prove nothing)
        assert str(getattr(Config().train, key)).lower() != VALUES[key].lower()


@pytest.mark.parametrize("method", sorted(CONFIGS))
@pytest.mark.parametrize("key", UNTRAINED_TRAIN_KEYS)
def test_a_training_setting_under_a_stage_that_trains_nothing_is_refused(method, key):
    override = f"train.{key}={VALUES[key]}"
    with pytest.raises(ConfigError) as info:
        build_config(CONFIGS[method], ["train.init_from=somewhere", override])
    message = str(info.value)
    assert message == (f"override {override!r}: config key 'train.{key}' has no effect here: this config has "
                       f"decouple.method={method} and only decouple.method=none (stage 1), crt, lws or fslwf (a stage "
                       f"that trains; ncm, tau_norm and logit_adjust train nothing) uses it; change decouple.method, or "
                       f"leave train.{key} out")


@pytest.mark.parametrize("key", UNTRAINED_TRAIN_KEYS)
def test_the_same_setting_under_a_stage_that_trains_is_accepted(key):
    step = ["train.schedule=step"] if key in ("step_epochs", "step_gamma", "milestones") else []
    cfg = build_config("configs/fmnist_lt/decouple_crt.yaml", [f"train.{key}={VALUES[key]}", *step])
    assert getattr(cfg.train, key) != getattr(Config().train, key)


def test_the_cli_refuses_with_one_line_and_exit_2(capsys):
    assert main(["config", CONFIGS["ncm"], "train.epochs=50"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'train.epochs=50'" in err[0] and "decouple.method=ncm" in err[0]


def test_a_file_with_a_base_that_sets_it_is_refused_naming_its_line(tmp_path):
    mine = tmp_path / "my_ncm.yaml"
    mine.write_text(f"base: {Path(CONFIGS['ncm']).resolve()}\ntrain:\n  lr: 0.01\n")
    with pytest.raises(ConfigError) as info:
        build_config(mine)
    assert str(info.value).startswith(f"{mine}, line 3: config key 'train.lr' has no effect here")


@pytest.mark.parametrize("method", sorted(CONFIGS))
def test_what_the_stage_reads_stays_allowed(method):
    cfg = build_config(CONFIGS[method], ["train.init_from=somewhere", "train.amp=none", "train.device=cpu",
                                         "train.channels_last=false", "eval.batch_size=32", "data.workers=0",
                                         "data.pin_memory=false", "seed=4", "decouple.cache_dtype=float32",
                                         "train.epochs=30", "train.lr=0.1"])  # (the last two: default values)
    assert (cfg.train.amp, cfg.train.device, cfg.seed, cfg.decouple.method) == ("none", "cpu", 4, method)


@pytest.mark.parametrize("method", sorted(CONFIGS))
def test_a_resolved_config_of_such_a_stage_builds_the_same(method, tmp_path, capsys):
    assert main(["config", CONFIGS[method], "seed=3"]) == 0
    printed = capsys.readouterr().out
    saved = tmp_path / "resolved.yaml"
    saved.write_text(printed)
    assert build_config(saved) == build_config(CONFIGS[method], ["seed=3"])
    with pytest.raises(ConfigError, match="'train.epochs' has no effect here"):  # an override still is refused
        build_config(saved, ["train.epochs=7"])


def test_a_bench_spec_override_for_every_method_is_inert_for_such_a_stage_not_refused():
    cfg = build_config(CONFIGS["ncm"], ["seed=0"], shared=["train.epochs=2", "train.amp=none"])
    assert cfg.train.epochs == 2 and cfg.train.amp == "none"  # set as before (runs saved so still match)
    with pytest.raises(ConfigError, match="override 'train.epochs=3'"):  # the method's own override is refused
        build_config(CONFIGS["ncm"], ["train.epochs=3"], shared=["train.epochs=2"])
    spec = load_bench("configs/bench/seed_check.yaml")  # overrides: [..., train.epochs=2] for every method
    assert {m.name for m in spec.methods} >= {"decouple_ncm", "decouple_tau_norm"}
    for name in ("fmnist_lt_convergence", "fmnist_lt_convergence_openset", "fmnist_lt_decoupling", "fmnist_lt"):
        load_bench(f"configs/bench/{name}.yaml")
