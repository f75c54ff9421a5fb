"""The results of a bench: one comparison table (mean ± population std, ddof=0, over seeds) as markdown and CSV,
the papers' numbers beside it, and a self-contained HTML page with a bar chart per band and links to every run's report."""

from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from openlt.io import atomic_path, write_text
from openlt.paper_numbers import PAPERS
from openlt.reporting.summary import (COLUMNS, STD_NOTE, aggregate, format_cell, load_metrics, marked_label, md_cell,
                                     unchecked_note, under_trained_note)
from openlt.reporting.figures import to_png
from openlt.reporting.html import esc, figure, page, table

BAND_COLUMNS = ("many", "medium", "few", "overall")
OPEN_COLUMNS = ("F", "AUROC")
# what a reader picks a method for: (question, column); FPR@95 is the one where lower is better
CRITERIA = (("few-shot classes", "few"), ("all known classes", "overall"),
            ("known vs unknown with a threshold", "F"), ("ranking unknowns below knowns", "AUROC"))
LOWER_IS_BETTER = {"FPR@95"}


def leaders(groups: dict[str, list[dict]], rows: list[dict] | None = None) -> list[dict]:
    """Per criterion: the method with the best mean, and the others within one standard deviation of it (over
    seeds; not separable from the best with these seeds). Methods without the column are left out. `rows`:
    ``summary.aggregate(groups)`` when the caller has it (computed here otherwise)."""
    rows = aggregate(groups) if rows is None else rows
    out = []
    for question, column in CRITERIA:
        scored = [(r["label"], r["cells"][column]) for r in rows if r["cells"][column] is not None]
        if not scored:
            continue
        sign = -1.0 if column in LOWER_IS_BETTER else 1.0
        best_label, best = max(scored, key=lambda item: sign * item[1][0])
        tied = [label for label, cell in scored if label != best_label and sign * (best[0] - cell[0]) <= best[1]]
        runs = next(r["runs"] for r in rows if r["label"] == best_label)
        out.append({"question": question, "column": column, "best": best_label, "cell": best, "tied": tied,
                    "runs": runs})
    return out


def _leader_lines(groups: dict[str, list[dict]], bold=lambda text: f"**{text}**", text=lambda t: t,
                  rows: list[dict] | None = None) -> list[str]:
    """One line per criterion of `leaders` (markdown by default; `bold` and `text` make it HTML; `rows`: the
    groups aggregated, as :func:`leaders` takes them), each method with its table mark († / ‡: marked_label)."""
    rows = aggregate(groups) if rows is None else rows
    marked = {row["label"]: marked_label(row) for row in rows}
    return [text(f"{item['question']} ({item['column']}): ") + bold(text(marked.get(item["best"], item["best"])))
            + text(f" {format_cell(item['cell'], item['column'], item['runs'])}"
                   + (f"; within one std: {', '.join(marked.get(t, t) for t in item['tied'])}" if item["tied"] else ""))
            for item in leaders(groups, rows)]


def _paper_rows(spec, names: list[str]) -> list[tuple[str, dict]]:
    if spec.paper is None:
        return []
    rows = PAPERS[spec.paper]["rows"]
    out = []
    for m in spec.methods:
        key = m.paper_row or m.name
        if key in rows and m.name in names:
            out.append((f"{m.name} ({key})", rows[key]))
    return out


def missing_runs(spec, files: Mapping[str, list[Path]]) -> list[str]:
    """METHOD-sSEED of each method and seed of the spec that `files` has no metrics file for (a bench read with
    --report-only while runs are missing or still training), in the spec's order. A metrics file's seed is read from
    its run folder's name (METHOD-sSEED-YYYYmmdd-HHMMSS, the base run's for an `eval_of` method); a method with
    files in folders not named so is "METHOD (k of n seeds)" when it has fewer files than the spec has seeds."""
    missing = []
    for m in getattr(spec, "methods", []):
        hits = [re.search(r"-s(\d+)-\d{8}-\d{6}(?:-\d+)?$", Path(p).parent.name) for p in files.get(m.name, [])]
        found = {int(hit.group(1)) for hit in hits if hit}
        lacking = [seed for seed in spec.seeds if seed not in found]
        unread = hits.count(None)
        if not unread:
            missing += [f"{m.name}-s{seed}" for seed in lacking]
        elif len(lacking) > unread:
            missing.append(f"{m.name} ({len(hits)} of {len(spec.seeds)} seeds)")
    return missing


