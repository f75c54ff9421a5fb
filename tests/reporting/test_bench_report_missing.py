"""A bench table read before every run has finished (`openlt bench SPEC --report-only` while runs are missing or
training) names the METHOD-sSEED its means leave out, in results.md and report.html (was: only on the console,
the table's `runs` column the sole sign; session 27's hostile try of the bench)."""

from __future__ import annotations

from openlt.reporting.bench_report import missing_runs, write_bench_results
from bench_doubles import Method, Spec, summary_metrics  # tests/helpers, on the path through conftest
from summary_files import write

metrics = summary_metrics()


def test_the_tables_name_the_runs_their_means_leave_out(tmp_path):
    spec = Spec(tmp_path / "bench", [Method("plain"), Method("crt"), Method("plain+maxlogit", eval_of="plain")],
                [0, 1, 2])
    plain = [write(spec.out_dir, f"plain-s{s}-20261202-10461{s}", metrics(f"plain{s}")) for s in (0, 2)]
    files = {"plain": plain, "crt": [], "plain+maxlogit": [p.with_name("metrics-maxlogit.json") for p in plain]}
    assert missing_runs(spec, files) == ["plain-s1", "crt-s0", "crt-s1", "crt-s2", "plain+maxlogit-s1"]
    paths = write_bench_results(spec, {"plain": plain})
    text = paths["markdown"].read_text()
    assert "| plain | 2 |" in text
    assert ("Not finished, so not in these means: plain-s1, crt-s0, crt-s1, crt-s2, plain+maxlogit-s0, "
            "plain+maxlogit-s1, plain+maxlogit-s2 (the runs column") in text
    assert "`openlt bench toy.yaml` trains and evaluates them" in text
    assert "Not finished, so not in these means: plain-s1" in paths["html"].read_text()


def test_every_seed_there_says_nothing_and_folders_named_otherwise_are_counted(tmp_path):
    spec = Spec(tmp_path / "bench", [Method("plain")], [0, 1, 2])
    every = [write(tmp_path / "runs", f"plain-s{s}-20261202-104613-2", metrics(f"p{s}")) for s in (0, 1, 2)]
    assert missing_runs(spec, {"plain": every}) == []
    assert "Not finished" not in write_bench_results(spec, {"plain": every})["markdown"].read_text()
    elsewhere = [write(tmp_path / "other", f"s{s}", metrics(f"o{s}")) for s in (0, 1)]  # no seed in the name
    assert missing_runs(spec, {"plain": elsewhere}) == ["plain (2 of 3 seeds)"]
    assert missing_runs(spec, {"plain": elsewhere + [every[2]]}) == []
