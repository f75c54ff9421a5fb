"""`openlt export RUN OUT`: the bundle (weights, openlt.json, a fitted score's state) and the TorchScript / ONNX
networks, whose outputs equal the PyTorch model's, for a plain model and OLTR's (modulated attention and the
meta-embedding head with its centroids and reachability). Runs are made directly (random weights, no training):
export needs the run directory only."""

import json
import os

import pytest
import torch
from safetensors.torch import load_file

from openlt.cli import main
from openlt.config import build_config
from openlt.data.transforms import IMAGENET_MEAN
from openlt.engine.checkpoint import save_checkpoint
from openlt.engine.export import export_run
from openlt.engine.inference import checkpoint_identity
from openlt.errors import RunDirError
from openlt.models.model import build_model
from openlt.openset import OpenMax, Rejector, load_score, save_score
from synthetic_run import CLASSES, OLTR, make_run

REPORT_FIGURES = "unrasterized"  # tests/conftest.py: report.html figures built, not rendered (none is looked at)


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
    assert saved["open_score"]["state_file"] == "open-score.safetensors" and saved["source"]["epoch"] == 4  # 1-based: the checkpoint's 0-based counter is 3
    assert set(saved["files"]) == {"weights", "open_score", "readme"} and saved["checks"] == {}
    logits = torch.randn(7, 3)
    torch.testing.assert_close(load_score(tmp_path / "out" / "open-score.safetensors").score({"logits": logits}),
                               openmax.score({"logits": logits}))
    weights = load_file(tmp_path / "out" / "model.safetensors")  # the network's own state-dict names
    rebuilt = build_model(build_config(None, ["model.backbone=resnet10", *OLTR]), 3, 3, 16)
    rebuilt.load_state_dict(weights)
    batch = torch.randn(2, 3, 16, 16)
    torch.testing.assert_close(reference(rebuilt.eval(), batch)["logits"], reference(model, batch)["logits"])


