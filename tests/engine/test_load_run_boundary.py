"""Loading a trained run (`openlt predict` / `openlt export` / ``openlt.load_run``) refuses what would label images
wrongly without a word, before any work, with one line (issue 14): a run without inference.json whose split folder
was regenerated with other classes; a hand-edited inference.json (classes, size, normalisation); and the odd
arguments and images of the Python API (a checkpoint path out of the run, a threshold string, an int device, a
non-finite feature, an empty PIL image, a meta or grad tensor, a tensor in a list); a run's config.yaml or an export
bundle given for the run directory."""

import json
import shutil
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

import openlt
from openlt.engine.run import open_run
from openlt.errors import ConfigError, DataError, RunDirError
from tiny_run import cli, the_run

REPORT_FIGURES = "unrasterized"  # tests/conftest.py: report.html figures built, not rendered (none is looked at)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, shared_run, single_thread):
    root = shared_run("api-cpu", tmp_path_factory.mktemp("load-run"))  # train_tiny_run(root, "train.device=cpu")
    return root, the_run(root / "runs")


@pytest.fixture(scope="module")
def loaded(trained):
    return openlt.load_run(trained[1].path, device="cpu")


def _copy(trained, tmp_path, name="run"):
    copy = tmp_path / name
    shutil.copytree(trained[1].path, copy, ignore=shutil.ignore_patterns("train.lock"))
    return copy


def _image(trained):
    return sorted((trained[0] / "images" / "bee").glob("*.png"))[0]


def _one_error(capsys, *args):
    code, out, err = cli(capsys, *args)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1, (code, out, err)
    return err.strip()


def test_a_run_without_inference_json_refuses_a_split_folder_regenerated_with_other_classes(trained, tmp_path,
                                                                                             capsys):
    root, run = trained
    copy = _copy(trained, tmp_path)
    (copy / "inference.json").unlink()  # as a run of an older openlt: described from its split files
    code, out, err = cli(capsys, "predict", copy, _image(trained), "--json")
    assert code == 0 and json.loads(out)[0]["top_class"] in ("ant", "bee", "cat", "dog"), err
    code, _, err = cli(capsys, "split", "--dataset", "image-folder", "--root", root / "images", "--out",
                       copy / "splits", "--profile", "none", "--open-classes", "ant", "--val-per-class", "4",
                       "--test-per-class", "6", "--order", "label", "--force")
    assert code == 0, err
    err = _one_error(capsys, "predict", copy, _image(trained))
    assert err == (f"openlt predict: error: {copy} has no inference.json (a run of an older openlt), so its classes "
                   f"and input are read from its split files, but the class list changed since the run was trained "
                   f"(label 0 was 'ant', now 'bee', from {copy / 'splits' / 'manifest.json'}; split_manifest.json "
                   f"records the run's): its labels would be named after other classes; restore the split files it "
                   f"was trained on (or point data.split_dir in {copy / 'config.yaml'} at a copy of them); `openlt "
                   f"eval {copy}` where they are writes inference.json once, and the run then needs no split file to "
                   f"label images")
    assert "has no inference.json" in _one_error(capsys, "export", copy, tmp_path / "bundle")
    assert not (tmp_path / "bundle").exists() and not (copy / "inference.json").exists()
    with pytest.raises(RunDirError, match="the class list changed since the run was trained"):
        openlt.load_run(copy, device="cpu")


def test_a_run_without_inference_json_or_split_files_names_both(trained, tmp_path, capsys):
    copy = _copy(trained, tmp_path)
    (copy / "inference.json").unlink()
    (copy / "splits" / "train.txt").write_text("ant/000.png zero\n")
    err = _one_error(capsys, "predict", copy, _image(trained))
    assert err.startswith(f"openlt predict: error: {copy} has no inference.json (a run of an older openlt), so its "
                          f"classes and input are read from its split files, and these cannot be read: "
                          f"{copy / 'splits' / 'train.txt'}")


def test_a_run_without_inference_json_or_manifest_says_its_classes_are_unchecked(trained, tmp_path, capsys, caplog):
    copy = _copy(trained, tmp_path)
    (copy / "inference.json").unlink()
    (copy / "split_manifest.json").unlink()
    code, out, err = cli(capsys, "predict", copy, _image(trained), "--threshold", "0.5")
    assert code == 0, err
    assert (f"{copy} has neither inference.json nor split_manifest.json: its class names are read from "
            f"{copy / 'splits' / 'manifest.json'} unchecked" in caplog.text + err)


