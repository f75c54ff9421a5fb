"""Trial 13 D2: `openlt predict RUN EMPTY_DIR --output g.csv 2>&1 | head -1` exited 1, not 2: the error line went to
a pipe whose reader was gone, the BrokenPipeError escaped the error path (a traceback into the closed pipe, status
1). The error line is now written by `cli._say`, which lets a closed stderr go: the command's own status stands."""

import os
import subprocess
import sys

from synthetic_run import make_run
import forked_python  # tests/helpers


def _openlt_unheard(*argv, env=None) -> subprocess.CompletedProcess:
    """`openlt ARGV` with stdout and stderr on one pipe whose reader is gone (`2>&1 | head -1`, deterministic)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return forked_python.run([sys.executable, "-m", "openlt", *map(str, argv)], stdout=write_end, stderr=write_end,
                                 timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})
    finally:
        os.close(write_end)


def test_an_error_into_a_closed_pipe_keeps_exit_2(tmp_path):
    run, _ = make_run(tmp_path / "run")
    (tmp_path / "empty").mkdir()
    assert _openlt_unheard("predict", run.path, tmp_path / "empty", "--output", tmp_path / "g.csv").returncode == 2
    assert _openlt_unheard("predict", tmp_path / "nowhere", tmp_path / "empty").returncode == 2
    heard = forked_python.run([sys.executable, "-m", "openlt", "predict", str(run.path), str(tmp_path / "empty")],
                              capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert heard.returncode == 2 and heard.stderr.startswith("openlt predict: error: "), heard.stderr


def test_a_one_process_refusal_into_a_closed_pipe_keeps_exit_2(tmp_path):
    env = {"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29999"}
    assert _openlt_unheard("configs", env=env).returncode == 2
    env["RANK"] = "5"  # a malformed environment: its own line
    assert _openlt_unheard("configs", env=env).returncode == 2
