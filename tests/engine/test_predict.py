"""`openlt predict` from the run directory alone: a copied run without its data or split folder, from another
working directory; files, folders and globs; CSV / JSON lines with top-k; an unreadable image reported on its
line while the others are labelled; inference.json checked; saved configs with absolute paths (eval from
anywhere)."""

import csv
import json
import os
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from images import make_image_folder
from openlt.cli import main
from openlt.config import build_config
from openlt.data.build import prepare_data
from openlt.data.transforms import build_transform, eval_transform, eval_transform_spec
from openlt.engine import inference
from openlt.engine.checkpoint import save_checkpoint
from openlt.engine.evaluate import evaluate_run
from openlt.engine.predict import expand_inputs
from openlt.engine.run import open_run
from openlt.engine.train import train
from openlt.openset import OpenMax, Rejector, save_score
from synthetic_run import OLTR, make_run

TINY = ["data.dataset=image-folder", "data.image_size=16", "model.backbone=resnet10", "train.epochs=1",
        "train.batch_size=16", "train.lr=0.05", "eval.batch_size=64", "eval.many_above=30", "eval.few_below=15",
        "data.split.n_max=40", "data.split.n_min=8", "data.split.open_classes=[eel]", "data.split.val_per_class=4",
        "data.split.test_per_class=6", "data.split.order=label", "train.device=cpu",
        "train.amp=none"]  # float32: the tests compare predict with the model run in float32 (auto is bf16 on CPUs
# with bfloat16 units, and predict runs in the precision the run trained in)
CLASSES = ["ant", "bee", "cat", "dog"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, single_thread):
    """A tiny evaluated run, trained from `root` with relative data.root and out_dir (as a user types them)."""
    root = tmp_path_factory.mktemp("predict")
    make_image_folder(root / "data" / "images", {"ant": 60, "bee": 40, "cat": 30, "dog": 25, "eel": 25})
    before = os.getcwd()
    os.chdir(root)
    try:
        run = train(build_config(None, ["data.root=data/images", "out_dir=runs", *TINY]), quiet=True,
                    log=lambda line: None)
        run = open_run(run.path.resolve())
        evaluate_run(run, quiet=True)
    finally:
        os.chdir(before)
    return root, run


