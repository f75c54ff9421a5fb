"""Stand-ins for a bench spec and its methods (read duck-typed by reporting.bench_report), and test_summary.py's
metrics dict maker, for the bench report tests (tests/reporting/test_bench_report_*.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def summary_metrics():
    """tests/reporting/test_summary.py's `metrics(name, ...)`: a metrics.json dict (the tests are no package)."""
    spec = importlib.util.spec_from_file_location("summary_tests_module", TESTS / "reporting" / "test_summary.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.metrics


class Method:
    def __init__(self, name: str, eval_of: str | None = None) -> None:
        self.name, self.eval_of, self.paper_row = name, eval_of, None


class Spec:
    name, paper, path = "toy", None, "toy.yaml"

    def __init__(self, out_dir: Path, methods: list[Method], seeds: list[int] | None = None) -> None:
        self.out_dir, self.methods, self.seeds = out_dir, methods, seeds if seeds is not None else [0, 1]
        out_dir.mkdir()
