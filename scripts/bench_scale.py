#!/usr/bin/env python
"""Scale simulation: every stage of openlt whose cost depends on the number of classes K or of images N, timed
at benchmark sizes on synthetic long-tailed data that needs no images (a benchmark, not a test).

For each size it builds, in a scratch folder:

* split files in the ImageNet-LT format (train / val / test / open) whose training counts follow the Pareto
  profile (alpha = 6, data/splits.py ``profile_counts``) over K classes, scaled to N training images; val and
  test balanced over the classes; an empty file for every listed image (the split check stats each one);
* a stage-1 run directory (config, split manifest, a ResNet-50 + linear head checkpoint with random weights)
  with its feature cache: random float16 features, d = 2048, in the real format (engine/features.py: one
  safetensors file per split, "features" and "labels", the cache key in the metadata), so that load_features
  and a decoupled evaluation take them as fresh;
* a decoupled (cRT) run on it, and random logits (60 % of the images given their class) for the score stages;

and runs each stage in turn, printing its time and its peak memory: the peak resident set size above the stage's
start (Linux: VmHWM reset through /proc/self/clear_refs and free memory handed back with malloc_trim before each
stage, so the number is the stage's own). Every size runs in a fresh process. A stage measured on a part and
scaled up says so ("extrapolated"): cRT / LWS (a few steps of batch 512, x steps per epoch), tau-norm's search
(6,000 validation images), ReAct's fit there ("upper bound": the whole fit x N / rows; Mahalanobis and ViM fit on
every row, their fits chunked: linear in N, memory a chunk), KNN's scores (a subset of the queries), and the image path (64 JPEGs decoded, transformed and
passed through ResNet-10, x (N + val + test + open)).

The table gives, between the last two sizes, the ratio of times against the ratio of the stage's work (its
formula in N, K, Nv / Nt / No = val / test / open images, E = Nv + Nt + No): a stage scales at most linearly when
its time ratio is at most its work ratio (x 1.25 for timing noise on a shared machine).

    .venv/bin/python scripts/bench_scale.py --sizes tiny                       # the test's size (K = 20, N = 600), seconds
    .venv/bin/python scripts/bench_scale.py --sizes small                      # smoke run, ~1 min
    .venv/bin/python scripts/bench_scale.py --sizes imagenet_lt,inat2018       # the real sizes, ~30 min
        [--threads 2] [--workdir DIR] [--json OUT.json] [--markdown OUT.md]
    .venv/bin/python scripts/bench_scale.py --from-json OUT.json              # the table again, from the numbers
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import io
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np

D = 2048  # feature dimension (ResNet-50's)
CRT_STEPS, CRT_BATCH = 5, 512
FIT_ELEMENTS = 1 << 28  # at most this many logits / features (1 GB of float32) in a fit; more rows are extrapolated
# detectors fitted on every training row: KNN keeps every row it scores; Mahalanobis's and ViM's fits run over chunks
# of rows (openset/detectors.py: linear in N and K, memory a chunk), so the whole fit is measured, not bounded
ALL_ROWS_FITS = ("knn", "mahalanobis", "vim")
KNN_QUERIES = 1000
TAU_VAL_ROWS = 6000  # validation images in the tau search; more are extrapolated (21 x (rows, D) x (D, K) products)
NOISE = 1.25  # a time ratio up to work ratio x NOISE counts as linear


@dataclass(frozen=True)
class Size:
    """One simulated benchmark: K classes, N training images (Pareto alpha = 6 counts, smallest class n_min),
    val / test / open images."""

    name: str
    k: int
    n_train: int
    n_val: int
    n_test: int
    n_open: int
    n_min: int
    d: int = D  # feature width: the backbone's (ResNet-50: 2048)
    backbone: str = "resnet50"
    jpegs: int = 64  # JPEGs through the image path (extrapolated to N + E)


SIZES = {
    # a test's size (tests/scripts/test_bench_scale.py): every stage in seconds, not a measurement
    "tiny": Size("tiny", 20, 600, 100, 200, 100, 2, d=512, backbone="resnet10", jpegs=4),
    "small": Size("small", 100, 10_000, 2_000, 5_000, 1_000, 2),
    "imagenet_lt": Size("ImageNet-LT", 1000, 115_846, 20_000, 50_000, 10_000, 5),
    "inat2018": Size("iNaturalist 2018", 8142, 437_513, 24_426, 24_426, 10_000, 2),  # val = test; open synthetic
}

# the work of a stage, as a formula of the size (N: training images, E: val + test + open, K: classes)
WORK = {
    "N": lambda s: s.n_train, "N+E": lambda s: s.n_train + s.n_val + s.n_test + s.n_open,
    "2N+E": lambda s: 2 * s.n_train + s.n_val + s.n_test + s.n_open, "N log N": lambda s: s.n_train * math.log(s.n_train),
    "N*K": lambda s: s.n_train * s.k, "E*K": lambda s: (s.n_val + s.n_test + s.n_open) * s.k,
    "Nv*K": lambda s: s.n_val * s.k, "Nt*K": lambda s: s.n_test * s.k,
    "(Nt+No)*K": lambda s: (s.n_test + s.n_open) * s.k, "(Nt+No)*N": lambda s: (s.n_test + s.n_open) * s.n_train,
    "K": lambda s: s.k, "Nt+K": lambda s: s.n_test + s.k, "E+K": lambda s: s.n_val + s.n_test + s.n_open + s.k,
    "Nt": lambda s: s.n_test, "Nt+No": lambda s: s.n_test + s.n_open,
}


# --------------------------------------------------------------------------- measuring


def _status(key: str) -> int:
    """A /proc/self/status field in bytes (VmRSS, VmHWM)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {key} in /proc/self/status")


