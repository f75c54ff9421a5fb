"""Reports of evaluated runs: figures (matplotlib, reusable for benchmark reports), the per-sample results
file they are drawn from, and self-contained HTML pages."""

from openlt.reporting.samples import load_samples, sample_table, save_samples

__all__ = ["load_samples", "sample_table", "save_samples"]