@pytest.mark.parametrize("edit, message", [
    (lambda s: s.update(classes=["bee", "ant", "cat", "dog"]),
     "classes differ from class_names in {run}/split_manifest.json (label 0 is 'bee' in inference.json, 'ant' "
     "there)"),
    (lambda s: s.update(classes=["ant", "bee", "cat"]),
     "classes differ from class_names in {run}/split_manifest.json (3 classes in inference.json, 4 there)"),
    (lambda s: s.update(open_classes=["dog"]),
     "open_classes is ['dog'], but {run}/split_manifest.json records ['eel'] (open_class_names)"),
    (lambda s: (s.update(image_size=24), s["transform"].update(resize=24, crop=[24, 24], size=[24, 24])),
     "image_size is 24, but {run}/config.yaml gives 16 (data.image_size, data.dataset)"),
    (lambda s: s["transform"].update(mean=[0.5, 0.5, 0.5]),
     "transform.mean is [0.5, 0.5, 0.5], but {run}/config.yaml gives [0.485, 0.456, 0.406] (data.dataset, "
     "data.transform, data.image_size)"),
    (lambda s: s["transform"].update(std=[0.3, 0.3, 0.3]),
     "transform.std is [0.3, 0.3, 0.3], but {run}/config.yaml gives [0.229, 0.224, 0.225] (data.dataset, "
     "data.transform, data.image_size)"),
    (lambda s: s["transform"].update(family="imagenet", resize=18),
     "transform.family is \"imagenet\", but {run}/config.yaml gives \"small\" (data.dataset, data.transform, "
     "data.image_size)"),
])
def test_an_edited_inference_json_is_refused_naming_the_key(trained, tmp_path, capsys, edit, message):
    copy = _copy(trained, tmp_path)
    spec = json.loads((copy / "inference.json").read_text())
    edit(spec)
    (copy / "inference.json").write_text(json.dumps(spec))
    expected = (f"{copy}/inference.json: {message.format(run=copy)}; one of the two was edited since training: "
                f"restore the edited one (inference.json is written by training; without it the run is described "
                f"from its split files)")
    assert _one_error(capsys, "predict", copy, _image(trained)) == f"openlt predict: error: {expected}"
    assert _one_error(capsys, "export", copy, tmp_path / "bundle") == f"openlt export: error: {expected}"
    assert not (tmp_path / "bundle").exists()
    with pytest.raises(RunDirError) as caught:
        openlt.load_run(copy, device="cpu")
    assert str(caught.value) == expected


def test_an_edited_config_is_refused_against_inference_json_when_no_checkpoint_records_it(trained, tmp_path,
                                                                                           capsys):
    """Without checkpoints' record (an older openlt), config.yaml edited to another size is caught by
    inference.json; a run without split_manifest.json has its classes unchecked but is loaded."""
    copy = _copy(trained, tmp_path)
    (copy / "split_manifest.json").unlink()
    assert openlt.load_run(copy, device="cpu", threshold=0.5).classes == ["ant", "bee", "cat", "dog"]
    (copy / "config.yaml").write_text((copy / "config.yaml").read_text().replace("image_size: 16", "image_size: 32"))
    err = _one_error(capsys, "predict", copy, _image(trained), "--threshold", "0.5")
    assert "data.image_size" in err  # the checkpoint's recorded config (or inference.json) names it


def test_features_refuse_non_finite_values_as_predict_does(loaded):
    x = torch.zeros(3, 3, 16, 16)
    x[1, 0, 0, 0] = float("nan")
    message = "^image 1 of those given: the network's outputs for this image are not finite"
    with pytest.raises(DataError, match=message):
        loaded.predict(x)
    with pytest.raises(DataError, match=message):
        loaded.features(x)
    with pytest.raises(DataError, match="^image 3 of those given: "):  # counted over batches
        loaded.features(torch.cat([x[:1]] * 3 + [x[1:2]]), batch_size=2)
    assert torch.isfinite(loaded.features(x[:1])).all()


@pytest.mark.parametrize("checkpoint", ["../../../evil", "/etc/passwd", "..", ".", "", "sub/best", "best.x\0",
                                        ".hidden", 3, None])
def test_load_run_takes_only_a_plain_checkpoint_name(trained, checkpoint):
    with pytest.raises(ConfigError) as caught:
        openlt.load_run(trained[1].path, checkpoint=checkpoint, device="cpu")
    assert str(caught.value) == (f"checkpoint must be 'best', 'last' or the plain name of a file in the run's "
                                 f"checkpoints/ (without .safetensors), got {checkpoint!r}")


def test_load_run_takes_a_checkpoint_copied_under_a_plain_name(trained, tmp_path):
    copy = _copy(trained, tmp_path)
    with pytest.raises(RunDirError, match="^checkpoint not found: .*checkpoints/epoch1.safetensors$"):
        openlt.load_run(copy, checkpoint="epoch1", device="cpu", threshold=0.5)
    shutil.copy(copy / "checkpoints" / "best.safetensors", copy / "checkpoints" / "epoch1.safetensors")
    assert openlt.load_run(copy, checkpoint="epoch1", device="cpu", threshold=0.5).classes[0] == "ant"


