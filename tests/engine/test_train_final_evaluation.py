"""A write failure in `openlt train`'s final evaluation (engine/train.py `final_evaluation`): a full disk (an
OSError, or the WriteError openlt's writers make of it) ends in one line that keeps the cause and says that
training finished, the run is kept, and which command finishes it; that command then does."""

import errno
import json

import pytest

import openlt.engine.evaluate as evaluate
from openlt.errors import WriteError
from tiny_run import cli, tiny_overrides  # tests/helpers

REPORT_FIGURES = "unrasterized"  # tests/conftest.py: report.html figures built, not rendered (none is looked at)


def _disk_full(path, *args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device", str(path))


def _write_error(path, *args, **kwargs):
    raise WriteError(f"cannot write {path}: [Errno 28] No space left on device")


@pytest.mark.parametrize("failure, cause", [(_disk_full, "No space left on device ("),
                                            (_write_error, "cannot write ")])
def test_a_full_disk_in_the_final_evaluation_names_the_run_and_the_command(failure, cause, tmp_path, capsys,
                                                                            monkeypatch, single_thread):
    (tmp_path / "tiny.yaml").write_text("name: tiny\n")
    args = ["train", tmp_path / "tiny.yaml", *tiny_overrides(tmp_path, "train.epochs=1", "train.device=cpu"), "--quiet"]
    with monkeypatch.context() as patch:
        patch.setattr(evaluate, "write_json", failure)
        code, out, err = cli(capsys, *args)
    run = next((tmp_path / "runs").iterdir())
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("openlt train: error: ") and cause in lines[0] and "metrics.json" in lines[0]
    assert lines[0].endswith(f"; the run {run} has finished training and is kept (its checkpoints are written); its "
                             f"final evaluation failed, so finish it with `openlt train --resume {run}` once that is "
                             f"fixed"), lines[0]
    assert (run / "checkpoints" / "last.safetensors").is_file() and not (run / "metrics.json").exists()
    code, out, err = cli(capsys, "train", "--resume", run, "--quiet")  # the command, as the line gives it
    assert code == 0 and "training already finished" in out, err
    assert json.loads((run / "metrics.json").read_text())["epoch"] == 1
