"""What an evaluation records and leaves, on a tiny trained run: the evaluated model's identity (a copied run is
the same model in a summary, runs of other weights are not, wherever they were evaluated from), no evaluation of a
run another process is training, one tag rule for the CLI and the API, an interrupted write phase that leaves the
previous evaluation whole, and 1-based epochs."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap

import pytest
from safetensors import safe_open
from safetensors.torch import save_file

from tiny_run import the_run  # tests/helpers
from openlt import io
from openlt.cli import main
from openlt.engine import evaluate as evaluate_module
from openlt.engine.evaluate import evaluate_run
from openlt.errors import ConfigError
from openlt.reporting.describe import checkpoint_epoch
import forked_python  # tests/helpers

REPORT_FIGURES = "unrasterized"  # tests/conftest.py: report.html figures built, not rendered (none is looked at)


@pytest.fixture(scope="module")
def run(tmp_path_factory, shared_run, single_thread):
    return the_run(shared_run("api", tmp_path_factory.mktemp("consistency")) / "runs")  # train_tiny_run there


def cli(args: list, capsys) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def perturb_weights(checkpoint) -> None:
    """Other weights in the same file format (one tensor changed, metadata kept)."""
    with safe_open(str(checkpoint), "pt") as fh:
        meta = fh.metadata()
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    name = next(k for k in tensors if k.startswith("model.") and tensors[k].is_floating_point())
    tensors[name] = tensors[name] + 0.01
    save_file(tensors, str(checkpoint), metadata=meta)


# ---------------------------------------------------------------------------- the model's identity in a summary
def test_a_copy_evaluated_again_is_the_same_model_and_other_weights_under_one_relative_path_are_not(
        run, tmp_path, capsys, monkeypatch):
    for folder in ("a", "b"):
        shutil.copytree(run.path, tmp_path / folder / "r")
    perturb_weights(tmp_path / "b" / "r" / "checkpoints" / "best.safetensors")
    config = tmp_path / "b" / "r" / "config.yaml"  # another seed: a repeated one is refused (test_summary_recipes.py)
    config.write_text(re.sub(r"(?m)^seed: \d+$", "seed: 1", config.read_text()))
    for folder in ("a", "b"):  # each evaluated as "r" from its own working directory
        monkeypatch.chdir(tmp_path / folder)
        assert cli(["eval", "r", "--quiet"], capsys)[0] == 0
    monkeypatch.chdir(tmp_path)
    recorded = json.loads((tmp_path / "a" / "r" / "metrics.json").read_text())
    assert recorded["run"] == str(tmp_path / "a" / "r")  # resolved, absolute
    assert len(recorded["checkpoint_sha256"]) == 64

    code, out, err = cli(["summary", run.path, "a/r"], capsys)  # a copy of the run: its weights, not a second seed
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1, (out, err)
    assert "both are evaluations of the same weights" in err and recorded["checkpoint_sha256"][:12] in err
    code, out, err = cli(["summary", "a/r", "b/r"], capsys)  # other weights: two runs, wherever evaluated from
    assert code == 0 and "| runs ‡ | 2 |" in out, err


# ---------------------------------------------------------------------------- a run that is being trained
HOLD_LOCK = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from openlt.engine.run import Run
    with Run(Path(sys.argv[1])).lock():
        print("locked", flush=True)
        time.sleep(120)
""")