def cli(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_saved_config_paths_are_absolute_and_eval_works_from_another_directory(trained, tmp_path, monkeypatch,
                                                                                capsys):
    root, run = trained
    cfg = run.config()
    assert cfg.data.root == str(root / "data" / "images") and os.path.isabs(cfg.data.root)
    assert json.loads(run.inference_file.read_text())["classes"] == CLASSES
    monkeypatch.chdir(tmp_path)  # data.root was relative to `root` when the run was trained
    code, out, err = cli(capsys, "eval", run.path, "--json", "--quiet", "--tag", "elsewhere")
    assert code == 0, err
    assert json.loads(out)["closed"] == json.loads(run.metrics_file.read_text())["closed"]


def test_a_copied_run_predicts_without_its_data_from_another_directory(trained, tmp_path, monkeypatch, capsys):
    root, run = trained
    pictures = tmp_path / "pictures"
    shutil.copytree(root / "data" / "images" / "ant", pictures / "ant")
    (pictures / "ant" / "nested").mkdir()
    shutil.copy(pictures / "ant" / "000.png", pictures / "ant" / "nested" / "deep.png")
    (pictures / "ant" / "notes.txt").write_text("not an image")  # skipped: not an image extension
    shutil.copytree(root / "data" / "images" / "bee", pictures / "bee")
    copy = tmp_path / "moved" / "run"
    shutil.copytree(run.path, copy)
    shutil.rmtree(copy / "splits")  # the split folder goes ...
    data = root / "data"
    shutil.move(data, root / "data-away")  # ... and so do the training images
    try:
        def no_data(*args, **kwargs):
            raise AssertionError("predict read the run's data")

        monkeypatch.setattr(inference, "prepare_data", no_data)
        work = tmp_path / "elsewhere"
        work.mkdir()
        monkeypatch.chdir(work)
        code, out, err = cli(capsys, "predict", copy, pictures / "ant", str(pictures / "bee" / "00[0-2].png"),
                             "--output", "preds.csv", "--topk", "2")
    finally:
        shutil.move(root / "data-away", data)
    assert code == 0, err
    rows = list(csv.DictReader((work / "preds.csv").open()))
    ant = sorted(str(p) for p in (pictures / "ant").rglob("*.png"))
    assert [r["path"] for r in rows] == ant + [str(pictures / "bee" / f"00{i}.png") for i in range(3)]
    assert len(ant) == 61 and str(pictures / "ant" / "nested" / "deep.png") in ant
    calibration = json.loads((copy / "calibration.json").read_text())
    for row in rows:
        assert row["class_name"] in CLASSES + ["unknown"] and row["error"] == ""
        assert (row["rejected"] == "True") == (float(row["open_score"]) < calibration["threshold"])
        assert int(row["label"]) == (-1 if row["rejected"] == "True" else CLASSES.index(row["class_name"]))
        assert len(row["topk"].split(";")) == 2 and row["score"] == calibration["score"] == "msp"
    assert len(out.strip().splitlines()) == len(rows) + 1 and "predictions: preds.csv" in out


def test_predictions_match_the_model_and_carry_topk(trained, tmp_path, capsys):
    root, run = trained
    images = sorted((root / "data" / "images" / "cat").glob("*.png"))[:5]
    code, out, err = cli(capsys, "predict", run.path, *images, "--output", tmp_path / "p.jsonl", "--topk", "3")
    assert code == 0, err
    records = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert [r["path"] for r in records] == [str(p) for p in images]
    cfg = run.config()
    data = prepare_data(cfg, default_split_dir=run.splits_dir)
    model, _ = inference.build_run_model(run, cfg, inference.read_inference(run))
    with torch.no_grad():
        batch = torch.stack([data.transform(train=False)(Image.open(p).convert("RGB")) for p in images])
        probs = torch.softmax(model(batch)["logits"], dim=1)
    for record, p in zip(records, probs):
        assert [t["class_name"] for t in record["topk"]] == [CLASSES[i] for i in p.topk(3).indices]
        assert record["confidence"] == pytest.approx(float(p.max()), abs=1e-6)
        assert record["topk"][0]["probability"] == pytest.approx(record["confidence"])
        assert record["top_class"] == CLASSES[int(p.argmax())] and record["score"] == "msp"
        assert record["rejected"] == (record["open_score"] < record["threshold"])


def test_an_unreadable_image_is_reported_on_its_line_and_the_others_are_labelled(trained, tmp_path, capsys):
    root, run = trained
    good = sorted((root / "data" / "images" / "dog").glob("*.png"))[:2]
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png at all")
    empty = tmp_path / "empty-folder"
    empty.mkdir()
    inputs = [good[0], bad, tmp_path / "missing.png", empty, str(tmp_path / "*.jpg"), good[1]]
    code, out, err = cli(capsys, "predict", run.path, *inputs, "--output", tmp_path / "p.jsonl")
    assert code == 2
    assert err.startswith("openlt predict: error: 4 of 6 images could not be labelled (see their lines); first: "
                          f"corrupt or unreadable image {bad}") and len(err.strip().splitlines()) == 1
    lines = out.strip().splitlines()[:-1]
    assert [line.split("\t")[0] for line in lines] == [str(i) for i in inputs]
    assert "error: image not found" in lines[2] and "error: no image files" in lines[3]
    assert "error: no file matches" in lines[4] and "error:" not in lines[0] + lines[5]
    records = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert [r["error"] is None for r in records] == [True, False, False, False, False, True]
    assert records[1]["label"] is None and records[5]["class_name"] in CLASSES + ["unknown"]


def test_expand_inputs_takes_files_folders_and_globs(tmp_path):
    for name in ("a/1.png", "a/b/2.JPG", "a/b/notes.txt", "a/.hidden/3.png", "c/4.png"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    got = expand_inputs([str(tmp_path / "a"), str(tmp_path / "**" / "4.png"), str(tmp_path / "x.png")])
    assert got == [(str(tmp_path / "a" / "1.png"), None), (str(tmp_path / "a" / "b" / "2.JPG"), None),
                   (str(tmp_path / "c" / "4.png"), None), (str(tmp_path / "x.png"), None)]  # missing: read later
    # a pattern matching folders takes their images, as if named (helper trial, session 28: "no file matches"),
    # each once though ** matches a folder and its files
    assert expand_inputs([str(tmp_path / "[ac]")]) == got[:3]
    assert expand_inputs([str(tmp_path / "**")]) == got[:3]
    (tmp_path / "empty").mkdir()
    [(path, problem)] = expand_inputs([str(tmp_path / "empty")])
    assert path == str(tmp_path / "empty") and problem.startswith("no image files")


def test_a_dash_is_no_standard_input(tmp_path, monkeypatch):
    """(Session 27: `openlt predict RUN -` said `image not found: -`.) A file named '-' in the folder is read."""
    monkeypatch.chdir(tmp_path)
    [(path, problem)] = expand_inputs(["-"])
    assert path == "-" and problem.startswith("'-' is no image file: openlt predict reads image files, not standard")
    (tmp_path / "-").write_bytes(b"")  # a file of that name: judged as any file (no image extension: named so)
    [(path, problem)] = expand_inputs(["-"])
    assert path == "-" and "standard input" not in problem and "image" in problem


def test_options_and_inference_json_are_checked_before_any_work(trained, tmp_path, capsys):
    root, run = trained
    image = next((root / "data" / "images" / "ant").iterdir())
    code, _, err = cli(capsys, "predict", run.path, image, "--output", tmp_path / "p.txt")
    assert code == 2 and "give a .csv or .jsonl file name" in err
    copy = tmp_path / "run"
    shutil.copytree(run.path, copy)
    spec = json.loads((copy / "inference.json").read_text())
    spec["transform"]["mean"] = [0.5]
    (copy / "inference.json").write_text(json.dumps(spec))
    code, out, err = cli(capsys, "predict", copy, image)
    assert code == 2 and out == ""
    assert "inference.json is not an inference description" in err and "transform.mean" in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("family", ["small", "imagenet", "face"])
def test_the_saved_transform_rebuilds_the_evaluation_transform(family):
    mean, std = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)
    picture = Image.fromarray(np.random.default_rng(0).integers(0, 256, (37, 29, 3), dtype=np.uint8))
    spec = json.loads(json.dumps(eval_transform_spec(family, 24, mean, std)))  # through JSON, as saved
    rebuilt = eval_transform(spec)(picture)
    assert rebuilt.shape == (3, 24, 24) and rebuilt.dtype == torch.float32
    assert torch.equal(rebuilt, build_transform(family, False, 24, mean, std)(picture))
    from torchvision.transforms import v2  # the pipeline as it was written before it was described

    first = {"small": [v2.Resize(24, antialias=True), v2.CenterCrop(24)],
             "imagenet": [v2.Resize(27, antialias=True), v2.CenterCrop(24)],
             "face": [v2.Resize((24, 24), antialias=True)]}[family]
    before = v2.Compose([v2.ToImage(), *first, v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)])
    assert torch.equal(rebuilt, before(picture))


