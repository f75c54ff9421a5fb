"""`openlt split`'s staging folder (trial 15 item 5): named `.OUT.PID-HOST.XXXX.tmp` like io's temporaries, so
that the next split to the same --out removes a SIGKILLed split's (a real process killed while its staging folder
exists), never one a live split is writing, nor anything of another name."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from images import make_image_folder  # tests/helpers
from openlt_processes import ENV  # tests/helpers
import forked_python  # tests/helpers

ARGS = ["--dataset", "image-folder", "--profile", "none", "--open-classes", "eel", "--val-per-class", "2",
        "--test-per-class", "2"]

# a real `openlt split` stopped just before its staging folder replaces --out: it prints the folder, then waits
STOPPED = """
import sys
import openlt.data.splits as splits
from openlt.cli import main

def held(new, target):
    print(new, flush=True)
    sys.stdin.readline()

splits._replace_folder = held
main(["split", *sys.argv[1:]])
"""


def stopped_split(images: Path, out: Path) -> tuple[subprocess.Popen, Path]:
    proc = forked_python.Popen([sys.executable, "-c", STOPPED, "--root", str(images), "--out", str(out), *ARGS],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=ENV)
    return proc, Path(proc.stdout.readline().strip())


def test_the_next_split_removes_a_killed_splits_staging_folder_and_keeps_a_live_ones(tmp_path):
    from openlt.cli import main

    images = make_image_folder(tmp_path / "images", {"ant": 12, "bee": 9, "cat": 8, "eel": 4})
    out = tmp_path / "sp" / "k1"
    killed, dead_stage = stopped_split(images, out)
    live, live_stage = stopped_split(images, out)
    try:
        for proc, stage in ((killed, dead_stage), (live, live_stage)):
            assert stage.parent == out.parent and stage.name.startswith(f".k1.{proc.pid}-"), stage
            assert stage.name.endswith(".tmp") and (stage / "manifest.json").is_file()
        os.kill(killed.pid, signal.SIGKILL)
        killed.wait()
        other = tmp_path / "sp" / ".k2.1-000000.x.tmp"  # another --out's: not this split's to remove
        other.mkdir()
        assert main(["split", "--root", str(images), "--out", str(out), *ARGS]) == 0
        assert not dead_stage.exists() and live_stage.is_dir() and other.is_dir()
        assert sorted(p.name for p in out.parent.iterdir()) == sorted([".k2.1-000000.x.tmp", live_stage.name, "k1"])
        assert (out / "manifest.json").is_file()
    finally:
        live.kill()
        killed.kill()
