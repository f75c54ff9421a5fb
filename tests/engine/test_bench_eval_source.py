"""A bench reuses a run's metrics.json only when it evaluated what the bench evaluates (issue 14, D10 gap): the
`best` checkpoint as it is now, on the run's data. One written by `openlt eval RUN --checkpoint last` or `openlt
eval RUN data.root=ELSEWHERE` is evaluated again (one line says so) or, under --report-only, refused naming the
run and the difference; a metrics.json of an older openlt (no "checkpoint" / "data") is reused as before."""

import json
import shutil
from pathlib import Path

import pytest
from tiny_run import tiny_overrides  # tests/helpers

from openlt.cli import main
from openlt.engine import bench as bench_module
from openlt.engine.bench import load_bench, run_bench, source_differences
from openlt.engine.evaluate import evaluate_run
from openlt.engine.run import Run
from openlt.errors import ConfigError
from openlt.io import sha256_file
from openlt.reporting.summary import load_metrics, split_files

REPORT_FIGURES = "unrasterized"  # tests/conftest.py: report.html figures built, not rendered (none is looked at)


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    """A one-method bench (the tiny run) trained and evaluated once by `openlt bench`: (spec path, its run)."""
    root = tmp_path_factory.mktemp("bench_source")
    overrides = [o for o in tiny_overrides(root) if not o.startswith("out_dir=")]
    (root / "tiny.yaml").write_text("name: tiny\n")
    spec = root / "bench.yaml"
    spec.write_text(json.dumps({"name": "src", "seeds": [0], "out_dir": str(root / "out"), "overrides": overrides,
                                "methods": [{"name": "a", "config": "tiny.yaml"}]}))
    run_bench(load_bench(spec), quiet=True, log=lambda _: None)
    (run,) = [Run(p) for p in (root / "out").iterdir() if p.is_dir()]
    return spec, run


def _report_only(spec: Path) -> str:
    with pytest.raises(ConfigError) as info:
        run_bench(load_bench(spec), quiet=True, log=lambda _: None, report_only=True)
    return str(info.value)


def test_a_fresh_evaluation_records_its_checkpoint_and_data_and_is_reused(bench, monkeypatch):
    spec, run = bench
    metrics = json.loads(run.metrics_file.read_text())
    cfg = run.config()
    assert metrics["checkpoint"] == "best" and metrics["checkpoint_sha256"] == sha256_file(run.checkpoint("best"))
    assert metrics["data"] == {"root": cfg.data.root, "open_root": None, "split_dir": str(run.splits_dir.resolve())}
    assert source_differences(metrics, run, cfg) == []
    monkeypatch.setattr(bench_module, "evaluate_run", lambda *a, **k: pytest.fail("evaluated again"))
    lines = []
    run_bench(load_bench(spec), quiet=True, log=lines.append, report_only=True)
    assert any(line.startswith("[1/1] a seed 0: done (") for line in lines), lines


