"""`openlt identify` and `openlt features` on a run another process trains, and images of identify's lists that do
not decode (trial 9 D4, D8).

* D4: both are refused while the run's train.lock is held (as eval, predict and export are), before anything is
  written; identification.json records the checkpoint's sha256 and epoch (as metrics.json does), so that it can
  be told from the weights a later `train --resume` writes.
* D8: every listed image's header is read before any work (an empty file, a file that is no image: the list file and
  line named, before the model is loaded); an image that passes it but does not decode (truncated) is named with
  its list file and line when it is extracted, with or without loader worker processes."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cli_ok import main_ok
from openlt.cli import main
from openlt.engine import identify as identify_module
from openlt.engine.run import Run
from openlt.io import sha256_file
import forked_python  # tests/helpers

CONFIG = Path(__file__).parents[2] / "configs" / "ms1m_lt" / "plain_resnet18.yaml"
TINY = ["data.image_size=16", "model.backbone=resnet10", "train.epochs=1", "train.batch_size=16",
        # float32 at a gentle lr: at lr 0.05 in bf16 this run once gave a NaN loss here and exit 2 on CI
        "train.lr=0.02", "train.amp=none", "train.milestones=[]", "data.workers=0", "eval.batch_size=64",
        "train.device=cpu", "train.channels_last=false"]


def cli(capsys, *args) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def save_face(path: Path, identity: int, rng: np.random.Generator) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    colour = np.array([(identity * 67) % 256, (identity * 151) % 256, (identity * 29 + 80) % 256], np.float32)
    img = 60 + 0.4 * colour + rng.normal(0, 40, (16, 16, 3))
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(path)
    return path.as_posix()


@pytest.fixture(scope="module")
def faces(tmp_path_factory, single_thread):
    """Identities 0-3 trained one epoch (root/ID/i.png), 3 probes each, 3 probes of an unknown identity (-1), 12
    distractors, and pairs of the probes."""
    tmp = tmp_path_factory.mktemp("identify_checks")
    root, rng = tmp / "root", np.random.default_rng(0)
    train, test, probe = [], [], []
    for identity in range(4):
        for i in range(14):
            save_face(root / str(identity) / f"{i}.png", identity, rng)
        train += [f"{identity}/{i}.png {identity}" for i in range(9)]
        test += [f"{identity}/{i}.png {identity}" for i in range(9, 11)]
        probe += [f"{identity}/{i}.png {identity}" for i in range(11, 14)]
    for i in range(3):
        save_face(root / "9" / f"{i}.png", 9, rng)
        probe.append(f"9/{i}.png -1")
    for i in range(12):
        save_face(root / "dis" / f"{i}.png", 7, rng)
    splits = tmp / "splits"
    splits.mkdir()
    (splits / "MS1M_LT_train.txt").write_text("\n".join(train) + "\n")
    (splits / "MS1M_LT_test.txt").write_text("\n".join(test) + "\n")
    (tmp / "probe.txt").write_text("\n".join(probe) + "\n")
    (tmp / "distractors.txt").write_text("".join(f"dis/{i}.png -1\n" for i in range(12)))
    (tmp / "pairs.txt").write_text("0/11.png 0/12.png 1\n1/11.png 1/12.png 1\n0/11.png 1/11.png 0\n"
                                   "2/11.png 3/11.png 0\n")
    main_ok(["train", str(CONFIG), f"data.root={root}", f"data.split_dir={splits}", f"out_dir={tmp / 'runs'}",
             *TINY, "--quiet", "--no-eval"])
    return {"tmp": tmp, "root": root, "run": Run(next((tmp / "runs").iterdir()))}


# ---------------------------------------------------------------------------- D4: a run that is being trained
HOLD_LOCK = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from openlt.engine.run import Run
    with Run(Path(sys.argv[1])).lock():
        print("locked", flush=True)
        time.sleep(120)
""")