def test_the_saved_transform_is_the_runs_evaluation_transform(trained):
    root, run = trained
    data = prepare_data(run.config(), default_split_dir=run.splits_dir)
    spec = inference.read_inference(run)
    assert spec == inference.InferenceSpec.from_data(data)
    assert (spec.in_chans, spec.image_size, spec.transform["family"], spec.open_classes) == (3, 16, "small", ("eel",))
    picture = Image.open(next((root / "data" / "images" / "eel").iterdir())).convert("RGB")
    assert torch.equal(spec.image_transform()(picture), data.transform(train=False)(picture))


def test_oltr_and_openmax_runs_predict_with_their_saved_state_and_no_data(tmp_path, monkeypatch, capsys):
    """Runs made directly, so no data exists at all: OLTR's reachability comes from the centroids in the
    checkpoint, OpenMax's score from the fit evaluation saved (open-score.safetensors)."""
    def no_data(*args, **kwargs):
        raise AssertionError("predict read data")

    monkeypatch.setattr(inference, "prepare_data", no_data)
    image = tmp_path / "p.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(image)
    oltr, oltr_model = make_run(tmp_path / "oltr", OLTR)
    Rejector.fixed("reachability", 1.0, "fixed (eval.open_threshold)").save(oltr.calibration_file)
    plain, plain_model = make_run(tmp_path / "plain")
    openmax = OpenMax(tail_size=5).fit({"logits": torch.randn(60, 3) * 3, "labels": torch.arange(60) % 3})
    save_score(plain.open_score_path(), openmax, fitted_on=inference.checkpoint_identity(plain, "best"))
    Rejector.fixed("openmax", 0.5, "fixed (eval.open_threshold)").save(plain.calibration_file)
    x = inference.read_inference(plain).image_transform()(Image.open(image))[None]
    with torch.no_grad():
        expected = {"reachability": float(oltr_model(x)["reachability"][0]),
                    "openmax": float(openmax.score({"logits": plain_model(x)["logits"]})[0])}
    for run, score in ((oltr, "reachability"), (plain, "openmax")):
        code, out, err = cli(capsys, "predict", run.path, image, "--json")
        assert code == 0, err
        [record] = json.loads(out)
        assert record["score"] == score and record["open_score"] == pytest.approx(expected[score], rel=1e-5)
        assert record["rejected"] == (expected[score] < record["threshold"])