def test_openlt_export_on_the_command_line(tmp_path, capsys, single_thread):
    run, _ = make_run(tmp_path / "run")
    assert main(["export", str(run.path), str(tmp_path / "out"), "--format", "torchscript"]) == 0
    out = capsys.readouterr().out
    assert "torchscript: checked with torch.jit.load" in out and "model.torchscript.pt" in out
    assert main(["export", str(run.path), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"openlt export: error: export folder {tmp_path / 'out'} holds an openlt bundle; pass --force to " \
                  "replace it"
    assert main(["export", str(tmp_path / "nope"), str(tmp_path / "out2")]) == 2
    assert "run directory not found" in capsys.readouterr().err and not (tmp_path / "out2").exists()


def test_force_replaces_the_whole_bundle_and_nothing_else(tmp_path, capsys, single_thread):
    """--force: the folder then holds exactly the new bundle (a TorchScript file of the previous one does not stay
    beside a safetensors-only bundle), no staging folder is left, and a folder holding other files is refused."""
    run, _ = make_run(tmp_path / "run")
    out = tmp_path / "out"
    assert main(["export", str(run.path), str(out), "--format", "torchscript"]) == 0
    assert main(["export", str(run.path), str(out), "--force"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "model.safetensors", "openlt.json"]
    assert json.loads((out / "openlt.json").read_text())["files"] == {"weights": "model.safetensors",
                                                                      "readme": "README.md"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "run"]  # no .out.*.tmp / .old left
    assert "model.safetensors holds the weights alone (openlt.json `model` names the architecture): to run the " \
           "network without openlt, export with --format onnx or torchscript." in (out / "README.md").read_text()
    (out / "notes.txt").write_text("mine")
    capsys.readouterr()
    assert main(["export", str(run.path), str(out)]) == 2  # said first: --force would not help (session 27)
    assert "holds other files than an openlt bundle (notes.txt); --force replaces a bundle only" in \
        capsys.readouterr().err
    assert main(["export", str(run.path), str(out), "--force"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"openlt export: error: export folder {out} holds other files than an openlt bundle (notes.txt); "
                   "--force replaces a bundle only: choose another folder"]
    assert (out / "notes.txt").read_text() == "mine" and (out / "model.safetensors").is_file()


def test_a_run_never_evaluated_needs_a_threshold(tmp_path, capsys, single_thread):
    run, _ = make_run(tmp_path / "run", calibration=False)
    assert main(["export", str(run.path), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"openlt export: error: {run.path} has no calibration.json: it was never evaluated, so no "
                   f"rejection threshold was chosen; choose it on validation with `openlt eval {run.path}`, or give a "
                   "fixed one (--threshold T)"]
    assert not (tmp_path / "out").exists()
    assert main(["export", str(run.path), str(tmp_path / "out"), "--threshold", "0.4"]) == 0
    threshold = json.loads((tmp_path / "out" / "openlt.json").read_text())["threshold"]
    assert threshold["value"] == 0.4 and threshold["source"] == "fixed (--threshold)"


def test_a_closed_set_run_without_validation_exports_without_a_threshold(tmp_path, single_thread):
    """Its evaluation rejects nothing (the split manifest records no open and no val split): threshold null."""
    run, _ = make_run(tmp_path / "run", calibration=False)
    files = {split: {"file": f"{split}.txt", "sha256": "a" * 64} for split in ("train", "test")}
    run.manifest_file.write_text(json.dumps({"class_names": list(CLASSES), "files": files}))
    assert export_run(run, tmp_path / "out")["threshold"] is None


def _last_checkpoint(run, model) -> None:
    """A last.safetensors with other weights than best (as after more epochs)."""
    torch.manual_seed(5)
    for p in model.parameters():
        p.data.normal_()
    save_checkpoint(run.checkpoint("last"), model, None, {"epoch": 4})


def test_a_calibration_or_fitted_score_of_another_checkpoint_is_refused(tmp_path, single_thread):
    """calibration.json and open-score.safetensors record the checkpoint (sha256) they were fitted on: exporting
    `last` with best's refuses, naming the eval command; so does best after its file changed."""
    run, model = make_run(tmp_path / "run")
    _last_checkpoint(run, model)
    with pytest.raises(RunDirError) as info:
        export_run(run, tmp_path / "out", checkpoint="last")
    assert str(info.value).startswith(f"{run.path}: calibration.json was fitted on checkpoints/best.safetensors "
                                      "(sha256 ")
    assert str(info.value).endswith(f"`openlt eval {run.path} --checkpoint last`") and not (tmp_path / "out").exists()
    assert export_run(run, tmp_path / "out", checkpoint="last", threshold=0.5)["threshold"]["value"] == 0.5
    openmax = OpenMax(tail_size=5).fit({"logits": torch.randn(60, 3) * 3, "labels": torch.arange(60) % 3})
    save_score(run.open_score_path(), openmax, fitted_on=checkpoint_identity(run, "best"))
    calibration = run.calibration_file.read_text()
    Rejector.fixed("openmax", 0.25).save(run.calibration_file)  # a fixed threshold belongs to no checkpoint ...
    with pytest.raises(RunDirError, match="open-score.safetensors was fitted on checkpoints/best.safetensors"):
        export_run(run, tmp_path / "out2", checkpoint="last", threshold=0.5)  # ... but OpenMax's fit does
    run.calibration_file.write_text(calibration)
    run.checkpoint("last").replace(run.checkpoint("best"))  # best changed (training went on) after its evaluation
    with pytest.raises(RunDirError, match=r"checkpoints/best.safetensors changed since calibration.json was fitted "
                                          r"on it \(sha256 \w{12} then, \w{12} now\); fit it for "
                                          r"checkpoints/best.safetensors with `openlt eval [^ ]*`$"):
        export_run(run, tmp_path / "out2")


@pytest.mark.parametrize("overrides, stem", [((), True), (("model.small_input=false",), False),
                                             (("model.small_input=true",), True)])
def test_openlt_json_records_the_stem_the_network_has(tmp_path, overrides, stem, single_thread):
    """model.small_input null (16 px images: the small-input stem) is recorded resolved, never null."""
    run, model = make_run(tmp_path / "run", overrides)
    assert model.backbone.small_input is stem  # what build_model made of it
    bundle = export_run(run, tmp_path / "out")
    saved = json.loads((tmp_path / "out" / "openlt.json").read_text())
    assert saved["model"]["small_input"] is stem and bundle["model"]["small_input"] is stem
    assert run.config().model.small_input == (None if not overrides else stem)  # config.yaml itself untouched


@pytest.mark.parametrize("force", [[], ["--force"]])
def test_an_export_folder_that_is_a_symlink_is_refused(tmp_path, capsys, force, single_thread):
    """OUT a symbolic link to a bundle: the bundle is renamed into place, which replaced the link with a new folder
    and left the bundle it pointed to with the old export (issue 14): refused, naming the target; nothing changes."""
    run, _ = make_run(tmp_path / "run")
    target = tmp_path / "bundle"
    assert main(["export", str(run.path), str(target), "--format", "torchscript"]) == 0
    before = {p.name: p.read_bytes() for p in target.iterdir()}
    link = tmp_path / "link"
    link.symlink_to(target)
    capsys.readouterr()
    assert main(["export", str(run.path), str(link), *force]) == 2
    err, real = capsys.readouterr().err, os.path.realpath(target)
    assert err == (f"openlt export: error: export folder {link} is a symbolic link to {real}: export to {real} "
                   "itself, or remove the link\n")
    assert link.is_symlink() and {p.name: p.read_bytes() for p in target.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle", "link", "run"]  # no staging folder left
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "gone")
    assert main(["export", str(run.path), str(dangling), *force]) == 2
    err = capsys.readouterr().err
    assert f"export folder {dangling} is a symbolic link to {os.path.realpath(tmp_path / 'gone')}: export to " in err
    assert dangling.is_symlink() and not (tmp_path / "gone").exists()


def test_an_export_folder_under_a_file_is_refused_naming_the_file(tmp_path, capsys, single_thread):
    """OUT below a file (`afile/b/c`): was `cannot create the export folder afile/b/c: File exists`, which names
    neither the file nor what is wrong."""
    run, _ = make_run(tmp_path / "run")
    (tmp_path / "afile").write_text("x")
    capsys.readouterr()
    assert main(["export", str(run.path), str(tmp_path / "afile" / "b" / "c")]) == 2
    assert capsys.readouterr().err == (f"openlt export: error: export folder {tmp_path / 'afile' / 'b' / 'c'}: "
                                       f"{tmp_path / 'afile'} is a file, not a folder\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "run"]


def test_a_bundle_another_export_wrote_meanwhile_is_not_replaced_without_force(tmp_path, capsys, monkeypatch,
                                                                               single_thread):
    """Two `openlt export RUN OUT` at once: both found OUT new, and the second moved the first's bundle aside and
    replaced it, both exiting 0 (as --force would, unasked). OUT is checked again before the bundle is published."""
    import openlt.engine.export as export

    run, _ = make_run(tmp_path / "run")
    out = tmp_path / "out"
    real = export.readme

    def other_export_meanwhile(description):
        out.mkdir()
        (out / "openlt.json").write_text("{}")  # the other process's bundle
        return real(description)

    monkeypatch.setattr(export, "readme", other_export_meanwhile)
    capsys.readouterr()
    assert main(["export", str(run.path), str(out)]) == 2
    assert capsys.readouterr().err == (f"openlt export: error: export folder {out} holds an openlt bundle; pass "
                                       f"--force to replace it (written by another process while this export ran)\n")
    assert [p.name for p in out.iterdir()] == ["openlt.json"] and (out / "openlt.json").read_text() == "{}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "run"]  # no staging folder left


def test_the_readme_states_the_threshold_that_gives_the_decisions(tmp_path, single_thread):
    """README.md wrote the threshold with :g, six digits: 0.999995 for the float32 0.99999475 (a score between
    them is kept by the bundle's own threshold and rejected by the README's)."""
    run, _ = make_run(tmp_path / "run", calibration=False)
    assert main(["export", str(run.path), str(tmp_path / "out"), "--threshold", "0.9999947547912598"]) == 0
    readme = (tmp_path / "out" / "README.md").read_text()
    assert "(0.99999475, fixed (--threshold))" in readme and "0.999995," not in readme
