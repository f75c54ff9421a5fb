"""evaluate_run on a tiny trained run: per-sample file, HTML report, `openlt report`, and OpenMax fitted on
the train split (metrics, saved state, and `predict` with it)."""

import json
import re
import shutil

import numpy as np
import pytest

from tiny_run import the_run  # tests/helpers
from openlt.cli import main
from openlt.engine import inference


@pytest.fixture(scope="module")
def run(tmp_path_factory, shared_run, single_thread):
    return the_run(shared_run("api", tmp_path_factory.mktemp("reports")) / "runs")  # train_tiny_run there


def test_evaluation_writes_the_per_sample_file_and_a_self_contained_html_report(run):
    samples = np.load(run.path / "predictions.npz")
    assert samples["test_labels"].shape == (24,) and samples["open_score"].shape == (6,)
    metrics = json.loads(run.metrics_file.read_text())
    threshold = metrics["open"]["threshold"]
    rejected = np.concatenate([samples["test_score"], samples["open_score"]]) < threshold
    assert metrics["open"]["open_rejected"] == pytest.approx(rejected[24:].mean())  # the same scores as the metrics
    page = (run.path / "report.html").read_text()
    assert len(re.findall(r'<img alt="[^"]+" src="data:image/png;base64,', page)) == 8  # + the shot band confusion
    assert (run.path / "confusion.npz").is_file() and "confusion_matrix" not in metrics
    assert "report.html" in run.report_file.read_text()


def test_metrics_name_the_open_classes_and_record_convergence_versions_device_and_time(run):
    metrics = json.loads(run.metrics_file.read_text())
    assert metrics["open_class_names"] == ["eel"]
    assert {k: metrics["convergence"][k] for k in ("best_epoch", "epochs", "still_rising", "warning")} == {
        "best_epoch": 1, "epochs": 1, "still_rising": False, "warning": None}  # one evaluation: nothing to judge
    assert set(metrics["environment"]["versions"]) == {"openlt", "torch", "torchvision", "numpy"}
    assert metrics["environment"]["device"].startswith("cpu") and metrics["epoch"] == 1  # 1-based, as the log
    page, text = (run.path / "report.html").read_text(), run.report_file.read_text()
    for shown in ("held-out class eel", "versions: openlt", "(epoch 1 of 1)", "training: 1 epoch in "):
        assert shown in page and shown in text
    assert "<details><summary>config.yaml" in page and "Warning" not in page


def test_openlt_report_rebuilds_the_page_from_the_run_directory(run, capsys):
    (run.path / "report.html").unlink()
    assert main(["report", str(run.path)]) == 0
    assert (run.path / "report.html").is_file() and "report.html" in capsys.readouterr().out
    assert main(["report", str(run.path), "--tag", "nope"]) == 2
    err = capsys.readouterr().err
    assert "metrics-nope.json not found" in err and f"`openlt eval {run.path} --tag nope`" in err, err