def test_an_evaluation_of_the_last_checkpoint_is_refused_by_report_only_and_evaluated_again(bench, capsys):
    spec, run = bench
    evaluate_run(run, checkpoint="last", quiet=True)
    message = _report_only(spec)
    assert "\n" not in message and str(run.path) in message and "metrics.json" in message and "method 'a'" in message
    assert "checkpoint: run last (`openlt eval RUN --checkpoint last`), spec best" in message
    assert main(["bench", str(spec), "--report-only", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("openlt bench: error: bench src: metrics.json of ") and "last" in err[0]
    lines = []
    run_bench(load_bench(spec), quiet=True, log=lines.append)  # evaluated again, on best
    assert any("checkpoint: run last" in line and "evaluating it again under the spec's settings" in line
               for line in lines), lines
    assert json.loads(run.metrics_file.read_text())["checkpoint"] == "best"
    run_bench(load_bench(spec), quiet=True, log=lambda _: None, report_only=True)  # now reused


def test_an_evaluation_on_another_data_root_is_refused_by_report_only_and_evaluated_again(bench, tmp_path):
    spec, run = bench
    root = run.config().data.root
    elsewhere = tmp_path / "copy"
    shutil.copytree(root, elsewhere)  # the same file names (the split files' sha256 match), other folder
    evaluate_run(run, overrides=[f"data.root={elsewhere}"], quiet=True)
    assert json.loads(run.metrics_file.read_text())["data"]["root"] == str(elsewhere)
    message = _report_only(spec)
    assert f"data.root: run {elsewhere}, spec {root}" in message and str(run.path) in message
    lines = []
    run_bench(load_bench(spec), quiet=True, log=lines.append)
    assert any(f"data.root: run {elsewhere}" in line and "evaluating it again" in line for line in lines), lines
    assert json.loads(run.metrics_file.read_text())["data"]["root"] == root


def test_weights_changed_since_the_evaluation_and_other_split_files_are_differences(bench):
    _, run = bench
    metrics = json.loads(run.metrics_file.read_text())
    cfg = run.config()
    stale = {**metrics, "checkpoint_sha256": "ab" * 32}
    now = sha256_file(run.checkpoint("best"))
    assert source_differences(stale, run, cfg) == [
        f"checkpoints/best.safetensors: run sha256 {'ab' * 6}, now {now[:12]} (trained on after this evaluation)"]
    other = {**metrics, "split_files": {**metrics["split_files"], "test": "cd" * 32}}
    test_sha = metrics["split_files"]["test"]
    assert source_differences(other, run, cfg) == [
        f"test split: run sha256 {'cd' * 6}, spec (split_manifest.json) {test_sha[:12]}"]
    fewer = {**metrics, "split_files": {k: v for k, v in metrics["split_files"].items() if k != "open"}}
    assert [d.split(":")[0] for d in source_differences(fewer, run, cfg)] == ["open split"]
    opened = {**metrics, "data": {**metrics["data"], "open_root": "/elsewhere"}}
    assert source_differences(opened, run, cfg) == ["data.open_root: run /elsewhere, spec None"]


def test_an_older_metrics_file_without_the_records_is_reused_as_before(bench):
    _, run = bench
    metrics = json.loads(run.metrics_file.read_text())
    old = {k: v for k, v in metrics.items() if k not in ("checkpoint", "checkpoint_sha256", "data", "split_files")}
    assert source_differences(old, run, run.config()) == []


def test_a_packed_data_root_elsewhere_is_not_compared(bench, tmp_path):
    """CIFAR / Fashion-MNIST files are fingerprinted in split_manifest.json and checked on every evaluation: the
    same files in another folder are the same images (no needless evaluation)."""
    _, run = bench
    copy = Run(tmp_path / "run")
    shutil.copytree(run.path, copy.path)
    manifest = json.loads(copy.manifest_file.read_text())
    manifest["data_files"] = {"data.root": {"folder": "/data/cifar", "files": {"data_batch_1": {"sha256": "e" * 64}}}}
    copy.manifest_file.write_text(json.dumps(manifest))
    metrics = json.loads(copy.metrics_file.read_text())
    moved = {**metrics, "data": {**metrics["data"], "root": "/mnt/other/cifar"}}
    assert source_differences(moved, copy, copy.config()) == []
    assert source_differences(moved, run, run.config()) == [f"data.root: run /mnt/other/cifar, spec "
                                                            f"{run.config().data.root}"]


def test_the_metrics_of_a_config_without_data_root_are_not_compared_on_it(bench):
    _, run = bench
    metrics = json.loads(run.metrics_file.read_text())
    cfg = run.config()
    cfg.data.root = None  # an older image-folder run's config: the split folder's manifest names the folder
    assert source_differences({**metrics, "data": {**metrics["data"], "root": "/x"}}, run, cfg) == []


def test_a_metrics_file_without_split_files_is_checked_on_the_run_manifests_hashes(bench, monkeypatch):
    """`openlt summary`'s rule (summary.split_files): an older metrics.json without "split_files" was evaluated on
    the split files its run's split_manifest.json records; the bench takes the same record, so reuses the run."""
    spec, run = bench
    saved = run.metrics_file.read_text()
    metrics = json.loads(saved)
    hashes = {split: info["sha256"] for split, info in json.loads(run.manifest_file.read_text())["files"].items()}
    assert metrics["split_files"] == hashes
    lost = {k: v for k, v in metrics.items() if k != "split_files"}
    try:
        run.metrics_file.write_text(json.dumps(lost))
        assert split_files(load_metrics(run.metrics_file)) == hashes  # what `openlt summary` compares it on
        assert source_differences(lost, run, run.config()) == []
        monkeypatch.setattr(bench_module, "evaluate_run", lambda *a, **k: pytest.fail("evaluated again"))
        lines = []
        run_bench(load_bench(spec), quiet=True, log=lines.append, report_only=True)
        assert any(line.startswith("[1/1] a seed 0: done (") for line in lines), lines
    finally:
        run.metrics_file.write_text(saved)
    other = {**metrics, "split_files": {**hashes, "test": "cd" * 32}}  # a record is still compared with it
    assert source_differences(other, run, run.config()) == [
        f"test split: run sha256 {'cd' * 6}, spec (split_manifest.json) {hashes['test'][:12]}"]
