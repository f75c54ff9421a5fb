"""The open-set decision (openset.Rejector) on hand-made scores, its calibration.json, and that `openlt eval`
checks its overrides before loading any model."""

import json
from dataclasses import replace
import math
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from openlt.config import Config, dump_yaml
from openlt.engine import evaluate
from openlt.engine.run import Run
from openlt.errors import ConfigError, RunDirError
from openlt.metrics import reject
from openlt.openset import MaxSoftmax, Rejector, check_rejection_config, parse_threshold


def test_calibrate_keeps_the_stated_fraction_of_the_known_validation_scores():
    scores = np.arange(1, 11) / 10  # 0.1 .. 1.0
    rejector = Rejector.calibrate("msp", scores, 0.9)
    assert rejector.threshold == pytest.approx(0.2) and rejector.score == "msp"
    assert np.mean(scores >= rejector.threshold) == 0.9
    assert rejector.source == "validation: keeps 90% of the known validation images"
    rng = np.random.default_rng(0)
    for keep in (0.5, 0.95, 1.0):
        known = rng.normal(size=200).astype(np.float32)
        t = Rejector.calibrate("energy", torch.from_numpy(known), keep).threshold
        kept = np.mean(known >= t)
        assert keep <= kept < keep + 1 / 200 + 1e-12  # the largest threshold keeping that fraction
    with pytest.raises(ValueError, match="tpr must be in"):
        Rejector.calibrate("msp", scores, 0.0)


def test_fixed_threshold_and_its_checks():
    rejector = Rejector.fixed("max_logit", 3)
    assert (rejector.score, rejector.threshold, rejector.source) == ("max_logit", 3.0, "fixed (eval.open_threshold)")
    assert isinstance(rejector.threshold, float)
    for bad in (math.nan, math.inf, "auto", "high", True):
        with pytest.raises(ConfigError):
            Rejector.fixed("msp", bad)
    assert parse_threshold("auto") is None and parse_threshold(0.5) == 0.5
    assert parse_threshold("1e-05") == 1e-05  # YAML 1.1 reads a float without a dot as a string
    for bad in ("nan", "-inf", None, [0.5], False):
        with pytest.raises(ConfigError, match="eval.open_threshold"):
            parse_threshold(bad)


def test_config_checks_name_the_key():
    check_rejection_config(SimpleNamespace(open_threshold=0.3, keep_known=7))  # keep_known unused when fixed
    with pytest.raises(ConfigError, match="eval.keep_known"):
        check_rejection_config(SimpleNamespace(open_threshold="auto", keep_known=1.5))
    with pytest.raises(ConfigError, match="needs a validation split"):
        check_rejection_config(SimpleNamespace(open_threshold="auto", keep_known=0.9), has_val=False)


def test_decide_puts_minus_one_below_the_threshold_as_metrics_reject():
    preds = np.array([3, 1, 4, 1, 5])
    scores = np.array([0.2, 0.5, 0.49999, -np.inf, 0.9], dtype=np.float32)
    decided = Rejector.fixed("msp", 0.5).decide(preds, scores)
    assert decided.tolist() == [-1, 1, -1, -1, 5]  # at the threshold is kept, -inf is rejected (NaN: refused)
    assert decided.dtype == np.int64 and np.array_equal(decided, reject(preds, scores, 0.5))
    assert preds.tolist() == [3, 1, 4, 1, 5]  # the input is not modified


def test_from_config_calibrates_with_the_score_on_validation_outputs():
    logits = torch.tensor([[4.0, 0.0], [1.0, 0.0], [0.0, 0.2], [0.0, 3.0]])
    cfg = Config()
    cfg.eval.keep_known = 0.75
    rejector = Rejector.from_config(cfg.eval, MaxSoftmax(), {"logits": logits})
    msp = torch.softmax(logits, dim=1).max(dim=1).values.numpy()
    assert rejector.threshold == float(np.sort(msp)[::-1][2]) and rejector.score == "msp"
    cfg.eval.open_threshold = 0.6
    assert Rejector.from_config(cfg.eval, MaxSoftmax(), None) == Rejector.fixed("msp", 0.6)


def test_save_load_round_trip_keeps_todays_json(tmp_path):
    path = tmp_path / "calibration.json"
    rejector = Rejector.calibrate("energy", np.linspace(-1, 2, 17), 0.95)
    rejector.save(path)
    assert list(json.loads(path.read_text())) == ["score", "threshold", "source"]
    assert Rejector.load(path) == rejector
    # a calibration.json written before the Rejector existed loads as it is
    old = {"score": "msp", "threshold": 0.4123, "source": "fixed (eval.open_threshold)"}
    path.write_text(json.dumps(old, indent=2))
    assert Rejector.load(path) == Rejector.fixed("msp", 0.4123)


