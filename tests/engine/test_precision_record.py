"""The precision a run trained in (train.amp resolved) is recorded in its checkpoints: `auto` is bf16 on a CPU with
bfloat16 units now, but a run keeps its own precision on --resume, eval, predict and feature extraction, and a run
from before the record (auto = float32 on every CPU then) keeps float32 there, also in an existing bench folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from openlt.config import build_config
from openlt.engine import evaluate as evaluation
from openlt.engine import precision
from openlt.engine import train as training
from openlt.engine.bench import load_bench, run_bench
from openlt.engine.checkpoint import checkpoint_state, read_checkpoint, save_checkpoint
from openlt.engine.evaluate import evaluate_run
from openlt.engine.features import load_features
from openlt.engine.predict import Predictor
from openlt.engine.run import Run, open_run
from openlt.errors import ConfigError, RunDirError

REPORT_FIGURES = "unrasterized"  # tests/conftest.py: report.html figures built, not rendered (none is looked at)

TINY = ["data.dataset=image-folder", "data.image_size=16", "model.backbone=resnet20", "train.epochs=2",
        "train.batch_size=32", "train.lr=0.05", "eval.batch_size=64", "eval.many_above=30", "eval.few_below=15",
        "data.split.n_max=40", "data.split.n_min=8", "data.split.open_classes=[eel]", "data.split.val_per_class=4",
        "data.split.test_per_class=6", "data.split.order=label", "train.device=cpu"]


def cpu_bf16(monkeypatch, has: bool) -> None:
    """Pretend this CPU has (or lacks) bfloat16 units (the real check asks torch once per process)."""
    monkeypatch.setattr(precision, "_cpu_has_bf16", lambda: has)


def record_amps(monkeypatch) -> dict[str, list[str]]:
    """The precision every training step (train.autocast), validation pass (train.collect_outputs) and evaluation
    pass (evaluate.collect_outputs) ran in, as resolved for the CPU."""
    seen: dict[str, list[str]] = {"train": [], "val": [], "eval": []}
    real_autocast, real_collect = training.autocast, evaluation.collect_outputs

    def autocast(amp, device):
        seen["train"].append(precision.resolve_amp(amp, device))
        return real_autocast(amp, device)

    def collecting(into: str):
        def collect_outputs(model, loader, device, split, quiet, channels_last, amp, *args, **kwargs):
            seen[into].append(precision.resolve_amp(amp, device))
            return real_collect(model, loader, device, split, quiet, channels_last, amp, *args, **kwargs)
        return collect_outputs

    monkeypatch.setattr(training, "autocast", autocast)
    monkeypatch.setattr(training, "collect_outputs", collecting("val"))
    monkeypatch.setattr(evaluation, "collect_outputs", collecting("eval"))
    return seen


def forget_amp(path: Path) -> None:
    """Rewrite a checkpoint as openlt wrote it before it recorded the precision: no state.amp."""
    tensors, meta = read_checkpoint(path)
    meta["state"].pop("amp", None)
    save_file(tensors, str(path), metadata={"openlt": json.dumps(meta)})


def train_one_of_two(cfg, name: str, lines: list[str]) -> Run:
    """Train epoch 1 of 2 and stop (as a kill after the first checkpoint would)."""
    def log(line: str) -> None:
        lines.append(line)
        if line.startswith("epoch   1/2"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        training.train(cfg, name=name, quiet=True, log=log)
    return open_run(next(Path(cfg.out_dir).glob(f"{name}-*")))


def test_the_cpu_capability_check_is_this_cpus():
    flags = next((line.split() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("flags")), None) if Path("/proc/cpuinfo").is_file() else None
    if flags is None:
        pytest.skip("no /proc/cpuinfo")
    has = "avx512_bf16" in flags or "amx_tile" in flags
    assert precision._cpu_has_bf16.__wrapped__() is has
    assert precision.native_bf16(torch.device("cpu")) is has and not precision.native_bf16(torch.device("mps"))


def test_a_run_trained_where_the_cpu_has_bf16_records_bf16_and_keeps_it(image_folder, tmp_path, monkeypatch):
    cpu_bf16(monkeypatch, True)
    seen = record_amps(monkeypatch)
    cfg = build_config(None, [f"data.root={image_folder}", f"out_dir={tmp_path / 'runs'}", *TINY])
    lines: list[str] = []
    run = train_one_of_two(cfg, "bf", lines)
    assert any(line.endswith(", amp bf16") or ", amp bf16;" in line for line in lines), lines  # the banner
    assert set(seen["train"]) == {"bf16"} and set(seen["val"]) == {"bf16"}  # steps and validation
    assert checkpoint_state(run.checkpoint("last"))["amp"] == checkpoint_state(run.checkpoint("best"))["amp"] == "bf16"
    assert "amp: auto" in run.config_file.read_text()  # config.yaml keeps what the user wrote

    cpu_bf16(monkeypatch, False)  # resumed where auto would mean float32: it continues in bf16
    seen["train"].clear()
    training.train(run.config(), run=run, resume=True, quiet=True, log=lines.append)
    assert set(seen["train"]) == {"bf16"} and checkpoint_state(run.checkpoint("last"))["amp"] == "bf16"
    assert checkpoint_state(run.checkpoint("last"))["epoch"] == 1

    cpu_bf16(monkeypatch, True)
    seen["eval"].clear()
    evaluate_run(run, quiet=True)
    assert set(seen["eval"]) == {"bf16"}
    assert Predictor.load(run, threshold=0.5, device="cpu").amp == "bf16"
    load_features(run, ("val",), device="cpu", quiet=True)
    with safe_open(str(run.feature_cache("val")), framework="pt") as fh:
        assert json.loads(fh.metadata()["openlt"])["amp"] == "bf16"
    cpu_bf16(monkeypatch, False)  # a CPU that emulates bfloat16: evaluated in float32, as auto means there
    assert Predictor.load(run, threshold=0.5, device="cpu").amp == "none"


@pytest.mark.parametrize("old", [False, True], ids=["recorded-none", "no-record"])
def test_a_float32_run_resumes_and_evaluates_in_float32_on_a_bf16_cpu(image_folder, tmp_path, monkeypatch, old):
    """Trained where auto meant float32 (a CPU without bfloat16 units, or openlt before the record: `old`, its
    checkpoints rewritten without state.amp), then resumed and evaluated on a CPU with them: float32 throughout."""
    cpu_bf16(monkeypatch, False)
    seen = record_amps(monkeypatch)
    cfg = build_config(None, [f"data.root={image_folder}", f"out_dir={tmp_path / 'runs'}", *TINY])
    lines: list[str] = []
    run = train_one_of_two(cfg, "f32", lines)
    assert not any(", amp " in line for line in lines), lines  # float32: the banner names no amp
    assert checkpoint_state(run.checkpoint("last"))["amp"] == "none"
    if old:
        forget_amp(run.checkpoint("last"))
        forget_amp(run.checkpoint("best"))
        assert "amp" not in checkpoint_state(run.checkpoint("last"))

    cpu_bf16(monkeypatch, True)
    seen["train"].clear()
    seen["eval"].clear()
    lines.clear()
    training.train(run.config(), run=run, resume=True, quiet=True, log=lines.append)
    assert seen["train"] and set(seen["train"]) == {"none"} and set(seen["val"]) == {"none"}
    assert not any(", amp " in line for line in lines), lines
    assert checkpoint_state(run.checkpoint("last"))["amp"] == "none"  # recorded from now on
    if old:
        forget_amp(run.checkpoint("last"))
        forget_amp(run.checkpoint("best"))
    seen["eval"].clear()
    evaluate_run(run, quiet=True)
    assert seen["eval"] and set(seen["eval"]) == {"none"}
    assert Predictor.load(run, threshold=0.5, device="cpu").amp == "none"
    load_features(run, ("val",), device="cpu", quiet=True)
    with safe_open(str(run.feature_cache("val")), framework="pt") as fh:
        assert "amp" not in json.loads(fh.metadata()["openlt"])  # the float32 cache key of before
    seen["eval"].clear()
    evaluate_run(run, quiet=True, overrides=["train.amp=bf16"], write=False)  # asked for explicitly: bf16
    assert set(seen["eval"]) == {"bf16"}


def test_a_checkpoint_recording_an_unknown_precision_is_refused(tmp_path):
    path = tmp_path / "last.safetensors"
    save_checkpoint(path, torch.nn.Linear(2, 2), None, {"epoch": 0, "amp": "fp8"})
    with pytest.raises(RunDirError, match=r"malformed openlt metadata: state.amp must be one of none, bf16, fp16, "
                                          r"got 'fp8'"):
        checkpoint_state(path)


# ------------------------------------------------------------------------------------------------ openlt bench

def fake_run(tmp_path: Path, saved_amp: str, recorded: str | None, finished: bool = True) -> Run:
    """A bench's run a-s3 as an openlt bench wrote it: config.yaml with train.amp=`saved_amp`, a last checkpoint
    recording `recorded` (None: none, as before openlt recorded it), metrics.json when `finished`."""
    run = Run(tmp_path / "out" / "a-s3-20260101-000000")
    run.path.mkdir(parents=True)
    run.write_config(build_config(tmp_path / "tiny.yaml", ["train.epochs=1", "data.split_dir=splits",
                                                          "train.device=cpu", f"train.amp={saved_amp}", "seed=3",
                                                          "out_dir=out", "name=a-s3"]))
    state = {"epoch": 0} if recorded is None else {"epoch": 0, "amp": recorded}
    save_checkpoint(run.checkpoint("last"), torch.nn.Linear(2, 2), None, state)
    if finished:
        run.metrics_file.write_text("{}")
    return run


# (config.yaml's train.amp, the checkpoint's record, the spec's train.amp override or None, refusal text or None)
BENCH = [
    ("auto", None, None, None),  # an old run trained with auto (float32 on the CPU then): reused
    ("none", None, None, None),  # saved with none (before auto was the default): reused
    ("auto", "bf16", None, None),  # trained with auto as bf16: reused
    ("auto", "none", None, None),  # trained with auto as float32 (a CPU without bf16): reused by auto
    ("auto", None, "bf16", "train.amp: run 'none', spec 'bf16'"),  # an explicit bf16 spec: not the old run
    ("auto", "bf16", "none", "train.amp: run 'bf16', spec 'none'"),
]


@pytest.mark.parametrize("saved_amp, recorded, spec_amp, refusal", BENCH, ids=[str(i) for i in range(len(BENCH))])
def test_bench_matches_a_run_by_the_precision_it_trained_in(tmp_path, monkeypatch, saved_amp, recorded, spec_amp,
                                                            refusal):
    cpu_bf16(monkeypatch, True)  # where a new run's auto would be bf16
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny.yaml").write_text("name: tiny\n")
    run = fake_run(tmp_path, saved_amp, recorded)
    overrides = ["train.epochs=1", "data.split_dir=splits", "train.device=cpu"]
    path = tmp_path / "bench.yaml"
    path.write_text(json.dumps({"name": "x", "seeds": [3], "out_dir": "out",
                                "overrides": overrides + ([f"train.amp={spec_amp}"] if spec_amp else []),
                                "methods": [{"name": "a", "config": "tiny.yaml"}]}))
    lines: list[str] = []
    if refusal is None:
        run_bench(load_bench(path), quiet=True, log=lines.append, report_only=True)
        assert any(": done (" in line and run.path.name in line for line in lines), lines
        return
    with pytest.raises(ConfigError) as info:
        run_bench(load_bench(path), quiet=True, log=lines.append, report_only=True)
    assert refusal in str(info.value) and run.path.name in str(info.value)


def test_an_old_bench_run_is_resumed_in_float32_and_then_reused(image_folder, tmp_path, monkeypatch):
    """A bench folder made before runs recorded their precision (a run interrupted after epoch 1 of 2, auto =
    float32 on the CPU): restarted where the CPU has bfloat16 units, its run is resumed in float32, evaluated in
    float32, then reused; nothing is trained again."""
    cpu_bf16(monkeypatch, False)
    seen = record_amps(monkeypatch)
    path = tmp_path / "bench.yaml"
    (tmp_path / "tiny.yaml").write_text("name: tiny\n")
    path.write_text(json.dumps({"name": "x", "seeds": [0], "out_dir": str(tmp_path / "bench"),
                                "overrides": [f"data.root={image_folder}", *TINY],
                                "methods": [{"name": "plain", "config": "tiny.yaml"}]}))

    def stop(line: str) -> None:
        if "epoch   1/2" in line:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_bench(load_bench(path), quiet=True, log=stop)
    run = open_run(next((tmp_path / "bench").glob("plain-s0-*")))
    forget_amp(run.checkpoint("last"))  # as the old openlt wrote it
    forget_amp(run.checkpoint("best"))

    cpu_bf16(monkeypatch, True)
    seen["train"].clear()
    seen["eval"].clear()
    lines: list[str] = []
    run_bench(load_bench(path), quiet=True, log=lines.append)
    assert any("resuming the interrupted run" in line for line in lines), lines
    assert seen["train"] and set(seen["train"]) == {"none"} and set(seen["val"]) == {"none"}
    assert set(seen["eval"]) == {"none"}  # the bench's evaluation of it
    assert checkpoint_state(run.checkpoint("last"))["amp"] == "none" and run.metrics_file.is_file()
    assert [p.name for p in (tmp_path / "bench").glob("plain-s0-*")] == [run.path.name]

    seen["train"].clear()
    lines.clear()
    run_bench(load_bench(path), quiet=True, log=lines.append)
    assert any(": done (" in line and run.path.name in line for line in lines) and not seen["train"], lines
