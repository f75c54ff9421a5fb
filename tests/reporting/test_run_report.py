"""reporting.run_report: the result table as printed, and reports written and rebuilt for any run-like object
(reporting never imports the engine)."""

import html
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from openlt.errors import RunDirError, WriteError
from openlt.reporting.run_report import format_table, rebuild_reports, report_markdown, threshold_text

METRICS = {
    "bands": {"rule": "many > 30, few < 15"},
    "closed": {"many": 0.5, "medium": None, "few": 0.25, "overall": 0.4, "n_classes": {"many": 2, "medium": 0, "few": 1}},
    "open": {"bands_with_rejection": {"many": 0.45, "medium": None, "few": 0.125, "overall": 0.3333},
             "f_measure": 0.61234, "auroc": 0.8, "fpr95": 0.55, "threshold": 0.4321},
    "calibration": {"score": "msp", "source": "validation: keeps 95% of the known validation images"},
}


@dataclass
class FakeRun:
    """Only the paths the reports use: what reporting needs of a run, without the engine."""

    path: Path

    def metrics_path(self, tag=None):
        return self.path / f"metrics{'' if tag is None else '-' + tag}.json"

    def report_path(self, tag=None):
        return self.path / f"r{'' if tag is None else '-' + tag}.md"

    def report_html_path(self, tag=None):
        return self.path / f"r{'' if tag is None else '-' + tag}.html"

    def predictions_path(self, tag=None):
        return self.path / f"p{'' if tag is None else '-' + tag}.npz"

    def epochs_logged(self):
        return []


def test_the_table_as_the_field_prints_it():
    assert format_table(METRICS).splitlines() == [
        "shot bands: many > 30, few < 15  (classes: many 2, medium 0, few 1)",
        "                      many  medium    few  overall",
        "closed-set top-1     50.0    –     25.0    40.0",
        "open-set top-1       45.0    –     12.5    33.3",
        "open-set F-measure 0.612   AUROC 0.800   FPR@95 0.550   (msp < 0.4321 -> unknown; validation: keeps 95% of "
        "the known validation images)",
    ]
    closed_only = {k: v for k, v in METRICS.items() if k != "open"}
    assert len(format_table(closed_only).splitlines()) == 3


def test_the_table_says_a_band_is_measured_on_fewer_classes_than_it_has():
    """A test split without images of some class (own split files): the band's top-1 is the mean over its tested
    classes only; the header said `few 3` beside a few-shot top-1 of 2 classes, without a word."""
    closed = {**METRICS["closed"], "n_classes": {"many": 2, "medium": 0, "few": 3},
              "n_classes_tested": {"many": 2, "medium": 0, "few": 2}}
    assert format_table({**METRICS, "closed": closed}).splitlines()[0] == (
        "shot bands: many > 30, few < 15  (classes: many 2, medium 0, few 3 (2 with test images))")


@pytest.mark.parametrize("threshold, text", [
    (0.9999947547912598, "0.99999475"),  # the float32 0.99999475 of a validation score (was "1.000": rejects all)
    (0.8174992799758911, "0.8174993"),  # a float32: its shortest digits
    (0.432, "0.432"), (2.5, "2.5"), (-3.25, "-3.25"),  # fixed by the user: as given
    (0.123456789012, "0.123456789012"),  # not a float32: every digit it needs
])
def test_the_printed_threshold_gives_the_same_decisions(threshold, text):
    assert threshold_text(threshold) == text
    assert np.float32(float(text)) == np.float32(threshold)  # read back: the same threshold on float32 scores
    line = format_table({**METRICS, "open": {**METRICS["open"], "threshold": threshold}}).splitlines()[-1]
    assert f"(msp < {text} -> unknown; " in line
    scores = np.array([0.99999, 0.99999475, 0.999995, 0.8174992, 0.8174993, 0.8174994, 0.432], dtype=np.float32)
    assert ((scores < threshold) == (scores < float(text))).all()