def test_api_odd_images_are_one_line_data_errors(loaded, trained):
    with pytest.raises(DataError) as caught:
        loaded.predict([_image(trained), Image.new("RGB", (0, 0))])
    assert str(caught.value) == "image 1 of those given is empty (0x0 px)"
    with pytest.raises(DataError, match=r"^image 0 of those given is empty \(5x0 px\)$"):
        loaded.features([Image.new("L", (5, 0))])
    with pytest.raises(DataError) as caught:
        loaded.predict(torch.zeros(1, 3, 16, 16, device="meta"))
    assert str(caught.value) == ("a tensor of images on the meta device holds no values to label: give one on the "
                                 "CPU or a GPU (or paths / PIL images)")
    with pytest.raises(DataError, match=r"^a tensor of images must be dense, got layout torch.sparse_coo: convert "
                                        r"it with .to_dense\(\) \(or give paths / PIL images\)$"):
        loaded.predict(torch.zeros(1, 3, 16, 16).to_sparse())
    for item in (torch.zeros(3, 16, 16), np.zeros((3, 16, 16), dtype=np.float32)):
        with pytest.raises(DataError) as caught:
            loaded.predict([_image(trained), item])
        assert str(caught.value) == (f"image 1 of those given has type {type(item).__name__}: tensors and arrays "
                                     f"cannot be mixed into a list; pass one batch tensor (N, C, H, W) or a list "
                                     f"of paths / PIL images")


def test_a_tensor_that_requires_grad_is_labelled_without_warnings(loaded):
    x = torch.zeros(2, 3, 16, 16, requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        records = loaded.predict(x)
        features = loaded.features(x)
    assert len(records) == 2 and records == loaded.predict(x.detach())
    assert not features.requires_grad and torch.equal(features, loaded.features(x.detach()))


def test_load_run_takes_numpy_thresholds_and_refuses_strings(trained):
    path = trained[1].path
    for value in (np.float32(0.5), np.float64(0.25), 1, 0.5):
        run = openlt.load_run(path, threshold=value, device="cpu")
        assert run.predict(torch.zeros(1, 3, 16, 16))[0]["threshold"] == float(value)
    for value in ("0.5", True, [0.5]):
        with pytest.raises(ConfigError) as caught:
            openlt.load_run(path, threshold=value, device="cpu")
        assert str(caught.value) == (f"threshold must be a number (e.g. 0.5) or None, got {type(value).__name__} "
                                     f"{value!r}")
    with pytest.raises(ConfigError, match="^threshold must be a finite number, got nan$"):
        openlt.load_run(path, threshold=np.float32("nan"), device="cpu")


def test_load_run_refuses_non_string_devices_and_paths(trained):
    path = trained[1].path
    for device in (0, 1, 0.0, "", " ", b"cpu"):
        with pytest.raises(ConfigError) as caught:
            openlt.load_run(path, device=device)
        assert str(caught.value) == (f"device must be a device name such as 'cpu', 'cuda' or 'cuda:1' (or None: "
                                     f"CUDA when available), got {type(device).__name__} {device!r}")
    assert openlt.load_run(path, device=torch.device("cpu")).predict(torch.zeros(1, 3, 16, 16))
    for bad in (123, None, True, ["runs/x"]):
        with pytest.raises(ConfigError) as caught:
            openlt.load_run(bad)
        assert str(caught.value) == (f"load_run: path must be a run directory (a str or os.PathLike), got "
                                     f"{type(bad).__name__} {bad!r}")


def test_a_config_file_or_an_export_bundle_is_not_a_run_directory(trained, tmp_path, capsys):
    run = trained[1]
    err = _one_error(capsys, "predict", run.config_file, _image(trained))
    assert err == (f"openlt predict: error: {run.config_file} is a file, not a run directory (give its folder "
                   f"{run.path})")
    (tmp_path / "notes.txt").write_text("x")
    assert _one_error(capsys, "eval", tmp_path / "notes.txt") == (f"openlt eval: error: {tmp_path / 'notes.txt'} is "
                                                                  f"a file, not a run directory")
    code, _, err = cli(capsys, "export", run.path, tmp_path / "bundle")
    assert code == 0, err
    err = _one_error(capsys, "predict", tmp_path / "bundle", _image(trained))
    assert err == (f"openlt predict: error: {tmp_path / 'bundle'} is an export bundle (`openlt export`: openlt.json, "
                   f"model.safetensors), not a run directory: give the run directory it was exported from "
                   f"(openlt.json's source.run); the bundle is for use without openlt (its openlt.json describes it)")
    with pytest.raises(RunDirError, match="is an export bundle"):
        openlt.load_run(tmp_path / "bundle")
    with pytest.raises(RunDirError, match="is a file, not a run directory"):
        open_run(run.config_file)


def test_numpy_integers_are_taken_for_topk_and_batch_size_and_a_wrong_shape_is_named_as_given(loaded, trained):
    """trial 10 D14: `topk=np.int64(2)` and `batch_size=np.int64(2)` (were refused "must be an integer"); the
    shape error names the shape passed in, not the one after the one-image unsqueeze."""
    image = _image(trained)
    records = loaded.predict([image, image], topk=np.int64(2), batch_size=np.int64(1))
    assert [len(r["topk"]) for r in records] == [2, 2] and records[0] == records[1]
    assert loaded.features([image], batch_size=np.int64(2)).shape[0] == 1
    for bad in (True, 1.5, "2"):
        with pytest.raises(ConfigError, match="batch_size must be an integer >= 1"):
            loaded.predict([image], batch_size=bad)
    with pytest.raises(DataError, match=r"got a tensor of dtype torch.float32, shape \(1, 5, 5\)$"):
        loaded.predict(torch.zeros(1, 5, 5))