def peak_above_start(fn):
    """(fn(), wall seconds, this process's CPU seconds, peak resident bytes above the start): garbage collected and
    freed memory handed back (malloc_trim) first, VmHWM reset to VmRSS through /proc/self/clear_refs (Linux)."""
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # VmHWM := VmRSS
    base, start, cpu = _status("VmRSS"), time.perf_counter(), time.process_time()
    out = fn()
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    return out, seconds, cpu, max(0, _status("VmHWM") - base)


class Stages:
    """Runs stages one after the other and records time and peak memory above each stage's start."""

    def __init__(self, size: Size) -> None:
        self.size, self.rows = size, []

    def run(self, name: str, work: str, fn, scale: float = 1.0, note: str = "", extrapolate=None):
        """Time `fn()`; `scale` > 1: the stage ran on a part of its work, its time is multiplied (extrapolated), or
        `extrapolate(measured seconds)` gives the stage's whole time."""
        out, seconds, _, peak = peak_above_start(fn)
        if extrapolate is not None:
            scale = extrapolate(seconds) / seconds
        self.rows.append({"stage": name, "work": work, "work_value": WORK[work](self.size), "seconds": seconds * scale,
                          "measured_seconds": seconds, "scale": scale, "peak_mb": peak / 2**20, "note": note})
        print(f"  {name:62s} {seconds * scale:9.2f} s {peak / 2**20:9.0f} MB  {note}", flush=True)
        return out


# --------------------------------------------------------------------------- synthetic data


def train_counts(size: Size) -> list[int]:
    """K training counts, largest first: the Pareto (alpha = 6) profile from n_max down to n_min, n_max chosen so
    that they add up to N (the largest classes absorb the rounding)."""
    from openlt.data.splits import profile_counts

    lo, hi = size.n_min, 10 * size.n_train // size.k + size.n_min
    while lo < hi:  # the smallest n_max whose profile holds at least N images
        mid = (lo + hi) // 2
        lo, hi = (mid + 1, hi) if sum(profile_counts("pareto", size.k, mid, size.n_min)) < size.n_train else (lo, mid)
    counts = np.array(profile_counts("pareto", size.k, lo, size.n_min))
    extra = int(counts.sum()) - size.n_train
    while extra > 0:  # one image fewer for each of the largest classes
        step = min(extra, size.k)
        counts[:step] -= 1
        extra -= step
    return sorted(counts.tolist(), reverse=True)