def test_the_markdown_report_names_the_html_report_of_its_tag(tmp_path):
    metrics = {**METRICS, "class_names": ["a", "b", "c"], "train_counts": [40, 35, 10], "checkpoint": "best",
               "epoch": 3, "per_class_accuracy": [0.5, 0.5, None]}
    metrics["bands"] = {**metrics["bands"], "per_class": ["many", "many", "few"]}
    text = report_markdown(FakeRun(tmp_path / "run-1"), metrics, "energy")
    assert text.startswith("# openlt report: run-1\n") and "r-energy.html" in text
    assert "| c | 10 | few | – |" in text and format_table(metrics) in text


def test_rebuilding_needs_the_metrics_file(tmp_path):
    run = FakeRun(tmp_path)
    with pytest.raises(RunDirError, match="metrics-x.json not found"):
        rebuild_reports(run, "x")
    run.metrics_path().write_text("{not json")
    with pytest.raises(RunDirError, match="not readable JSON"):
        rebuild_reports(run)


def test_rebuilding_from_the_files_of_a_run_like_object(tmp_path):
    import torch

    from openlt.config import build_config
    from openlt.engine.evaluate import compute_metrics
    from openlt.openset import build_score
    from openlt.reporting import sample_table, save_samples

    g = torch.Generator().manual_seed(0)
    labels = {"val": torch.arange(20) % 3, "test": torch.arange(30) % 3, "open": torch.full((10,), -1)}
    outputs = {s: {"logits": torch.randn(len(y), 3, generator=g) + 3 * torch.eye(3)[y.clamp_min(0)] * (y >= 0)[:, None],
                   "labels": y} for s, y in labels.items()}
    cfg = build_config(None, ["eval.many_above=100", "eval.few_below=20"])
    metrics = compute_metrics(cfg, outputs, [150, 60, 5], ["a", "b", "c"])
    metrics = {"run": str(tmp_path), "checkpoint": "best", "epoch": 1, **metrics}
    run = FakeRun(tmp_path)
    run.metrics_path().write_text(json.dumps(metrics))
    scorer = build_score("msp")
    save_samples(run.predictions_path(), sample_table(outputs, {s: scorer.score(outputs[s]) for s in ("test", "open")}))
    assert rebuild_reports(run) == run.report_html_path()
    assert run.report_html_path().read_text().startswith("<!DOCTYPE html>")
    assert format_table(metrics) in run.report_path().read_text()


def _evaluated(tmp_path: Path, names: list[str]) -> tuple[FakeRun, dict]:
    """A run-like folder with metrics.json and predictions.npz of 3 classes named `names`."""
    import torch

    from openlt.config import build_config
    from openlt.engine.evaluate import compute_metrics
    from openlt.openset import build_score
    from openlt.reporting import sample_table, save_samples

    g = torch.Generator().manual_seed(0)
    labels = {"val": torch.arange(12) % 3, "test": torch.arange(15) % 3, "open": torch.full((6,), -1)}
    outputs = {s: {"logits": torch.randn(len(y), 3, generator=g), "labels": y} for s, y in labels.items()}
    metrics = compute_metrics(build_config(None, ["eval.many_above=100", "eval.few_below=20"]), outputs,
                              [150, 60, 5], names)
    metrics = {"run": str(tmp_path), "checkpoint": "best", "epoch": 1, **metrics}
    run = FakeRun(tmp_path)
    run.metrics_path().write_text(json.dumps(metrics))
    scorer = build_score("msp")
    save_samples(run.predictions_path(), sample_table(outputs, {s: scorer.score(outputs[s]) for s in ("test", "open")}))
    return run, metrics