def missing_note(missing: list[str], spec) -> str:
    """The line under a table whose rows do not average every seed of the spec ("" when none is missing)."""
    if not missing:
        return ""
    return (f"Not finished, so not in these means: {', '.join(missing)} (the runs column counts the seeds a row "
            f"averages; `openlt bench {getattr(spec, 'path', None) or 'SPEC'}` trains and evaluates them).")


def markdown(spec, groups: dict[str, list[dict]], rows: list[dict] | None = None,
             missing: list[str] | None = None) -> str:
    """The bench's report.md: the comparison table (top-1 in %, F / AUROC / FPR@95 in [0, 1], mean ± std over
    seeds), which method leads on what, and the published rows of ``spec.paper`` when set.

    ``spec``: the bench spec (``name``, ``seeds``, ``paper``, ``methods``: read duck-typed); ``groups``: method label
    -> the metrics dicts (metrics.json) of its runs, one per seed; ``rows``: ``summary.aggregate(groups)`` when the
    caller has it (computed here otherwise: :func:`write_bench_results` aggregates each table input once);
    ``missing``: the spec's METHOD-sSEED without a finished run (:func:`missing_runs`), named under the table.
    """
    names = [c for c, _, _ in COLUMNS]
    lines = [f"# bench {spec.name}: {len(spec.seeds)} seed(s) {spec.seeds}", "",
             "Top-1 in %, F / AUROC / FPR@95 in [0, 1]; mean ± std over seeds (" + STD_NOTE + ").", "",
             "| method | runs | " + " | ".join(names) + " |", "|---|---:|" + "---:|" * len(names)]
    aggregated = aggregate(groups) if rows is None else rows
    for row in aggregated:
        lines.append(f"| {md_cell(marked_label(row))} | {row['runs']} | "
                     + " | ".join(format_cell(row["cells"][c], c, row["runs"]) for c in names) + " |")
    lines += [line for note in (missing_note(missing or [], spec), under_trained_note(aggregated),
                                unchecked_note(aggregated)) if note for line in ("", note)]
    best = _leader_lines(groups, rows=aggregated)
    if best:
        lines += ["", "Which method for what (best mean; others within one std of it cannot be told apart with these seeds):",
                  ""] + [f"- {line}" for line in best]
    paper = _paper_rows(spec, list(groups))
    if paper:
        lines += ["", f"Published: {PAPERS[spec.paper]['source']}", "",
                  "| method (paper row) | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
        for label, values in paper:
            lines.append(f"| {label} | " + " | ".join(_paper_cell(values.get(c), c) for c in names) + " |")
    return "\n".join(lines) + "\n"


def _paper_cell(value, column: str) -> str:
    if value is None:
        return "–"
    return f"{value:.3f}" if column in ("F", "AUROC", "FPR@95") else f"{value:.1f}"


def csv_text(groups: dict[str, list[dict]], rows: list[dict] | None = None) -> str:
    """The comparison table as CSV: ``method, runs``, then ``<column> mean``, ``<column> std`` and ``<column> n`` (how
    many of the row's runs have the number) for every column (top-1 in %, F / AUROC / FPR@95 in [0, 1], 4 decimals;
    empty mean and std, n 0, where no run has the number), then ``under-trained runs`` and ``unchecked runs`` (how
    many of the row's runs the under-training check warned, or could not judge: the † and ‡ of results.md).
    ``groups``: method label -> the metrics dicts of its runs; ``rows``: ``summary.aggregate(groups)`` when the
    caller has it.
    """
    buf = io.StringIO()
    writer = csv.writer(buf)
    names = [c for c, _, _ in COLUMNS]
    writer.writerow(["method", "runs"] + [f"{c} {s}" for c in names for s in ("mean", "std", "n")]
                    + ["under-trained runs", "unchecked runs"])
    for row in aggregate(groups) if rows is None else rows:
        cells = []
        for c in names:
            cell = row["cells"][c]
            cells += ["", "", 0] if cell is None else [f"{cell[0]:.4f}", f"{cell[1]:.4f}", cell[2]]
        writer.writerow([row["label"], row["runs"]] + cells + [row.get("under_trained", 0), row.get("unchecked", 0)])
    return buf.getvalue()


def method_colors(labels: list[str]) -> dict[str, tuple]:
    """One colour per method label, in the given order (the bench's methods): every chart of a bench draws a
    method in its colour, also a chart that leaves some methods out. tab10 up to 10 methods, else 40 colours."""
    palette = (list(matplotlib.colormaps["tab10"].colors) if len(labels) <= 10 else
               list(matplotlib.colormaps["tab20"].colors) + list(matplotlib.colormaps["tab20b"].colors))
    return {label: palette[i % len(palette)] for i, label in enumerate(labels)}


def bars(groups: dict[str, list[dict]], columns: tuple[str, ...], ylabel: str, title: str,
         colors: Mapping[str, tuple] | None = None, rows: list[dict] | None = None) -> Figure:
    """Grouped bars: one group per column (band), one bar per method, error bars = std over seeds; `colors`:
    method label -> colour (default :func:`method_colors` of these groups); `rows`: ``summary.aggregate(groups)``
    when the caller has it."""
    rows = aggregate(groups) if rows is None else rows
    colors = colors or method_colors(list(groups))
    fig = Figure(figsize=(7.5, 3.6), layout="constrained")
    ax = fig.subplots()
    width = 0.8 / max(1, len(rows))
    x = np.arange(len(columns))
    for i, row in enumerate(rows):
        means = [row["cells"][c][0] if row["cells"][c] else np.nan for c in columns]
        stds = [row["cells"][c][1] if row["cells"][c] else 0.0 for c in columns]
        ax.bar(x + (i - (len(rows) - 1) / 2) * width, means, width, yerr=stds, capsize=2, label=marked_label(row),
               color=colors[row["label"]])
    ax.set_xticks(x, columns)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=11)
    ax.grid(axis="y", alpha=0.3)
    if rows:  # (no method has a run yet: no legend, rather than matplotlib's "No artists with labels" warning)
        ax.legend(fontsize=8, ncol=min(4, len(rows)), loc="upper center", bbox_to_anchor=(0.5, -0.1), frameon=False)
    return fig