def _labels(size: Size, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Labels per split: training by the counts, val / test balanced over the classes, open -1; shuffled."""
    counts = train_counts(size)
    train = np.repeat(np.arange(size.k), counts)
    out = {"train": train, "val": np.arange(size.n_val) % size.k, "test": np.arange(size.n_test) % size.k,
           "open": np.full(size.n_open, -1)}
    return {split: rng.permutation(y) for split, y in out.items()}


def write_data(size: Size, root: Path) -> tuple[Path, Path, Path, dict[str, np.ndarray]]:
    """Split files (with an empty file per image) and class names; returns (split dir, image root, class-name
    file, labels per split)."""
    from openlt.data.splitfile import write_split_file

    labels = _labels(size, np.random.default_rng(0))
    split_dir, images = root / "splits", root / "images"
    split_dir.mkdir(parents=True)
    for split, y in labels.items():
        groups = y if split != "open" else np.arange(len(y)) // 1000
        items = [f"{split}/{g}/{i}.jpg" for i, g in enumerate(groups.tolist())]
        write_split_file(split_dir / f"{split}.txt", items, y.tolist())
        for folder in sorted(set(groups.tolist())):
            (images / split / str(folder)).mkdir(parents=True)
        for item in items:
            os.close(os.open(images / item, os.O_CREAT | os.O_WRONLY, 0o644))
    names = root / "classes.txt"  # iNaturalist-like names: longer than class_N, as a metrics file really holds
    names.write_text("".join(f"Kingdom{i % 7} Genus{i:05d} species{(7 * i) % 10007:05d}\n" for i in range(size.k)))
    return split_dir, images, names, labels


def config(split_dir: Path, images: Path, names: Path, out: Path, extra: tuple[str, ...] = (), backbone: str = "resnet50"):
    """The runs' config: split files, 224 px (no image is probed), ResNet-50 (the size's backbone), CPU."""
    from openlt.config import build_config

    return build_config(None, ["data.dataset=split-file", f"data.split_dir={split_dir}", f"data.root={images}",
                               f"data.class_names={names}", "data.image_size=224", f"model.backbone={backbone}",
                               "train.device=cpu", f"out_dir={out}", *extra])


def _random_features(labels: np.ndarray, k: int, seed: int, d: int = D) -> "torch.Tensor":
    """(N, d) float16 features, class-dependent (a random direction per class plus noise), built in chunks."""
    import torch

    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(k, d, generator=g)
    out = torch.empty(len(labels), d, dtype=torch.float16)
    y = torch.as_tensor(labels).clamp_min(0)
    for start in range(0, len(labels), 65536):
        part = y[start:start + 65536]
        noise = torch.randn(len(part), d, generator=g)
        out[start:start + len(part)] = (noise + 0.5 * centers[part]).relu().half()
    return out


def make_runs(cfg, data, labels: dict[str, np.ndarray], root: Path):
    """(stage-1 run with its fresh feature cache, decoupled cRT run on it): configs, manifests, random weights."""
    import torch
    from safetensors.torch import save_file

    from openlt.engine.checkpoint import save_checkpoint
    from openlt.engine.features import cache_key
    from openlt.engine.run import Run
    from openlt.io import sha256_file
    from openlt.models.model import build_model

    torch.manual_seed(0)
    model = build_model(cfg, data.num_classes, 3, 224)
    runs = []
    for name, run_cfg in (("stage1", cfg), ("crt", _decoupled(cfg, root / "stage1"))):
        run = Run(root / name)
        run.checkpoints_dir.mkdir(parents=True)
        run.write_config(run_cfg)
        run.write_manifest(data.manifest)
        save_checkpoint(run.checkpoint("best"), model, None, {"epoch": 1})
        runs.append(run)
    sha = sha256_file(runs[0].checkpoint("best"))
    runs[0].features_dir.mkdir()
    for i, (split, y) in enumerate(labels.items()):
        key = cache_key("best", sha, data, split, "float16")
        save_file({"features": _random_features(y, data.num_classes, i, model.backbone.out_dim), "labels": torch.as_tensor(y).long()},
                  str(runs[0].feature_cache(split)), metadata={"openlt": json.dumps(key)})
    return runs


def _decoupled(cfg, stage1: Path):
    from openlt.config import build_config, to_dict

    return build_config(base=to_dict(cfg), overrides=["decouple.method=crt", f"train.init_from={stage1}",
                                                      "decouple.cache_dtype=float16"])  # (a stage 2's option)


def random_logits(labels: np.ndarray, k: int, seed: int) -> "torch.Tensor":
    """(N, K) float32 logits: standard normal, +5 on the true class for 60 % of the known images."""
    import torch

    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(len(labels), k, generator=g)
    y = torch.as_tensor(labels)
    hit = (torch.rand(len(y), generator=g) < 0.6) & (y >= 0)
    logits[hit.nonzero().flatten(), y[hit]] += 5.0
    return logits


# --------------------------------------------------------------------------- stages


def data_stages(st: Stages, cfg, labels: dict[str, np.ndarray]):
    """Reading and checking the split files; every sampler, built and drawn for one epoch."""
    from openlt.data.build import prepare_data
    from openlt.data.samplers import SAMPLERS, build_sampler

    # split files without a manifest.json (data.dataset=split-file): train.txt is read to count, then checked
    # the images are empty files: not decoded here (a new run's train decodes each listed image first, in
    # threads: ~1-2.5 ms per 500 x 375 JPEG, a per-image cost like the image path's below)
    data = st.run("split files: read + check (prepare_data, no decode)", "2N+E",
                  lambda: prepare_data(cfg, decode=False))
    y = labels["train"].tolist()
    for name in sorted(SAMPLERS.names()):  # the weighted ones draw with torch.multinomial: a search per draw
        st.run(f"sampler {name}: build + one epoch of indices", "N" if name in ("instance", "class_aware") else "N log N",
               lambda: list(iter(build_sampler(name, y, epochs=90, seed=0))))
    return data


def cache_stage(st: Stages, run, cfg) -> dict:
    """The stage-1 feature cache of the four splits, read as a decoupled stage 2 reads it."""
    from openlt.engine.features import load_features

    return st.run("feature cache read (load_features, 4 splits, fp16 kept)", "N+E",
                  lambda: load_features(run, dtype="float16", quiet=True, cfg=cfg))


def stage2_stages(st: Stages, feats: dict, counts: list[int], k: int) -> None:
    """cRT and LWS (a few steps, extrapolated per epoch), NCM, tau-norm's validation search."""
    import torch

    from openlt.decoupling.base import Stage2Data
    from openlt.decoupling.classifiers import train_on_features
    from openlt.decoupling.methods import ClassifierRetraining, LearnableWeightScaling, TauNormalization
    from openlt.decoupling.ncm import NCMClassifier

    x, y = feats["train"]["features"], feats["train"]["labels"]
    g = torch.Generator().manual_seed(0)
    weight, bias = torch.randn(k, x.shape[1], generator=g) * 0.02, torch.zeros(k)
    data = Stage2Data(x, y, k, counts, val_x=feats["val"]["features"], val_y=feats["val"]["labels"], weight=weight,
                      bias=bias)
    part = torch.randperm(len(x), generator=g)[:CRT_STEPS * CRT_BATCH]
    steps = min(CRT_STEPS, math.ceil(len(x) / CRT_BATCH))
    scale = math.ceil(len(x) / CRT_BATCH) / steps
    note = f"extrapolated: {steps} steps of {CRT_BATCH} x {scale:.0f}"
    training = dict(epochs=1, batch_size=CRT_BATCH, lr=0.2, sampler="instance")  # samplers: timed above
    for name, method in (("cRT", ClassifierRetraining(**training)), ("LWS", LearnableWeightScaling(**training))):
        module = method.initial_module(data)
        st.run(f"{name}: one epoch on the cache (SGD, batch {CRT_BATCH})", "N*K",
               lambda: train_on_features(module, x[part], y[part], **training), scale, note)
    ncm = st.run("NCM: fit (class means of the training features)", "N", lambda: NCMClassifier().fit(x, y, k))
    st.run("NCM: logits of the test images", "Nt*K", lambda: ncm.logits(feats["test"]["features"]))
    rows = min(len(data.val_x), TAU_VAL_ROWS)  # each tau: (val, D) x (D, K)
    tau_data = Stage2Data(x, y, k, counts, val_x=data.val_x[:rows], val_y=data.val_y[:rows], weight=weight, bias=bias)
    st.run("tau-norm: validation search over 21 tau", "Nv*K", lambda: TauNormalization([i / 10 for i in range(21)]).fit(
        tau_data), len(data.val_x) / rows, "" if rows == len(data.val_x) else
        f"extrapolated: {rows:,} of {len(data.val_x):,} val images x {len(data.val_x) / rows:.1f}")


