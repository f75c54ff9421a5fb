"""engine/runtime.py's bounded inference memory: `inference_passes` cuts a loader batch into chunks of at most
CPU_PIXELS_PER_PASS pixels on the CPU (whole batches on a GPU), and `collect_outputs` / `extract_features` give
the same outputs as one pass over the whole batch; `trim_heap` is safe to call anywhere."""

import torch
from torch.utils.data import TensorDataset

from openlt.config import Config
from openlt.engine import runtime
from openlt.engine.features import extract_features
from openlt.engine.runtime import collect_outputs, inference_passes, make_loader, trim_heap
from openlt.models.model import build_model

CPU = torch.device("cpu")


def test_passes_bound_the_pixels_per_forward_on_the_cpu_only():
    big = torch.zeros(40, 3, 224, 224)
    assert [len(c) for c in inference_passes(big, CPU)] == [16, 16, 8]
    assert [len(c) for c in inference_passes(torch.zeros(256, 1, 28, 28), CPU)] == [256]  # small images: whole
    assert [len(c) for c in inference_passes(torch.zeros(3, 3, 2000, 2000), CPU)] == [1, 1, 1]  # at least one
    assert [len(c) for c in inference_passes(big, torch.device("cuda"))] == [40]  # no copy, no GPU touched
    chunks = inference_passes(big, CPU)
    assert all(c.data_ptr() == big[16 * i].data_ptr() for i, c in enumerate(chunks))  # views, not copies


def test_outputs_in_passes_equal_one_pass_over_the_batch(monkeypatch):
    torch.manual_seed(0)
    cfg = Config()
    model = build_model(cfg, 4, 1, 28).eval()
    images, labels = torch.randn(23, 1, 28, 28), torch.randint(0, 4, (23,))
    with torch.no_grad():
        whole = model(images)
    loader = make_loader(TensorDataset(images, labels), 23, 0, CPU)
    monkeypatch.setattr(runtime, "CPU_PIXELS_PER_PASS", 5 * 28 * 28)  # passes of 5, 5, 5, 5, 3 images
    out = collect_outputs(model, loader, CPU, quiet=True, keep=("logits", "feature"))
    assert torch.allclose(out["logits"], whole["logits"], rtol=0, atol=1e-5)
    assert torch.equal(out["logits"].argmax(1), whole["logits"].argmax(1))
    assert torch.allclose(out["feature"], whole["feature"], rtol=0, atol=1e-5)
    assert torch.equal(out["labels"], labels)
    feats, targets = extract_features(model, loader, CPU, quiet=True)
    assert torch.allclose(feats, whole["feature"], rtol=0, atol=1e-5) and torch.equal(targets, labels)


def test_trim_heap_is_harmless():
    trim_heap()
    trim_heap()


def test_inference_loader_batches_are_one_pass_on_the_cpu():
    images = list(range(40))
    assert runtime.inference_loader(images, 256, 0, CPU, 224).batch_size == 16
    assert runtime.inference_loader(images, 256, 0, CPU, 28).batch_size == 256  # small images: eval.batch_size
    assert runtime.inference_loader(images, 8, 0, CPU, 224).batch_size == 8
    assert runtime.inference_loader(images, 256, 0, torch.device("cuda"), 224, pin_memory=False).batch_size == 256
