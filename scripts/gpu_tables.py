#!/usr/bin/env python3
"""Every run of configs/bench/fmnist_lt.yaml (or the sampler study), side by side on one GPU, in minutes.

`openlt bench` runs its methods one after another; on one H200 a 96-epoch stage 1 of the embedded benchmark takes
about two minutes, and 18 of them side by side (one process each, one CPU thread each) take the same two minutes
(the configs' budget is 384 epochs since session 22: about four times that, ~8 - 9 minutes of stage 1, so the
whole table no longer fits one 15-minute device lease with its start-up; give one seed per call, deadline ~600 s).
This driver does that with the bench itself (so every run is an ordinary bench run in runs/table, reused and
resumed as usual):
  phase A: each stage-1 method x seed in its own `openlt bench` process (a one-method spec);
  phase B: when a seed's stage-1 runs are finished, each group of stage-2 / decoupled / detector methods of that
           seed in its own process (their stage 1 is then read, never written, so they can share it);
  then:    each table spec's `--report-only` (results.md / .csv copied to tables/), logs and the runs' small files
           (no checkpoints, no feature caches) packed into $OUT/tables.tgz and $OUT/runs_small.tgz.
A process that fails is started once more (the bench resumes it); at the deadline the rest get Ctrl-C.

Measured (session 15, one H200, 16 cores): the whole table (6 stage-1 methods, 32 stage-2 / detector methods, 3
seeds): stage 1 in 130 s, stage 2 in about 90 s more, the eight reports in 2 minutes; the sampler study
(GPU_MODE=samplers) in 3.5 minutes in all. The device command (the machine has
torch; carry the Fashion-MNIST .gz files and two wheels in an excluded .gpu/ folder, and splits/fmnist_lt):
  python3 -m pip install --no-deps --no-index .gpu/wheels/*.whl   # confusable-homoglyphs, pytorch-ood
  python3 -m pip install --no-deps --no-build-isolation -e .
  python3 scripts/gpu_tables.py 420 0 1 2                         # DEADLINE_S SEEDS...
Environment: GPU_OV (overrides for every run; default `train.device=cuda train.amp=none`, i.e. float32),
GPU_OUT_DIR (runs/table), GPU_MODE (tables | samplers), GPU_REPORT_S (seconds for the reports after the deadline),
OPENLT_FASHION_MNIST (default: .gpu/)."""
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import yaml

SPEC = Path(__file__).resolve().parents[1] / "src/openlt/configs/bench/fmnist_lt.yaml"
# (stage-1 methods, stage-2 groups {tag: methods}, table specs to report) per mode
MODES = {
    "tables": (
        ["plain", "loss_focal", "loss_class_balanced", "loss_ldam_drw", "loss_balanced_softmax", "loss_logit_adjusted"],
        {"det": ["plain+energy", "plain+max_logit", "plain+openmax", "plain+mahalanobis", "plain+knn", "plain+vim",
                 "plain+react", "plain+odin"],
         "s2a": ["stage2_plain", "stage2_focal", "stage2_range"],
         "s2b": ["stage2_lifted", "stage2_classaware"],
         "oltr": ["oltr_stage2", "oltr_stage2+reach", "oltr_stage2+mahalanobis", "oltr_stage2+knn",
                  "oltr_stage2+odin"],
         "dec": ["decouple_ncm", "decouple_ncm_cl2n", "decouple_crt", "decouple_tau_norm", "decouple_lws",
                 "decouple_logit_adjust", "decouple_crt_best", "fslwf"],
         "abl1": ["oltr_stage2_fc", "ablation_cosine", "ablation_memory"],
         "abl2": ["ablation_selector", "ablation_reachability", "ablation_attention"]},
        ["fmnist_lt", "fmnist_lt_oltr", "fmnist_lt_losses", "fmnist_lt_detectors", "fmnist_lt_decoupling",
         "fmnist_lt_openset", "fmnist_lt_ablation", "fmnist_lt_attention"]),
    "samplers": (
        ["plain", "sampler_class_balanced", "sampler_sqrt", "sampler_progressive"],
        {"crt": ["decouple_crt", "crt_class_balanced", "crt_sqrt", "crt_progressive", "crt_class_balanced_augmented"]},
        ["fmnist_lt_samplers"]),
}


def subset_spec(spec: dict, tag: str, names: list[str]) -> dict:
    """The bench spec of `names` and every method they are initialised from or evaluate (a finished one is reused),
    its method configs as absolute paths (the spec is written outside the package's configs folder)."""
    methods = {m["name"]: m for m in spec["methods"]}
    need: list[str] = []

    def add(name):
        for dep in (methods[name].get("init_from"), methods[name].get("eval_of")):
            if dep:
                add(dep)
        if name not in need:
            need.append(name)
    for name in names:
        add(name)
    absolute = [dict(methods[n], config=str(SPEC.parent / methods[n]["config"])) if "config" in methods[n]
                else methods[n] for n in need]
    return dict(spec, name=f"gpu_{tag}", methods=absolute)


def write_specs(mode: str, folder: Path) -> tuple[dict, dict]:
    """{stage-1 method: spec path} and {group tag: spec path}, written into `folder`."""
    spec = yaml.safe_load(SPEC.read_text())
    stage1, groups, _ = MODES[mode]

    def write(tag, names):
        path = folder / f"_gpu_{tag}.yaml"
        path.write_text(yaml.safe_dump(subset_spec(spec, tag, names), sort_keys=False))
        return path
    return {m: write(m, [m]) for m in stage1}, {g: write(g, names) for g, names in groups.items()}