def openmax_stages(st: Stages, logits: dict, labels: dict, k: int) -> None:
    """OpenMax fitted on every training row as `openlt eval` fits it (engine/score_fit.py: chunks of FIT_ROWS
    logits in each pass, never N x K; here each chunk's random logits are drawn again in each pass, as the head
    recomputes them from the features), and scoring test + open."""
    from openlt.engine.score_fit import FIT_ROWS
    from openlt.openset.openmax import OpenMax

    y = labels["train"]

    def chunks():
        for i, start in enumerate(range(0, len(y), FIT_ROWS)):
            part = y[start:start + FIT_ROWS]
            yield random_logits(part, k, 7 + i), torch_labels(part)

    scorer = st.run("OpenMax: fit (MAVs, K Weibull tails; chunks of logits)", "N*K",
                    lambda: OpenMax().fit_chunks(chunks))
    st.run("OpenMax: score test + open", "(Nt+No)*K", lambda: [scorer.score(logits[s]) for s in ("test", "open")])


def torch_labels(labels: np.ndarray) -> "torch.Tensor":
    import torch

    return torch.as_tensor(labels)


def _fit_rows(y: np.ndarray, rows: int, k: int) -> np.ndarray:
    """Indices of `rows` training images with every class present (one of each, then at random)."""
    first = np.unique(y, return_index=True)[1]
    rest = np.setdiff1d(np.random.default_rng(1).permutation(len(y))[:rows], first)[: max(0, rows - k)]
    return np.sort(np.concatenate([first, rest]))


