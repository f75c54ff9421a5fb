"""`openlt predict RUN IMAGES --output FILE | head -1` (trial 12 D3): the reader of stdout goes away after the first
line; the --output file is still written, complete, and the command ends quietly with 141 (128 + SIGPIPE), as
Unix tools do. It was killed before the file was written (the file came after every printed line)."""

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from synthetic_run import make_run
import forked_python  # tests/helpers


@pytest.fixture(scope="module")
def run_and_images(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipe")
    run, _ = make_run(root / "run")
    folder = root / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(12):
        Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(folder / f"im{i:02d}.png")
    return run, folder


def _predict_unheard(*argv) -> subprocess.CompletedProcess:
    """`openlt predict ARGV` whose stdout's reader is gone before the first line (deterministic: every write fails)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    try:
        return forked_python.run([sys.executable, "-m", "openlt", "predict", *map(str, argv)], stdout=write_end,
                                 stderr=subprocess.PIPE, text=True, timeout=300, env=env)
    finally:
        os.close(write_end)


def test_a_reader_gone_keeps_the_output_file_and_ends_quietly(run_and_images, tmp_path):
    run, folder = run_and_images
    out = tmp_path / "lp.csv"
    done = _predict_unheard(run.path, folder, "--output", out, "--topk", "2")
    assert done.returncode == 141 and done.stderr == "", (done.returncode, done.stderr)
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert [os.path.basename(r["path"]) for r in rows] == [f"im{i:02d}.png" for i in range(12)]
    assert all(r["label"] and r["error"] == "" for r in rows)
    assert not [p for p in tmp_path.iterdir() if p.name != "lp.csv"]  # no temporary file left


def test_with_json_the_file_is_written_before_the_document(run_and_images, tmp_path):
    run, folder = run_and_images
    out = tmp_path / "lp.jsonl"
    done = _predict_unheard(run.path, folder, "--output", out, "--json")
    assert done.returncode == 141 and done.stderr == "", (done.returncode, done.stderr)
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(records) == 12 and all(r["error"] is None for r in records)