def test_eval_predict_export_and_load_run_refuse_a_run_that_another_process_trains(run, tmp_path, capsys):
    import openlt

    before = run.metrics_file.read_bytes()
    holder = forked_python.Popen([sys.executable, "-c", HOLD_LOCK, str(run.path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        for args in (["eval", run.path], ["predict", run.path, tmp_path],
                     ["export", run.path, tmp_path / "bundle"]):
            code, out, err = cli(args, capsys)
            assert code == 2 and len(err.strip().splitlines()) == 1, (args, err)
            assert f"{run.path} is being trained by process {holder.pid} on " in err, err
        with pytest.raises(openlt.errors.RunDirError, match=f"process {holder.pid}"):
            openlt.load_run(run.path, device="cpu")
        assert run.metrics_file.read_bytes() == before and not (tmp_path / "bundle").exists()
    finally:
        holder.kill()
        holder.wait()
    run.check_not_training("evaluate")  # the lock went with the process


def test_the_lock_of_this_very_process_does_not_stop_its_own_evaluation(run):
    with run.lock():
        run.check_not_training("evaluate")


# ---------------------------------------------------------------------------- one tag rule
BAD_TAGS = ["../../x", "x\n", "", "a/b", " x", "é", "x" * 101]


@pytest.mark.parametrize("tag", BAD_TAGS)
def test_a_bad_tag_is_refused_alike_by_the_cli_and_the_api_before_any_work(run, tag, capsys, monkeypatch):
    import openlt

    def no_work(*args, **kwargs):
        raise AssertionError("evaluated")

    monkeypatch.setattr(evaluate_module, "eval_setup", no_work)
    before = sorted(p.name for p in run.path.parent.parent.rglob("*"))
    loaded = openlt.load_run(run.path, device="cpu")
    with pytest.raises(ConfigError) as api_error:
        loaded.evaluate(tag=tag)
    with pytest.raises(ConfigError):
        evaluate_run(run, tag=tag)
    with pytest.raises(ConfigError):
        run.metrics_path(tag)
    for command in ("eval", "report"):
        code, out, err = cli([command, run.path, "--tag", tag], capsys)
        assert code == 2 and err.strip() == f"openlt {command}: error: --{api_error.value}", err
    assert sorted(p.name for p in run.path.parent.parent.rglob("*")) == before


# ---------------------------------------------------------------------------- an interrupted write phase
@pytest.mark.parametrize("after, keep", [("save_confusion", 0.8), ("save_samples", 0.7), ("write_reports", 0.6)])
def test_an_interrupted_write_phase_leaves_the_previous_evaluation_whole(run, after, keep, monkeypatch, capsys):
    files = ["metrics.json", "calibration.json", "report.md", "report.html", "predictions.npz", "confusion.npz"]
    before = {name: (run.path / name).read_bytes() for name in files}

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(evaluate_module, after, interrupted)
    code, out, err = cli(["eval", run.path, f"eval.keep_known={keep}", "--quiet"], capsys)  # another threshold
    assert code == 130, err
    assert {name: (run.path / name).read_bytes() for name in files} == before
    assert not [p for p in run.path.rglob(f"*{io.TEMP_SUFFIX}")]


def test_a_signal_while_a_group_is_renamed_is_raised_once_every_file_is_in_place(tmp_path, monkeypatch):
    replace = os.replace
    calls = []

    def replace_then_signal(src, dst, **kwargs):  # io may rename relative to a folder (src_dir_fd, dst_dir_fd)
        replace(src, dst, **kwargs)
        calls.append(dst)
        if len(calls) == 1:
            signal.raise_signal(signal.SIGINT)  # Ctrl-C between the first and the second rename

    monkeypatch.setattr(io.os, "replace", replace_then_signal)
    # Ctrl-C's own handler, whatever an earlier test in this process left installed (the full suite once ran this
    # with another SIGINT handler in place and nothing was raised; alone it always passed)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            with io.write_group():
                io.write_text(tmp_path / "a.txt", "a")
                io.write_text(tmp_path / "b.txt", "b")
                assert not (tmp_path / "a.txt").exists()  # renamed at the end of the group
        assert (tmp_path / "a.txt").read_text() == "a" and (tmp_path / "b.txt").read_text() == "b"
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, previous)


# ---------------------------------------------------------------------------- 1-based epochs
def test_metrics_json_records_the_epoch_1_based_and_older_files_read_alike(run):
    metrics = json.loads(run.metrics_file.read_text())
    assert metrics["epoch"] == 1 and metrics["epoch_base"] == 1 and metrics["convergence"]["best_epoch"] == 1
    assert "(epoch 1 of 1)" in run.report_file.read_text()
    assert checkpoint_epoch({"epoch": 0, "convergence": {"epochs": 1}}) == "epoch 1 of 1"  # an older metrics.json
    assert checkpoint_epoch(metrics) == "epoch 1 of 1"


def test_report_of_a_missing_tag_names_the_eval_command_with_the_tag(run, capsys):
    code, out, err = cli(["report", run.path, "--tag", "nonexist"], capsys)
    assert code == 2 and f"`openlt eval {run.path} --tag nonexist`" in err, err
