"""Data-parallel training: 2 processes (gloo, CPU) launched by torch.distributed.run against 1 process.

One launch of tests/helpers/ddp_worker.py trains three runs on a tiny image folder (see its docstring); this
module then checks them against single-process runs in the test process.

What "the same as 1 process" means here. With `train.batch_size` the global batch, both ranks' k-th batches
together are exactly the single process's k-th batch (the samplers shard one seeded global order), and DDP
averages the gradients, so a step is the same step -- except for two things that are per process by design:
batch-norm statistics in training mode (over batch_size / 2 images) and the random augmentation draws. The
strict comparison therefore uses a run where neither exists: OLTR stage 2 with the backbone frozen (its
batch-norm in eval mode) and the evaluation transform for training. There the remaining difference is float
summation order (gradients summed over 2 ranks, class means summed in two parts), and we require
loss curves within 1e-5 relative and weights within 1e-5 absolute (observed: 4e-8 and 1.5e-7; the
trained weights move by ~1e-3 and more), and identical training accuracy and validation metrics.

Runs with augmentation and per-process batch-norm are checked for what must hold exactly: one run directory,
evaluation under DDP equal to a single-process evaluation of the same checkpoint, and a bit-exact resume.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from openlt.config import build_config
from openlt.data.build import DataBundle
from openlt.engine.evaluate import evaluate_run
from openlt.engine.run import open_run
from openlt.engine.train import train

ROOT = Path(__file__).parents[2]
TINY = ["data.dataset=image-folder", "data.image_size=16", "model.backbone=resnet10", "train.epochs=2",
        "train.batch_size=16", "train.lr=0.05", "eval.batch_size=64", "eval.many_above=30", "eval.few_below=15",
        "data.split.n_max=40", "data.split.n_min=8", "data.split.open_classes=[eel]", "data.split.val_per_class=4",
        "data.split.test_per_class=5", "data.split.order=label", "train.device=cpu",
        "train.amp=none"]  # 5 open images: uneven shards; float32: 2 processes vs 1 compared to float rounding
STAGE2 = ["train.freeze_backbone=true", "train.epochs=2", "train.batch_size=16", "eval.batch_size=64",
          "eval.many_above=30", "eval.few_below=15", "train.device=cpu", "train.amp=none"]


@pytest.fixture(scope="module")
def ddp(tmp_path_factory):
    """The three runs of 2 processes (see tests/helpers/ddp_worker.py)."""
    from images import make_image_folder

    tmp = tmp_path_factory.mktemp("ddp")
    images = make_image_folder(tmp / "images", {"ant": 60, "bee": 40, "cat": 30, "dog": 25, "eel": 25})
    config = tmp / "tiny.yaml"
    config.write_text("name: tiny\n")
    spec = {"config": str(config), "overrides": [f"data.root={images}", *TINY],
            "stage2_config": str(ROOT / "configs" / "fmnist_lt" / "oltr_stage2.yaml"),
            "stage2_overrides": [f"data.root={images}", "data.dataset=image-folder", "data.image_size=16", *STAGE2],
            "cli_out": str(tmp / "cli"), "strict_out": str(tmp / "strict"), "cut_out": str(tmp / "cut"),
            "decouple_config": str(ROOT / "configs" / "fmnist_lt" / "decouple_crt.yaml"),
            "decouple_overrides": ["train.epochs=2", "train.batch_size=16", "train.device=cpu", "train.amp=none"],
            "decouple_out": str(tmp / "decouple")}
    (tmp / "spec.json").write_text(json.dumps(spec))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENLT_TENSORBOARD": "0"}
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                             str(ROOT / "tests" / "helpers" / "ddp_worker.py"), str(tmp / "spec.json")],
                            capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return spec, result.stdout


def test_one_run_directory_written_by_rank_0_only(ddp):
    spec, stdout = ddp
    runs = list(Path(spec["cli_out"]).iterdir())
    assert len(runs) == 1
    run = runs[0]
    for name in ("config.yaml", "metrics.jsonl", "metrics.json", "report.md", "checkpoints/last.safetensors"):
        assert (run / name).is_file(), name
    assert [e["epoch"] for e in open_run(run).epochs_logged()] == [1, 2]
    assert stdout.count("closed-set top-1") == 2  # one voice: rank 0 prints (CLI runs 1 and 4), rank 1 is silent
    assert not list(run.rglob(".*.tmp"))


def test_evaluation_under_ddp_equals_one_process(ddp):
    """The sharded, gathered evaluation (validation during training and the final one) gives exactly the
    numbers of one process evaluating the same checkpoint."""
    spec, _ = ddp
    run = open_run(next(Path(spec["cli_out"]).iterdir()))
    single = evaluate_run(run, "best", quiet=True, tag="single")
    logged = run.epochs_logged()[single["epoch"] - 1]["val"]  # validation of the best epoch (1-based), during training
    assert single["val"] == logged
    ddp_metrics = json.loads(run.metrics_file.read_text())
    for key in ("val", "closed", "open", "calibration", "per_class_accuracy", "confusion"):
        assert single[key] == ddp_metrics[key] or key == "confusion", key
    assert single["confusion"] == {**ddp_metrics["confusion"], "file": "confusion-single.npz"}  # its tag's file
    assert ddp_metrics["open"]["n_open"] == 5  # an odd number of images: shards of 3 and 2


def test_two_processes_train_like_one_with_the_same_global_batch(ddp, tmp_path, monkeypatch):
    spec, _ = ddp
    stage1 = next(Path(spec["cli_out"]).iterdir())
    eval_transform = DataBundle.transform
    monkeypatch.setattr(DataBundle, "transform", lambda self, train: eval_transform(self, False))
    cfg = build_config(spec["stage2_config"], [*spec["stage2_overrides"], f"train.init_from={stage1}",
                                               f"data.split_dir={stage1 / 'splits'}", f"out_dir={tmp_path}"])
    one = train(cfg, name="one", quiet=True, log=lambda line: None)
    two = open_run(next(Path(spec["strict_out"]).iterdir()))
    log1, log2 = one.epochs_logged(), two.epochs_logged()
    assert [e["epoch"] for e in log2] == [1, 2]
    for a, b in zip(log1, log2):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-5)
        assert b["train_acc"] == a["train_acc"] and b["val"] == a["val"]
    w1, w2 = load_file(one.checkpoint("last")), load_file(two.checkpoint("last"))
    assert w1.keys() == w2.keys()
    trained = [k for k in w1 if k.startswith(("model.attention.", "model.classifier."))]
    assert "model.classifier.centroids" in trained
    for key in w1:
        if key.startswith("model."):
            assert torch.allclose(w1[key].float(), w2[key].float(), rtol=0, atol=1e-5), key
    assert log2[1]["train_loss"] < log2[0]["train_loss"]  # they did train: the loss fell,
    assert w2["model.attention.out.weight"].abs().max() > 1e-4  # and this zero-initialised weight moved


def test_resume_under_ddp_is_bit_exact(ddp):
    spec, _ = ddp
    full = open_run(next(Path(spec["cli_out"]).iterdir()))
    cut = open_run(next(Path(spec["cut_out"]).iterdir()))
    assert [e["epoch"] for e in cut.epochs_logged()] == [1, 2]
    a, b = load_file(full.checkpoint("last")), load_file(cut.checkpoint("last"))
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_feature_cache_under_ddp_equals_one_process(ddp):
    """OLTR's and a decoupled stage 2 under torchrun: both processes extract a share of every split into the
    stage-1 run's cache (rank 0 writes it; the training split at OLTR's start, for its centroids, the others for
    cRT), the features equal one process's extraction, and rank 0 alone fits cRT."""
    from openlt.engine.runtime import load_run_model, make_loader
    from openlt.engine.features import extract_features

    spec, stdout = ddp
    stage1 = open_run(next(Path(spec["cli_out"]).iterdir()))
    cfg, data, model, _ = load_run_model(stage1, "best")
    for split in ("train", "val", "test", "open"):
        cached = load_file(stage1.feature_cache(split))
        loader = make_loader(data.dataset(split, train=False), 7, 0, torch.device("cpu"))  # other batches: same rows
        feats, labels = extract_features(model, loader, torch.device("cpu"), quiet=True,
                                         channels_last=cfg.train.channels_last)
        assert torch.equal(cached["labels"], labels), split
        assert torch.allclose(cached["features"], feats, rtol=0, atol=1e-5), split
        shares = [dict(json.loads(Path(spec["decouple_out"], f"shares-rank{r}.json").read_text()))[f"features {split}"]
                  for r in (0, 1)]
        assert sum(shares) == len(labels) and max(shares) < len(labels), (split, shares)  # each process a share
    runs = [p for p in Path(spec["decouple_out"]).iterdir() if p.is_dir()]
    assert len(runs) == 1 and (runs[0] / "metrics.json").is_file() and (runs[0] / "decouple.json").is_file()
    assert stdout.count("decoupled stage 2: crt") == 1  # one voice
    assert not list(stage1.path.rglob(".*.tmp"))


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory):
    """`openlt train` of the tiny run across 2 "nodes" x 1 process on this machine: two torchrun agents that meet
    through the c10d rendezvous on localhost (gloo), as on two machines sharing the output folder."""
    from images import make_image_folder

    tmp = tmp_path_factory.mktemp("nodes")
    images = make_image_folder(tmp / "images", {"ant": 60, "bee": 40, "cat": 30, "dog": 25, "eel": 25})
    config = tmp / "tiny.yaml"
    config.write_text("name: nodes\n")
    rdzv = ["--nnodes", "2", "--nproc-per-node", "1", "--rdzv-backend", "c10d", "--rdzv-endpoint",
            f"localhost:{_free_port()}", "--rdzv-id", "openlt-test"]
    train = ["-m", "openlt", "train", str(config), f"data.root={images}", *TINY, f"out_dir={tmp / 'runs'}", "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENLT_TENSORBOARD": "0"}
    nodes = [subprocess.Popen([sys.executable, "-m", "torch.distributed.run", *rdzv, *train], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, env=env) for _ in range(2)]
    out = [node.communicate(timeout=600)[0] for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], out[0][-3000:] + out[1][-3000:]
    return tmp, out


