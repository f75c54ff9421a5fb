"""Mixed precision (`train.amp`): bf16 trains on the CPU, fp16 on the CPU is a clear error, and the grad
scaler's state goes into the checkpoint and comes back on resume."""

from __future__ import annotations

import contextlib
import json

import pytest
import torch
from safetensors import safe_open

from openlt.config import build_config
from openlt.engine import train as training
from openlt.engine.evaluate import evaluate_run
from openlt.engine.precision import autocast, check_amp, grad_scaler, inference_amp
from openlt.engine.run import open_run
from openlt.errors import ConfigError

REPORT_FIGURES = "unrasterized"  # tests/conftest.py: report.html figures built, not rendered (none is looked at)

TINY = ["data.dataset=image-folder", "data.image_size=16", "model.backbone=resnet20", "train.epochs=2",
        "train.batch_size=32", "train.lr=0.05", "eval.batch_size=64", "eval.many_above=30", "eval.few_below=15",
        "data.split.n_max=40", "data.split.n_min=8", "data.split.open_classes=[eel]", "data.split.val_per_class=4",
        "data.split.test_per_class=6", "data.split.order=label", "train.device=cpu"]


def quiet(line: str) -> None:
    pass


def checkpoint_state(path) -> dict:
    with safe_open(str(path), framework="pt") as fh:
        return json.loads(fh.metadata()["openlt"])["state"]


def test_check_amp_names_the_choices_and_refuses_fp16_on_the_cpu():
    cpu = torch.device("cpu")
    assert check_amp("none", cpu) == "none" and check_amp("bf16", cpu) == "bf16"
    with pytest.raises(ConfigError, match="none, bf16, fp16"):
        check_amp("fp32", cpu)
    with pytest.raises(ConfigError, match="fp16 needs a CUDA device.*bf16"):
        check_amp("fp16", cpu)
    assert inference_amp("fp16", cpu) == "none"  # a GPU-trained fp16 run still evaluates on the CPU
    assert grad_scaler("bf16", cpu) is None and grad_scaler("none", cpu) is None


def test_bf16_autocast_on_the_cpu():
    layer = torch.nn.Linear(4, 3)
    with autocast("bf16", torch.device("cpu")):
        assert layer(torch.randn(2, 4)).dtype == torch.bfloat16
    with autocast("none", torch.device("cpu")):
        assert layer(torch.randn(2, 4)).dtype == torch.float32


def test_fp16_on_the_cpu_fails_before_any_run_directory(image_folder, tmp_path):
    cfg = build_config(None, [f"data.root={image_folder}", f"out_dir={tmp_path / 'runs'}", *TINY, "train.amp=fp16"])
    with pytest.raises(ConfigError, match="train.amp=fp16 needs a CUDA device"):
        training.train(cfg, quiet=True, log=quiet)
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").iterdir())


def test_bf16_training_on_the_cpu_gives_finite_losses_and_evaluates(image_folder, tmp_path):
    cfg = build_config(None, [f"data.root={image_folder}", f"out_dir={tmp_path / 'runs'}", *TINY, "train.amp=bf16",
                              "train.epochs=1"])  # bf16 convolutions are slow on CPUs without bf16 units
    run = training.train(cfg, quiet=True, log=quiet)
    epochs = run.epochs_logged()
    assert [e["epoch"] for e in epochs] == [1]
    assert all(torch.isfinite(torch.tensor(e["train_loss"])) for e in epochs)
    assert "grad_scaler" not in checkpoint_state(run.checkpoint("last"))  # bf16 needs no loss scaling
    metrics = evaluate_run(run, quiet=True)  # evaluation runs in bf16 too (the run's train.amp)
    assert 0.0 <= metrics["closed"]["overall"] <= 1.0


def test_grad_scaler_state_is_checkpointed_and_resumed(image_folder, tmp_path, monkeypatch):
    """The fp16 path (scaled backward, scaler.step / update) run on the CPU with a CPU GradScaler: the scale is
    saved with every checkpoint, and a resumed run matches an uninterrupted one bit for bit."""
    made = []

    def cpu_scaler(amp, device):
        made.append(torch.amp.GradScaler("cpu", init_scale=2.0**10, growth_interval=2))
        return made[-1]

    monkeypatch.setattr(training, "grad_scaler", cpu_scaler)
    cfg = build_config(None, [f"data.root={image_folder}", f"out_dir={tmp_path / 'runs'}", *TINY])
    full = training.train(cfg, name="full", quiet=True, log=quiet)
    saved = checkpoint_state(full.checkpoint("last"))["grad_scaler"]
    assert saved["scale"] == made[-1].get_scale() and saved["scale"] > 2.0**10  # it grew every 2 finite steps

    def stop_after_first_epoch(line):
        if line.startswith("epoch   1/2"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        training.train(cfg, name="cut", quiet=True, log=stop_after_first_epoch)
    cut = open_run(next((tmp_path / "runs").glob("cut-*")))
    after_one = checkpoint_state(cut.checkpoint("last"))["grad_scaler"]
    training.train(cut.config(), run=cut, resume=True, quiet=True, log=quiet)
    assert made[-1].get_scale() >= after_one["scale"]  # continued from the saved scale, not from 2^10
    from safetensors.torch import load_file

    a, b = load_file(full.checkpoint("last")), load_file(cut.checkpoint("last"))
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert checkpoint_state(cut.checkpoint("last"))["grad_scaler"] == saved


# one recipe per head and loss family (focal, class-balanced, balanced softmax: cross-entropy on linear logits,
# which autocast computes in float32 anyway)
FP16_RECIPES = ["plain", "oltr_stage2", "stage2_range", "stage2_lifted", "loss_ldam_drw"]


@pytest.mark.parametrize("recipe", FP16_RECIPES)
@pytest.mark.parametrize("amp", ["fp16", "bf16"])
def test_every_recipe_keeps_logits_and_loss_float32_and_finite_under_autocast(recipe, amp):
    """What a GPU run with train.amp=fp16/bf16 computes, run on the CPU (PyTorch has float16 autocast there too):
    heads whose logits are scaled cosines (cosine classifier, meta-embedding, LDAM's normed linear) and the
    losses leave autocast, where half precision would round (logits at +-scale) or overflow (squared centroid
    distances), so their logits and every loss come out float32, and every gradient is finite."""
    from openlt.losses import build_loss
    from openlt.models.model import build_model

    torch.manual_seed(0)
    cfg = build_config(f"configs/fmnist_lt/{recipe}.yaml", ["data.split_dir=unused"])
    counts = [300, 120, 60, 25, 12, 6, 4, 3]
    model = build_model(cfg, len(counts), in_chans=1, image_size=28)
    if hasattr(model.classifier, "init_centroids"):  # OLTR stage 2 starts from class means
        model.classifier.init_centroids(torch.randn(len(counts), model.backbone.out_dim) * 3)
    criterion = build_loss(cfg.train.loss, counts, model.backbone.out_dim, **cfg.train.loss_args)
    images, targets = torch.randn(8, 1, 8, 8), torch.arange(8)  # small images: half-precision convolutions are
    with autocast(amp, torch.device("cpu")):                       # slow on CPUs without half-precision units
        out = model(images)
        loss = criterion(out, targets)
    if cfg.model.classifier != "linear":
        assert out["logits"].dtype == torch.float32, cfg.model.classifier
    assert loss.dtype == torch.float32 and torch.isfinite(loss), (recipe, loss)
    loss.backward()  # unscaled: the grad scaler's inf/NaN checks handle overflow of the scaled loss
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads), recipe