def test_a_calibrated_threshold_keeps_the_checkpoint_it_was_fitted_on(tmp_path):
    path = tmp_path / "calibration.json"
    fitted_on = {"checkpoint": "last", "sha256": "0123456789abcdef" * 4}
    rejector = replace(Rejector.calibrate("msp", np.linspace(0, 1, 11), 0.9), fitted_on=fitted_on)
    rejector.save(path)
    assert json.loads(path.read_text())["fitted_on"] == fitted_on and Rejector.load(path) == rejector
    assert rejector.calibrated and not Rejector.fixed("msp", 0.5).calibrated
    assert "fitted_on" not in Rejector.fixed("msp", 0.5).to_dict()  # a fixed threshold belongs to no checkpoint


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"score": "msp", "threshold": 0.5}',
                                     '{"score": "msp", "threshold": "auto", "source": ""}',
                                     '{"score": 3, "threshold": 0.5, "source": ""}', "\xff\xfe",
                                     '{"score": "msp", "threshold": 0.5, "source": "", "fitted_on": "best"}',
                                     '{"score": "msp", "threshold": 0.5, "source": "", "fitted_on": '
                                     '{"checkpoint": "best", "sha256": "abc"}}'])
def test_a_malformed_calibration_file_is_a_run_dir_error_naming_it(tmp_path, content):
    path = tmp_path / "calibration.json"
    path.write_bytes(content.encode("latin-1"))
    with pytest.raises(RunDirError, match="calibration.json is not a calibration file") as info:
        Rejector.load(path)
    assert "\n" not in str(info.value)
    with pytest.raises(RunDirError, match="calibration file not found"):
        Rejector.load(tmp_path / "missing.json")


@pytest.mark.parametrize("overrides, message", [
    (["eval.open_scor=energy"], "unknown config key 'eval.open_scor'"),
    (["eval.open_score=nope"], "nope"),
    (["eval.open_threshold=high"], "eval.open_threshold'? must be 'auto' or a finite number"),
    (["eval.open_threshold=.nan"], "eval.open_threshold'? must be 'auto' or a finite number"),
    (["eval.keep_known=2"], "eval.keep_known'? must be"),
    # keys evaluation does not use: accepted silently, they would change nothing (or the model under its weights)
    (["train.lr=5"], r"^train.lr is not an evaluation setting: an evaluation may override eval.\* and data.root, "),
    (["eval.few_below=5", "model.backbone=resnet50"], "^model.backbone is not an evaluation setting"),
    (["data.image_size=64"], "^data.image_size is not an evaluation setting"),
    (["data.split.seed=3"], "^data.split.seed is not an evaluation setting"),
])
def test_an_eval_override_error_comes_before_the_model_is_loaded(tmp_path, monkeypatch, overrides, message):
    (tmp_path / "config.yaml").write_text(dump_yaml(Config()))

    def never(*args, **kwargs):
        raise AssertionError("the model was loaded before the overrides were checked")

    monkeypatch.setattr(evaluate, "prepare_data", never)
    monkeypatch.setattr(evaluate, "collect_outputs", never)
    with pytest.raises(ConfigError, match=message):
        evaluate.evaluate_run(Run(tmp_path), overrides=overrides, quiet=True)


def test_a_fixed_threshold_names_the_option_it_came_from_and_ranges_are_declared():
    from openlt.openset import check_threshold_range

    with pytest.raises(ConfigError, match=r"^--threshold must be a finite number, got nan$"):
        Rejector.fixed("msp", float("nan"), option="--threshold")
    assert Rejector.fixed("msp", 1.5).threshold == 1.5  # eval may reject everything on purpose
    with pytest.raises(ConfigError, match=r"--threshold 1\.5 is outside the range of the open-set score msp \(\[0, 1\]\)"):
        check_threshold_range("msp", 1.5, "--threshold")
    for name in ("openmax", "odin"):
        with pytest.raises(ConfigError, match="outside the range"):
            check_threshold_range(name, -0.1, "--threshold")
    check_threshold_range("msp", 0.0, "--threshold")
    check_threshold_range("energy", -50.0, "--threshold")  # no declared range: any number
    check_threshold_range("max_logit", 1e6, "--threshold")


def test_an_evaluation_threshold_outside_the_scores_range_is_warned_about():
    """`openlt eval RUN eval.open_threshold=2` on msp wrote F 0.000 without a word, while predict's --threshold 2
    is refused (helper trial, session 28): a warning (an evaluation may reject everything on purpose)."""
    from openlt.config import ConfigWarning

    with pytest.warns(ConfigWarning, match=r"^eval.open_threshold 2 is outside the range of the open-set score msp "
                                           r"\(\[0, 1\]\): .*; evaluated as set"):
        check_rejection_config(SimpleNamespace(open_threshold=2.0, open_score="msp", keep_known=0.95))
    with pytest.warns(ConfigWarning, match="eval.open_threshold -1 is outside"):
        check_rejection_config(SimpleNamespace(open_threshold=-1, open_score="msp", keep_known=0.95))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_rejection_config(SimpleNamespace(open_threshold=0.5, open_score="msp", keep_known=0.95))
        check_rejection_config(SimpleNamespace(open_threshold=-7.5, open_score="energy", keep_known=0.95))


def test_the_source_names_keep_known_as_it_is_not_rounded_to_a_whole_percent():
    """keep_known 0.999 was written "keeps 100%" (`:.0%`), and 0.954 "keeps 95%" like 0.95: the source of the
    threshold misstated the fraction kept, and summary / bench compared two different decisions as one."""
    scores = np.arange(1, 1001) / 1000
    assert Rejector.calibrate("msp", scores, 0.999).source == "validation: keeps 99.9% of the known validation images"
    assert Rejector.calibrate("msp", scores, 0.95).source == "validation: keeps 95% of the known validation images"
    assert Rejector.calibrate("msp", scores, 0.954).source != Rejector.calibrate("msp", scores, 0.95).source
