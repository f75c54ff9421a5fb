"""How far a class's test features lie from its training features, per shot band: `python scripts/feature_gap.py RUN...`

For each class c of a run, with mu_c the mean of its training features (the feature cache of `openlt features`,
extracted here if missing: eval transform, the run's best checkpoint):

    gap_c = mean over c's test images of ||f - mu_c||  /  mean over c's training images of ||f - mu_c||

1.0: the test images sit in the training images' cloud; above it, they lie outside, the mark of a backbone that has
memorised its training images. A classifier fitted to the training features (cRT, LWS) then fits a cloud that the
test images do not come from; one that only measures them (NCM, tau-norm) is less exposed. Issue 18's convergence
study uses it on the joint models at 48, 96 and 192 epochs (docs/results.md "At 192 epochs"). Prints one markdown
row per run: the mean gap_c over the classes of each band (the run's own eval.many_above / few_below rule); a class
whose training features have no spread (one training image) has no gap_c and is left out, with a note. A path that
is not a run, or a run without train / test split files, is one line on stderr, exit 2.
"""

from __future__ import annotations

import argparse
import sys

import torch

from openlt.engine.features import load_features
from openlt.engine.run import open_run
from openlt.errors import OpenLTError
from openlt.metrics.closed import ShotBands


def class_gaps(train: torch.Tensor, train_labels: torch.Tensor, test: torch.Tensor,
               test_labels: torch.Tensor) -> dict[int, float]:
    """{class: gap_c} for every class with training and test images; features (N, D), labels (N,) int."""
    gaps = {}
    for c in sorted(set(train_labels.tolist()) & set(test_labels.tolist())):
        a, b = train[train_labels == c].float(), test[test_labels == c].float()
        mean = a.mean(0)
        spread = (a - mean).norm(dim=1).mean()
        if spread > 0:
            gaps[c] = float((b - mean).norm(dim=1).mean() / spread)
    return gaps


def band_gaps(gaps: dict[int, float], train_labels: torch.Tensor, bands: ShotBands) -> dict[str, float]:
    """{band: mean gap_c over its classes}, bands by training-image counts; a band without classes is left out."""
    counts = torch.bincount(train_labels)
    by_band: dict[str, list[float]] = {}
    for c, gap in gaps.items():
        by_band.setdefault(bands.band(int(counts[c])), []).append(gap)
    return {band: sum(v) / len(v) for band in ("many", "medium", "few") if (v := by_band.get(band))}


def run_row(path: str) -> str:
    """The markdown row of one run (its features extracted first where not cached); OpenLTError, one line."""
    run = open_run(path)
    feats = load_features(run, ("train", "test"), quiet=True)
    train, test = feats["train"], feats["test"]
    gaps = class_gaps(train["features"], train["labels"], test["features"], test["labels"])
    measured = set(train["labels"].tolist()) & set(test["labels"].tolist())
    if len(gaps) < len(measured):
        print(f"feature_gap: note: {run.path.name}: {len(measured) - len(gaps)} class(es) with test images have "
              f"no spread in their training features (one training image) and no gap: left out", file=sys.stderr)
    bands = band_gaps(gaps, train["labels"], ShotBands.from_config(run.config().eval))
    cells = " | ".join(f"{bands[b]:.2f}" if b in bands else "-" for b in ("many", "medium", "few"))
    return f"| {run.path.name} | {cells} |"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="run directories (their train and test features are cached)")
    args = parser.parse_args(argv)
    try:
        for path in args.runs:  # every path a run before any extraction
            open_run(path)
        rows = [run_row(path) for path in args.runs]
    except OpenLTError as exc:
        print(f"feature_gap: error: {exc}", file=sys.stderr)
        return 2
    print("| run | many | medium | few |\n|---|---:|---:|---:|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