def _same_up_to_rounding(a, b) -> bool:
    """Equal structures, floats within 1e-6: the CPU's convolutions round differently for different batch sizes
    (a shard of 10 test images against one batch of 20: 1 ulp in a probability), which can move an image across
    an ECE bin edge; every count, label and prediction stays equal."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same_up_to_rounding(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(map(_same_up_to_rounding, a, b))
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, (int, float)) and isinstance(b, (int, float)) and abs(a - b) <= 1e-6
    return a == b


def test_two_nodes_write_one_run_with_the_metrics_of_one_process(two_nodes):
    """Across nodes as within one: rank 0 alone writes the run directory, and the evaluation that ends training
    (sharded over the two nodes, gathered) equals one process evaluating the same checkpoint."""
    tmp, out = two_nodes
    runs = list((tmp / "runs").iterdir())
    assert len(runs) == 1 and not list(runs[0].rglob(".*.tmp"))
    run = open_run(runs[0])
    assert [e["epoch"] for e in run.epochs_logged()] == [1, 2]
    nodes = json.loads(run.metrics_file.read_text())
    single = evaluate_run(run, "best", quiet=True, tag="single")
    for key in ("val", "closed", "open", "calibration", "per_class_accuracy", "ece"):
        assert _same_up_to_rounding(single[key], nodes[key]), key
    assert single["confusion"] == {**nodes["confusion"], "file": "confusion-single.npz"}
    assert nodes["open"]["n_open"] == 5  # shards of 3 and 2 images, one per node
    assert sum(text.count("closed-set top-1") for text in out) == 1  # one voice: global rank 0's