def test_a_run_without_inference_json_is_described_from_its_data_and_eval_adds_it(trained, tmp_path, capsys):
    root, run = trained
    copy = tmp_path / "old-run"
    shutil.copytree(run.path, copy)
    (copy / "inference.json").unlink()  # as a run of an older openlt
    image = next((root / "data" / "images" / "bee").iterdir())
    code, out, err = cli(capsys, "predict", copy, image, "--json")
    assert code == 0, err
    assert json.loads(out)[0]["class_name"] in CLASSES + ["unknown"] and not (copy / "inference.json").exists()
    code, _, err = cli(capsys, "eval", copy, "--tag", "again", "--quiet")
    assert code == 0, err
    assert (copy / "inference.json").read_text() == run.inference_file.read_text()


def _image(tmp_path):
    image = tmp_path / "p.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(image)
    return image


def test_a_calibration_of_another_checkpoint_is_refused(tmp_path, capsys, single_thread):
    """calibration.json records the checkpoint it was fitted on: `--checkpoint last` does not reuse best's."""
    run, model = make_run(tmp_path / "run")
    torch.manual_seed(5)
    for p in model.parameters():
        p.data.normal_()
    save_checkpoint(run.checkpoint("last"), model, None, {"epoch": 4})
    image = _image(tmp_path)
    code, out, err = cli(capsys, "predict", run.path, image, "--checkpoint", "last")
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert err.startswith(f"openlt predict: error: {run.path}: calibration.json was fitted on "
                          "checkpoints/best.safetensors (sha256 ")
    assert err.strip().endswith(f"not on checkpoints/last.safetensors (sha256 "
                                f"{inference.checkpoint_identity(run, 'last')['sha256'][:12]}); fit it for "
                                f"checkpoints/last.safetensors with `openlt eval {run.path} --checkpoint last`")
    code, out, err = cli(capsys, "predict", run.path, image, "--checkpoint", "last", "--threshold", "0.5", "--json")
    assert code == 0, err
    assert json.loads(out)[0]["threshold"] == 0.5  # a fixed threshold belongs to no checkpoint
    assert cli(capsys, "predict", run.path, image)[0] == 0  # best: its own calibration


