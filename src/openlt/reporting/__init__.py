"""Reports of evaluated runs and benches, rebuilt from the files a run keeps (no model, no images); reporting
never imports the engine.

* :mod:`~openlt.reporting.samples`: the per-sample results (predictions.npz) that the figures are drawn from, and
  the sparse confusion matrix (confusion.npz);
* :mod:`~openlt.reporting.run_report`: one run's result table, report.md and report.html;
* :mod:`~openlt.reporting.summary`: mean ± std over several runs (``openlt summary``);
* :mod:`~openlt.reporting.bench_report`: a bench's comparison table (markdown, CSV, HTML page);
* :mod:`~openlt.reporting.figures` and :mod:`~openlt.reporting.html`: the matplotlib figures and the pieces of
  self-contained HTML pages, reusable by every report.
"""

from openlt.reporting.samples import (is_record, load_confusion, load_samples, sample_table, save_confusion,
                                     save_samples, summarize_outputs)

__all__ = ["is_record", "load_confusion", "load_samples", "sample_table", "save_confusion", "save_samples",
           "summarize_outputs"]