def score_stages(st: Stages, logits: dict, feats: dict, k: int) -> None:
    """The scores on the logits (msp, max_logit, energy) and, with pytorch-ood, the feature detectors."""
    from openlt.openset import build_score
    from openlt.config import Config

    for name in ("msp", "max_logit", "energy"):
        scorer = build_score(name, Config().eval)
        st.run(f"{name}: score test + open", "(Nt+No)*K", lambda: [scorer.score(logits[s]) for s in ("test", "open")])
    try:
        import pytorch_ood  # noqa: F401
    except ImportError:
        print("  (feature detectors skipped: pytorch-ood is not installed)")
        return
    for name in ("mahalanobis", "vim", "react", "knn"):
        _detector(st, name, feats, k)


def _detector(st: Stages, name: str, feats: dict, k: int) -> None:
    """One feature detector: fit on the training features (every row for :data:`ALL_ROWS_FITS`, else a subset
    beyond FIT_ELEMENTS), score test + open."""
    import torch

    from openlt.config import Config
    from openlt.openset import build_score

    x, y = feats["train"]["features"], feats["train"]["labels"]
    rows = len(x) if name in ALL_ROWS_FITS else min(len(x), FIT_ELEMENTS // max(k, x.shape[1]))
    part = torch.as_tensor(_fit_rows(y.numpy(), rows, k))
    g = torch.Generator().manual_seed(3)
    head = {"head": (torch.randn(k, x.shape[1], generator=g) * 0.02, torch.zeros(k))} if name in ("vim", "react") else {}
    scorer = build_score(name, Config().eval)
    note = "" if rows == len(x) else f"upper bound: {rows:,} of {len(x):,} rows, the whole fit x {len(x) / rows:.1f}"
    fit_x, fit_y = (x, y) if rows == len(x) else (x[part], y[part])  # every row: no N x d copy of the cache
    st.run(f"{name}: fit on the training features", "N",
           lambda: scorer.fit({"feature": fit_x, "labels": fit_y}, **head), len(x) / rows, note)
    queries = {s: feats[s]["features"] for s in ("test", "open")}
    n_queries, scale, note = sum(len(q) for q in queries.values()), 1.0, ""
    cap = {"knn": KNN_QUERIES}.get(name)  # KNN: N x d each (Mahalanobis: d^2 + K d each, all scored)
    if cap is not None and cap < n_queries:
        queries = {"test": queries["test"][:cap]}
        scale, note = n_queries / cap, f"extrapolated: {cap:,} queries x {n_queries / cap:.0f}"
    st.run(f"{name}: score test + open", "(Nt+No)*N" if name == "knn" else "(Nt+No)*K",
           lambda: [scorer.score({"feature": q}) for q in queries.values()], scale, note)


def evaluation_stages(st: Stages, cfg, logits: dict, labels: dict, data, out: Path) -> dict:
    """What evaluation does after the network: per-image records, metrics, the three files, the report."""
    import torch

    from openlt.engine.evaluate import compute_metrics, split_record
    from openlt.io import write_json
    from openlt.metrics import ShotBands, sparse_confusion
    from openlt.openset import build_score
    from openlt.reporting import sample_table, save_confusion, save_samples
    from openlt.reporting.run_report import FolderFiles, write_reports

    scorer = build_score("msp", cfg.eval)
    outputs = {s: {"logits": logits[s], "labels": torch.as_tensor(labels[s])} for s in ("val", "test", "open")}
    records = st.run("per-image records: softmax, top-5, score (val+test+open)", "E*K",
                     lambda: {s: split_record(o, scorer) for s, o in outputs.items()})
    del outputs
    metrics = st.run("metrics (compute_metrics on the records)", "E+K",
                     lambda: compute_metrics(cfg, records, data.train_counts, data.class_names, scorer))
    metrics = {"run": str(out), "checkpoint": "best", "epoch": 1, **metrics, "split_files": {}}
    files = FolderFiles(out)
    st.run("metrics.json: write", "K", lambda: write_json(files.metrics_path(), metrics))
    st.run("confusion.npz: write (sparse)", "Nt", lambda: save_confusion(
        out / "confusion.npz", sparse_confusion(records["test"]["preds"], labels=records["test"]["labels"],
                                                  num_classes=data.num_classes)))
    samples = sample_table(records)
    st.run("predictions.npz: write", "Nt+No", lambda: save_samples(files.predictions_path(), samples))
    st.run("run report: report.md + report.html (figures)", "Nt+K",
           lambda: write_reports(files, metrics, samples, None, ShotBands.from_config(cfg.eval)))
    return {p.name: p.stat().st_size for p in out.iterdir() if p.is_file()}


def summary_stages(st: Stages, metrics_file: Path, root: Path, config_file: Path) -> None:
    """`openlt summary` over 3 runs (`metrics_file` with `config_file`, the cRT run's, as seeds 0-2) and a bench
    report (results.md / .csv / report.html, two PNG) over them."""
    import yaml

    from openlt.cli import main
    from openlt.reporting.bench_report import write_bench_results

    files = []
    for seed in range(3):
        run = root / f"crt-s{seed}"
        run.mkdir()
        metrics = json.loads(metrics_file.read_text())
        metrics["run"] = str(run)
        (run / "metrics.json").write_text(json.dumps(metrics, indent=2))
        config = yaml.safe_load(config_file.read_text())  # summary checks the recipe: one per seed, as train writes
        config["seed"] = seed
        (run / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        files.append(run / "metrics.json")
    def summary() -> int:
        with contextlib.redirect_stdout(io.StringIO()):
            return main(["summary", *map(str, files)])

    assert st.run("openlt summary over 3 runs", "K", summary) == 0, "openlt summary failed"
    spec = SimpleNamespace(name="scale", seeds=[0, 1, 2], paper=None, methods=[SimpleNamespace(name="crt", eval_of=None)],
                           out_dir=root, path=root / "bench.yaml")
    st.run("bench report over 3 runs (md, csv, html, 2 png)", "K", lambda: write_bench_results(spec, {"crt": files}))


def end_to_end_stage(st: Stages, run) -> tuple[dict, float]:
    """`openlt eval` of the decoupled run: the stage-1 cache through its head, split by split; returns the file
    sizes and the MB of the model's weights."""
    from openlt.engine.evaluate import evaluate_run

    st.run("openlt eval end to end (cRT run: cache -> head -> files, report)", "E*K",
           lambda: evaluate_run(run, quiet=True))
    model_mb = run.checkpoint("best").stat().st_size / 2**20
    return {p.name: p.stat().st_size for p in run.path.iterdir() if p.is_file()}, model_mb


def image_stage(st: Stages, size: Size, root: Path) -> None:
    """Decode + evaluation transform + ResNet-10 forward of 64 JPEGs (the size's `jpegs`; 224 px, batch 32),
    extrapolated to one pass over the size's N + E images."""
    import torch
    from PIL import Image

    from openlt.config import build_config
    from openlt.data.datasets import FileImageLoader
    from openlt.data.transforms import IMAGENET_MEAN, IMAGENET_STD, build_transform
    from openlt.models.model import build_model

    folder = root / "jpeg"
    folder.mkdir()
    rng = np.random.default_rng(0)
    n = size.jpegs
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)).save(folder / f"{i}.jpg", quality=90)
    loader = FileImageLoader(folder)
    transform = build_transform("imagenet", False, 224, IMAGENET_MEAN, IMAGENET_STD)
    model = build_model(build_config(None, ["model.backbone=resnet10"]), size.k, 3, 224).eval()
    model = model.to(memory_format=torch.channels_last)

    def work():
        with torch.no_grad():
            for start in range(0, n, 32):
                batch = torch.stack([transform(loader(f"{i}.jpg")) for i in range(start, min(start + 32, n))])
                model(batch.contiguous(memory_format=torch.channels_last))

    total = size.n_train + size.n_val + size.n_test + size.n_open
    st.run("image path: decode + transform + ResNet-10 forward", "N+E", work, total / n,
           f"extrapolated: {n} JPEGs x {total / n:,.0f}")


