"""The Python API: `openlt.load_run(path)` -> LoadedRun with .predict / .features / .evaluate, on a tiny trained
run; `import openlt` stays light (torch only on first use of the API)."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import openlt
from images import make_image_folder
from openlt.cli import main
from openlt.config import build_config
from openlt.engine.evaluate import evaluate_run
from openlt.engine.train import train
from openlt.errors import ConfigError, DataError, RunDirError

REPORT_FIGURES = "unrasterized"  # tests/conftest.py: report.html figures built, not rendered (none is looked at)

TINY = ["data.dataset=image-folder", "data.image_size=16", "model.backbone=resnet10", "train.epochs=1",
        "train.batch_size=16", "train.lr=0.05", "eval.batch_size=64", "eval.many_above=30", "eval.few_below=15",
        "data.split.n_max=40", "data.split.n_min=8", "data.split.open_classes=[eel]", "data.split.val_per_class=4",
        "data.split.test_per_class=6", "data.split.order=label", "train.device=cpu",
        "train.amp=none"]  # float32: features compared with the network computed here in float32


@pytest.fixture(scope="module")
def trained(tmp_path_factory, single_thread):
    root = tmp_path_factory.mktemp("api")
    images = make_image_folder(root / "images", {"ant": 60, "bee": 40, "cat": 30, "dog": 25, "eel": 25})
    run = train(build_config(None, [f"data.root={images}", f"out_dir={root / 'runs'}", *TINY]), quiet=True,
                log=lambda line: None)
    evaluate_run(run, quiet=True)
    return images, run


def flat(record: dict) -> dict:
    """A prediction record without its path, top-k flattened (for pytest.approx)."""
    top = {f"top{i}_{k}": v for i, t in enumerate(record["topk"]) for k, v in t.items()}
    return {**{k: v for k, v in record.items() if k not in ("path", "topk")}, **top}


def test_import_openlt_is_light_and_exposes_load_run():
    code = "import sys, openlt; print('torch' in sys.modules, 'load_run' in dir(openlt), openlt.__version__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[:2] == ["False", "True"]
    assert openlt.load_run.__module__ == "openlt.engine.api" and openlt.LoadedRun.__name__ == "LoadedRun"
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        openlt.nope


def test_predict_takes_paths_pil_images_and_tensors_alike(trained, capsys):
    images, run = trained
    paths = sorted((images / "bee").glob("*.png"))[:3]
    loaded = openlt.load_run(run.path)
    assert loaded.classes == ["ant", "bee", "cat", "dog"] and "4 classes" in repr(loaded)
    by_path = loaded.predict([str(p) for p in paths], topk=2)
    pictures = [Image.open(p) for p in paths]
    by_pil = loaded.predict(pictures, topk=2)
    batch = torch.stack([loaded.transform(p.convert("RGB")) for p in pictures])
    by_tensor = loaded.predict(batch, topk=2, batch_size=2)
    by_array = loaded.predict(batch.numpy(), topk=2)
    assert [r["path"] for r in by_path] == [str(p) for p in paths] and by_pil[0]["path"] is None
    for other in (by_pil, by_tensor, by_array):  # the same up to float rounding (another batch size)
        for mine, theirs in zip(map(flat, by_path), map(flat, other)):
            assert theirs.keys() == mine.keys()
            assert all(theirs[k] == (pytest.approx(v, rel=1e-5) if type(v) is float else v) for k, v in mine.items())
    assert main(["predict", str(run.path), *map(str, paths), "--json", "--topk", "2"]) == 0
    assert [{k: v for k, v in r.items() if k != "error"} for r in json.loads(capsys.readouterr().out)] == by_path
    record = by_path[0]
    assert set(record) >= {"label", "class_name", "confidence", "open_score", "rejected", "topk"}
    assert record["rejected"] == (record["open_score"] < record["threshold"])
    assert loaded.predict(images / "cat")[0]["path"].endswith("000.png")  # a folder: its images, recursively


def test_features_are_what_the_head_sees(trained):
    images, run = trained
    loaded = openlt.load_run(run.path)
    paths = sorted((images / "ant").glob("*.png"))[:4]
    features = loaded.features(paths, batch_size=3)
    assert features.shape == (4, 512) and features.dtype == torch.float32
    batch = torch.stack([loaded.transform(Image.open(p).convert("RGB")) for p in paths])
    with torch.no_grad():
        torch.testing.assert_close(features, loaded.model.features(batch)[1])


def test_evaluate_gives_the_runs_metrics(trained):
    images, run = trained
    metrics = openlt.load_run(run.path).evaluate(tag="api")
    saved = json.loads(run.metrics_file.read_text())
    assert metrics["closed"] == saved["closed"] and metrics["open"]["auroc"] == saved["open"]["auroc"]
    assert run.metrics_path("api").is_file()


@pytest.mark.parametrize("overrides, message", [("eval.knn_k=3", "got one string 'eval.knn_k=3'"),
                                                ([3], r"got 3 \(int\)")])
def test_evaluate_refuses_overrides_that_are_no_list_of_strings(trained, overrides, message):
    """(Session 27: a string was read as its characters: ` is not an evaluation setting`; [3]: a TypeError.)"""
    _, run = trained
    with pytest.raises(ConfigError, match=message):
        openlt.load_run(run.path).evaluate(overrides=overrides)


def test_evaluate_uses_load_runs_threshold_and_keeps_the_runs_own_files(trained, tmp_path):
    """load_run(path, threshold=T).evaluate() evaluates at T; untagged, it is not the run's own evaluation, so it
    returns the metrics and writes nothing (metrics.json, calibration.json stay byte for byte)."""
    images, run = trained
    before = {p: p.read_bytes() for p in run.path.rglob("*") if p.is_file()}
    metrics = openlt.load_run(run.path, threshold=0.5).evaluate()
    assert metrics["open"]["threshold"] == 0.5 and metrics["calibration"]["source"].startswith("fixed")
    assert {p: p.read_bytes() for p in run.path.rglob("*") if p.is_file()} == before
    own = json.loads(run.metrics_file.read_text())
    assert own["open"]["threshold"] != 0.5 and metrics["closed"] == own["closed"]
    tagged = openlt.load_run(run.path, threshold=0.5).evaluate(tag="t05")
    assert json.loads(run.metrics_path("t05").read_text())["open"]["threshold"] == 0.5 == tagged["open"]["threshold"]
    assert run.metrics_file.read_bytes() == before[run.metrics_file]


def test_topk_nan_inputs_and_no_images(trained):
    images, run = trained
    loaded = openlt.load_run(run.path)
    for topk in (0, 5, -1):
        with pytest.raises(ConfigError, match=rf"topk must be an integer from 1 to 4 \(the run's known classes\), "
                                              rf"got {topk}"):
            loaded.predict(images / "dog", topk=topk)
    with pytest.raises(ConfigError, match="batch_size must be an integer >= 1"):
        loaded.predict(images / "dog", batch_size=0)
    batch = torch.zeros(3, 3, 16, 16)
    batch[1, 0, 0, 0] = float("nan")
    with pytest.raises(DataError, match=r"^image 1 of those given: the network's outputs for this image are not "
                                        r"finite \(NaN or infinite values in the input\?\)$"):
        loaded.predict(batch, topk=2)
    assert len(loaded.predict(batch[[0, 2]], topk=4)[1]["topk"]) == 4
    assert loaded.features([]).shape == (0, 512) and loaded.features([]).dtype == torch.float32
    assert loaded.predict([]) == []


def test_bad_inputs_are_one_line_errors(trained, tmp_path):
    images, run = trained
    loaded = openlt.load_run(run.path, threshold=0.5)
    with pytest.raises(DataError, match=r"float \(N, 3, 16, 16\)"):
        loaded.predict(torch.zeros(2, 1, 16, 16))
    for other_size in (torch.rand(1, 3, 300, 300), torch.rand(3, 15, 16)):  # was classified without a word
        with pytest.raises(DataError, match=r"float \(N, 3, 16, 16\), already transformed as the run was trained"):
            loaded.predict(other_size)
    with pytest.raises(DataError, match="must be float"):
        loaded.predict(np.zeros((2, 3, 16, 16), dtype=np.uint8))
    (tmp_path / "bad.png").write_text("no")
    with pytest.raises(DataError, match="corrupt or unreadable image"):
        loaded.predict([tmp_path / "bad.png"])
    with pytest.raises(DataError, match="^image 0 of those given has type int: an image must be a path, a PIL "
                                        r"image, or \(not in a list\) a batch tensor \(N, C, H, W\)$"):
        loaded.predict([3])
    assert all(r["threshold"] == 0.5 for r in loaded.predict(images / "dog"))
    with pytest.raises(RunDirError, match="run directory not found"):
        openlt.load_run(tmp_path / "nope")


def test_the_readme_example_runs(trained, tmp_path, monkeypatch, capsys):
    images, run = trained
    monkeypatch.chdir(tmp_path)
    (tmp_path / "photos").mkdir()
    for p in sorted((images / "eel").glob("*.png"))[:2]:
        (tmp_path / "photos" / p.name).write_bytes(p.read_bytes())
    (tmp_path / "shirt.png").write_bytes((images / "ant" / "000.png").read_bytes())
    example = f'''
import openlt

run = openlt.load_run({str(run.path)!r})             # a run directory
for p in run.predict(["shirt.png", "photos/"], topk=3):  # files, folders, globs, PIL images or a tensor
    print(p["path"], p["class_name"], round(p["confidence"], 3), p["rejected"])
features = run.features(["shirt.png"])                   # (N, 512) float32 tensor
metrics = run.evaluate(tag="readme")                     # as `openlt eval` (reads the run's data)
'''
    exec(compile(example, "README", "exec"), {})
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == ["shirt.png", "photos/000.png", "photos/001.png"]


def test_a_tensor_outside_the_normalised_range_is_refused(trained):
    """A float tensor is taken as `transform` gives it (pixels in [0, 1], then (x - mean) / std); one in 0..255 was
    labelled with confidence without a word: refused naming the channel, its min / max and the range expected."""
    images, run = trained
    loaded = openlt.load_run(run.path, threshold=0.5)
    path = sorted((images / "ant").glob("*.png"))[0]
    pixels = torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1)[None].float()
    low, high = float(pixels[0, 0].min()), float(pixels[0, 0].max())
    with pytest.raises(DataError, match=rf"^a tensor of images must be normalised as LoadedRun.transform gives "
                                        rf"\(pixels in \[0, 1\], then \(x - mean\) / std with mean 0.485, std 0.229: "
                                        rf"channel 0 in \[-2.12, 2.25\]\); channel 0 holds {low:.4g} .. {high:.4g} "
                                        rf"\(0..255 pixels\? divide by 255 and normalise"):
        loaded.predict(pixels)
    with pytest.raises(DataError, match=r"channel 2 in \[-1.8, 2.64\]\); channel 2 holds -9 \.\. -?[0-9.]+; or give paths"):
        batch = loaded.transform(Image.open(path).convert("RGB"))[None].clone()
        batch[0, 2, 0, 0] = -9.0
        loaded.features(batch)
    with pytest.raises(DataError, match="must be float"):
        loaded.predict(pixels.to(torch.uint8))
    normalised = loaded.transform(Image.open(path).convert("RGB"))[None]
    assert flat(loaded.predict(normalised)[0]) == pytest.approx(flat(loaded.predict([path])[0]))
    extremes = torch.stack([loaded.transform(Image.new("RGB", (16, 16), v)) for v in ((0, 0, 0), (255, 255, 255))])
    assert len(loaded.predict(extremes)) == 2  # the ends of the range are accepted
