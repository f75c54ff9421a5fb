"""Two `openlt bench` processes on one out_dir (trial 14a D3): a run another live process holds (train.lock) is
never deleted nor resumed under it: the bench waits, one line naming the run and the process, then goes on as
for an interrupted run once it is free; two benches started together train METHOD-sSEED once (no -2 copy)."""

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from openlt.engine.bench import WAIT_POLL_S, load_bench, run_bench
from openlt_processes import ENV, bench_lock_holder, finished, lock_holder, wait_for
from tiny_bench import bench_overrides, bench_root, run_bench_quietly
import forked_python  # tests/helpers


def write_spec(root: Path, out_dir: Path) -> Path:
    # train.warmup_epochs=0: no warm-up as long as the run (1 epoch), whose ConfigWarning the benches' logs would show
    spec = {"name": "two", "out_dir": str(out_dir), "seeds": [0],
            "overrides": bench_overrides(root, "train.warmup_epochs=0"),
            "methods": [{"name": "plain", "config": "tiny.yaml"}]}
    path = root / f"{out_dir.name}.yaml"
    path.write_text(json.dumps(spec))  # JSON is YAML
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory, single_thread):
    """(root, out_dir) of a one-method bench (plain, seed 0) trained once."""
    root = bench_root(tmp_path_factory.mktemp("two"))
    run_bench_quietly(write_spec(root, root / "bench"))
    return root, root / "bench"


def bench(spec: Path, log: Path) -> subprocess.Popen:
    with open(log, "w") as fh:
        return forked_python.Popen([sys.executable, "-m", "openlt", "bench", str(spec), "--quiet"], stdout=fh,
                                   stderr=subprocess.STDOUT, text=True, env=ENV)


def runs(out: Path) -> list[Path]:
    return sorted(p for p in out.glob("plain-s0-*") if p.is_dir())


@pytest.mark.parametrize("keep_last", [False, True], ids=["no-checkpoint", "interrupted"])
def test_a_held_run_is_waited_for_not_deleted(trained, tmp_path, keep_last):
    """A plain-s0 run without metrics.json held by another process (as a bench of an older openlt, or `openlt
    train --resume`, training it): was deleted (no `last` checkpoint) or `resuming the interrupted run` printed
    before the lock refusal. Now: one waiting line naming the run and the pid, the run untouched; once the
    holder is killed, deleted and trained again (no checkpoint) or resumed (a `last` checkpoint)."""
    root, original = trained
    out = tmp_path / "out"
    shutil.copytree(original, out)
    run = runs(out)[0]
    (run / "metrics.json").unlink()
    if not keep_last:
        shutil.rmtree(run / "checkpoints")
        (run / "checkpoints").mkdir()
    log = tmp_path / "bench.log"
    with lock_holder(run) as holder:
        proc = bench(write_spec(root, out), log)
        waiting = f"[1/1] plain seed 0: {run} is in use by process {holder.pid} on "
        wait_for(lambda: waiting in log.read_text(), proc, "the waiting line")
        time.sleep(2 * WAIT_POLL_S + 0.1)  # two more looks: still waiting, nothing deleted or resumed
        text = log.read_text()
        assert proc.poll() is None and run.is_dir() and (run / "config.yaml").is_file()
        assert text.count("is in use by process") == 1 and "resuming" not in text and "training" not in text.replace("under-training", "")
    finished(proc, 0)
    lines = [line for line in log.read_text().splitlines() if line.startswith("[1/1]")]
    assert lines[0].startswith(waiting) and lines[0].endswith("; waiting for it to end")
    if keep_last:
        assert lines[1:] == [f"[1/1] plain seed 0: resuming the interrupted run {run}"]
        assert runs(out) == [run]
    else:
        assert lines[1:] == ["[1/1] plain seed 0: training tiny.yaml"]
        assert len(runs(out)) == 1 and runs(out)[0] != run
    assert (runs(out)[0] / "metrics.json").is_file()
    assert not list(out.glob(".*.bench.lock")) and not list(out.glob("*/train.lock"))


