"""A bench shows each row under the evaluation settings its spec gives the method (trial 8 D10): a run whose
metrics.json an `openlt eval RUN eval.open_score=max_logit` (no --tag) replaced is evaluated again (one line says
so) or, under --report-only, refused naming the run and both settings -- never shown under the spec's method name.
Also: an interrupted bench says that running it again resumes it and writes the table (D15), and a bench out_dir
too long for a run folder is refused naming the option (D13)."""

import json
from pathlib import Path

import pytest

from openlt.cli import main
from openlt.config import build_config
from openlt.engine import bench as bench_module
from openlt.engine.bench import evaluation_differences, load_bench, run_bench
from openlt.engine.evaluate import eval_config
from openlt.engine.run import Run
from openlt.errors import ConfigError


def _finished_run(tmp_path: Path, metrics: dict, tagged: dict | None = None) -> tuple[Path, Run]:
    """A spec with a trained method `a` (msp) and an eval_of method `a+energy`, and a finished run of `a` whose
    metrics.json (and metrics-a-energy.json) hold `metrics` (`tagged`)."""
    (tmp_path / "tiny.yaml").write_text("name: tiny\n")
    spec = {"name": "x", "seeds": [0], "out_dir": str(tmp_path / "out"), "overrides": ["data.split_dir=splits"],
            "methods": [{"name": "a", "config": "tiny.yaml"},
                        {"name": "a+energy", "eval_of": "a", "overrides": ["eval.open_score=energy"]}]}
    path = tmp_path / "bench.yaml"
    path.write_text(json.dumps(spec))
    run = Run(tmp_path / "out" / "a-s0-20260101-000000")
    run.path.mkdir(parents=True)
    run.write_config(build_config(tmp_path / "tiny.yaml", ["data.split_dir=splits", "seed=0",
                                                          f"out_dir={tmp_path / 'out'}", "name=a-s0"]))
    run.metrics_file.write_text(json.dumps(metrics))
    run.checkpoint("best").parent.mkdir()
    run.checkpoint("best").write_bytes(b"")  # evaluate_run is replaced: a run with weights, for the bench's check
    run.metrics_path("a-energy").write_text(json.dumps(tagged if tagged is not None else
                                                       {"open_score": {"name": "energy", "temperature": 1.0}}))
    return path, run


MSP = {"open_score": {"name": "msp"}, "calibration": {"score": "msp", "threshold": 0.5,
                                                       "source": "validation: keeps 95% of the known validation images"},
       "bands": {"many_above": 100, "few_below": 20, "inclusive": False}}


