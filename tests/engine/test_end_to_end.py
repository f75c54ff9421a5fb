"""Through the CLI on a tiny generated image folder: split -> train 2 epochs -> eval -> predict -> resume."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from openlt.cli import main
from openlt.config import build_config
from openlt.engine.run import open_run
from openlt.engine.train import train

TINY = ["data.dataset=image-folder", "data.image_size=16", "model.backbone=resnet10", "train.epochs=2",
        "train.batch_size=16", "train.lr=0.05", "eval.batch_size=64", "eval.many_above=30", "eval.few_below=15",
        "data.split.n_max=40", "data.split.n_min=8", "data.split.open_classes=[eel]", "data.split.val_per_class=4",
        "data.split.test_per_class=6", "data.split.order=label"]


def cli(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def trained_run(image_folder, tmp_path, capsys):
    config = tmp_path / "tiny.yaml"
    config.write_text("name: tiny\n")
    code, out, err = cli(capsys, "train", config, f"data.root={image_folder}", f"out_dir={tmp_path / 'runs'}",
                         *TINY, "--quiet")
    assert code == 0, err
    runs = list((tmp_path / "runs").iterdir())
    assert len(runs) == 1
    return runs[0], out


def test_train_writes_a_complete_run_directory(trained_run):
    run, out = trained_run
    for name in ("config.yaml", "split_manifest.json", "metrics.jsonl", "metrics.json", "report.md",
                 "calibration.json", "checkpoints/last.safetensors", "checkpoints/best.safetensors",
                 "splits/train.txt", "splits/open.txt"):
        assert (run / name).is_file(), name
    epochs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in epochs] == [1, 2]
    assert all({"train_loss", "train_acc", "lr", "val", "time_s"} <= set(e) for e in epochs)
    manifest = json.loads((run / "split_manifest.json").read_text())
    assert manifest["class_names"] == ["ant", "bee", "cat", "dog"] and manifest["open_class_names"] == ["eel"]
    assert manifest["train_counts"] == [40, 23, 13, 8]  # exp profile 40 -> 8 in label order
    assert manifest["bands"]["per_class"] == ["many", "medium", "few", "few"]
    metrics = json.loads((run / "metrics.json").read_text())
    closed = metrics["closed"]
    assert 0.0 <= closed["overall"] <= 1.0 and set(closed) >= {"many", "medium", "few", "overall"}
    assert len(metrics["per_class_accuracy"]) == 4 and "confusion_matrix" not in metrics  # no K x K in the JSON
    from openlt.reporting import load_confusion
    matrix = load_confusion(run / metrics["confusion"]["file"])  # the sparse matrix, in its own file
    assert matrix.shape == (4, 4) and matrix.sum() == 4 * 6  # every test image in the matrix
    assert sum(map(sum, metrics["confusion"]["by_band"]["counts"])) == 4 * 6 + 6  # and every test + open decision
    op = metrics["open"]
    assert op["n_open"] == 6 and 0.0 <= op["f_measure"] <= 1.0 and 0.0 <= op["auroc"] <= 1.0
    assert op["tp"] + op["fp"] == 24  # every known test image is a TP or an FP
    assert "closed-set top-1" in out and "F-measure" in out
    assert not list(run.rglob(".*.tmp"))


def test_eval_and_predict_from_the_run_directory(trained_run, image_folder, capsys):
    run, _ = trained_run
    code, out, err = cli(capsys, "eval", run, "--json", "--quiet")
    assert code == 0, err
    result = json.loads(out)
    assert result["calibration"]["source"].startswith("validation")
    code, out, _ = cli(capsys, "eval", run, "--threshold", "1.01", "--json", "--quiet")
    assert json.loads(out)["open"]["known_rejected"] == 1.0  # nothing reaches a threshold above 1
    code, out, _ = cli(capsys, "summary", f"tiny={run}")
    assert code == 0 and ("| tiny | 1 |" in out or "| tiny † | 1 |" in out)  # †: a 2-epoch run may be under-trained
    code, out, err = cli(capsys, "summary", f"tiny={run}", f"tiny={run}")  # one run is not two seeds
    assert code == 2 and "are the same run" in err
    images = sorted((image_folder / "ant").glob("*.png"))[:2] + sorted((image_folder / "eel").glob("*.png"))[:1]
    code, out, err = cli(capsys, "predict", run, *images, "--json")
    assert code == 0, err
    preds = json.loads(out)
    assert len(preds) == 3
    for p in preds:
        assert p["class_name"] in {"ant", "bee", "cat", "dog", "unknown"} and 0 < p["confidence"] <= 1
        assert p["score"] == "msp" and p["open_score"] == pytest.approx(p["confidence"])
        assert p["rejected"] == (p["confidence"] < p["threshold"])


def test_resume_after_an_interruption_matches_an_uninterrupted_run(image_folder, tmp_path):
    cfg = build_config(None, [f"data.root={image_folder}", f"out_dir={tmp_path / 'runs'}", *TINY])
    full = train(cfg, name="full", quiet=True, log=lambda s: None)

    def stop_after_first_epoch(line):
        if line.startswith("epoch   1/2"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(cfg, name="cut", quiet=True, log=stop_after_first_epoch)
    cut = open_run(next((tmp_path / "runs").glob("cut-*")))
    assert len(cut.epochs_logged()) == 1
    train(cut.config(), run=cut, resume=True, quiet=True, log=lambda s: None)
    assert [e["epoch"] for e in cut.epochs_logged()] == [1, 2]
    assert [e["lr"] for e in cut.epochs_logged()] == [e["lr"] for e in full.epochs_logged()]  # the same schedule
    from safetensors.torch import load_file

    a, b = load_file(full.checkpoint("last")), load_file(cut.checkpoint("last"))
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_python_dash_m_works():
    result = subprocess.run([sys.executable, "-m", "openlt", "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and "openlt" in result.stdout


def test_oltr_stage1_to_stage2_through_the_cli(trained_run, image_folder, tmp_path, capsys):
    stage1, _ = trained_run
    config = Path(__file__).parents[2] / "configs" / "fmnist_lt" / "oltr_stage2.yaml"
    code, out, err = cli(capsys, "train", config, f"data.root={image_folder}", f"out_dir={tmp_path / 'runs2'}",
                         *TINY, f"data.split_dir={stage1 / 'splits'}", f"train.init_from={stage1}", "train.freeze_backbone=true", "--quiet")
    assert code == 0, err
    assert "initialised from" in out and "centroids <- class means" in out
    assert "hallucinator <- stage-1 classifier" in out  # the head's own stage-1 hook
    run = next((tmp_path / "runs2").iterdir())
    metrics = json.loads((run / "metrics.json").read_text())
    assert 0.0 <= metrics["closed"]["overall"] <= 1.0 and "f_measure" in metrics["open"]
    from safetensors.torch import load_file

    s1, s2 = load_file(stage1 / "checkpoints/best.safetensors"), load_file(run / "checkpoints/best.safetensors")
    before = (run / "metrics.json").read_text()
    code, out, err = cli(capsys, "eval", run, "eval.open_score=reachability", "--tag", "reach", "--json", "--quiet")
    assert code == 0, err
    assert json.loads(out)["calibration"]["score"] == "reachability"
    assert json.loads((run / "metrics-reach.json").read_text())["calibration"]["score"] == "reachability"
    assert (run / "metrics.json").read_text() == before  # the run's own results are kept
    code, out, _ = cli(capsys, "summary", f"msp={run}", f"reach={run / 'metrics-reach.json'}")
    # the 2-epoch stage 1's curve may be still rising (†) or not, by the CPU's rounding: the row either way
    assert code == 0 and re.search(r"^\| reach( [†‡]+)? \| 1 \|", out, re.MULTILINE), out
    assert "model.classifier.centroids" in s2 and any(k.startswith("model.attention.") for k in s2)
    backbone = [k for k in s1 if k.startswith("model.backbone.")]
    assert backbone and all(torch.equal(s1[k], s2[k]) for k in backbone)  # frozen: loaded exactly, unchanged
