"""A bench report aggregates (summary.aggregate) each of its table inputs once: all the methods' runs (the table,
the CSV, the leaders, the open-set chart) and, when the spec has `eval_of` variants, the runs without them (the
closed-set chart); every table and chart of results.md, results.csv, report.html and the PNGs reads them. The files
are what each function makes on its own (no output change)."""

from __future__ import annotations

import pytest

from openlt.reporting import bench_report
from openlt.reporting.bench_report import charts, csv_text, html_page, markdown, write_bench_results
from openlt.reporting.figures import to_png
from openlt.reporting.summary import load_metrics
from bench_doubles import Method, Spec, summary_metrics  # tests/helpers, on the path through conftest
from summary_files import write

metrics = summary_metrics()


@pytest.fixture
def aggregated(monkeypatch) -> list[list[str]]:
    """The method labels of each summary.aggregate call the bench report makes, in order."""
    calls, aggregate = [], bench_report.aggregate

    def counting(groups, *args, **kwargs):
        calls.append(list(groups))
        return aggregate(groups, *args, **kwargs)

    monkeypatch.setattr(bench_report, "aggregate", counting)
    return calls


@pytest.mark.parametrize("variant", [False, True])
def test_each_table_input_is_aggregated_once_and_the_files_are_unchanged(tmp_path, aggregated, variant):
    methods = [Method("plain"), Method("other")] + ([Method("plain+maxlogit", eval_of="plain")] if variant else [])
    spec = Spec(tmp_path / "bench", methods)
    files = {m.name: [write(tmp_path / m.name, f"s{seed}", metrics(f"{m.name}{seed}", auroc=0.6 + 0.1 * seed))
                      for seed in (0, 1)] for m in methods}
    paths = write_bench_results(spec, files)
    labels = [m.name for m in methods]
    assert aggregated == ([labels, ["plain", "other"]] if variant else [labels])
    groups = {method: [load_metrics(p) for p in ps] for method, ps in files.items()}
    assert paths["markdown"].read_text() == markdown(spec, groups)  # each on its own: as before
    assert paths["csv"].read_bytes().decode() == csv_text(groups)  # (its \r\n line ends as written)
    assert paths["html"].read_text() == html_page(spec, groups, files, spec.out_dir)
    for key, fig in charts(spec, groups):
        assert paths[key].read_bytes() == to_png(fig, 130), key