def test_a_run_evaluated_under_another_score_is_refused_by_report_only_naming_both(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    other = {**MSP, "open_score": {"name": "max_logit"}, "calibration": {**MSP["calibration"], "score": "max_logit"}}
    path, run = _finished_run(tmp_path, other)
    with pytest.raises(ConfigError) as info:
        run_bench(load_bench(path), quiet=True, log=lambda _: None, report_only=True)
    message = str(info.value)
    assert "\n" not in message and str(run.path) in message and "metrics.json" in message
    assert "eval.open_score: run max_logit, spec msp" in message and "method 'a'" in message
    assert "without it to evaluate the run again" in message


def test_the_cli_report_only_exits_2_and_writes_no_table(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    path, run = _finished_run(tmp_path, {**MSP, "open_score": {"name": "max_logit"}})
    assert main(["bench", str(path), "--report-only", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("openlt bench: error: bench x: metrics.json of ") and "max_logit" in err[0]
    assert not (tmp_path / "out" / "results.md").exists()


def test_a_run_evaluated_under_another_score_is_evaluated_again_saying_so(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path, run = _finished_run(tmp_path, {**MSP, "open_score": {"name": "max_logit"}},
                              tagged={"open_score": {"name": "msp"}})
    calls, lines = [], []
    monkeypatch.setattr(bench_module, "evaluate_run",
                        lambda r, overrides=None, quiet=False, tag=None, device=None:
                        calls.append((r.path, overrides, tag, device)))
    files = run_bench(load_bench(path), quiet=True, log=lines.append)
    # metrics.json again under the spec's msp; metrics-a-energy.json (overwritten with msp) again with energy; both
    # on the spec's device (auto), not the run's (test_bench_portable_runs: a run from a GPU machine)
    assert calls == [(run.path, None, None, "auto"), (run.path, ["eval.open_score=energy"], "a-energy", "auto")]
    assert any("metrics.json of" in line and "eval.open_score: run max_logit, spec msp" in line
               and "evaluating it again under the spec's settings" in line for line in lines), lines
    assert any("metrics-a-energy.json of" in line and "eval.open_score: run msp, spec energy" in line
               for line in lines), lines
    assert files == {"a": [run.metrics_file], "a+energy": [run.metrics_path("a-energy")]}


def test_a_run_evaluated_as_the_spec_says_is_reused_without_evaluation(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path, run = _finished_run(tmp_path, MSP)
    monkeypatch.setattr(bench_module, "evaluate_run", lambda *a, **k: pytest.fail("evaluated again"))
    lines = []
    run_bench(load_bench(path), quiet=True, log=lines.append, report_only=True)
    steps = [line for line in lines if line.startswith("[")]
    assert len(steps) == 2 and all(": done (" in line for line in steps), lines


def test_an_openmax_alpha_left_to_its_default_is_compared_as_the_fit_resolved_it():
    """OpenMax records alpha resolved (min(10, K) for a spec's null), so a null spec matches a fit's 8 of 8 classes
    but not an explicit alpha (a session-9 bench refused its own OpenMax runs: run 8, spec None)."""
    cfg, scorer = eval_config(build_config(), ["eval.open_score=openmax"])
    fitted = {"name": "openmax", "tail_size": 20, "alpha": 8, "distance": "eucos", "num_classes": 8}
    assert evaluation_differences({**MSP, "open_score": fitted}, cfg, scorer) == []
    assert evaluation_differences({**MSP, "open_score": {**fitted, "alpha": 5}}, cfg, scorer) == [
        "eval.openmax_alpha: run 5, spec 8"]
    cfg, scorer = eval_config(build_config(), ["eval.open_score=openmax", "eval.openmax_alpha=5"])
    assert evaluation_differences({**MSP, "open_score": fitted}, cfg, scorer) == ["eval.openmax_alpha: run 8, spec 5"]


@pytest.mark.parametrize("recorded, overrides, says", [
    ({"open_score": {"name": "knn", "k": 3}}, ["eval.open_score=knn"], "eval.knn_k: run 3, spec 50"),
    ({"calibration": {"score": "msp", "threshold": 0.2, "source": "fixed by eval.open_threshold"}}, [],
     "eval.open_threshold: run 0.2, spec auto"),
    ({"calibration": {"score": "msp", "threshold": 0.2, "source": "validation: keeps 95% of the known ..."}},
     ["eval.open_threshold=0.3"], "eval.open_threshold: run auto, spec 0.3"),
    ({"calibration": {"score": "msp", "threshold": 0.2, "source": "validation: keeps 80% of the known ..."}}, [],
     "eval.keep_known: run 'validation: keeps 80% of the known ...', spec 0.95"),
    ({"bands": {"many_above": 50, "few_below": 20, "inclusive": False}}, [], "eval.many_above: run 50, spec 100"),
    ({"bands": {"many_above": 100, "few_below": 20, "inclusive": True}}, [], "eval.inclusive_bands: run True, spec False"),
])
def test_each_evaluation_setting_is_compared(recorded, overrides, says):
    cfg, scorer = eval_config(build_config(), overrides)
    assert evaluation_differences({**MSP, "open_score": {"name": cfg.eval.open_score}, **recorded}, cfg, scorer) == [says]
    assert evaluation_differences({}, cfg, scorer) == []  # an older file that records nothing: not compared


def test_an_interrupted_bench_says_running_it_again_resumes_it_and_writes_the_table(tmp_path, monkeypatch, capsys):
    from tiny_bench import bench_overrides, bench_root  # tests/helpers

    monkeypatch.chdir(bench_root(tmp_path))  # a real image folder: the spec's data is checked before any run
    spec = tmp_path / "b2.yaml"
    spec.write_text(json.dumps({"name": "b2", "seeds": [0], "out_dir": "out", "overrides": bench_overrides(tmp_path),
                                "methods": [{"name": "a", "config": "tiny.yaml"}]}))

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt("the run out/a-s0-X keeps the checkpoint of epoch 1; continue with "
                                "`openlt train --resume out/a-s0-X`")

    monkeypatch.setattr(bench_module, "train", interrupted)
    assert main(["bench", str(spec), "--quiet"]) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"openlt bench: interrupted (Ctrl-C): the run out/a-s0-X keeps the checkpoint of epoch 1; continue "
                   f"with `openlt train --resume out/a-s0-X` (that finishes this run alone); to finish the bench, run "
                   f"`openlt bench {spec}` again with the same arguments: it reuses the finished runs, continues the "
                   f"interrupted one and writes the table"]
    monkeypatch.setattr(bench_module, "train", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
    assert main(["bench", str(spec), "--quiet"]) == 130
    assert capsys.readouterr().err.strip() == (f"openlt bench: interrupted (Ctrl-C): bench b2 stopped; to finish the "
                                               f"bench, run `openlt bench {spec}` again with the same arguments: it "
                                               f"reuses the finished runs, continues the interrupted one and writes "
                                               f"the table")


@pytest.mark.parametrize("where", ["spec", "option"])
def test_a_bench_out_dir_too_long_for_a_run_folder_is_refused_naming_it(tmp_path, monkeypatch, capsys, where):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny.yaml").write_text("name: tiny\n")
    deep = "/".join(["d" * 60] * 70)
    spec = tmp_path / "b.yaml"
    spec.write_text(json.dumps({"name": "b", "out_dir": deep if where == "spec" else "out",
                                "methods": [{"name": "a", "config": "tiny.yaml"}]}))
    args = ["--out-dir", deep] if where == "option" else []
    assert main(["bench", str(spec), *args, "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    named = "--out-dir" if where == "option" else f"bench spec {spec}: out_dir"
    assert err.startswith(f"openlt bench: error: {named} is ") and "bytes long as an absolute path" in err
    assert f"({len(deep)} characters)" in err and len(err) < 400 and "Errno" not in err
    assert not (tmp_path / ("d" * 60)).exists()


def test_a_keep_known_within_the_same_whole_percent_is_a_difference():
    """A run calibrated at eval.keep_known 0.95 is not the evaluation a spec at 0.954 asks for (both read "95%"
    before: the bench reused it as it was)."""
    cfg, scorer = eval_config(build_config(), ["eval.keep_known=0.954"])
    source = "validation: keeps 95% of the known validation images"
    recorded = {**MSP, "open_score": {"name": "msp"}, "calibration": {"score": "msp", "threshold": 0.2, "source": source}}
    assert evaluation_differences(recorded, cfg, scorer) == [f"eval.keep_known: run {source!r}, spec 0.954"]
    cfg, scorer = eval_config(build_config(), ["eval.keep_known=0.95"])
    assert evaluation_differences(recorded, cfg, scorer) == []