def test_a_run_never_evaluated_is_refused_without_a_threshold_and_nothing_is_written(tmp_path, capsys, monkeypatch,
                                                                                       single_thread):
    def no_data(*args, **kwargs):
        raise AssertionError("predict read data")

    monkeypatch.setattr(inference, "prepare_data", no_data)
    run, _ = make_run(tmp_path / "run", calibration=False)
    image = _image(tmp_path)
    before = sorted(p.name for p in run.path.rglob("*"))
    code, out, err = cli(capsys, "predict", run.path, image)
    assert code == 2 and out == ""
    assert err.strip().splitlines() == [
        f"openlt predict: error: {run.path} has no calibration.json: it was never evaluated, so no rejection "
        f"threshold was chosen; choose it on validation with `openlt eval {run.path}`, or give a fixed one "
        "(--threshold T)"]
    code, out, err = cli(capsys, "predict", run.path, image, "--threshold", "0.3", "--json")
    assert code == 0, err
    assert json.loads(out)[0]["threshold"] == 0.3 and sorted(p.name for p in run.path.rglob("*")) == before
    # a closed-set run without validation: its evaluation rejects nothing, so neither does predict
    files = {split: {"file": f"{split}.txt", "sha256": "a" * 64} for split in ("train", "test")}
    run.manifest_file.write_text(json.dumps({"class_names": ["ant", "bee", "cat"], "files": files}))
    code, out, err = cli(capsys, "predict", run.path, image, "--json")
    assert code == 0, err
    [record] = json.loads(out)
    assert record["threshold"] is None and record["rejected"] is False and record["score"] == "msp"


def test_topk_and_device_are_checked_naming_the_option(tmp_path, capsys, single_thread):
    run, _ = make_run(tmp_path / "run")
    code, out, err = cli(capsys, "predict", run.path, tmp_path / "missing.png", "--topk", "4")
    assert code == 2 and out == ""  # before any image is read
    assert err.strip() == ("openlt predict: error: --topk must be an integer from 1 to 3 (the run's known classes), "
                           "got 4")
    if not torch.cuda.is_available():
        code, _, err = cli(capsys, "predict", run.path, tmp_path / "missing.png", "--device", "cuda")
        assert code == 2
        assert err.strip() == ("openlt predict: error: --device cuda but no CUDA device is available; use --device "
                               "cpu or auto")


def test_an_evaluation_of_last_is_not_used_for_best(trained, tmp_path, capsys):
    """An untagged `eval --checkpoint last` fits calibration.json on last: predict of best then refuses it (and
    names the command that fits best again); predict of last uses it."""
    root, run = trained
    copy = tmp_path / "run"
    shutil.copytree(run.path, copy)
    assert json.loads((copy / "calibration.json").read_text())["fitted_on"]["checkpoint"] == "best"
    code, _, err = cli(capsys, "eval", copy, "--checkpoint", "last", "--quiet")
    assert code == 0, err
    saved = json.loads((copy / "calibration.json").read_text())
    assert saved["fitted_on"] == {**inference.checkpoint_identity(open_run(copy), "last"), "amp": "none"}  # (train.amp=none)
    image = next((root / "data" / "images" / "ant").iterdir())
    code, out, err = cli(capsys, "predict", copy, image)  # (last's file also holds the optimizer: another sha256)
    assert code == 2 and out == "" and err.strip().endswith(f"with `openlt eval {copy}`")
    assert "calibration.json was fitted on checkpoints/last.safetensors" in err
    code, out, err = cli(capsys, "predict", copy, image, "--checkpoint", "last", "--json")
    assert code == 0, err
    assert json.loads(out)[0]["threshold"] == saved["threshold"]