def test_openmax_is_fitted_on_the_train_split_and_used_by_predict(run, capsys):
    before = run.metrics_file.read_text()
    code = main(["eval", str(run.path), "eval.open_score=openmax", "eval.openmax_tail=5", "--tag", "om", "--quiet", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    metrics = json.loads((run.path / "metrics-om.json").read_text())
    summary = metrics["open_score"]
    assert summary["name"] == "openmax" and summary["tail_size"] == 5 and summary["alpha"] == 4  # min(10, 4 classes)
    assert summary["distance"] == "eucos" and 0.0 <= metrics["open"]["auroc"] <= 1.0
    assert (run.path / "open-score-om.safetensors").is_file() and (run.path / "report-om.html").is_file()
    assert run.metrics_file.read_text() == before  # tagged: the run's own results stay
    # untagged: calibration.json names openmax and predict scores with the saved fit
    assert main(["eval", str(run.path), "eval.open_score=openmax", "--quiet"]) == 0
    capsys.readouterr()
    images = sorted((run.path.parent.parent / "images" / "ant").glob("*.png"))[:2]
    assert main(["predict", str(run.path), *map(str, images), "--json"]) == 0
    preds = json.loads(capsys.readouterr().out)
    assert all(p["score"] == "openmax" and 0.0 <= p["open_score"] <= 1.0 for p in preds)


def test_openmax_options_are_checked_before_any_work(run, capsys):
    assert main(["eval", str(run.path), "eval.open_score=openmax", "eval.openmax_distance=l1", "--tag", "x"]) == 2
    err = capsys.readouterr().err  # refused when the config is built (the message names the key and the choices)
    assert "eval.openmax_distance" in err and "'l1'" in err and "eucos, euclidean, cosine" in err
    assert main(["eval", str(run.path), "eval.open_score=openmax", "eval.openmax_alpha=9", "--tag", "x"]) == 2
    assert "more than the 4 known classes" in capsys.readouterr().err


def test_predict_with_a_threshold_needs_no_calibration_file(run, tmp_path, monkeypatch, capsys):
    copy = tmp_path / run.path.name
    shutil.copytree(run.path, copy)
    (copy / "calibration.json").unlink()
    images = [str(p) for p in sorted((run.path.parent.parent / "images" / "ant").glob("*.png"))[:3]]

    def never(*args, **kwargs):
        raise AssertionError("prediction reads no data")

    monkeypatch.setattr(inference, "prepare_data", never)
    assert main(["predict", str(copy), *images, "--threshold", "0.5", "--json"]) == 0
    preds = json.loads(capsys.readouterr().out)
    assert [p["path"] for p in preds] == images and not (copy / "calibration.json").exists()
    for p in preds:
        assert p["score"] == "msp" and p["threshold"] == 0.5 and p["rejected"] == (p["open_score"] < 0.5)
        assert p["label"] == (-1 if p["rejected"] else ["ant", "bee", "cat", "dog"].index(p["top_class"]))
    # without a threshold, a run that was not evaluated is refused: predict never calibrates by itself
    assert main(["predict", str(copy), *images, "--json"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and f"{copy} has no calibration.json: it was never evaluated" in err
    assert not (copy / "calibration.json").exists()
    (copy / "calibration.json").write_text("{broken")
    assert main(["predict", str(copy), *images]) == 2
    assert "calibration.json is not a calibration file" in capsys.readouterr().err


def test_damaged_predictions_file_is_one_line_naming_it(run, tmp_path, capsys):
    """`openlt report` reads predictions.npz: a file of pickled objects is refused as damaged, never with numpy's
    advice to unpickle it (allow_pickle)."""
    copy = tmp_path / run.path.name
    shutil.copytree(run.path, copy)
    with open(copy / "predictions.npz", "wb") as fh:
        np.savez(fh, format=np.array("openlt-predictions/1"), test_labels=np.array([1, None], dtype=object))
    assert main(["report", str(copy)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"openlt report: error: {copy / 'predictions.npz'} is damaged or not a predictions file written "
                   "by openlt (not an archive of plain arrays: numpy takes it for pickled Python objects, which openlt "
                   "never writes nor loads); evaluate the run again (`openlt eval RUN`) to rewrite it"]


def test_a_run_evaluated_before_its_last_epoch_is_warned(run, tmp_path):
    """The tiny run's copy whose last checkpoint records train.epochs 3: a run killed after epoch 1 of 3 and evaluated
    (was: metrics.json, report.md and summary without a word of the 2 epochs never trained). The planned epochs are
    the checkpoint's recipe, not config.yaml's (session 22): config.yaml alone edited to 3 is a finished 1-epoch run."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from openlt.engine.evaluate import evaluate_run
    from openlt.engine.run import Run

    copy = Run(shutil.copytree(run.path, tmp_path / "killed"))
    config = copy.config_file.read_text()
    assert "  epochs: 1\n" in config
    copy.config_file.write_text(config.replace("  epochs: 1\n", "  epochs: 3\n", 1))
    evaluate_run(copy, quiet=True)
    assert json.loads(copy.metrics_file.read_text())["convergence"]["warning"] is None  # trained its recipe's 1
    last = copy.checkpoint("last")
    with safe_open(str(last), "pt") as fh:
        meta = json.loads(fh.metadata()["openlt"])
    assert meta["state"]["recipe"]["train.epochs"] == 1
    meta["state"]["recipe"]["train.epochs"] = 3  # as a run started with 3 epochs and killed after the first
    save_file(load_file(str(last)), str(last), metadata={"openlt": json.dumps(meta)})
    evaluate_run(copy, quiet=True)
    warning = json.loads(copy.metrics_file.read_text())["convergence"]["warning"]
    assert "stopped after epoch 1 of its 3" in warning and warning in copy.report_file.read_text()
