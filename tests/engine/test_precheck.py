"""Open-set settings that cannot work are refused before any work (engine/precheck.py): by `train` before the
run directory exists, by `openlt eval` once the model is built, with the scores' own conditions
(openlt.openset.check_score_setting)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from tiny_run import cli, small_split

from openlt.config import build_config
from openlt.engine.precheck import check_open_score_on_model, config_setting
from openlt.errors import ConfigError
from openlt.models.model import build_model
from openlt.openset import build_score, check_score_setting

LINEAR = {"head": "linear", "feature_dim": 512, "num_classes": 4, "num_train": 50}


@pytest.mark.parametrize("overrides, setting, message", [
    (["eval.open_score=reachability"], LINEAR,
     "eval.open_score=reachability needs a model with the meta-embedding head (model.classifier=meta_embedding); "
     "this model's head is linear"),
    (["eval.open_score=reachability"], {**LINEAR, "head": "ncm"}, "this model's head is ncm"),
    (["eval.open_score=knn", "eval.knn_k=60"], LINEAR, "eval.knn_k=60 is more than the 50 training images"),
    (["eval.open_score=vim", "eval.vim_dim=512"], LINEAR, "eval.vim_dim=512 must be between 1 and the feature width 512 - 1"),
    (["eval.open_score=vim"], {**LINEAR, "head": "meta_embedding"},
     "eval.open_score=vim needs a linear classifier head (logits = W f + b: model.classifier=linear, or a cRT / LWS / "
     "tau-norm / logit-adjust run); this model's head is meta_embedding"),
    (["eval.open_score=react"], {**LINEAR, "head": "ncm"}, "eval.open_score=react needs a linear classifier head"),
    (["eval.open_score=openmax", "eval.openmax_alpha=10"], LINEAR, "eval.openmax_alpha=10 is more than the 4 known classes"),
])
def test_a_score_that_cannot_work_is_named_with_why(overrides, setting, message):
    scorer = build_score(build_config(None, overrides).eval.open_score, build_config(None, overrides).eval)
    with pytest.raises(ConfigError) as err:
        check_score_setting(scorer, setting)
    assert message in str(err.value)


@pytest.mark.parametrize("overrides, setting", [
    (["eval.open_score=reachability"], {**LINEAR, "head": "meta_embedding"}),
    (["eval.open_score=knn", "eval.knn_k=50"], LINEAR),
    (["eval.open_score=vim", "eval.vim_dim=511"], {**LINEAR, "num_train": 512}),  # below D and N (issue 14)
    (["eval.open_score=openmax", "eval.openmax_alpha=4"], LINEAR),
    (["eval.open_score=msp"], {**LINEAR, "head": "ncm"}),
    # unknown facts (None) are not checked
    (["eval.open_score=knn", "eval.knn_k=60"], {"head": None, "feature_dim": None, "num_classes": None, "num_train": None}),
    (["eval.open_score=reachability"], {}),
])
def test_a_score_that_can_work_or_whose_facts_are_unknown_passes(overrides, setting):
    cfg = build_config(None, overrides)
    check_score_setting(build_score(cfg.eval.open_score, cfg.eval), setting)


def test_config_setting_reads_the_head_of_a_decoupled_method_and_the_backbone_width():
    ncm = config_setting(build_config("fmnist_lt/decouple_ncm", ["model.backbone=resnet10"]))
    assert ncm["head"] == "ncm" and ncm["feature_dim"] == 512 and ncm["num_classes"] is None
    assert config_setting(build_config("fmnist_lt/oltr_stage2", []))["head"] == "meta_embedding"
    assert config_setting(build_config("fmnist_lt/decouple_crt", []))["head"] == "linear"


def test_eval_checks_the_loaded_model_before_any_image():
    cfg = build_config(None, ["model.backbone=resnet10", "model.classifier=meta_embedding", "model.attention=true",
                              "eval.open_score=vim"])
    model = build_model(cfg, 3, 3, 16)
    data = SimpleNamespace(num_classes=3, train_counts=[5, 3, 2])
    with pytest.raises(ConfigError, match="eval.open_score=vim needs a linear classifier head.*meta_embedding"):
        check_open_score_on_model(build_score("vim", cfg.eval), model, data)
    knn = build_config(None, ["eval.open_score=knn", "eval.knn_k=11"]).eval
    with pytest.raises(ConfigError, match=r"^eval.knn_k=11 is more than the 10 training images$"):
        check_open_score_on_model(build_score("knn", knn), model, data)


@pytest.fixture(scope="module")
def split(tmp_path_factory) -> Path:
    return small_split(tmp_path_factory.mktemp("precheck"))


@pytest.mark.parametrize("extra, message", [
    (["eval.open_score=reachability"], "eval.open_score=reachability needs a model with the meta-embedding head"),
    (["eval.open_score=knn", "eval.knn_k=60"], "eval.knn_k=60 is more than the 17 training images"),
    (["eval.open_score=vim", "eval.vim_dim=512"], "eval.vim_dim=512 must be between 1 and the feature width 512 - 1"),
    (["eval.open_score=openmax", "eval.openmax_alpha=10"], "eval.openmax_alpha=10 is more than the 3 known classes"),
])
def test_train_refuses_before_the_run_directory_exists(split, tmp_path, capsys, extra, message):
    code, _, err = cli(capsys, "train", "fmnist_lt/plain", "data.dataset=image-folder", f"data.split_dir={split}",
                       "data.image_size=16", "model.backbone=resnet10", "train.epochs=1", f"out_dir={tmp_path / 'runs'}",
                       *extra)
    assert code == 2
    assert message in err and "refused before training" in err and "epoch" not in err.replace("epochs", "")
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def _spec(tmp_path: Path, split: Path, methods: str, overrides: str = "") -> Path:
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"name: t\nout_dir: {tmp_path / 'bench'}\nseeds: [0]\n"
                    f"overrides: [data.dataset=image-folder, data.split_dir={split}, model.backbone=resnet10{overrides}]\n"
                    f"methods:\n{methods}")
    return spec


@pytest.mark.parametrize("methods, message", [
    ("  - {name: plain, config: fmnist_lt/plain}\n"
     "  - {name: plain+reach, eval_of: plain, overrides: [eval.open_score=reachability]}\n",
     "method 'plain+reach' (eval_of 'plain', overrides): eval.open_score=reachability needs a model with the "
     "meta-embedding head (model.classifier=meta_embedding); this model's head is linear"),
    ("  - {name: plain, config: fmnist_lt/plain}\n"
     "  - {name: crt, config: fmnist_lt/decouple_crt, init_from: plain}\n"
     "  - {name: crt2, config: fmnist_lt/decouple_crt, init_from: crt}\n",
     "init_from='crt' is a decoupled stage-2 run (decouple.method=crt), not a stage-1 run"),
    ("  - {name: plain, config: fmnist_lt/plain}\n"
     "  - {name: oltr, config: fmnist_lt/oltr_stage2, init_from: plain}\n"
     "  - {name: oltr2, config: fmnist_lt/oltr_stage2, init_from: oltr}\n",
     "method 'oltr2' (config "),
    ("  - {name: plain, config: fmnist_lt/plain}\n"
     "  - {name: crt, config: fmnist_lt/decouple_crt, init_from: plain, overrides: [eval.open_score=knn, eval.knn_k=60]}\n",
     "method 'crt' (config "),
    ("  - {name: plain, config: fmnist_lt/plain}\n"
     "  - {name: plain+om, eval_of: plain, overrides: [eval.open_score=openmax, eval.openmax_alpha=4]}\n",
     "eval.openmax_alpha=4 is more than the 3 known classes"),
])
def test_bench_spec_refuses_a_later_method_that_cannot_work_at_load_time(split, tmp_path, methods, message):
    from openlt.engine.bench import load_bench

    spec = _spec(tmp_path, split, methods)
    with pytest.raises(ConfigError) as err:
        load_bench(spec)
    assert str(err.value).startswith(f"bench spec {spec}: ") and message in str(err.value)
    assert not (tmp_path / "bench").exists()


def test_bench_spec_knn_message_and_a_valid_chain_pass(split, tmp_path):
    from openlt.engine.bench import load_bench

    with pytest.raises(ConfigError, match="eval.knn_k=60 is more than the 17 training images"):
        load_bench(_spec(tmp_path, split, "  - {name: plain, config: fmnist_lt/plain}\n  - {name: crt, config: "
                         "fmnist_lt/decouple_crt, init_from: plain, overrides: [eval.open_score=knn, eval.knn_k=60]}\n"))
    ok = load_bench(_spec(tmp_path, split, "  - {name: plain, config: fmnist_lt/plain}\n"
                          "  - {name: ncm, config: fmnist_lt/decouple_ncm, init_from: plain}\n"
                          "  - {name: oltr, config: fmnist_lt/oltr_stage2, init_from: plain, "
                          "overrides: [eval.open_score=reachability]}\n"
                          "  - {name: plain+vim, eval_of: plain, overrides: [eval.open_score=vim, eval.vim_dim=16]}\n"))
    assert [m.name for m in ok.methods] == ["plain", "ncm", "oltr", "plain+vim"]


NO_VAL = ", data.val_split=null, eval.open_threshold=0.5"  # (an open split: a fixed threshold)
PLAIN = "  - {name: plain, config: fmnist_lt/plain}\n"


@pytest.mark.parametrize("methods, overrides, which, message", [
    (PLAIN + "  - {name: crt, config: fmnist_lt/decouple_crt, init_from: plain}\n"
     "  - {name: tau, config: fmnist_lt/decouple_tau_norm, init_from: plain}\n", NO_VAL,
     "method 'tau' (config ", "decouple_tau_norm.yaml): decouple.method=tau_norm chooses tau on the validation split "
     "among decouple.taus (21 values), and this run has none"),
    (PLAIN + "  - {name: la, config: fmnist_lt/decouple_logit_adjust, init_from: plain}\n", NO_VAL,
     "method 'la' (config ", "decouple.method=logit_adjust chooses tau"),
    (PLAIN + "  - {name: plain+auto, eval_of: plain, overrides: [eval.open_threshold=auto]}\n", NO_VAL,
     "method 'plain+auto' (eval_of 'plain', overrides): ", "eval.open_threshold=auto chooses the rejection"),
    (PLAIN + "  - {name: ncm, config: fmnist_lt/decouple_ncm, init_from: plain, overrides: [eval.open_threshold=auto]}\n",
     NO_VAL, "method 'ncm' (config ", "eval.open_threshold=auto chooses the rejection threshold on a validation split"),
    ("  - {name: plain, config: fmnist_lt/plain, overrides: [eval.open_threshold=0.5]}\n"
     "  - {name: crt, config: fmnist_lt/decouple_crt, init_from: plain, overrides: [decouple.keep=best]}\n",
     ", data.val_split=nowhere.txt, eval.open_threshold=0.5", "method 'crt' (config ",
     "decouple.keep=best chooses the stage-2 epoch on the validation split"),
    (PLAIN + "  - {name: crt, config: fmnist_lt/decouple_crt, init_from: plain}\n", ", data.val_split=null",
     "method 'plain' (config ", "open.txt is an open split, and eval.open_threshold=auto chooses the rejection"),
])
def test_bench_spec_refuses_a_method_needing_a_validation_split_the_data_lacks(split, tmp_path, methods, overrides,
                                                                               which, message):
    """Trial 16 item 3: a τ search, decouple.keep=best or eval.open_threshold=auto on an open split, with no
    validation split in the data the method's run will have (was: refused at the method's turn, after the earlier
    methods trained): refused at load time by the single run's own checks, naming the method."""
    from openlt.engine.bench import load_bench

    spec = _spec(tmp_path, split, methods, overrides)
    with pytest.raises(ConfigError) as err:
        load_bench(spec)
    text = str(err.value)
    assert text.startswith(f"bench spec {spec}: {which}") and message in text and len(text.splitlines()) == 1, text
    assert not (tmp_path / "bench").exists()