def test_a_closed_set_run_with_validation_rejects_nothing_unless_a_threshold_is_asked_for(tmp_path, capsys,
                                                                                           single_thread):
    """No open split (open_classes=0) but a val split: evaluation chooses no threshold and writes no calibration,
    predict labels every image; a threshold chosen on validation by an older openlt is not applied; a number
    (eval.open_threshold, --threshold) is."""
    make_image_folder(tmp_path / "images", {"ant": 60, "bee": 40, "cat": 30})
    tiny = [t for t in TINY if not t.startswith("data.split.open_classes")] + ["data.split.open_classes=0"]
    run = train(build_config(None, [f"data.root={tmp_path / 'images'}", f"out_dir={tmp_path / 'runs'}", *tiny]),
                quiet=True, log=lambda line: None)
    metrics = evaluate_run(run, quiet=True)
    assert "calibration" not in metrics and "open" not in metrics and not run.calibration_file.exists()
    folder = tmp_path / "images" / "ant"

    def labelled(*extra):
        code, out, err = cli(capsys, "predict", run.path, folder, "--json", *extra)
        assert code == 0, err
        return json.loads(out)

    records = labelled()
    assert len(records) == 60 and not any(r["rejected"] for r in records) and {r["threshold"] for r in records} == {None}
    using = inference.checkpoint_identity(run, "best")
    Rejector("msp", 0.999, "validation: keeps 95% of the known validation images", using).save(run.calibration_file)
    assert not any(r["rejected"] for r in labelled())  # an older openlt's calibration of a closed-set run
    assert all(r["rejected"] for r in labelled("--threshold", "1.0"))
    metrics = evaluate_run(run, overrides=["eval.open_threshold=1.0"], quiet=True)
    assert metrics["calibration"]["threshold"] == 1.0 and all(r["rejected"] for r in labelled())


@pytest.mark.parametrize("command", ["predict", "export", "eval"])
@pytest.mark.parametrize("value, said", [("nan", "must be a finite number, got 'nan'"),
                                         ("-inf", "must be a finite number, got '-inf'"),
                                         ("inf", "must be a finite number, got 'inf'"),
                                         ("high", "must be a number, got 'high'")])
def test_threshold_option_must_be_a_finite_number_and_is_named_as_given(command, value, said, tmp_path, capsys):
    """--threshold nan / -inf / inf / a word: refused by the option's own type, naming --threshold (not
    eval.open_threshold, not argparse's "expected one argument" for '-inf')."""
    where = {"predict": [tmp_path / "x.png"], "export": [tmp_path / "bundle"], "eval": []}[command]
    with pytest.raises(SystemExit) as exit_:
        main([command, str(tmp_path / "run"), *map(str, where), "--threshold", value])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and f"argument --threshold: {said}" in err and "open_threshold" not in err, err


@pytest.mark.parametrize("value", ["1.5", "-1", "-1e3"])
def test_a_threshold_outside_the_scores_range_is_refused_by_predict_and_export(trained, tmp_path, capsys, value):
    _, run = trained
    image = next((trained[0] / "data" / "images" / "ant").glob("*.png"))
    code, out, err = cli(capsys, "predict", run.path, image, "--threshold", value)
    assert code == 2 and not out and f"--threshold {float(value):g} is outside the range of the open-set score msp " \
                                     f"([0, 1])" in err, err
    code, _, err = cli(capsys, "export", run.path, tmp_path / "bundle", "--threshold", value)
    assert code == 2 and "outside the range of the open-set score msp" in err and not (tmp_path / "bundle").exists()
    code, out, err = cli(capsys, "predict", run.path, image, "--threshold=0", "--json")  # the range's own end
    assert code == 0 and json.loads(out)[0]["threshold"] == 0.0, err