# --------------------------------------------------------------------------- one size, in its own process


def child(key: str, workdir: Path, out_json: Path) -> None:
    """Build the size's data and run every stage; the rows and file sizes go to `out_json`."""
    size = SIZES[key]
    root = workdir / key
    shutil.rmtree(root, ignore_errors=True)
    print(f"\n{size.name}: K = {size.k:,}, N = {size.n_train:,}, val {size.n_val:,}, test {size.n_test:,}, "
          f"open {size.n_open:,}, d = {size.d:,}", flush=True)
    start = time.perf_counter()
    split_dir, images, names, labels = write_data(size, root)
    cfg = config(split_dir, images, names, root / "runs", backbone=size.backbone)
    print(f"  (setup: split files and {sum(map(len, labels.values())):,} empty image files, "
          f"{time.perf_counter() - start:.0f} s)", flush=True)
    st = Stages(size)
    data = data_stages(st, cfg, labels)
    start = time.perf_counter()
    stage1, crt = make_runs(cfg, data, labels, root / "runs")
    print(f"  (setup: runs and feature cache, {time.perf_counter() - start:.0f} s)", flush=True)
    feats = cache_stage(st, stage1, cfg)
    stage2_stages(st, feats, data.train_counts, size.k)
    logits = {s: random_logits(labels[s], size.k, i) for i, s in enumerate(("val", "test", "open"))}
    openmax_stages(st, logits, labels, size.k)
    score_stages(st, logits, feats, size.k)
    del feats
    (root / "eval").mkdir()
    files = evaluation_stages(st, cfg, logits, labels, data, root / "eval")
    del logits
    (root / "summary").mkdir()
    summary_stages(st, root / "eval" / "metrics.json", root / "summary", crt.config_file)
    eval_files, model_mb = end_to_end_stage(st, crt)
    image_stage(st, size, root)
    cache_mb = (size.n_val + size.n_test + size.n_open) * size.d * 6 / 2**20  # float16 read + float32 copy (the head's)
    out_json.write_text(json.dumps({"key": key, "size": asdict(size), "rows": st.rows, "files": files,
                                    "eval_files": eval_files, "model_mb": model_mb, "eval_cache_mb": cache_mb,
                                    "bands": _bands(data.train_counts)}, indent=1))
    shutil.rmtree(root, ignore_errors=True)