@pytest.mark.parametrize("name", [
    "$x$",            # mathtext: would be typeset as an italic x
    "$\\foo$",        # mathtext with an unknown command: matplotlib cannot draw it
    "x^$",            # a lone dollar after a caret
    "$\\frac{$",      # an unclosed group
    "a|b",            # a markdown table separator
    "<b>50%</b> & \\", # HTML, a percent sign, a backslash
    "ünï ☃",          # non-ASCII
])
def test_a_class_name_with_special_characters_is_drawn_as_written(name, tmp_path):
    run, _ = _evaluated(tmp_path, [name, "plain", "$y$"])
    rebuild_reports(run)
    page = run.report_html_path().read_text()
    assert page.count("data:image/png;base64,") >= 5  # every figure drawn
    assert html.escape(name, quote=True) in page and (name == html.escape(name) or name not in page)
    row = next(line for line in run.report_path().read_text().splitlines() if line.startswith("| ") and "150 |" in line)
    assert row.count(" | ") == 3  # the name stays in its cell: | name | 150 | band | top-1 |


MARKDOWN_SPECIAL = set("\\`*_[]<>&|~$")  # what Markdown (CommonMark, GitHub's tables and math) or HTML would read


def _unescaped_cell(cell: str) -> str:
    """A report.md cell read back as a Markdown renderer reads it: every backslash escape taken as its character;
    AssertionError for a character of MARKDOWN_SPECIAL left unescaped (it would be markup, not text)."""
    out, i = [], 0
    while i < len(cell):
        if cell[i] == "\\":
            assert i + 1 < len(cell), cell
            out.append(cell[i + 1])
            i += 2
            continue
        assert cell[i] not in MARKDOWN_SPECIAL, f"{cell[i]!r} unescaped in {cell!r}"
        out.append(cell[i])
        i += 1
    return "".join(out)


@pytest.mark.parametrize("name", ["*star* _u_", "[x](e.com) &lt <i>", "<script>alert(1)<", "a|b", "`c` ~~s~~ $x$",
                                  "a\\b", "plain"])
def test_report_md_escapes_class_names_for_markdown_and_html(name, tmp_path):
    """Trial 16 item 10: report.md wrote class names raw (only | escaped): rendered, `*star*` became italics,
    `[x](e.com)` a link, `<script>` vanished. Every place report.md writes a class name (the per-class table, the
    most frequent confusions, the open-set line) escapes Markdown and HTML; the name reads back as written."""
    run, metrics = _evaluated(tmp_path, [name, "b", "c"])
    metrics["open_class_names"] = [name]
    run.metrics_path().write_text(json.dumps(metrics))
    rebuild_reports(run)
    text = run.report_path().read_text()
    row = next(line for line in text.splitlines() if line.startswith("| ") and "| 150 |" in line)
    assert _unescaped_cell(row[2:row.index(" | 150 |")]) == name
    confusions = text.split("## Most frequent confusions")[1].split("## Per class")[0]
    confused = [line.split(" | ")[:2] for line in confusions.splitlines()
                if line.startswith("| ") and not line.startswith("| true class")]
    assert confused and all(_unescaped_cell(cell.lstrip("| ")) in (name, "b", "c") for pair in confused for cell in pair)
    line = next(line for line in text.splitlines() if line.startswith("open set:"))
    shown = line[line.index("class ") + len("class "):line.index(" (unknown to the model)")]
    assert _unescaped_cell(shown) == name, line


def test_figures_keep_class_names_as_written():
    import numpy as np

    from openlt.metrics import ShotBands
    from openlt.reporting import figures

    names = ["$x$", "$\\foo$", "a_b^2"]
    matrix = figures.confusion_matrix(np.eye(3, dtype=int) * 4, names)
    assert [t.get_text() for t in matrix.axes[0].get_xticklabels()] == names
    assert figures.to_png(matrix, 30).startswith(b"\x89PNG")
    scatter = figures.accuracy_vs_train_count([150, 60, 5], [0.5, 0.4, 0.1], ShotBands(), names)
    assert {"$x$", "$\\foo$"} <= {t.get_text() for t in scatter.axes[0].texts}
    assert figures.to_png(scatter, 30).startswith(b"\x89PNG")