def main(argv: list[str]) -> int:
    t0 = time.time()
    deadline, seeds = float(argv[0]), [int(s) for s in argv[1:]]
    out = Path(os.environ["OUT"])
    out_dir = os.environ.get("GPU_OUT_DIR", "runs/table")
    overrides = os.environ.get("GPU_OV", "train.device=cuda train.amp=none").split()
    reports_until = deadline + float(os.environ.get("GPU_REPORT_S", "90"))
    mode = os.environ.get("GPU_MODE", "tables")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1",
               OPENLT_FASHION_MNIST=os.environ.get("OPENLT_FASHION_MNIST") or os.path.abspath(".gpu"))
    Path("logs/specs").mkdir(parents=True, exist_ok=True)
    stage1_specs, group_specs = write_specs(mode, Path("logs/specs"))
    procs: dict[str, list] = {}  # key -> [Popen, spec path, seed, tries]

    def launch(key, path, seed, tries=0):
        with open(f"logs/{key}.log", "a") as log:  # (the child keeps its own copy of the file)
            p = subprocess.Popen([sys.executable, "-m", "openlt", "bench", str(path), "--seeds", str(seed), "--quiet",
                                  "--out-dir", out_dir, *overrides], stdout=log, stderr=subprocess.STDOUT, env=env,
                                 start_new_session=True)
        procs[key] = [p, path, seed, tries]

    for m, path in stage1_specs.items():
        for s in seeds:
            launch(f"A-{m}-s{s}", path, s)
    done, failed, b_started = set(), set(), set()
    last_print = 0.0
    while time.time() - t0 < deadline:
        for key, (p, path, seed, tries) in list(procs.items()):
            if key in done or key in failed or p.poll() is None:
                continue
            if p.returncode == 0:
                done.add(key)
            elif tries < 1:
                print(f"{time.time() - t0:5.0f}s {key} exited {p.returncode}: retrying", flush=True)
                time.sleep(3)
                launch(key, path, seed, tries + 1)
            else:
                failed.add(key)
                print(f"{time.time() - t0:5.0f}s {key} FAILED ({p.returncode})", flush=True)
        for s in seeds:
            if s not in b_started and all(f"A-{m}-s{s}" in done for m in stage1_specs):
                b_started.add(s)
                for g, path in group_specs.items():
                    launch(f"B-{g}-s{s}", path, s)
                print(f"{time.time() - t0:5.0f}s seed {s}: stage 1 done, stage-2 groups started", flush=True)
        running = [k for k in procs if k not in done and k not in failed]
        if not running and len(b_started) == len(seeds):
            break
        if time.time() - last_print > 30:
            last_print = time.time()
            try:
                lines = [ln for ln in open(f"logs/A-plain-s{seeds[0]}.log") if ln.startswith("epoch")]
            except OSError:
                lines = []
            tail = lines[-1][:60].strip() if lines else ""
            print(f"{time.time() - t0:5.0f}s running {len(running)} done {len(done)} failed {len(failed)} | {tail}",
                  flush=True)
        time.sleep(2)
    for key, (p, *_rest) in procs.items():
        if p.poll() is None:
            print(f"deadline: stopping {key}", flush=True)
            os.killpg(p.pid, signal.SIGINT)  # the bench saves what it has and says how to resume
    time.sleep(8)
    print(f"{time.time() - t0:5.0f}s training phase over: done {len(done)}, failed {sorted(failed)}", flush=True)

    tables = Path("tables")
    tables.mkdir(exist_ok=True)
    for name in MODES[mode][2]:
        if time.time() - t0 > reports_until:
            print(f"no time left for report {name}", flush=True)
            continue
        t = time.time()
        r = subprocess.run([sys.executable, "-m", "openlt", "bench", str(SPEC.parent / f"{name}.yaml"),
                            "--report-only", "--quiet", "--out-dir", out_dir, *overrides], env=env,
                           capture_output=True, text=True, timeout=120)
        (tables / f"{name}.log").write_text(r.stdout + r.stderr)
        for ext in ("md", "csv"):
            src = Path(out_dir) / f"results.{ext}"
            if src.exists():
                os.replace(src, tables / f"{name}.{ext}")
        print(f"report {name}: rc {r.returncode} ({time.time() - t:.0f}s)", flush=True)
    for extra in ("bands.png", "openset.png", "report.html"):
        if (Path(out_dir) / extra).exists():
            os.replace(Path(out_dir) / extra, tables / extra)
    with tarfile.open(out / "tables.tgz", "w:gz") as tar:
        tar.add("tables")
        tar.add("logs")
    keep = (".json", ".jsonl", ".yaml", ".md", ".csv", ".log")
    with tarfile.open(out / "runs_small.tgz", "w:gz") as tar:
        for root, dirs, files in os.walk(out_dir):
            dirs[:] = [d for d in dirs if d not in ("checkpoints", "features")]
            for fn in files:
                if fn.endswith(keep) and not fn.startswith("report"):
                    tar.add(os.path.join(root, fn))
    print(f"{time.time() - t0:5.0f}s packed", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