def charts(spec, groups: dict[str, list[dict]], tables: _Tables | None = None) -> list[tuple[str, Figure]]:
    """The bench's two charts, ("bands figure", closed-set top-1 per band) and ("open-set figure", F and AUROC),
    each method in the same colour in both (:func:`method_colors` of all the bench's methods). `tables`: the
    groups aggregated (:func:`_aggregate_tables`) when the caller has them."""
    tables = tables or _aggregate_tables(spec, groups)
    colors = method_colors(list(groups))
    return [("bands figure", bars(tables.closed_groups, BAND_COLUMNS, "top-1 (%)", "closed-set top-1 per shot band",
                                  colors, tables.closed_rows)),
            ("open-set figure", bars(groups, OPEN_COLUMNS, "score", "open-set F-measure and AUROC", colors,
                                     tables.rows))]


@dataclass(frozen=True)
class _Tables:
    """``summary.aggregate`` of a bench's two table inputs, each computed once for every table and chart: ``rows``
    of all the groups, ``closed_rows`` of ``closed_groups`` (the groups without the `eval_of` variants: the
    closed-set chart), the same list when no method is a variant."""
    rows: list[dict]
    closed_groups: dict[str, list[dict]]
    closed_rows: list[dict]


def _aggregate_tables(spec, groups: dict[str, list[dict]]) -> _Tables:
    rows = aggregate(groups)
    closed = _closed_set_groups(spec, groups)
    return _Tables(rows, closed, rows if list(closed) == list(groups) else aggregate(closed))


def _closed_set_groups(spec, groups: dict[str, list[dict]]) -> dict[str, list[dict]]:
    """The groups without the `eval_of` variants: their closed-set numbers are their base run's."""
    variants = {m.name for m in getattr(spec, "methods", []) if getattr(m, "eval_of", None)}
    return {name: runs for name, runs in groups.items() if name not in variants}


