"""The convergence study's tables (issue 18) from a bench folder: `python scripts/convergence_table.py runs/convergence`.

The bench (configs/bench/fmnist_lt_convergence.yaml) names its runs METHOD_eEPOCHS-sSEED-YYYYmmdd-HHMMSS: plain_e12
is stage 1 trained for 12 epochs, crt_e12 / tau_norm_e12 / lws_e12 / ncm_e12 the stage-2 classifiers on its features.
Only evaluated runs (with metrics.json) count. Two markdown tables, means +- standard deviation over the seeds found:

1. stage 1 per budget: the training fit (train_acc of the last epoch: running top-1 over the epoch's augmented,
   instance-sampled batches), the best and the last overall validation top-1, the best epoch, the convergence
   warning's verdict (openlt.reporting.convergence), and test top-1 per band;
2. every method per budget: test top-1 per band (many / medium / few) and overall.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import statistics
import sys
from collections import defaultdict
from pathlib import Path

import yaml

from openlt.io import read_jsonl
from openlt.reporting.convergence import convergence, validation_curve

RUN_NAME = re.compile(r"(?P<method>.+)_e(?P<epochs>\d+)-s(?P<seed>\d+)-(?P<stamp>\d{8}-\d{6})(-(?P<n>\d+))?")
BANDS = ("many", "medium", "few", "overall")
METHOD_ORDER = ("plain", "crt", "tau_norm", "lws", "ncm", "fslwf")


class TableError(ValueError):
    """A run's file the tables cannot read (one line naming it)."""


def read_runs(folder: Path) -> dict[tuple[str, int], dict[int, dict]]:
    """{(method, epochs): {seed: {"test": closed-set metrics, "history": epoch records, "verdict": metrics.json's
    under-training verdict: warned | unchecked | checked (None: a file of an openlt before session 21; the log is
    judged instead)}}} of the evaluated runs.
    Of two runs of one method, budget and seed the later one (by the name's time stamp) counts (a note says so). A
    torn last line of metrics.jsonl (a crash, or a resume training the run now) is dropped, as openlt reads it;
    TableError for a metrics.json that is not JSON, has no "closed" or a band of it that is no number (null, a
    band without a test class, is shown '-'), any other bad log line (also one without a positive integer "epoch",
    as openlt reads the log, or an epoch listed twice or out of order), and a stage-1 run whose
    config.yaml trains other epochs than its name says."""
    runs: dict[tuple[str, int], dict[int, dict]] = defaultdict(dict)
    named = [(path, match) for path in folder.iterdir() if (match := RUN_NAME.fullmatch(path.name))]
    # oldest first by the name's time stamp and number (not the whole name: s01 and s1 are one seed)
    for path, match in sorted(named, key=lambda item: (item[1]["stamp"], int(item[1]["n"] or 0), item[0].name)):
        if not (path / "metrics.json").is_file():
            continue
        try:
            metrics = json.loads((path / "metrics.json").read_text(encoding="utf-8"))
        except ValueError as exc:  # also not UTF-8
            raise TableError(f"{path / 'metrics.json'}: not JSON ({exc})") from None
        if not isinstance(metrics, dict) or not isinstance(metrics.get("closed"), dict):
            raise TableError(f"{path / 'metrics.json'}: no 'closed' results (not a metrics file of `openlt eval`)")
        for band in BANDS:  # null is a band without a test class (openlt writes it so): no number, "-" below
            value = metrics["closed"].get(band, False)
            if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool)
                                      or math.isinf(value)):
                raise TableError(f"{path / 'metrics.json'}: closed.{band} is "
                                 f"{json.dumps(value) if band in metrics['closed'] else 'missing'}, not a number (a "
                                 f"metrics file of `openlt eval` has {', '.join(BANDS)})")
        log = path / "metrics.jsonl"
        history = read_jsonl(log, "per-epoch log", TableError)[0] if log.is_file() else []
        for n, record in enumerate(history, start=1):
            if type(record.get("epoch")) is not int or record["epoch"] < 1:
                raise TableError(f"{log}: record {n} has no positive integer 'epoch' (got {record.get('epoch')!r})")
            if n > 1 and record["epoch"] <= history[n - 2]["epoch"]:  # the fit and last values are read by position
                raise TableError(f"{log}: record {n} is epoch {record['epoch']}, after epoch "
                                 f"{history[n - 2]['epoch']}: a log lists its epochs once each, in order (edited, "
                                 f"or two runs' logs joined?)")
        _check_budget(path, int(match["epochs"]))
        key, seed = (match["method"], int(match["epochs"])), int(match["seed"])
        _check_seed_and_weights(path, seed, metrics, runs[key])
        if seed in runs[key]:  # names sort by their time stamp: this run is the later one of the seed
            print(f"convergence_table: note: {path.name} replaces the earlier {runs[key][seed]['name']} (the same "
                  f"method, budget and seed: the latest run counts)", file=sys.stderr)
        # openlt's own verdict (it also reads the run's checkpoints: a log cut after training is no stopped run),
        # when the file is of an openlt that records it so ("unchecked", session 21); an older file's verdict may be
        # of older rules: its log is judged again
        conv = metrics.get("convergence")
        verdict = _verdict(conv) if isinstance(conv, dict) and "unchecked" in conv else None
        runs[key][seed] = {"test": metrics["closed"], "history": history, "name": path.name, "verdict": verdict,
                           "sha256": metrics.get("checkpoint_sha256")}
    return runs