def test_identify_and_features_refuse_a_run_that_another_process_trains(faces, capsys):
    run, tmp = faces["run"], faces["tmp"]
    holder = forked_python.Popen([sys.executable, "-c", HOLD_LOCK, str(run.path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        for args, what in ((["identify", run.path, "--probe", tmp / "probe.txt"], "identify it"),
                           (["features", run.path], "extract features from it")):
            code, out, err = cli(capsys, *args)
            assert code == 2 and out == "" and len(err.strip().splitlines()) == 1, (args, out, err)
            assert f"{run.path} is being trained by process {holder.pid} on " in err, err
            assert f"{what} once training has ended" in err, err
        assert not run.identification_path(None).exists() and not run.features_dir.exists()
    finally:
        holder.kill()
        holder.wait()
    code, _, err = cli(capsys, "identify", run.path, "--probe", tmp / "probe.txt", "--quiet")  # free again
    assert code == 0, err


def test_identification_json_records_the_checkpoint_sha256_and_epoch(faces, capsys):
    run, tmp = faces["run"], faces["tmp"]
    code, _, err = cli(capsys, "identify", run.path, "--probe", tmp / "probe.txt", "--tag", "sha", "--quiet")
    assert code == 0, err
    recorded = json.loads(run.identification_path("sha").read_text())
    assert recorded["checkpoint"] == "best"
    assert recorded["checkpoint_sha256"] == sha256_file(run.checkpoint("best"))
    assert recorded["epoch"] == 1 and recorded["epoch_base"] == 1
    metrics_like = {"checkpoint_sha256", "epoch", "epoch_base"}  # as metrics.json names them
    assert metrics_like <= set(recorded)


# ---------------------------------------------------------------------------- D8: images that do not decode
def _no_model(*args, **kwargs):
    raise AssertionError("the model was loaded: the image should have been refused before any work")


@pytest.mark.parametrize("kind, content, says", [
    ("empty", b"", "is an empty file (0 bytes)"),
    ("html", b"<html><body>404 not found</body></html>", "is not an image PIL can read"),
])
def test_a_distractor_without_a_readable_header_is_refused_before_any_work(faces, capsys, monkeypatch, kind,
                                                                           content, says):
    run, tmp, root = faces["run"], faces["tmp"], faces["root"]
    (root / "dis" / f"bad-{kind}.png").write_bytes(content)
    listed = tmp / f"dis-{kind}.txt"
    listed.write_text((tmp / "distractors.txt").read_text() + f"dis/bad-{kind}.png -1\n")
    monkeypatch.setattr(identify_module, "load_run_model", _no_model)
    monkeypatch.setattr(identify_module, "load_features", _no_model)
    code, out, err = cli(capsys, "identify", run.path, "--probe", tmp / "probe.txt", "--distractors", listed)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1, (out, err)
    assert f"{listed}, line 13: image 'dis/bad-{kind}.png'" in err and says in err, err


def test_a_probe_and_a_pair_image_without_a_readable_header_are_named_with_their_list_and_line(
        faces, capsys, monkeypatch):
    run, tmp, root = faces["run"], faces["tmp"], faces["root"]
    (root / "9" / "html.png").write_bytes(b"<html></html>")
    probes = tmp / "probe-html.txt"
    probes.write_text((tmp / "probe.txt").read_text() + "9/html.png -1\n")
    pairs = tmp / "pairs-html.txt"
    pairs.write_text((tmp / "pairs.txt").read_text() + "9/html.png 0/13.png 0\n")
    monkeypatch.setattr(identify_module, "load_run_model", _no_model)
    monkeypatch.setattr(identify_module, "load_features", _no_model)
    for option, listed, line in (("--probe", probes, 16), ("--pairs", pairs, 5)):
        code, out, err = cli(capsys, "identify", run.path, option, listed)
        assert code == 2 and len(err.strip().splitlines()) == 1, err
        assert f"{listed}, line {line}: image '9/html.png'" in err and "not an image PIL can read" in err, err


@pytest.mark.parametrize("workers", [0, 1])
def test_a_truncated_distractor_is_named_with_its_list_file_and_line_when_extracted(faces, capsys, workers):
    run, tmp, root = faces["run"], faces["tmp"], faces["root"]
    whole = (root / "dis" / "0.png").read_bytes()
    (root / "dis" / "truncated.png").write_bytes(whole[:100])  # the header is intact, the pixels are not
    assert identify_module.Image.open(root / "dis" / "truncated.png").size == (16, 16)
    listed = tmp / "dis-truncated.txt"
    listed.write_text((tmp / "distractors.txt").read_text() + "dis/truncated.png -1\n")
    code, out, err = cli(capsys, "identify", run.path, "--probe", tmp / "probe.txt", "--distractors", listed,
                         f"data.workers={workers}", "--quiet")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert (f"openlt identify: error: {listed}, line 13: corrupt or unreadable image {root / 'dis' / 'truncated.png'}"
            in err), err
    assert "truncated" in err.split("line 13:")[1]
