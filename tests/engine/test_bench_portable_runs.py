"""A bench reuses a finished run brought from another machine whose config differs only in where and how it ran
(config.EXECUTION_KEYS: made on a GPU machine with train.device=cuda, say, or more loader workers): --report-only
and a rerun reuse it, and an evaluation the spec asks for again runs on the spec's device, not on the run's. An
interrupted run with another device is still refused (it would resume with its own)."""

import json

import pytest
import yaml
from images import make_image_folder  # tests/helpers
from tiny_run import CLASSES, cli

from openlt.cli import main
from openlt.engine import bench as bench_module
from openlt.config import EXECUTION_KEYS
from openlt.engine.bench import _check_same_config, load_bench
from openlt.engine.run import Run
from openlt.errors import ConfigError

REPORT_FIGURES = "unrasterized"  # tests/conftest.py: report.html figures built, not rendered (none is looked at)

TRAINING = ["data.dataset=image-folder", "model.backbone=resnet10", "train.epochs=1", "train.warmup_epochs=0",
            "train.batch_size=16", "eval.batch_size=64", "eval.many_above=30", "eval.few_below=15"]
# a device no machine running the tests has (index 9), as a run made elsewhere would name one
ELSEWHERE = {"train": {"device": "cuda:9", "channels_last": False}, "data": {"workers": 3, "pin_memory": True}}


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    """A one-method bench (plus an eval_of method) on 16 px images, run once; its run's config.yaml then rewritten
    as if it had run on another machine: (spec path, the run)."""
    root = tmp_path_factory.mktemp("bench_portable")
    images = make_image_folder(root / "images", CLASSES)
    split = root / "sp"
    assert main(["split", "--dataset", "image-folder", "--root", str(images), "--out", str(split), "--profile",
                 "none", "--open-classes", "1", "--val-per-class", "4", "--test-per-class", "4", "--seed", "0"]) == 0
    (root / "tiny.yaml").write_text("name: tiny\n")
    spec = root / "bench.yaml"
    spec.write_text(json.dumps({"name": "portable", "seeds": [0], "out_dir": str(root / "out"),
                                "overrides": [f"data.split_dir={split}", *TRAINING],
                                "methods": [{"name": "a", "config": "tiny.yaml"}]}))
    assert main(["bench", str(spec), "--quiet"]) == 0
    (run,) = [Run(p) for p in (root / "out").iterdir() if p.is_dir()]
    saved = yaml.safe_load(run.config_file.read_text())
    for section, values in ELSEWHERE.items():
        saved[section].update(values)
    run.config_file.write_text(yaml.safe_dump(saved, sort_keys=False))
    return spec, run


def test_the_execution_keys_are_those_rewritten():
    assert EXECUTION_KEYS == {f"{s}.{k}" for s, values in ELSEWHERE.items() for k in values}


def test_report_only_and_a_rerun_reuse_the_finished_run(bench, capsys, monkeypatch):
    spec, run = bench
    monkeypatch.setattr(bench_module, "train", lambda *a, **k: pytest.fail("trained again"))
    monkeypatch.setattr(bench_module, "evaluate_run", lambda *a, **k: pytest.fail("evaluated again"))
    for extra in (["--report-only"], []):
        code, out, err = cli(capsys, "bench", spec, *extra)
        assert code == 0, err
        assert f"[1/1] a seed 0: done ({run.path})" in out + err


def test_an_evaluation_asked_for_again_runs_on_the_specs_device(bench, capsys):
    spec, run = bench
    raw = json.loads(spec.read_text())
    raw["methods"].append({"name": "a+energy", "eval_of": "a", "overrides": ["eval.open_score=energy"]})
    other = spec.with_name("bench_again.yaml")
    other.write_text(json.dumps(raw))
    code, out, err = cli(capsys, "bench", other)
    assert code == 0, err  # (evaluated on the run's cuda:9, it would stop: no such device)
    assert json.loads(run.metrics_path("a-energy").read_text())["open_score"]["name"] == "energy"


def test_an_interrupted_run_with_another_device_is_still_refused(bench):
    spec, run = bench
    loaded = load_bench(spec)
    with pytest.raises(ConfigError, match=r"data\.workers: run 3, spec 0; train\.channels_last: .*; and 1 more"):
        _check_same_config(loaded, loaded.methods[0], 0, run, finished=False)


def test_an_eval_of_methods_own_device_is_the_one_it_evaluates_on(bench, capsys):
    spec, run = bench  # (its override names the missing cuda:9 here, so evaluating there is what stops)
    raw = json.loads(spec.read_text())
    raw["methods"].append({"name": "a+max_logit", "eval_of": "a",
                           "overrides": ["eval.open_score=max_logit", "train.device=cuda:9"]})
    other = spec.with_name("bench_own_device.yaml")
    other.write_text(json.dumps(raw))
    code, out, err = cli(capsys, "bench", other)
    assert code == 2 and "cuda:9" in err, err
    assert not run.metrics_path("a-max_logit").exists()