def _config(path: Path) -> dict:
    """`path`/config.yaml read ({} when there is none); TableError when it is not YAML."""
    config = path / "config.yaml"
    if not config.is_file():
        return {}
    try:
        cfg = yaml.safe_load(config.read_text(encoding="utf-8"))
    except (yaml.YAMLError, ValueError) as exc:
        raise TableError(f"{config}: not YAML ({exc})".splitlines()[0]) from None
    return cfg if isinstance(cfg, dict) else {}


def _check_seed_and_weights(path: Path, seed: int, metrics: dict, row: dict[int, dict]) -> None:
    """TableError when config.yaml's seed is not the name's -sSEED (a copied or renamed run: two "seeds" of one
    training), or when another seed of the row evaluated the same weights (metrics.json's checkpoint_sha256), as
    `openlt summary` refuses (helper trial, session 28: a run copied under two seed names gave "± 0.0")."""
    said = _config(path).get("seed")
    if said is not None and said != seed:
        raise TableError(f"{path / 'config.yaml'}: seed is {said!r} but the run's name says s{seed} (a copied or "
                         f"renamed run: name it by the seed it trained with)")
    sha = metrics.get("checkpoint_sha256")
    twin = next((run["name"] for other, run in row.items() if other != seed and sha and run.get("sha256") == sha), None)
    if twin is not None:
        raise TableError(f"{path.name} and {twin} are evaluations of the same weights (checkpoint_sha256 "
                         f"{sha[:12]}...): one training counted as two seeds; keep one of them")


def _check_budget(path: Path, epochs: int) -> None:
    """TableError when `path` is a stage-1 run (its config.yaml trains from scratch: no train.init_from, no
    decouple.method) whose config.yaml trains other epochs than its name's _eEPOCHS (a run trained with a CLI
    override, or renamed: its row would stand under the wrong budget). A stage 2's name gives its stage 1's budget,
    so it is not checked; nor is a run without config.yaml."""
    config = path / "config.yaml"
    cfg = _config(path)
    train, decouple = cfg.get("train"), cfg.get("decouple")
    if not isinstance(train, dict) or train.get("init_from") or (isinstance(decouple, dict)
                                                                 and decouple.get("method") not in (None, "none")):
        return
    if train.get("epochs") != epochs:
        raise TableError(f"{config}: train.epochs is {train.get('epochs')!r} but the run's name says {epochs} (a "
                         f"stage-1 run's row stands under its name's budget: rename the run or train it again)")