def test_ncm_head_gives_float32_logits_under_autocast():
    from openlt.models.classifier import NCMHead

    for metric in ("cosine", "euclidean"):
        head = NCMHead(6, 3, ncm_metric=metric)
        head.means.copy_(torch.randn(3, 6))
        with autocast("bf16", torch.device("cpu")):
            logits = head(torch.randn(4, 6).bfloat16())
        assert logits.dtype == torch.float32, metric


def test_auto_is_bf16_on_a_gpu_with_bfloat16_and_float32_elsewhere(monkeypatch):
    """train.amp's default, `auto`, resolved where it is used: a CPU without bfloat16 units keeps float32 (no
    autocast, no scaler, the feature cache's key unchanged), a CPU with them (avx512_bf16 or AMX) gets bf16; a CUDA
    device that supports bfloat16 gets bf16, one without gets none. A run that records no precision (before
    openlt recorded it) keeps auto's old meaning: float32 on any CPU."""
    from openlt.config import TrainConfig
    from openlt.engine import precision
    from openlt.engine.precision import autocast, grad_scaler, inference_amp, resolve_amp, run_amp

    assert TrainConfig().amp == "auto"
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    monkeypatch.setattr(precision, "_cpu_has_bf16", lambda: False)  # (the real one asks torch once per process)
    assert resolve_amp("auto", cpu) == check_amp("auto", cpu) == inference_amp("auto", cpu, "none") == "none"
    assert inference_amp("auto", cpu, "bf16") == "none"  # a GPU's bf16 run: float32 where bfloat16 is emulated
    assert isinstance(autocast("auto", cpu), contextlib.nullcontext) and grad_scaler("auto", cpu) is None
    monkeypatch.setattr(precision, "_cpu_has_bf16", lambda: True)
    assert resolve_amp("auto", cpu) == check_amp("auto", cpu) == inference_amp("auto", cpu, "bf16") == "bf16"
    assert autocast("auto", cpu).fast_dtype == torch.bfloat16 and grad_scaler("auto", cpu) is None
    assert inference_amp("auto", cpu, "none") == "none"  # a run trained in float32 evaluates in float32
    assert inference_amp("auto", cpu) == inference_amp("auto", cpu, None) == "none"  # no record: the old auto
    assert run_amp("auto", cpu, None) == "none" and run_amp("auto", cpu, "bf16") == "bf16"
    assert run_amp("none", cpu, "bf16") == "none" and inference_amp("none", cpu, "bf16") == "none"  # explicit wins

    monkeypatch.setattr(precision, "_cuda_has_bf16", lambda: True)  # (the real one asks CUDA once per process)
    assert resolve_amp("auto", gpu) == check_amp("auto", gpu) == "bf16" and grad_scaler("auto", gpu) is None
    assert inference_amp("auto", gpu) == run_amp("auto", gpu, None) == "bf16"  # no record: auto's old GPU meaning
    monkeypatch.setattr(precision, "_cuda_has_bf16", lambda: False)
    assert resolve_amp("auto", gpu) == "none"
    assert resolve_amp("fp16", gpu) == "fp16" and resolve_amp("none", gpu) == "none"  # explicit values kept


def test_run_amp_resolves_a_device_function_only_for_a_legacy_runs_auto():
    # openlt bench compares configs whose device this machine may lack: the device is asked for only when needed
    from openlt.engine.precision import run_amp
    from openlt.errors import ConfigError

    def missing():
        raise ConfigError("train.device=cuda: no CUDA device here")

    assert run_amp("bf16", missing, None) == "bf16" and run_amp("auto", missing, "none") == "none"
    with pytest.raises(ConfigError, match="no CUDA device"):
        run_amp("auto", missing, None)
    assert run_amp("auto", lambda: torch.device("cpu"), None) == "none"