@pytest.mark.parametrize("edit, message", [
    (lambda m: m.pop("per_class_accuracy"), "per_class_accuracy"),
    (lambda m: m.update(per_class_accuracy=[0.5, 2.0, None]), "per_class_accuracy"),
    (lambda m: m["confusion"]["by_band"].update(counts=[[1, 2], [3, 4]]), "4 x 4 counts"),
    (lambda m: m["confusion"].update(top=[{"true": 3, "pred": 0, "count": 1}]), "class ids below 3"),
    (lambda m: m["confusion"].update(top=[{"true": 1, "pred": 0, "count": -1}]), "confusion.top"),
    (lambda m: m.update(confusion=[]), '"confusion" must be an object'),
    (lambda m: m["bands"].update(per_class=["many"]), "bands.per_class"),
    (lambda m: m.pop("class_names"), "class_names"),
    (lambda m: m.update(closed=[]), '"closed" must be an object'),
])
def test_rebuilding_from_a_malformed_metrics_file_is_one_line(edit, message, tmp_path):
    run, metrics = _evaluated(tmp_path, ["a", "b", "c"])
    edit(metrics)
    run.metrics_path().write_text(json.dumps(metrics))
    with pytest.raises(RunDirError, match="metrics.json is not a metrics file") as err:
        rebuild_reports(run)
    assert message in str(err.value) and "\n" not in str(err.value)
    assert not run.report_html_path().exists()


def test_a_metrics_file_of_an_older_openlt_with_a_dense_matrix_still_rebuilds(tmp_path):
    """metrics.json used to hold a dense K x K "confusion_matrix" and no "confusion" summary: the report draws
    the band summary and the matrix from predictions.npz instead."""
    run, metrics = _evaluated(tmp_path, ["a", "b", "c"])
    summary = metrics.pop("confusion")
    metrics["confusion_matrix"] = [[1, 0, 0], [0, 1, 0], [0, 0, 1]]
    run.metrics_path().write_text(json.dumps(metrics))
    rebuild_reports(run)
    page = run.report_html_path().read_text()
    assert 'alt="shot band confusion"' in page and 'alt="confusion matrix"' in page
    assert "Decisions per shot band" not in run.report_path().read_text()  # markdown: only what metrics.json has
    metrics["confusion"] = summary
    run.metrics_path().write_text(json.dumps(metrics))
    rebuild_reports(run)
    assert "## Decisions per shot band" in run.report_path().read_text()


def test_a_copied_runs_report_names_its_own_folder_and_where_it_was_evaluated(tmp_path):
    """Trial 14a S2: a copied run's report showed the original's path (metrics.json "run") in its header; it names
    the folder it is made for, and the folder metrics.json says it was evaluated at when that is another one."""
    import shutil

    (tmp_path / "orig").mkdir()
    original, _ = _evaluated(tmp_path / "orig", ["a", "b", "c"])
    rebuild_reports(original)
    page = original.report_html_path().read_text()
    assert f"run <code>{html.escape(str(original.path.resolve()))}</code>, checkpoint" in page
    assert "evaluated at" not in page and "evaluated at" not in original.report_path().read_text()
    copy = FakeRun(tmp_path / "copy")
    shutil.copytree(original.path, copy.path)
    rebuild_reports(copy)
    page = copy.report_html_path().read_text()
    assert (f"run <code>{html.escape(str(copy.path.resolve()))}</code> (evaluated at "
            f"<code>{html.escape(str(original.path))}</code>), checkpoint") in page
    assert f"<code>{html.escape(str(original.path))}</code>," not in page  # the original is not shown as the run
    assert (f"run: {copy.path.resolve()} (evaluated at {original.path}: metrics.json \"run\")\n"
            in copy.report_path().read_text())


def test_a_run_folder_that_cannot_be_written_says_to_copy_the_run(tmp_path, monkeypatch):
    """(Session 27: `openlt report RUN` as another user said `cannot write RUN/report.md: Permission denied`, no
    way out.)"""
    import os

    run, _ = _evaluated(tmp_path, ["a", "b", "c"])
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: not (Path(path) == run.path and mode & os.W_OK)
                        and real_access(path, mode))
    with pytest.raises(WriteError, match=r"cannot write the reports into .*: copy the run somewhere writable"):
        rebuild_reports(run)
    assert not run.report_path().exists()