def _verdict(check: dict) -> str:
    """warned | unchecked | checked, of a convergence check (metrics.json's "convergence", or one made here); a
    stage 2 whose log holds no curve by design (NCM, τ-norm, FSLwF: "not_judged") is unchecked."""
    return ("warned" if check.get("warning") else "unchecked" if check.get("unchecked") or check.get("not_judged")
            else "checked")


def mean_std(values: list[float | None]) -> str:
    """'m +- s' in percent (s: the population standard deviation over the seeds, as in every openlt table; '' with
    one seed) of the finite numbers of `values` (None is a band without a test class; NaN a value not measured);
    '-' when there is none; "(n of N seeds)" after it when some seeds have none."""
    seeds = len(values)
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return "-"
    m = 100 * statistics.fmean(values)
    text = f"{m:.1f} ± {100 * statistics.pstdev(values):.1f}" if len(values) > 1 else f"{m:.1f}"
    return text + (f" ({len(values)} of {seeds} seeds)" if len(values) < seeds else "")


def stage1_row(epochs: int, seeds: dict[int, dict]) -> str:
    """One budget's stage-1 row (table 1)."""
    fit, best, last, best_epoch, warned, unchecked = [], [], [], [], 0, 0
    for run in seeds.values():
        history = run["history"]
        fits = [r["train_acc"] for r in history if isinstance(r.get("train_acc"), (int, float))]
        curve = validation_curve(history)
        if fits:
            fit.append(fits[-1])
        if curve:
            best.append(max(acc for _, acc in curve))
            last.append(curve[-1][1])
        check = convergence(history, epochs)  # a run stopped before its budget is warned, as in its metrics.json
        if check["best_epoch"] is not None:
            best_epoch.append(check["best_epoch"])
        verdict = run.get("verdict") or _verdict(check)
        warned, unchecked = warned + (verdict == "warned"), unchecked + (verdict == "unchecked")
    test = [mean_std([run["test"][band] for run in seeds.values()]) for band in BANDS]
    return (f"| {epochs} | {len(seeds)} | {mean_std(fit)} | {mean_std(best)} | {mean_std(last)} | "
            f"{', '.join(map(str, best_epoch)) or '-'} | {warned} of {len(seeds)}"
            f"{f' ({unchecked} not checked)' if unchecked else ''} | " + " | ".join(test) + " |")


def tables(runs: dict[tuple[str, int], dict[int, dict]]) -> str:
    """Both markdown tables (module docstring)."""
    budgets = sorted({epochs for _, epochs in runs})
    out = ["| stage-1 epochs | seeds | training fit (%) | val best (%) | val last (%) | best epoch | "
           "under-training warning | test many | test medium | test few | test overall |",
           "|---:|---:|---:|---:|---:|---|---|---:|---:|---:|---:|"]
    out += [stage1_row(e, runs[("plain", e)]) for e in budgets if ("plain", e) in runs]
    out += ["", "| stage-1 epochs | method | seeds | many | medium | few | overall |", "|---:|---|---:|---:|---:|---:|---:|"]
    methods = sorted({m for m, _ in runs}, key=lambda m: (METHOD_ORDER.index(m) if m in METHOD_ORDER else 99, m))
    for e in budgets:
        for m in methods:
            seeds = runs.get((m, e))
            if seeds:
                cells = [mean_std([run["test"][band] for run in seeds.values()]) for band in BANDS]
                out.append(f"| {e} | {'joint' if m == 'plain' else m} | {len(seeds)} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="the bench's out_dir, e.g. runs/convergence")
    args = parser.parse_args(argv)
    if not args.folder.is_dir():
        print(f"convergence_table: error: {args.folder} is not a folder", file=sys.stderr)
        return 2
    try:
        runs = read_runs(args.folder)
    except (TableError, OSError) as exc:
        print(f"convergence_table: error: {exc}", file=sys.stderr)
        return 2
    if not runs:
        print(f"convergence_table: error: no evaluated METHOD_eEPOCHS-sSEED run in {args.folder}", file=sys.stderr)
        return 2
    try:
        print(tables(runs))
    except BrokenPipeError:  # `... | head`: the reader has what it wanted
        sys.stderr.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