def test_bench_spec_without_validation_passes_what_needs_none(split, tmp_path):
    """One fixed τ, cRT keeping its last epoch and a fixed threshold need no validation split; a run that builds
    its own split (no data.split_dir) with data.val_split=null is refused a τ search as well."""
    from openlt.engine.bench import load_bench

    ok = load_bench(_spec(tmp_path, split, PLAIN + "  - {name: crt, config: fmnist_lt/decouple_crt, init_from: plain}\n"
                          "  - {name: tau, config: fmnist_lt/decouple_tau_norm, init_from: plain, "
                          "overrides: ['decouple.taus=[1.0]']}\n"
                          "  - {name: plain+t, eval_of: plain, overrides: [eval.open_threshold=0.3]}\n", NO_VAL))
    assert [m.name for m in ok.methods] == ["plain", "crt", "tau", "plain+t"]
    spec = tmp_path / "own.yaml"
    spec.write_text(f"name: t\nout_dir: {tmp_path / 'bench'}\noverrides: [data.dataset=image-folder, "
                    f"data.root={tmp_path}, data.val_split=null, data.open_split=null]\nmethods:\n"
                    + PLAIN + "  - {name: tau, config: fmnist_lt/decouple_tau_norm, init_from: plain}\n")
    with pytest.raises(ConfigError, match="method 'tau' .*decouple.method=tau_norm chooses tau on the validation"):
        load_bench(spec)
