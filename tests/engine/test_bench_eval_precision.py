"""A bench reuses a run's metrics.json only when it was evaluated in the precision the bench evaluates in (issue 14):
one written by `openlt eval RUN train.amp=none` of a bf16 run is evaluated again in bf16 (one line says so) or,
under --report-only, refused naming the run and both precisions; an `eval_of` method that asks float32 keeps its
float32 file; a spec whose precision contradicts the run's trained one is still refused (one truth per run)."""

import inspect
import json
from pathlib import Path

import pytest
from tiny_run import tiny_overrides  # tests/helpers

from openlt.cli import main
from openlt.engine import bench as bench_module
from openlt.engine.bench import load_bench, precision_differences, run_bench
from openlt.engine.evaluate import eval_config, evaluate_run, evaluation_amp
from openlt.engine.run import Run
from openlt.errors import ConfigError

REPORT_FIGURES = "unrasterized"  # tests/conftest.py: report.html figures built, not rendered (none is looked at)


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    """A bench of the tiny run trained in bf16 (explicit: any CPU runs it) and an eval_of method evaluating it in
    float32, run once by `openlt bench`: (spec path, the run)."""
    root = tmp_path_factory.mktemp("bench_precision")
    overrides = [o for o in tiny_overrides(root, "train.amp=bf16") if not o.startswith("out_dir=")]
    (root / "tiny.yaml").write_text("name: tiny\n")
    spec = root / "bench.yaml"
    spec.write_text(json.dumps({"name": "prec", "seeds": [0], "out_dir": str(root / "out"), "overrides": overrides,
                                "methods": [{"name": "a", "config": "tiny.yaml"},
                                            {"name": "a+f32", "eval_of": "a", "overrides": ["train.amp=none"]}]}))
    run_bench(load_bench(spec), quiet=True, log=lambda _: None)
    (run,) = [Run(p) for p in (root / "out").iterdir() if p.is_dir()]
    return spec, run


def _amp(path: Path) -> str:
    return json.loads(path.read_text())["amp"]


def test_the_bench_records_each_methods_precision_and_reuses_them(bench, monkeypatch):
    spec, run = bench
    assert _amp(run.metrics_file) == "bf16" and _amp(run.metrics_path("a-f32")) == "none"
    assert precision_differences(json.loads(run.metrics_file.read_text()), run, run.config()) == []
    monkeypatch.setattr(bench_module, "evaluate_run", lambda *a, **k: pytest.fail("evaluated again"))
    lines = []
    run_bench(load_bench(spec), quiet=True, log=lines.append)  # the float32 eval_of file is what its method asks
    assert sum(": done (" in line for line in lines) == 2, lines


def test_a_float32_evaluation_of_a_bf16_run_is_refused_by_report_only_and_evaluated_again(bench, capsys):
    spec, run = bench
    evaluate_run(run, overrides=["train.amp=none"], quiet=True)  # replaces metrics.json, evaluated in float32
    assert _amp(run.metrics_file) == "none"
    with pytest.raises(ConfigError) as info:
        run_bench(load_bench(spec), quiet=True, log=lambda _: None, report_only=True)
    message = str(info.value)
    assert "\n" not in message and f"metrics.json of {run.path}" in message and "method 'a'" in message
    assert "precision: run float32, spec bf16 autocast" in message
    assert main(["bench", str(spec), "--report-only", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "precision: run float32, spec bf16 autocast" in err[0], err
    lines = []
    run_bench(load_bench(spec), quiet=True, log=lines.append)
    assert any("precision: run float32, spec bf16 autocast" in line
               and "evaluating it again under the spec's settings" in line for line in lines), lines
    assert _amp(run.metrics_file) == "bf16" and _amp(run.metrics_path("a-f32")) == "none"
    run_bench(load_bench(spec), quiet=True, log=lambda _: None, report_only=True)  # now reused


def test_a_spec_asking_another_precision_than_the_run_trained_in_is_still_refused(bench):
    spec, run = bench
    with pytest.raises(ConfigError) as info:
        run_bench(load_bench(spec, ["train.amp=none"]), quiet=True, log=lambda _: None, report_only=True)
    assert "train.amp: run 'bf16', spec 'none'" in str(info.value) and str(run.path) in str(info.value)
    assert _amp(run.metrics_file) == "bf16"


@pytest.mark.parametrize("recorded", [None, "fp16", "bogus"])
def test_a_precision_not_recorded_or_not_native_here_is_not_compared(bench, recorded):
    _, run = bench  # fp16 needs CUDA: evaluating again on this CPU would only fall back (machine-made)
    metrics = {} if recorded is None else {"amp": recorded}
    assert precision_differences(metrics, run, run.config()) == []
    assert precision_differences({"amp": "none"}, run, run.config()) == [
        "precision: run float32, spec bf16 autocast"]


def test_the_precision_compared_is_read_from_the_config_alone(bench):
    _, run = bench  # evaluation_amp reads an explicit train.amp from cfg (config.explicit_keys): no `overrides`
    assert list(inspect.signature(evaluation_amp).parameters) == ["run", "cfg", "dev", "state"]
    assert list(inspect.signature(precision_differences).parameters) == ["metrics", "run", "cfg"]
    cfg, _ = eval_config(run.config(), ["train.amp=none"])  # an eval_of method asking float32
    assert precision_differences({"amp": "none"}, run, cfg) == []
    assert precision_differences({"amp": "none"}, run, run.config()) == ["precision: run float32, spec bf16 autocast"]
