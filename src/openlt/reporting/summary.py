"""The summary table over several runs (e.g. seeds of one method): mean ± std of the band accuracies and the
open-set metrics, per group of runs (`openlt summary`, and the tables of `openlt bench`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from openlt.errors import RunDirError

# (column, path of keys in metrics.json, scale to display units: 100 for a percentage, 1 for a [0, 1] number)
COLUMNS = (
    ("many", ("closed", "many"), 100), ("medium", ("closed", "medium"), 100), ("few", ("closed", "few"), 100),
    ("overall", ("closed", "overall"), 100), ("open many", ("open", "bands_with_rejection", "many"), 100),
    ("open medium", ("open", "bands_with_rejection", "medium"), 100),
    ("open few", ("open", "bands_with_rejection", "few"), 100), ("F", ("open", "f_measure"), 1),
    ("AUROC", ("open", "auroc"), 1), ("FPR@95", ("open", "fpr95"), 1),
)


def _get(metrics: dict, path: tuple[str, ...]):
    for key in path:
        if not isinstance(metrics, dict) or key not in metrics:
            return None
        metrics = metrics[key]
    return metrics


def load_metrics(path: str | Path) -> dict:
    """A metrics JSON file of a run (metrics.json, metrics-TAG.json: the engine's ``Run.metrics_path``) as a
    dict; RunDirError naming the file when it is missing or not JSON."""
    path = Path(path)
    if not path.is_file():
        raise RunDirError(f"{path} not found (evaluate the run with `openlt eval {path.parent}`)")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RunDirError(f"{path} is not readable JSON ({exc})") from None


def aggregate(groups: dict[str, list[dict]]) -> list[dict]:
    """Per group: {"label", "runs", "cells": {column: (mean, std, n) in display units, or None}}."""
    rows = []
    for label, runs in groups.items():
        cells = {}
        for name, path, scale in COLUMNS:
            values = [v for v in (_get(m, path) for m in runs) if v is not None]
            cells[name] = (float(np.mean(values)) * scale, float(np.std(values)) * scale, len(values)) if values else None
        rows.append({"label": label, "runs": len(runs), "cells": cells})
    return rows


def format_cell(cell: tuple[float, float, int] | None, column: str) -> str:
    """"mean ± std" of an aggregated cell (the mean alone for one run; "–" for none), 1 decimal for a percentage
    column, 3 for a [0, 1] one."""
    if cell is None:
        return "–"
    mean, std, n = cell
    digits = 1 if dict((c, s) for c, _, s in COLUMNS)[column] == 100 else 3
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if n > 1 else f"{mean:.{digits}f}"


def summarize(groups: dict[str, list[dict]]) -> str:
    """A markdown table, one row per group of runs (mean ± std over the group's runs)."""
    header = "| method | runs | " + " | ".join(name for name, _, _ in COLUMNS) + " |"
    rows = [header, "|---|---:|" + "---:|" * len(COLUMNS)]
    for row in aggregate(groups):
        cells = [format_cell(row["cells"][name], name) for name, _, _ in COLUMNS]
        rows.append(f"| {row['label']} | {row['runs']} | " + " | ".join(cells) + " |")
    return "\n".join(rows)
