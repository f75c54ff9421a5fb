"""Tables over several runs (e.g. seeds): mean ± std of the band accuracies and open-set metrics."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from openlt.errors import RunDirError

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


def load_metrics(run: str | Path) -> dict:
    """The metrics of a run directory, or a metrics JSON file given directly (e.g. metrics-TAG.json)."""
    path = Path(run) if str(run).endswith(".json") else Path(run) / "metrics.json"
    if not path.is_file():
        raise RunDirError(f"{run} has no metrics.json (evaluate it with `openlt eval {run}`)")
    return json.loads(path.read_text(encoding="utf-8"))


def summarize(groups: dict[str, list[dict]]) -> str:
    """A markdown table, one row per group of runs (mean ± std over the group's runs)."""
    header = "| method | runs | " + " | ".join(name for name, _, _ in COLUMNS) + " |"
    rows = [header, "|---|---:|" + "---:|" * len(COLUMNS)]
    for label, runs in groups.items():
        cells = []
        for _, path, scale in COLUMNS:
            values = [v for v in (_get(m, path) for m in runs) if v is not None]
            if not values:
                cells.append("–")
                continue
            mean, std = float(np.mean(values)) * scale, float(np.std(values)) * scale
            digits = 1 if scale == 100 else 3
            cells.append(f"{mean:.{digits}f} ± {std:.{digits}f}" if len(values) > 1 else f"{mean:.{digits}f}")
        rows.append(f"| {label} | {len(runs)} | " + " | ".join(cells) + " |")
    return "\n".join(rows)