def _bands(counts: list[int]) -> dict[str, int]:
    from openlt.metrics import ShotBands

    bands = ShotBands().bands_of(counts)
    return {b: bands.count(b) for b in ("many", "medium", "few")}


# --------------------------------------------------------------------------- the table


def _fmt_t(seconds: float) -> str:
    return f"{seconds:.2f}" if seconds < 10 else f"{seconds:.0f}"


def _linear(t_ratio: float, w_ratio: float) -> bool:
    """At most linear: the time grew no more than the work (x NOISE); a stage with a fixed cost (a figure, a file
    header) may shrink less than its work, so a work ratio below 1 counts as 1."""
    return t_ratio <= NOISE * max(w_ratio, 1.0)


def table(results: list[dict]) -> str:
    """The markdown table: each size's time and peak memory per stage, and the last two sizes' ratios."""
    names = [r["size"]["name"] for r in results]
    head = "| stage | work | " + " | ".join(f"{n}: s | {n}: MB" for n in names)
    if len(results) > 1:
        head += " | time ratio | work ratio | ≤ linear |"
    lines = [head, "|---|---|" + "---:|---:|" * len(results) + ("---:|---:|---|" if len(results) > 1 else "")]
    for i, row in enumerate(results[-1]["rows"]):
        cells = [row["stage"] + (f" ({row['note']})" if row["note"] else ""), row["work"]]
        for r in results:
            cells += [_fmt_t(r["rows"][i]["seconds"]), f"{r['rows'][i]['peak_mb']:.0f}"]
        if len(results) > 1:
            a, b = results[-2]["rows"][i], row
            t_ratio, w_ratio = b["seconds"] / max(a["seconds"], 1e-9), b["work_value"] / a["work_value"]
            verdict = "yes" if _linear(t_ratio, w_ratio) else ("(< 0.2 s)" if b["seconds"] < 0.2 else "**no**")
            cells += [f"{t_ratio:.2f}", f"{w_ratio:.2f}", verdict]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def targets(result: dict) -> list[str]:
    """The issue's targets at one size, each with its measured number and whether it is met."""
    rows = {r["stage"]: r for r in result["rows"]}
    metrics_mb = result["files"]["metrics.json"] / 2**20
    e2e = next(r for name, r in rows.items() if name.startswith("openlt eval end to end"))
    beyond = e2e["peak_mb"] - result["model_mb"] - result["eval_cache_mb"]
    report = rows["run report: report.md + report.html (figures)"]["seconds"]
    quick = max(rows["openlt summary over 3 runs"]["seconds"], rows["bench report over 3 runs (md, csv, html, 2 png)"]["seconds"])
    met = lambda ok: "met" if ok else "NOT met"  # noqa: E731
    return [f"metrics.json {metrics_mb:.2f} MB (target <= 5 MB: {met(metrics_mb <= 5)}); "
            f"predictions.npz {result['files']['predictions.npz'] / 2**20:.1f} MB, confusion.npz "
            f"{result['files']['confusion.npz'] / 2**20:.2f} MB, report.html {result['files']['report.html'] / 2**20:.1f} MB",
            f"openlt eval peak {e2e['peak_mb']:.0f} MB above its start, of which the model {result['model_mb']:.0f} MB and "
            f"the val / test / open cache {result['eval_cache_mb']:.0f} MB: {beyond:.0f} MB beyond them "
            f"(target <= 2048 MB: {met(beyond <= 2048)})",
            f"run report {report:.1f} s (target <= 30 s: {met(report <= 30)}); summary and bench report "
            f"<= {quick:.1f} s (target: seconds, <= 10 s: {met(quick <= 10)})"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="small", help=f"comma-separated, from {', '.join(SIZES)}")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=None, help="scratch folder (default: a temporary one)")
    parser.add_argument("--json", type=Path, default=None, help="write every measurement here")
    parser.add_argument("--markdown", type=Path, default=None, help="write the table and targets here")
    parser.add_argument("--from-json", type=Path, default=None, help="print the table of an earlier --json file")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--child-json", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        import torch

        torch.set_num_threads(args.threads)
        child(args.child, args.workdir, args.child_json)
        return
    if args.from_json:
        print(_report(json.loads(args.from_json.read_text()), args))
        return
    keys = args.sizes.split(",")
    unknown = [k for k in keys if k not in SIZES]
    if unknown:
        parser.error(f"unknown size {unknown[0]!r}; known: {', '.join(SIZES)}")
    work = args.workdir or Path(tempfile.mkdtemp(prefix="openlt-scale-"))
    results = []
    for key in keys:  # one process per size: its memory is its own
        out = work / f"{key}.json"
        subprocess.run([sys.executable, __file__, "--child", key, "--workdir", str(work), "--child-json", str(out),
                        "--threads", str(args.threads)], check=True, env={**os.environ, "OMP_NUM_THREADS": str(args.threads)})
        results.append(json.loads(out.read_text()))
    text = _report(results, args)
    print("\n" + text)
    if args.markdown:
        args.markdown.write_text(text + "\n")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


