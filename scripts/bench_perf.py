#!/usr/bin/env python
"""Training performance on the embedded benchmark's model (ResNet-10, 28 px, batch 128), measured in one run.

Prints four ratios with their targets, each the median of --steps timed steps after warm-up, every
configuration in a fresh process (so that its peak memory is its own):

* OLTR step / plain step        one training step (forward, loss, backward, SGD) of the OLTR stage-2 model
                                (modulated attention, meta-embedding head, CE + centroid loss; the model of
                                configs/fmnist_lt/oltr_stage2.yaml) over the plain one (plain.yaml), timed
                                alternately in one process so that a shared machine's load hits both alike.
                                Target <= 1.10.
* loader / model                images per second of the embedded-benchmark train loader alone (sampler, decode,
                                augmentation, batching; data.workers of the config and --workers) over images per
                                second of the plain training step alone. Target >= 1: the loader is never the
                                bottleneck.
* DDP 2 processes / 1 process   images per second of DistributedDataParallel over 2 processes (gloo on the CPU,
                                NCCL on GPUs) against 1 process with the same global batch and the same CPU
                                threads in all (1 thread per process against 2 threads in one), in --rounds
                                rounds of alternating order. Target >= 1.6.
* AMP / fp32                    the plain and OLTR steps under bf16 and fp16 autocast against float32, with the
                                memory ratio: on a GPU always, on the CPU with --cpu-amp (PyTorch runs both there,
                                fp16 with a CPU grad scaler; a code-path check more than a speed-up).

and the peak memory of every configuration (CPU: the process's peak resident set size, of which ~0.3-0.5 GB is
the Python + torch runtime itself; GPU: torch.cuda.max_memory_allocated). Synthetic batches for the model steps.

* memory (--only memory, or --memory)   the whole-process peak memory of `openlt train` (1 epoch, --no-eval) and
                                `openlt eval` of configs/imagenet_lt/plain_resnet10.yaml (ResNet-10, batch 32,
                                its 8 loader workers) on a generated 8-class 224 px JPEG split in ImageNet-LT-style
                                split files, each in its own process: the largest process's peak RSS (what
                                `/usr/bin/time -v` prints) and the peak PSS of the process and its loader workers
                                together (docs/scale.md, "Memory", compares them with the public OLTR code's).

    .venv/bin/python scripts/bench_perf.py [--steps 10] [--threads N] [--workers 2] [--rounds 2] [--device auto] [--cpu-amp]
        [--only oltr,loader,ddp,amp,memory,centroids] [--memory]

* centroids (--only centroids)          OLTR's stage-2 start: the class means of configs/imagenet_lt/
                                oltr_stage2_resnet10.yaml's features (its centroids) from a 1-epoch stage-1 run's
                                feature cache against a pass through the network, on the same 224 px split.
                                Target >= 50x.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import shutil
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

CONFIGS = Path(__file__).parents[1] / "configs" / "fmnist_lt"
MODELS = {"plain": CONFIGS / "plain.yaml", "oltr": CONFIGS / "oltr_stage2.yaml"}


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _setup(threads: int):
    import torch

    torch.set_num_threads(threads)
    return torch


def _training_step(kind: str, device_name: str, amp: str, batch: int, rank: int = 0, world: int = 1):
    """A closure running one training step of the `kind` model on a fixed synthetic batch: the library's own
    (engine/train.py's model-with-loss under autocast, then openlt.optim.optimizer_step with the run's schedule)."""
    import torch

    from openlt.config import build_config
    from openlt.engine.precision import autocast, grad_scaler
    from openlt.engine.runtime import batch_to, to_device
    from openlt.engine.train import wrap_for_training
    from openlt.losses import build_loss
    from openlt.models.model import build_model
    from openlt.optim import build_optimizer, build_scheduler, lr_schedule, optimizer_step

    cfg = build_config(MODELS[kind], [f"train.device={device_name}", f"train.amp={amp}"])
    device = torch.device(device_name)
    torch.manual_seed(0)
    classes, counts = 8, [1280, 640, 320, 160, 80, 40, 20, 5]  # the embedded benchmark's shape
    model = to_device(build_model(cfg, classes, 1, 28), device, cfg.train.channels_last)
    # OLTR stage 2 starts from class means (random ones here); other heads have nothing to initialise
    model.init_head_from_stage1({}, lambda: torch.randn(classes, model.backbone.out_dim, device=device))
    criterion = build_loss(cfg.train.loss, counts, model.backbone.out_dim, **cfg.train.loss_args).to(device)
    optimizer = build_optimizer(model.param_groups(), cfg.train)
    scheduler = build_scheduler(optimizer, lr_schedule(cfg.train, steps_per_epoch=1000))
    net = wrap_for_training(model, criterion, device)
    net.train()
    scaler = grad_scaler(amp, device)
    g = torch.Generator().manual_seed(rank)
    images = batch_to(torch.randn(batch, 1, 28, 28, generator=g), device, cfg.train.channels_last)
    targets = torch.randint(0, classes, (batch,), generator=g).to(device)

    def step() -> None:
        with autocast(amp, device):
            loss, _ = net(images, targets)
        optimizer_step(loss, optimizer, scheduler, scaler)
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    return step


def median_time(fn, steps: int, warmup: int = 3) -> float:
    """Median wall time of `steps` calls of `fn` after `warmup` untimed ones (allocator, thread pools, first
    calls). Also used by scripts/bench_decouple_speed.py."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure_step(kind: str, device: str, amp: str, batch: int, steps: int, threads: int) -> dict:
    torch = _setup(threads)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    base = _peak_rss_mb()
    seconds = median_time(_training_step(kind, device, amp, batch), steps)
    out = {"step_s": seconds, "images_per_s": batch / seconds, "rss_base_mb": base, "rss_peak_mb": _peak_rss_mb()}
    if device == "cuda":
        out["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def measure_pair(device: str, amp: str, batch: int, steps: int, threads: int) -> dict:
    """Plain and OLTR steps timed alternately in one process, so that a shared machine's load changes hit both
    alike; the ratio printed comes from here."""
    _setup(threads)
    plain = _training_step("plain", device, amp, batch)
    oltr = _training_step("oltr", device, amp, batch)
    for fn in (plain, oltr) * 3:
        fn()
    times: dict[str, list[float]] = {"plain": [], "oltr": []}
    for _ in range(steps):
        for kind, fn in (("plain", plain), ("oltr", oltr)):
            start = time.perf_counter()
            fn()
            times[kind].append(time.perf_counter() - start)
    return {kind: statistics.median(values) for kind, values in times.items()}


def measure_loader(workers: int, batch: int, steps: int, threads: int, splits: str | None) -> dict:
    """Images per second of the embedded-benchmark train loader alone (instance sampler, train transform)."""
    torch = _setup(threads)
    from openlt.config import build_config
    from openlt.data.build import prepare_data
    from openlt.data.samplers import build_sampler
    from openlt.engine.runtime import make_loader

    base = _peak_rss_mb()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = build_config(MODELS["plain"], [f"data.split_dir={splits}"] if splits else [])
        data = prepare_data(cfg, default_split_dir=Path(tmp) / "splits")
        train_set = data.dataset("train", train=True)
        sampler = build_sampler("instance", train_set.targets, epochs=1, seed=0)
        loader = make_loader(train_set, batch, workers, torch.device("cpu"), sampler=sampler)
        n = 0
        it = iter(loader)
        next(it)  # warm-up: workers started, first batch decoded
        start = time.perf_counter()
        for images, _ in it:
            n += len(images)
            if n >= steps * batch * 3:
                break
        seconds = time.perf_counter() - start
        size = len(train_set)
    return {"images_per_s": n / seconds, "train_images": size, "rss_base_mb": base, "rss_peak_mb": _peak_rss_mb()}


def _ddp_rank(rank: int, world: int, port: int, device: str, batch: int, steps: int, threads: int, conn) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch = _setup(threads)
    import torch.distributed as dist

    from openlt.engine import distributed

    dev = distributed.setup(torch.device(device))
    base = _peak_rss_mb()
    step = _training_step("plain", str(dev), "none", batch // world, rank, world)
    seconds = median_time(step, steps)
    worst = torch.tensor([seconds], device=dev if dev.type == "cuda" else "cpu")
    dist.all_reduce(worst, op=dist.ReduceOp.MAX)  # a step ends when the slowest rank's does
    result = {"step_s": float(worst), "images_per_s": batch / float(worst), "rss_base_mb": base,
              "rss_peak_mb": _peak_rss_mb()}
    if dev.type == "cuda":
        result["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    conn.send(result)
    dist.destroy_process_group()


def measure_ddp(world: int, device: str, batch: int, steps: int, threads: int) -> dict:
    ctx = mp.get_context("spawn")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    pipes = [ctx.Pipe(duplex=False) for _ in range(world)]
    procs = [ctx.Process(target=_ddp_rank, args=(r, world, port, device, batch, steps, threads, pipes[r][1]))
             for r in range(world)]
    for p in procs:
        p.start()
    results = [recv.recv() for recv, _ in pipes]
    for p in procs:
        p.join()
    out = dict(results[0])
    out["rss_peak_mb"] = max(r["rss_peak_mb"] for r in results)  # per process
    return out


def _child(fn, args, conn) -> None:
    try:
        conn.send(("ok", fn(*args)))
    except BaseException as exc:  # report, don't hang the parent
        conn.send(("error", f"{type(exc).__name__}: {exc}"))


def in_fresh_process(fn, *args) -> dict:
    """Run `fn(*args)` in a new interpreter (its own peak memory, its own thread pool) and return its dict."""
    ctx = mp.get_context("spawn")
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(fn, args, send))
    proc.start()
    status, value = recv.recv()
    proc.join()
    if status != "ok":
        raise RuntimeError(value)
    return value


def _mem(r: dict) -> str:
    text = f"peak RSS {r['rss_peak_mb']:7.0f} MB (runtime {r['rss_base_mb']:.0f} MB)"
    return text + (f", CUDA peak {r['cuda_peak_mb']:.0f} MB" if "cuda_peak_mb" in r else "")


def _model_memory(r: dict) -> float:
    """MB a configuration's model step holds: CUDA's peak allocation, or the peak RSS above the runtime's."""
    return r["cuda_peak_mb"] if "cuda_peak_mb" in r else max(1.0, r["rss_peak_mb"] - r["rss_base_mb"])


def _verdict(ratio: float, target: float, higher: bool) -> str:
    ok = ratio >= target if higher else ratio <= target
    return f"{ratio:5.2f}  (target {'>=' if higher else '<='} {target:g}: {'met' if ok else 'NOT met'})"


def oltr_over_plain(device: str, batch: int, steps: int, threads: int, rows: dict) -> None:
    for n in sorted({threads, 1}, reverse=True) if device == "cpu" else [threads]:
        # on the CPU also with 1 thread: on a small shared machine, a thread pool waiting for a busy core makes
        # every small element-wise op slow, and the OLTR head and attention are many small ops
        pair = in_fresh_process(measure_pair, device, "none", batch, steps, n)
        print(f"  alternating in one process, {n} thread(s): plain {1000 * pair['plain']:.1f} ms, "
              f"OLTR {1000 * pair['oltr']:.1f} ms")
        print(f"OLTR step / plain step ({n} thread(s))   {_verdict(pair['oltr'] / pair['plain'], 1.10, False)}",
              flush=True)


def loader_over_model(args, batch: int, steps: int, threads: int, rows: dict) -> None:
    loaders = {}
    for workers in sorted({0, args.workers}):
        loaders[workers] = in_fresh_process(measure_loader, workers, batch, steps, threads, args.splits)
        r = loaders[workers]
        print(f"  loader, {workers} workers   {r['images_per_s']:8.0f} img/s  ({r['train_images']} training images)  "
              f"{_mem(r)}", flush=True)
    model_rate = rows["plain"]["images_per_s"]
    for workers, r in loaders.items():
        print(f"loader ({workers} workers) / model step   {_verdict(r['images_per_s'] / model_rate, 1.0, True)}")


def ddp_over_single(args, device: str, gpus: int, batch: int, steps: int, threads: int, rows: dict) -> None:
    if device == "cpu":
        per_process = max(1, threads // 2)
        runs: dict[str, list[dict]] = {"single": [], "single1": [], "ddp": []}
        for rnd in range(args.rounds):  # A B C, then C B A: a load that drifts during the run hits all alike
            order = ["single", "single1", "ddp"] if rnd % 2 == 0 else ["ddp", "single1", "single"]
            for name in order:
                runs[name].append(in_fresh_process(measure_ddp, 2, "cpu", batch, steps, per_process) if name == "ddp"
                                  else in_fresh_process(measure_step, "plain", device, "none", batch, steps,
                                                        2 * per_process if name == "single" else per_process))
        rate = {name: statistics.mean(r["images_per_s"] for r in rs) for name, rs in runs.items()}
        single, single1, ddp = runs["single"][-1], runs["single1"][-1], runs["ddp"][-1]
        print(f"  1 process,  {2 * per_process} threads     {rate['single']:8.0f} img/s  {_mem(single)}")
        print(f"  1 process,  {per_process} thread(s)   {rate['single1']:8.0f} img/s  {_mem(single1)}")
        print(f"  2 processes x {per_process} thread(s) {rate['ddp']:8.0f} img/s  {_mem(ddp)} per process "
              f"(gloo, batch {batch // 2} each)   [means of {args.rounds} rounds]")
        print(f"DDP 2 processes / 1 process (same threads)   {_verdict(rate['ddp'] / rate['single'], 1.6, True)}")
        print(f"DDP 2 processes / 1 process ({per_process} thread each)   {rate['ddp'] / rate['single1']:5.2f}  "
              f"(scaling per process: 2.0 is ideal)")
    elif gpus >= 2:
        single = rows["plain"]
        ddp = in_fresh_process(measure_ddp, 2, "cuda", batch, steps, threads)
        print(f"  2 GPUs (NCCL)       {ddp['images_per_s']:8.0f} img/s  {_mem(ddp)} per process")
        print(f"DDP 2 GPUs / 1 GPU                {_verdict(ddp['images_per_s'] / single['images_per_s'], 1.6, True)}")
    else:
        print("DDP 2 / 1: skipped (one GPU; run with --device cpu for the CPU measurement)")


def amp_over_fp32(args, device: str, batch: int, steps: int, threads: int, rows: dict) -> None:
    import torch

    modes = ([m for m in ("bf16", "fp16") if m != "bf16" or torch.cuda.is_bf16_supported()] if device == "cuda"
             else ["bf16", "fp16"] if args.cpu_amp else [])
    if not modes:
        print("AMP / fp32: skipped (no CUDA device; --cpu-amp measures bf16 and fp16 on the CPU, where they check "
              "correctness rather than speed things up)")
    for kind in ("plain", "oltr") if modes else ():
        for amp in modes:
            r = in_fresh_process(measure_step, kind, device, amp, batch, steps, threads)
            print(f"  {kind:5s} step, {amp}    {1000 * r['step_s']:8.1f} ms  {r['images_per_s']:8.0f} img/s  {_mem(r)}")
            print(f"{kind} {amp} / fp32 step time       {r['step_s'] / rows[kind]['step_s']:5.2f}  "
                  f"(memory {_model_memory(r) / _model_memory(rows[kind]):.2f} x)", flush=True)


MEMORY_CONFIG = CONFIGS.parent / "imagenet_lt" / "plain_resnet10.yaml"
MEMORY_SPLIT = {"train": [160, 100, 64, 40, 25, 16, 10, 6], "val": 10, "test": 20, "open": (2, 40)}


def scaled_split(train_factor: int = 1, eval_factor: int = 1) -> dict:
    """MEMORY_SPLIT with every training class count times train_factor and the test and open images (not the
    validation images, which the training process evaluates) times eval_factor: the larger splits that the whole-
    process comparison with the public OLTR code runs on (scripts/compare_public_speed.sh)."""
    if train_factor < 1 or eval_factor < 1:
        raise ValueError(f"factors must be >= 1, got train {train_factor}, eval {eval_factor}")
    classes, per_class = MEMORY_SPLIT["open"]
    return {"train": [n * train_factor for n in MEMORY_SPLIT["train"]], "val": MEMORY_SPLIT["val"],
            "test": MEMORY_SPLIT["test"] * eval_factor, "open": (classes, per_class * eval_factor)}


def write_224_split(root: Path, seed: int = 0, split: dict | None = None) -> tuple[Path, Path]:
    """An 8-class long-tailed split of 224 px JPEG textures (default MEMORY_SPLIT: 421 train, 10 val and 20 test
    images per class, 2 open classes of 40) written as ImageNet-LT-style split files; returns (image root, split
    folder)."""
    import numpy as np
    from PIL import Image

    split = MEMORY_SPLIT if split is None else split
    rng = np.random.default_rng(seed)
    images, splits = root / "images", root / "splits"
    lines: dict[str, list[str]] = {"train": [], "val": [], "test": [], "open": []}

    def write(part: str, cls: int, i: int, label: int) -> None:
        coarse = np.kron(rng.normal(0, 40, (28, 28, 3)), np.ones((8, 8, 1)))
        pixels = coarse + rng.integers(0, 255, 3) + rng.normal(0, 20, (224, 224, 3))
        rel = f"{part}/c{cls}/{i:04d}.jpg"
        (images / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(images / rel, quality=90)
        lines[part].append(f"{rel} {label}")

    for cls, n in enumerate(split["train"]):
        for part, count in (("train", n), ("val", split["val"]), ("test", split["test"])):
            for i in range(count):
                write(part, cls, i, cls)
    classes, per_class = split["open"]
    for cls in range(len(split["train"]), len(split["train"]) + classes):
        for i in range(per_class):
            write("open", cls, i, -1)
    splits.mkdir(parents=True)
    for part, rows in lines.items():
        (splits / f"ImageNet_LT_{part}.txt").write_text("\n".join(rows) + "\n")
    return images, splits


def _tree_pss_kb(pid: int) -> tuple[int, int]:
    """(sum of the PSS of `pid` and its descendants in KiB, number of processes), from /proc."""
    todo, pids = [pid], []
    while todo:
        p = todo.pop()
        pids.append(p)
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                todo += [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                pass
    pss = 0
    for p in pids:
        try:
            fields = dict(line.split(":", 1) for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines()[1:])
        except (OSError, ValueError):  # ended meanwhile
            continue
        pss += int(fields.get("Pss", "0 kB").split()[0])
    return pss, len(pids)


def peak_memory(command: list[str]) -> dict:
    """Run `command` (its output to /dev/null); its peak memory: ``largest_mb``, the largest single process's peak
    RSS (ru_maxrss of wait4: what `/usr/bin/time -v` prints as "Maximum resident set size"), and, sampled every
    50 ms from /proc, ``tree_pss_mb`` (the process and its loader workers together, shared pages counted once)
    and ``processes``."""
    import subprocess

    with tempfile.TemporaryFile("w+") as errors:
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=errors)
        peak = {"tree_pss_mb": 0.0, "processes": 1}
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)  # wait4: this child's own rusage
            if pid:
                break
            pss, n = _tree_pss_kb(proc.pid)
            peak["tree_pss_mb"], peak["processes"] = max(peak["tree_pss_mb"], pss / 1024), max(peak["processes"], n)
            time.sleep(0.05)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            errors.seek(0)
            raise RuntimeError(f"{' '.join(command[2:4])} failed: {errors.read()[-2000:]}")
    peak["largest_mb"] = usage.ru_maxrss / 1024  # KiB on Linux
    return peak


def memory_section(args) -> None:
    """Peak memory of `openlt train` (1 epoch, --no-eval) and `openlt eval` of configs/imagenet_lt/plain_resnet10.yaml
    (ResNet-10, batch 32, 224 px, its data.workers) on a generated 224 px split, each in its own process."""
    env_note = f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}"
    with tempfile.TemporaryDirectory() as tmp:
        images, splits = write_224_split(Path(tmp) / "data")
        openlt = [sys.executable, "-m", "openlt"]
        train = peak_memory(openlt + ["train", str(MEMORY_CONFIG), f"data.root={images}", f"data.split_dir={splits}",
                                      "train.epochs=1", "train.batch_size=32", "train.device=cpu",
                                      f"out_dir={tmp}/runs", "--no-eval", "--quiet"])
        run = next(Path(tmp, "runs").iterdir())
        evaluate = peak_memory(openlt + ["eval", str(run), "--device", "cpu", "--quiet"])
    print(f"  peak memory, {MEMORY_CONFIG.parent.name}/{MEMORY_CONFIG.name} on a generated 8-class 224 px split "
          f"(421 train / 80 val / 160 test / 80 open JPEGs), batch 32, CPU, {env_note}:")
    for name, r in (("train, 1 epoch", train), ("eval", evaluate)):
        print(f"  {name:15s} largest process {r['largest_mb']:6.0f} MB (= /usr/bin/time -v)   whole tree "
              f"{r['tree_pss_mb']:6.0f} MB PSS ({r['processes']} processes with the loader workers)", flush=True)


OLTR_224_CONFIG = CONFIGS.parent / "imagenet_lt" / "oltr_stage2_resnet10.yaml"


def centroid_times(run: Path, overrides: list[str], rounds: int = 3) -> dict:
    """OLTR stage 2's start from `run` (a stage-1 run; OLTR_224_CONFIG with `overrides`, which name its data): seconds
    of its class means (the centroids) through the network (`init_from.class_means`, the medians of `rounds`)
    and from the run's feature cache (`init_from.cached_class_means`: its first call extracts the training
    features into the cache, the next ones read it), with the relative difference of the two (Frobenius norms:
    the cache holds features in the precision the run trained in, the network pass computes in float32)."""
    import torch

    from openlt.config import build_config
    from openlt.data.build import prepare_data
    from openlt.engine import init_from
    from openlt.engine.run import open_run
    from openlt.models.model import build_model

    cfg = build_config(OLTR_224_CONFIG, [*overrides, "train.device=cpu", f"train.init_from={run}"])
    data, device, source = prepare_data(cfg), torch.device("cpu"), open_run(run)
    model = build_model(cfg, data.num_classes, data.in_chans, data.image_size)
    weights = init_from.model_weights(init_from.read_checkpoint(source.checkpoint("best"))[0])
    copied = init_from.load_stage1_weights(model, weights, str(run))
    from_cache, transform = init_from.head_input_from_stage1(model, weights, copied, source, data)
    assert from_cache, "the stage-2 model's features should follow from the stage-1 run's"

    def timed(fn):
        start = time.perf_counter()
        out = fn()
        return time.perf_counter() - start, out

    network = [timed(lambda: init_from.class_means(model, data, device, cfg.eval.batch_size, cfg.data.workers,
                                                   cfg.train.channels_last)) for _ in range(rounds)]
    first = timed(lambda: init_from.cached_class_means(source, data, device, transform, quiet=True))
    cached = [timed(lambda: init_from.cached_class_means(source, data, device, transform, quiet=True))
              for _ in range(rounds)]
    return {"network_s": statistics.median(t for t, _ in network), "first_s": first[0],
            "cache_s": statistics.median(t for t, _ in cached), "images": len(data.dataset("train")),
            "relative_diff": float((cached[0][1] - network[0][1]).norm() / network[0][1].norm())}


def centroids_section(args) -> None:
    """OLTR's stage-2 start (its centroids) from a stage-1 run's feature cache against a pass through the network,
    on the generated 224 px split (target: >= 50x faster)."""
    import subprocess

    with tempfile.TemporaryDirectory() as tmp:
        images, splits = write_224_split(Path(tmp) / "data")
        subprocess.run([sys.executable, "-m", "openlt", "train", str(MEMORY_CONFIG), f"data.root={images}",
                        f"data.split_dir={splits}", "train.epochs=1", "train.batch_size=32", "train.device=cpu",
                        f"out_dir={tmp}/runs", "--no-eval", "--quiet"], check=True, stdout=subprocess.DEVNULL)
        r = centroid_times(next(Path(tmp, "runs").iterdir()), [f"data.root={images}", f"data.split_dir={splits}"])
    ratio = r["network_s"] / r["cache_s"]
    print(f"  OLTR stage-2 centroids, {OLTR_224_CONFIG.parent.name}/{OLTR_224_CONFIG.name} from a 1-epoch stage 1, "
          f"{r['images']} training images at 224 px, CPU:")
    print(f"  through the network {r['network_s']:7.2f} s ({r['images'] / r['network_s']:.0f} img/s)   from the "
          f"feature cache {r['cache_s']:7.3f} s (its first extraction {r['first_s']:.2f} s, once per stage-1 run)   "
          f"ratio {_verdict(ratio, 50, True)}   relative difference {r['relative_diff']:.1e}",
          flush=True)


SECTIONS = ("oltr", "loader", "ddp", "amp", "memory", "centroids")
JPEG_BYTES = 30_000  # one 224 px JPEG of write_224_split, about (741 images: 21.4 MB on the development machine)


def split_images(split: dict) -> int:
    """The images write_224_split writes for `split` (MEMORY_SPLIT's form)."""
    classes, per_class = split["open"]
    return sum(split["train"]) + len(split["train"]) * (split["val"] + split["test"]) + classes * per_class


def write_split_option(parser: argparse.ArgumentParser, root: Path, train_factor: int | None,
                       eval_factor: int | None) -> None:
    """--write-split DIR: the scaled split written into the new folder DIR, or one line (parser.error, exit 2) for
    an existing DIR, factors below 1, a split the disk has no room for, or a DIR that cannot be written (nothing
    of it is left: the next try would be refused as existing)."""
    if root.exists():
        parser.error(f"--write-split: {root} exists; give a new folder")
    factors = (1 if train_factor is None else train_factor, 1 if eval_factor is None else eval_factor)
    try:
        split = scaled_split(*factors)
    except ValueError as exc:
        parser.error(f"--write-split: {exc}")
    images, existing = split_images(split), next(p for p in (root.absolute(), *root.absolute().parents) if p.exists())
    disk = shutil.disk_usage(existing)  # (a pseudo file system, /proc: size 0, and the write below fails)
    if disk.total > 0 and images * JPEG_BYTES > (free := disk.free):
        parser.error(f"--write-split: {images:,} images (--train-factor {factors[0]}, --eval-factor {factors[1]}) "
                     f"need about {images * JPEG_BYTES / 1e9:,.1f} GB; {existing} has {free / 1e9:,.1f} GB free: "
                     f"lower the factors")
    try:
        _, splits = write_224_split(root, split=split)
    except OSError as exc:
        shutil.rmtree(root, ignore_errors=True)  # a new folder (checked above): this command's alone
        parser.error(f"--write-split: cannot write {root}: {exc.strerror or exc} ({exc.filename or root})")
    print(root, {p.name: sum(1 for _ in p.open()) for p in sorted(splits.iterdir())})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=10, help="timed steps per configuration (median reported)")
    parser.add_argument("--batch-size", type=int, default=128, help="global batch")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="CPU threads of a single process")
    parser.add_argument("--workers", type=int, default=2, help="loader worker processes to measure besides 0")
    parser.add_argument("--splits", help="a split folder of the embedded benchmark (default: built in a temp dir)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--rounds", type=int, default=2, help="CPU DDP comparison: rounds of (1 process, 2 processes)")
    parser.add_argument("--cpu-amp", action="store_true",
                        help="on the CPU, also time bf16 and fp16 autocast steps against float32 (on a GPU: always)")
    parser.add_argument("--only", default=",".join(SECTIONS),
                        help=f"comma-separated ratios to measure, of {', '.join(SECTIONS)} (default: all)")
    parser.add_argument("--memory", action="store_true", help="the same as --only memory")
    parser.add_argument("--write-split", metavar="DIR", type=Path,
                        help="only write the 224 px JPEG split (images/, splits/) into DIR, a new folder, and exit")
    parser.add_argument("--train-factor", type=int, help="--write-split: training images x N (default 1)")
    parser.add_argument("--eval-factor", type=int, help="--write-split: test and open images x N (default 1)")
    args = parser.parse_args()
    if args.write_split is not None:
        write_split_option(parser, args.write_split, args.train_factor, args.eval_factor)
        return 0
    if given := [f"--{name}" for name in ("train-factor", "eval-factor")
                 if getattr(args, name.replace("-", "_")) is not None]:
        parser.error(f"{' and '.join(given)} only applies with --write-split DIR (it sizes the split written there)")
    only = ["memory"] if args.memory else [name.strip() for name in args.only.split(",") if name.strip()]
    if unknown := sorted(set(only) - set(SECTIONS)):
        parser.error(f"--only: unknown {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")

    import torch

    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    batch, steps, threads = args.batch_size, args.steps, args.threads
    gpus = torch.cuda.device_count() if device == "cuda" else 0
    steps_needed = bool(set(only) - {"memory", "centroids"})
    print(f"openlt {'training performance' if steps_needed else ' and '.join(only)}: ResNet-10, "
          f"{f'28 px, global batch {batch}, median of {steps} steps, ' if steps_needed else ''}"
          f"device {device}" + (f" ({torch.cuda.get_device_name(0)}, {gpus} GPU(s))" if device == "cuda" else
                                f" ({os.cpu_count()} cores" +
                                (f", {threads} threads for one process)" if steps_needed else ")")) +
          f", torch {torch.__version__}", flush=True)

    rows = {}  # the float32 steps every ratio but OLTR / plain is measured against
    for kind in ("plain", "oltr") if steps_needed else ():
        rows[kind] = in_fresh_process(measure_step, kind, device, "none", batch, steps, threads)
        r = rows[kind]
        print(f"  {kind:5s} step          {1000 * r['step_s']:8.1f} ms  {r['images_per_s']:8.0f} img/s  {_mem(r)}",
              flush=True)
    if "oltr" in only:
        oltr_over_plain(device, batch, steps, threads, rows)
    if "loader" in only:
        loader_over_model(args, batch, steps, threads, rows)
    if "ddp" in only:
        ddp_over_single(args, device, gpus, batch, steps, threads, rows)
    if "amp" in only:
        amp_over_fp32(args, device, batch, steps, threads, rows)
    if "memory" in only:
        memory_section(args)
    if "centroids" in only:
        centroids_section(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
