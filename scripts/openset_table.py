"""The open-set side of the convergence study (issue 18, item 4): every open-set score on the converged joint models,
and why the unknowns are hard. `python scripts/openset_table.py runs/convergence --split-dir splits/fmnist_lt`.

Reads the runs of configs/bench/fmnist_lt_convergence_openset.yaml (plain_eEPOCHS-sSEED-...: metrics.json is the
config's own score, msp; metrics-plain_eEPOCHS-SCORE.json / predictions-...npz the re-evaluations with another
eval.open_score) and prints three markdown tables, means +- population std over the seeds found:

1. AUROC (known test images against open images; higher score = more known) overall and per shot band of the known
   images, per score and stage-1 budget, from metrics*.json;
2. the AUROC of each open class alone against all known test images, from predictions*.npz and the open images'
   original Fashion-MNIST labels (open.txt lines are "test/INDEX -1");
3. where the joint model's closed-set prediction puts each open class (the share of its images per known class),
   from the msp evaluation: which known classes the unknowns are taken for.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from openlt.data import fashion_mnist

RUN_NAME = re.compile(r"plain_e(?P<epochs>\d+)-s(?P<seed>\d+)-\d{8}-\d{6}(-\d+)?")
TAG = re.compile(r"metrics-plain_e\d+-(?P<score>[a-z_]+)\.json")
BANDS = ("overall", "many", "medium", "few")


def mean_std(values: list[float], digits: int = 3) -> str:
    if not values:
        return ""
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.fmean(values):.{digits}f} ± {statistics.pstdev(values):.{digits}f}"


def open_classes(split_dir: Path) -> tuple[np.ndarray, list[str]]:
    """(original Fashion-MNIST class of each open.txt line, in order; the class names)."""
    test_labels = fashion_mnist.load()["test"].labels.numpy()
    rows = [line.split()[0] for line in (split_dir / "open.txt").read_text(encoding="utf-8").splitlines() if line]
    if not all(row.startswith("test/") for row in rows):
        sys.exit(f"{split_dir}/open.txt: expected lines 'test/INDEX -1' (the embedded benchmark's split)")
    return test_labels[[int(row[5:]) for row in rows]], list(fashion_mnist.CLASS_NAMES)


def evaluations(run: Path) -> dict[str, tuple[dict, Path]]:
    """{score name: (metrics dict, predictions file)} of one run: metrics.json (its own score) and metrics-TAG.json."""
    out = {}
    own = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    out[own["open_score"]["name"]] = (own, run / "predictions.npz")
    for path in sorted(run.glob("metrics-*.json")):
        match = TAG.fullmatch(path.name)
        if match:
            metrics = json.loads(path.read_text(encoding="utf-8"))
            out[metrics["open_score"]["name"]] = (metrics, run / path.name.replace("metrics-", "predictions-")
                                                  .replace(".json", ".npz"))
    return out


def read_runs(folder: Path, origin: np.ndarray, names: list[str]) -> dict:
    """{"auroc": {(epochs, score): {band: [values]}}, "per_class": {(epochs, score): {open class: [AUROC]}},
    "taken_for": {(epochs, open class): {known class: [% of its images]}}, "known": known class names} of the
    evaluated plain_eEPOCHS-sSEED runs in `folder`, and "no_predictions": the predictions files that are missing
    (such an evaluation is in the first table alone); `origin` the original class of each open image, in open.txt's
    order, and `names` the names of those classes."""
    found = {"auroc": defaultdict(lambda: defaultdict(list)), "per_class": defaultdict(lambda: defaultdict(list)),
             "taken_for": defaultdict(lambda: defaultdict(list)), "known": [], "no_predictions": []}
    for run in sorted(folder.iterdir()):
        match = RUN_NAME.fullmatch(run.name)
        if not match or not (run / "metrics.json").is_file():
            continue
        epochs = int(match["epochs"])
        for score, (metrics, predictions) in evaluations(run).items():
            found["known"] = metrics["class_names"]
            for band in BANDS:
                value = metrics["open"]["auroc"] if band == "overall" else metrics["open"]["auroc_per_band"].get(band)
                if value is not None:
                    found["auroc"][epochs, score][band].append(value)
            if not predictions.is_file():  # an archived record (scripts/archive_runs.py keeps metrics, no arrays)
                found["no_predictions"].append(predictions)
                continue
            with np.load(predictions, allow_pickle=False) as p:
                test_score, open_score, open_preds = p["test_score"], p["open_score"], p["open_preds"]
            for cls in np.unique(origin):
                part = open_score[origin == cls]
                truth = np.r_[np.ones(len(test_score)), np.zeros(len(part))]
                found["per_class"][epochs, score][names[cls]].append(roc_auc_score(truth, np.r_[test_score, part]))
                if score == "msp":
                    preds = open_preds[origin == cls]
                    for k, known in enumerate(metrics["class_names"]):
                        found["taken_for"][epochs, names[cls]][known].append(float(np.mean(preds == k)) * 100)
    return found


def tables(found: dict) -> str:
    """The three markdown tables of the module docstring."""
    lines = ["| stage-1 epochs | score | seeds | AUROC overall | many | medium | few |",
             "|---:|---|---:|---:|---:|---:|---:|"]
    for (epochs, score), bands in sorted(found["auroc"].items()):
        lines.append(f"| {epochs} | {score} | {len(bands['overall'])} | "
                     + " | ".join(mean_std(bands[b]) for b in BANDS) + " |")
    classes = sorted({c for values in found["per_class"].values() for c in values})
    lines += ["", "| stage-1 epochs | score | " + " | ".join(f"AUROC {c}" for c in classes) + " |",
              "|---:|---|" + "---:|" * len(classes)]
    for (epochs, score), values in sorted(found["per_class"].items()):
        lines.append(f"| {epochs} | {score} | " + " | ".join(mean_std(values[c]) for c in classes) + " |")
    known = found["known"]
    lines += ["", "| stage-1 epochs | open class taken for (%) | " + " | ".join(known) + " |",
              "|---:|---|" + "---:|" * len(known)]
    for (epochs, cls), shares in sorted(found["taken_for"].items()):
        lines.append(f"| {epochs} | {cls} | " + " | ".join(mean_std(shares[k], 1) for k in known) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--split-dir", type=Path, default=Path("splits/fmnist_lt"))
    args = parser.parse_args(argv)
    origin, names = open_classes(args.split_dir)
    found = read_runs(args.folder, origin, names)
    if not found["auroc"]:
        print(f"no evaluated plain_eEPOCHS-sSEED runs in {args.folder}", file=sys.stderr)
        return 2
    if found["no_predictions"]:
        missing = found["no_predictions"]
        have = "evaluations have" if len(missing) > 1 else "evaluation has"
        print(f"openset_table: note: {len(missing)} {have} no predictions file (e.g. {missing[0]}; an archive of "
              f"records keeps none): they are in the first table only, the per-class tables leave them out",
              file=sys.stderr)
    print(tables(found))
    return 0


if __name__ == "__main__":
    sys.exit(main())