def _report(results: list[dict], args) -> str:
    import torch

    lines = [f"openlt scale simulation: {os.cpu_count()} CPU(s), {args.threads} thread(s), torch {torch.__version__}; "
             "time in s (extrapolated where the stage says so), peak RSS above the stage's start in MB", ""]
    for r in results:
        lines.append(f"- {r['size']['name']}: K = {r['size']['k']:,}, N = {r['size']['n_train']:,} "
                     f"(bands many / medium / few: {r['bands']['many']} / {r['bands']['medium']} / {r['bands']['few']} "
                     f"classes), val {r['size']['n_val']:,}, test {r['size']['n_test']:,}, open {r['size']['n_open']:,}")
    lines += ["", table(results), ""]
    for r in results:
        lines += [f"Targets at {r['size']['name']}:"] + [f"- {t}" for t in targets(r)]
    if len(results) > 1:
        rows = results[-1]["rows"]
        slow = [row["stage"] for i, row in enumerate(rows)
                if row["seconds"] >= 0.2 and not _linear(row["seconds"] / max(results[-2]["rows"][i]["seconds"], 1e-9),
                                                         row["work_value"] / results[-2]["rows"][i]["work_value"])]
        lines.append(f"- stages growing faster than their work (x {NOISE} allowed for noise; 0.2 s or more): "
                     + (", ".join(slow) if slow else "none"))
    return "\n".join(lines)


if __name__ == "__main__":
    main()