def test_two_benches_started_together_train_once(trained, tmp_path):
    """Both started at once on a new out_dir: were two plain-s0 runs (plain-s0-STAMP and -2). Now one trains,
    the other waits (one line naming the first's pid) and reuses its run."""
    root, _ = trained
    spec = write_spec(root, tmp_path / "out")
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    procs = [bench(spec, logs[0]), bench(spec, logs[1])]
    for proc in procs:
        finished(proc, 0)
    texts = [log.read_text() for log in logs]
    assert len(runs(tmp_path / "out")) == 1
    trainer = [i for i, text in enumerate(texts) if "[1/1] plain seed 0: training tiny.yaml" in text]
    assert len(trainer) == 1
    waiter = 1 - trainer[0]
    waited = [line for line in texts[waiter].splitlines() if "in use by process" in line]
    assert len(waited) == 1 and re.search(rf"in use by process {procs[trainer[0]].pid} on \S+ \(another `openlt "
                                          rf"bench` on {re.escape(str(tmp_path / 'out'))}\)", waited[0]), waited
    assert f"[1/1] plain seed 0: done ({runs(tmp_path / 'out')[0]})" in texts[waiter]
    assert "training" not in texts[waiter].replace("under-training", "") and "in use" not in texts[trainer[0]]
    assert not list((tmp_path / "out").glob(".*.bench.lock"))


def test_waiting_for_an_eval_of_method_names_the_run_it_evaluates(trained, tmp_path):
    """Trial 15 #10: a bench waiting for another bench's evaluation of `plain+energy` (eval_of plain) named
    OUT/plain+energy-s0 (not created yet), a folder that never exists (its files go in plain-s0-STAMP/): now
    the plain run being evaluated."""
    root, original = trained
    out = tmp_path / "out"
    shutil.copytree(original, out)
    spec = json.loads(write_spec(root, out).read_text())
    spec["methods"].append({"name": "plain+energy", "eval_of": "plain", "overrides": ["eval.open_score=energy"]})
    path = root / "energy.yaml"
    path.write_text(json.dumps(spec))
    log = tmp_path / "bench.log"
    with bench_lock_holder(out / ".plain+energy-s0.bench.lock") as holder:
        proc = bench(path, log)
        waiting = (f"[2/2] plain+energy seed 0: {runs(out)[0]} is in use by process {holder.pid} on testhost "
                   f"(another `openlt bench` on {out}); waiting for it to end")
        wait_for(lambda: waiting in log.read_text(), proc, "the waiting line")
    finished(proc, 0)
    assert "not created yet" not in log.read_text() and (runs(out)[0] / "metrics-plain-energy.json").is_file()


def test_report_only_names_a_run_being_trained(trained, tmp_path, capsys):
    """Trial 15 #10: `--report-only` while another process trains plain-s0 said `missing: plain-s0`: now the run
    and the process training it, in the refusal when nothing is finished and in the seed's line otherwise."""
    import yaml

    from openlt.cli import main

    root, original = trained
    out = tmp_path / "out"
    shutil.copytree(original, out)
    run = runs(out)[0]
    twin = out / run.name.replace("plain-s0", "plain-s1")  # a finished seed 1 (a copy, its seed edited)
    shutil.copytree(run, twin)
    config = yaml.safe_load((twin / "config.yaml").read_text())
    config["seed"] = 1
    (twin / "config.yaml").write_text(yaml.safe_dump(config))
    (run / "metrics.json").unlink()
    spec = write_spec(root, out)
    with lock_holder(run) as holder:
        busy = f"{run} is being trained by process {holder.pid} on "
        capsys.readouterr()
        assert main(["bench", str(spec), "--report-only", "--quiet"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"openlt bench: error: bench two: --report-only found no finished run in {out} (none "
                              f"missing; plain-s0: {busy}"), err
        assert err.endswith("); run --report-only again once they have ended") and "missing: " not in err
        lines = []
        files = run_bench(load_bench(spec, seeds=[0, 1]), quiet=True, log=lines.append, report_only=True)
    assert files == {"plain": [twin / "metrics.json"]}
    assert lines[0].startswith(f"[1/2] plain seed 0: {busy}") and lines[0].endswith(": not in the table"), lines
    assert lines[1] == "seed 0: 0 of 1 method(s) finished" and lines[2] == f"[2/2] plain seed 1: done ({twin})"
    with bench_lock_holder(out / ".plain-s0.bench.lock") as holder:  # another bench about to choose plain-s0
        lines = []
        run_bench(load_bench(spec, seeds=[0, 1]), quiet=True, log=lines.append, report_only=True)
    assert lines[0] == (f"[1/2] plain seed 0: it is being chosen, trained or evaluated by process {holder.pid} on "
                        f"testhost (another `openlt bench` on {out}): not in the table")
