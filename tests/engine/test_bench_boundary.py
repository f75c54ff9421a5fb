"""`openlt bench`'s command line checked before any work (issue 14): out_dir= / name= overrides the bench would
silently replace, --seeds checked as the spec's seeds, --report-only with nothing finished, and the figures of a
bench with runs missing drawn without matplotlib's legend warning."""

import json
from pathlib import Path

import pytest

from openlt.cli import main
from openlt.config import build_config
from openlt.engine.bench import load_bench, run_bench
from openlt.engine.run import Run
from openlt.errors import ConfigError

TRAINED = {"name": "a", "config": "tiny.yaml"}


def write_spec(tmp_path: Path, **change) -> Path:
    (tmp_path / "tiny.yaml").write_text("name: tiny\n")
    path = tmp_path / "bench.yaml"
    path.write_text(json.dumps({"name": "x", "seeds": [0], "out_dir": str(tmp_path / "out"), "methods": [TRAINED],
                                **change}))
    return path


def bench(capsys, *args) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["bench", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


SPEC_SAYS = "a bench's runs go to its `out_dir:` (e.g. out_dir: runs/bench/NAME)"
NAME_SAYS = "a bench names each run METHOD-sSEED after the method's `name:`"


@pytest.mark.parametrize("change, args, says", [
    ({}, ["out_dir=elsewhere"], "command-line overrides set 'out_dir=elsewhere'; a bench's runs go to its "
                                "`out_dir:` or --out-dir (e.g. --out-dir runs/bench/NAME)"),
    ({}, ["name=foo"], "command-line overrides set 'name=foo'; a bench names each run METHOD-sSEED after the "
                       "method's `name:` in the spec"),
    ({}, ["train.epochs=1", " out_dir = x"], "command-line overrides set ' out_dir = x'; a bench's runs go to its "
                                             "`out_dir:` or --out-dir (e.g. --out-dir runs/bench/NAME)"),
    ({}, ["seed=7"], "command-line overrides set 'seed=7'; a bench's seeds come from its `seeds:` list or --seeds "
                     "(e.g. --seeds 7)"),
    ({"overrides": ["out_dir=elsewhere"]}, [], f"overrides set 'out_dir=elsewhere'; {SPEC_SAYS}"),
    ({"overrides": ["name=foo"]}, [], f"overrides set 'name=foo'; {NAME_SAYS}"),
    ({"methods": [{**TRAINED, "overrides": ["out_dir=o"]}]}, [], f"method 'a': overrides set 'out_dir=o'; {SPEC_SAYS}"),
    ({"methods": [{**TRAINED, "overrides": ["name=n"]}]}, [], f"method 'a': overrides set 'name=n'; {NAME_SAYS}"),
])
def test_out_dir_and_name_overrides_are_refused_not_ignored(tmp_path, capsys, change, args, says):
    path = write_spec(tmp_path, **change)
    code, out, err = bench(capsys, path, *args, "--quiet")
    assert code == 2 and out == "", (out, err)
    assert err.strip().splitlines() == [f"openlt bench: error: bench spec {path}: {says}"], err
    assert not (tmp_path / "out").exists() and not (tmp_path / "elsewhere").exists()


SEEDS_SAYS = "--seeds must be a non-empty list of distinct integers >= 0 and <= 4294967295, got "


@pytest.mark.parametrize("seeds, shown", [
    (["0", "0"], "[0, 0]"), (["-1"], "[-1]"), (["4294967296"], "[4294967296]"),
    (["99999999999999999999"], "[99999999999999999999]"), (["3", "1", "3"], "[3, 1, 3]"),
])
@pytest.mark.parametrize("report_only", [False, True])
def test_bad_seeds_on_the_command_line_are_refused_up_front_naming_the_option(tmp_path, capsys, seeds, shown,
                                                                              report_only):
    path = write_spec(tmp_path)
    code, out, err = bench(capsys, path, "--seeds", *seeds, *(["--report-only"] if report_only else []), "--quiet")
    assert code == 2 and out == ""
    assert err.strip().splitlines() == [f"openlt bench: error: {SEEDS_SAYS}{shown}"], err
    assert "seed=" not in err  # not an override the user never wrote
    assert not (tmp_path / "out").exists()


def test_good_seeds_and_out_dir_on_the_command_line_replace_the_spec_s(tmp_path):
    spec = load_bench(write_spec(tmp_path), seeds=[4294967295, 2], out_dir=tmp_path / "other")
    assert spec.seeds == [4294967295, 2] and spec.out_dir == tmp_path / "other"
    assert load_bench(write_spec(tmp_path)).seeds == [0]


def test_a_spec_seed_beyond_the_seed_range_is_refused_naming_the_spec(tmp_path, capsys):
    path = write_spec(tmp_path, seeds=[0, 2**32])
    code, _, err = bench(capsys, path, "--quiet")
    assert code == 2 and err.strip().splitlines() == [
        f"openlt bench: error: bench spec {path}: seeds must be a non-empty list of distinct integers >= 0 and "
        f"<= 4294967295, got [0, 4294967296]"], err


def test_an_empty_out_dir_option_is_refused(tmp_path, capsys):
    code, _, err = bench(capsys, write_spec(tmp_path), "--out-dir", "", "--quiet")
    assert code == 2 and err.strip().splitlines() == ["openlt bench: error: --out-dir must not be empty"]


def test_an_out_dir_that_cannot_be_made_is_one_line_naming_it(tmp_path, capsys):
    (tmp_path / "afile").write_text("")
    code, _, err = bench(capsys, write_spec(tmp_path), "--out-dir", tmp_path / "afile" / "x", "--quiet")
    assert code == 2 and err.strip().splitlines() == [
        f"openlt bench: error: --out-dir {tmp_path / 'afile' / 'x'} cannot be created: {tmp_path / 'afile'} is a "
        f"file, not a folder"], err


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
def test_an_out_dir_on_a_virtual_filesystem_is_named_not_a_bare_errno(tmp_path, capsys):
    # as root, /proc passes the access check and only mkdir says no (was: "[Errno 2] No such file ...")
    code, _, err = bench(capsys, write_spec(tmp_path, out_dir="/proc/openlt-nope"), "--quiet")
    assert code == 2 and "out_dir /proc/openlt-nope cannot be created: " in err and "Errno" not in err, err


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("out_exists", [False, True])
def test_report_only_with_nothing_finished_is_one_line_and_writes_nothing(tmp_path, capsys, out_exists):
    path = write_spec(tmp_path, seeds=[0, 1], methods=[TRAINED, {"name": "b", "config": "tiny.yaml"},
                                                      {"name": "a+e", "eval_of": "a"}])
    if out_exists:  # a run started but not finished (no metrics.json) is missing too
        (tmp_path / "out" / "a-s0-20260101-000000").mkdir(parents=True)
    code, out, err = bench(capsys, path, "--report-only", "--quiet")
    assert code == 2 and out == "", out
    assert err.strip().splitlines() == [
        f"openlt bench: error: bench x: --report-only found no finished run in {tmp_path / 'out'} (missing: a-s0, "
        f"b-s0, a-s1, b-s1); train them first with `openlt bench {path}` (without --report-only)"], err
    if out_exists:
        assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a-s0-20260101-000000"]
    else:
        assert not (tmp_path / "out").exists()


def test_report_only_names_the_first_missing_runs_and_how_many_more(tmp_path):
    path = write_spec(tmp_path, seeds=[0, 1, 2])
    with pytest.raises(ConfigError, match=r"\(missing: a-s0, a-s1, a-s2\)"):
        run_bench(load_bench(path), quiet=True, log=lambda _: None, report_only=True)
    spec = load_bench(path, seeds=[0, 1, 2, 3, 4, 5])
    with pytest.raises(ConfigError, match=r"\(missing: a-s0, a-s1, a-s2, a-s3 and 2 more\)"):
        run_bench(spec, quiet=True, log=lambda _: None, report_only=True)


METRICS = {  # a metrics.json as `openlt eval` writes it (the parts the bench's table reads)
    "run": "/work/runs/a", "checkpoint": "best", "checkpoint_sha256": "e" * 64, "epoch": 4, "epoch_base": 1,
    "bands": {"rule": "many > 100, medium 20-100, few < 20", "per_class": ["many", "medium", "few"],
              "many_above": 100, "few_below": 20, "inclusive": False},
    "class_names": ["ant", "bee", "cat"], "train_counts": [120, 50, 10],
    "closed": {"many": 0.9, "medium": 0.5, "few": 0.2, "overall": 0.6},
    "open": {"f_measure": 0.5, "auroc": 0.7, "fpr95": 0.4, "bands_with_rejection": {"many": 0.8, "medium": 0.4,
                                                                                     "few": 0.1}},
    "split_files": {"train": "a" * 64, "val": "b" * 64, "test": "c" * 64, "open": "d" * 64},
    "open_score": {"name": "msp"},
    "calibration": {"score": "msp", "threshold": 0.61, "source": "validation"},
}


@pytest.mark.filterwarnings("error")  # matplotlib's "No artists with labels found to put in legend" fails here
def test_report_only_with_some_runs_finished_writes_the_report_without_warnings(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    path = write_spec(tmp_path, seeds=[3, 4], out_dir="out",
                      methods=[TRAINED, {"name": "b", "config": "tiny.yaml"}, {"name": "a+e", "eval_of": "a"}])
    run = Run(tmp_path / "out" / "a-s3-20260101-000000")
    run.path.mkdir(parents=True)
    run.write_config(build_config(tmp_path / "tiny.yaml", ["seed=3", "out_dir=out", "name=a-s3"]))
    run.metrics_file.write_text(json.dumps(METRICS))
    code, out, err = bench(capsys, path, "--report-only", "--quiet")
    assert code == 0, err
    assert "Warning" not in err and "legend" not in err, err
    assert "seed 3: 1 of 3 method(s) finished" in out and "seed 4: 0 of 3 method(s) finished" in out, out
    assert "[2/6] b seed 3: missing" in out and "finished (" not in out, out
    results = (tmp_path / "out" / "results.md").read_text()
    assert "| a | 1 |" in results
    assert "Not finished, so not in these means: a-s4, b-s3, b-s4, a+e-s3, a+e-s4 (the runs column" in results
    assert (tmp_path / "out" / "bands.png").stat().st_size > 0


@pytest.mark.filterwarnings("error")
def test_a_chart_of_no_method_has_no_legend_and_no_warning():
    from openlt.reporting.bench_report import bars
    assert bars({}, ("many",), "top-1 (%)", "t").axes[0].get_legend() is None
    assert bars({"a": [METRICS]}, ("many",), "top-1 (%)", "t").axes[0].get_legend() is not None