def html_page(spec, groups: dict[str, list[dict]], files: dict[str, list[Path]], out_dir: Path,
              reports: Mapping[Path, Path] | None = None, tables: _Tables | None = None,
              missing: list[str] | None = None) -> str:
    """The bench page: the table, the leaders, the papers' rows, the two charts and a link to every run's HTML
    report (`reports`: metrics file -> its report, linked where the report exists; `tables`: the groups
    aggregated, :func:`_aggregate_tables`, when the caller has them; `missing`: as :func:`markdown`'s)."""
    reports = reports or {}
    names = [c for c, _, _ in COLUMNS]
    tables = tables or _aggregate_tables(spec, groups)
    aggregated = tables.rows
    rows = [[marked_label(r), r["runs"]] + [format_cell(r["cells"][c], c, r["runs"]) for c in names] for r in aggregated]
    body = [f"<h1>bench {esc(spec.name)}</h1>",
            f'<p class="meta">{len(spec.seeds)} seed(s) {esc(spec.seeds)}; top-1 in %, F / AUROC / FPR@95 in [0, 1]; '
            f"mean ± std over seeds ({esc(STD_NOTE)}). Spec: <code>{esc(spec.path)}</code></p>",
            table(["method", "runs"] + names, rows, [False] + [True] * (len(names) + 1))]
    body += [f'<p class="warning">{esc(note)}</p>' for note in (missing_note(missing or [], spec),
                                                                 under_trained_note(aggregated),
                                                                 unchecked_note(aggregated)) if note]
    best = _leader_lines(groups, bold=lambda t: f"<b>{t}</b>", text=esc, rows=aggregated)
    if best:
        items = "".join(f"<li>{line}</li>" for line in best)
        body.append("<h2>Which method for what</h2><p class='meta'>Best mean over seeds; the methods within one "
                    f"standard deviation of it cannot be told apart with these seeds.</p><ul>{items}</ul>")
    paper = _paper_rows(spec, list(groups))
    if paper:
        body += [f"<h2>Published numbers</h2><p class='meta'>{esc(PAPERS[spec.paper]['source'])}</p>",
                 table(["method (paper row)"] + names, [[label] + [_paper_cell(v.get(c), c) for c in names]
                                                         for label, v in paper], [False] + [True] * len(names))]
    body.append('<h2>Per band and open set</h2><div class="grid">')
    (_, closed), (_, opened) = charts(spec, groups, tables)
    body.append(figure(closed, "Closed-set top-1 per shot band (bars: mean over seeds, whiskers: std; other open-set "
                               "scores of the same run are left out here). Each method keeps its colour in both charts."))
    body.append(figure(opened, "Open-set F-measure (threshold chosen on validation) and AUROC of the rejection score."))
    body.append("</div><h2>Runs</h2><ul>")
    for method, paths in files.items():
        links = []
        for p in paths:
            report = reports.get(p)
            if report is not None and report.is_file():
                href = os.path.relpath(report.resolve(), out_dir.resolve())
                links.append(f'<a href="{esc(href)}">{esc(p.parent.name)}</a>')
            else:
                links.append(esc(p.parent.name))
        body.append(f"<li><b>{esc(method)}</b>: {', '.join(links)}</li>")
    body.append("</ul>")
    return page(f"openlt bench {spec.name}", "\n".join(body))


def write_bench_results(spec, files: dict[str, list[Path]], reports: Mapping[Path, Path] | None = None) -> dict[str, Path]:
    """results.md, results.csv and report.html in the bench's out_dir; returns their paths. `files`: each
    method's metrics files; `reports`: the HTML run report of a metrics file, linked from the bench page.
    RunDirError, before anything is written, for a malformed metrics file or a method whose runs were evaluated
    under different band rules, class lists or split files (`summary.aggregate`, computed once for each table input
    and used by every table and chart)."""
    groups = {method: [load_metrics(p) for p in paths] for method, paths in files.items() if paths}
    tables = _aggregate_tables(spec, groups)
    out = spec.out_dir
    paths = {"markdown": out / "results.md", "csv": out / "results.csv", "html": out / "report.html",
             "bands figure": out / "bands.png", "open-set figure": out / "openset.png"}
    missing = missing_runs(spec, files)
    write_text(paths["markdown"], markdown(spec, groups, tables.rows, missing))
    write_text(paths["csv"], csv_text(groups, tables.rows))
    write_text(paths["html"], html_page(spec, groups, files, out, reports or {}, tables, missing))
    for key, fig in charts(spec, groups, tables):  # the two charts also as files, for slides and papers
        with atomic_path(paths[key]) as tmp:
            tmp.write_bytes(to_png(fig, 130))
    return paths
