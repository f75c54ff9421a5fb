"""`openlt export RUN OUT`: the bundle (weights, openlt.json, a fitted score's state) and the TorchScript / ONNX
networks, whose outputs equal the PyTorch model's, for a plain model and OLTR's (modulated attention and the
meta-embedding head with its centroids and reachability). Runs are made directly (random weights, no training):
export needs the run directory only."""

import json

import pytest
import torch
from safetensors.torch import load_file

from openlt.cli import main
from openlt.config import build_config
from openlt.data.transforms import IMAGENET_MEAN
from openlt.engine.export import export_run
from openlt.models.model import build_model
from openlt.openset import OpenMax, Rejector, load_score, save_score
from synthetic_run import CLASSES, OLTR, make_run


def reference(model, batch) -> dict:
    with torch.no_grad():
        return model(batch)


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
@pytest.mark.parametrize("kind", ["plain", "oltr"])
@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_exported_networks_equal_the_pytorch_model(tmp_path, kind, fmt, single_thread):
    if fmt == "onnx":
        ort = pytest.importorskip("onnxruntime", reason="onnxruntime (the export extra) is not installed")
    run, model = make_run(tmp_path / "run", OLTR if kind == "oltr" else ())
    bundle = export_run(run, tmp_path / "out", fmt)
    outputs = ("logits", "feature") + (("reachability",) if kind == "oltr" else ())
    assert tuple(bundle["outputs"]) == outputs and bundle["files"][fmt] == f"model.{'torchscript.pt' if fmt == 'torchscript' else 'onnx'}"
    assert set(bundle["checks"][fmt]["max_abs_diff"]) == set(outputs)
    batch = torch.randn(5, 3, 16, 16, generator=torch.Generator().manual_seed(7))
    want = reference(model, batch)
    if fmt == "torchscript":
        with torch.no_grad():
            got = torch.jit.load(str(tmp_path / "out" / "model.torchscript.pt"))(batch)
    else:
        session = ort.InferenceSession(str(tmp_path / "out" / "model.onnx"), providers=["CPUExecutionProvider"])
        got = [torch.from_numpy(a) for a in session.run(list(outputs), {"images": batch.numpy()})]
    for name, value in zip(outputs, got):
        torch.testing.assert_close(value, want[name], rtol=1e-4, atol=1e-4)
    if kind == "oltr":  # the meta-embedding head really is in the graph: reachability depends on the centroids
        assert float(want["reachability"].std()) > 0


def test_the_bundle_describes_everything_prediction_needs(tmp_path, single_thread):
    run, model = make_run(tmp_path / "run", OLTR)
    openmax = OpenMax(tail_size=5).fit({"logits": torch.randn(60, 3) * 3, "labels": torch.arange(60) % 3})
    save_score(run.open_score_path(), openmax)
    Rejector.fixed("openmax", 0.25, "fixed (eval.open_threshold)").save(run.calibration_file)
    bundle = export_run(run, tmp_path / "out")
    saved = json.loads((tmp_path / "out" / "openlt.json").read_text())
    assert saved == json.loads(json.dumps(bundle))
    assert saved["classes"] == list(CLASSES) and saved["open_classes"] == ["eel"]
    assert saved["input"]["shape"] == [None, 3, 16, 16] and saved["transform"]["resize"] == 16
    assert saved["transform"]["mean"] == list(IMAGENET_MEAN)
    assert saved["model"]["classifier"] == "meta_embedding" and saved["model"]["num_classes"] == 3
    assert saved["threshold"]["value"] == 0.25 and saved["threshold"]["source"] == "fixed (eval.open_threshold)"
    assert saved["open_score"]["name"] == "openmax" and saved["open_score"]["options"]["tail_size"] == 5
    assert saved["open_score"]["state_file"] == "open-score.safetensors" and saved["source"]["epoch"] == 3
    assert set(saved["files"]) == {"weights", "open_score"} and saved["checks"] == {}
    logits = torch.randn(7, 3)
    torch.testing.assert_close(load_score(tmp_path / "out" / "open-score.safetensors").score({"logits": logits}),
                               openmax.score({"logits": logits}))
    weights = load_file(tmp_path / "out" / "model.safetensors")  # the network's own state-dict names
    rebuilt = build_model(build_config(None, ["model.backbone=resnet10", *OLTR]), 3, 3, 16)
    rebuilt.load_state_dict(weights)
    batch = torch.randn(2, 3, 16, 16)
    torch.testing.assert_close(reference(rebuilt.eval(), batch)["logits"], reference(model, batch)["logits"])


def test_openlt_export_on_the_command_line(tmp_path, capsys, single_thread):
    run, _ = make_run(tmp_path / "run", calibration=False)
    assert main(["export", str(run.path), str(tmp_path / "out"), "--format", "torchscript"]) == 0
    out = capsys.readouterr().out
    assert "torchscript: checked with torch.jit.load" in out and "model.torchscript.pt" in out
    assert json.loads((tmp_path / "out" / "openlt.json").read_text())["threshold"] is None  # never evaluated
    assert main(["export", str(run.path), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"openlt export: error: export folder {tmp_path / 'out'} is not empty; pass --force to replace " \
                  "the bundle there"
    assert main(["export", str(run.path), str(tmp_path / "out"), "--force"]) == 0
    assert main(["export", str(tmp_path / "nope"), str(tmp_path / "out2")]) == 2
    assert "run directory not found" in capsys.readouterr().err and not (tmp_path / "out2").exists()
