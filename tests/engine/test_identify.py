"""`openlt identify` end to end on tiny synthetic faces: a run of configs/ms1m_lt/plain_resnet18.yaml trained one
epoch on 16 px coloured blobs, then probe / gallery / distractor lists and a pairs file through the CLI."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cli_ok import main_ok
from openlt.cli import main
from openlt.config import build_config
from openlt.data.build import prepare_data
from openlt.engine.identify import read_pairs_file
from openlt.engine.run import Run
from openlt.engine.runtime import load_run_model
from openlt.metrics.identification import enrol, match, pair_scores, rank1_by_band, tar_at_far

CONFIG = Path(__file__).parents[2] / "configs" / "ms1m_lt" / "plain_resnet18.yaml"
TINY = ["data.image_size=16", "model.backbone=resnet10", "train.epochs=1", "train.batch_size=16",
        # float32 at a gentle lr: at lr 0.05 in bf16 this run once gave a NaN loss here and exit 2 on CI
        "train.lr=0.02", "train.amp=none", "train.milestones=[]", "data.workers=0", "eval.batch_size=64",
        "train.device=cpu", "train.channels_last=false"]
TRAIN_COUNTS = {0: 24, 1: 8, 2: 3, 3: 1}  # with --many-above 6: many, many, few, one-shot


def face(identity: int, rng: np.random.Generator, size: int = 16) -> Image.Image:
    """A 'face': an identity's own colour and blob position, plus noise."""
    colour = np.array([(identity * 67) % 256, (identity * 151) % 256, (identity * 29 + 80) % 256], np.float32)
    yy, xx = np.mgrid[:size, :size]
    cy, cx = 4 + (identity * 5) % 8, 4 + (identity * 3) % 8
    blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 8.0)[..., None]
    img = 60 + 0.4 * blob * colour + rng.normal(0, 50, (size, size, 3))  # noisy: rank-1 is not a given
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def write_list(path: Path, rows) -> Path:
    path.write_text("".join(f"{item} {label}\n" for item, label in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def faces(tmp_path_factory, single_thread):
    """Images of identities 0-9 under root/<id>/<i>.png; split files; probe / gallery / distractor lists; pairs;
    and a run trained one epoch on identities 0-3 (identity 4: zero-shot; 5, 6: never enrolled; 7-9: distractors)."""
    tmp = tmp_path_factory.mktemp("faces")
    rng = np.random.default_rng(0)
    images: dict[int, list[str]] = {}
    for identity in range(10):
        (tmp / "root" / str(identity)).mkdir(parents=True)
        n = TRAIN_COUNTS.get(identity, 0) + 8
        for i in range(n):
            face(identity, rng).save(tmp / "root" / str(identity) / f"{i}.png")
        images[identity] = [f"{identity}/{i}.png" for i in range(n)]
    splits = tmp / "splits"
    splits.mkdir()
    write_list(splits / "MS1M_LT_train.txt", [(p, c) for c, n in TRAIN_COUNTS.items() for p in images[c][:n]])
    write_list(splits / "MS1M_LT_test.txt", [(p, c) for c, n in TRAIN_COUNTS.items() for p in images[c][n:n + 2]])
    rest = {c: images[c][TRAIN_COUNTS.get(c, 0) + 2:] for c in range(10)}  # 6 unused images each
    lists = {
        "probe": write_list(tmp / "probe.txt", [(p, c) for c in range(5) for p in rest[c][:3]] +
                            [(p, -1) for p in rest[5][:3]] + [(p, 6) for p in rest[6][:2]]),
        "gallery": write_list(tmp / "gallery.txt", [(p, c) for c in (1, 4) for p in rest[c][3:5]]),
        "distractors": write_list(tmp / "distractors.txt", [(p, -1) for c in (7, 8, 9) for p in rest[c]]),
    }
    genuine = [(rest[c][0], rest[c][1], 1) for c in range(10)] + [(rest[c][1], rest[c][2], 1) for c in range(10)]
    impostor = [(rest[a][0], rest[b][2], 0) for a in range(10) for b in range(10) if a != b]
    (tmp / "pairs.txt").write_text("".join(f"{a} {b} {s}\n" for a, b, s in genuine + impostor), encoding="utf-8")
    main_ok(["train", str(CONFIG), f"data.root={tmp / 'root'}", f"data.split_dir={splits}",
             f"out_dir={tmp / 'runs'}", *TINY, "--quiet", "--no-eval"])
    return {"tmp": tmp, "run": next((tmp / "runs").iterdir()), "pairs": tmp / "pairs.txt", **lists,
            "n_pairs": (len(genuine), len(impostor))}


def features_of(faces, items: list[str]) -> np.ndarray:
    """The run's features of these images, computed here image by image (not through `openlt identify`), in the
    precision the run trained in (bf16 where auto means it: a CPU with bfloat16 units)."""
    from openlt.engine.checkpoint import recorded_amp
    from openlt.engine.precision import autocast, inference_amp

    cpu = torch.device("cpu")
    cfg, data, model, state = load_run_model(Run(faces["run"]), "best", cpu)
    transform = data.transform(False)
    with torch.no_grad(), autocast(inference_amp(cfg.train.amp, cpu, recorded_amp(state)), cpu):
        images = torch.stack([transform(Image.open(faces["tmp"] / "root" / item).convert("RGB")) for item in items])
        return model.eval().features(images)[1].float().numpy()


def read_rows(path: Path) -> tuple[list[str], list[int]]:
    rows = [line.rsplit(maxsplit=1) for line in path.read_text().splitlines()]
    return [r[0] for r in rows], [int(r[1]) for r in rows]


def identify(capsys, faces, *extra):
    code = main(["identify", str(faces["run"]), *map(str, extra), "--quiet"])
    out, err = capsys.readouterr()
    return code, out, err


def test_identify_writes_identification_json(faces, capsys):
    code, out, err = identify(capsys, faces, "--probe", faces["probe"], "--gallery", faces["gallery"],
                              "--distractors", faces["distractors"], "--pairs", faces["pairs"], "--many-above", 6,
                              "--chunk-size", 7)
    assert code == 0, err
    result = json.loads(Run(faces["run"]).identification_path().read_text())
    assert {"protocol", "run", "checkpoint", "files", "gallery", "identification", "open_set",
            "verification"} <= set(result)
    # identities 0, 2, 3 from their training images; 1 and 4 from the gallery list; 18 distractors
    assert result["gallery"] == {"identities": 5, "from_train": 3, "from_gallery_list": 2, "distractors": 18}
    ident = result["identification"]
    assert ident["bands"] == "many > 6, few 2-6, one 1, zero 0"
    assert ident["n_probes"] == {"many": 6, "few": 3, "one": 3, "zero": 3, "overall": 15}
    assert ident["n_identities"] == {"many": 2, "few": 1, "one": 1, "zero": 1}
    assert all(0.0 <= v <= 1.0 for v in ident["rank1"].values())
    open_set = result["open_set"]
    assert open_set["n_mated"] == 15 and open_set["n_non_mated"] == 5  # 3 unknown (-1) + 2 of identity 6
    assert set(open_set["at_fpir"]) == {"0.1", "0.01"}
    at = open_set["at_fpir"]["0.1"]
    assert at["rejection_rate"] == pytest.approx(1 - at["fpir"]) and 0.0 <= at["tpir"] <= 1.0
    verification = result["verification"]
    assert (verification["n_genuine"], verification["n_impostor"]) == faces["n_pairs"]
    assert set(verification["at_far"]) == {"0.001", "0.0001"}
    assert not verification["at_far"]["0.001"]["reliable"]  # 90 impostor pairs cannot measure 1e-3
    assert "rank-1 %" in out and "verification TAR at FAR 0.001" in out and "identification.json" in out


def test_identification_without_gallery_or_distractors_and_a_tag(faces, capsys):
    code, out, err = identify(capsys, faces, "--probe", faces["probe"], "--tag", "nogallery", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["gallery"] == {"identities": 4, "from_train": 4, "from_gallery_list": 0, "distractors": 0}
    # identity 4 has no template now: its probes are non-mated, like identity 6's and the unknown ones
    assert result["identification"]["n_probes"]["zero"] == 0 and result["open_set"]["n_non_mated"] == 8
    assert "verification" not in result
    assert Run(faces["run"]).identification_path("nogallery").is_file()
    # the same numbers from features computed here: templates from the training images, probes matched
    train_items, train_ids = read_rows(faces["tmp"] / "splits" / "MS1M_LT_train.txt")
    probe_items, probe_ids = read_rows(faces["probe"])
    templates, ids = enrol(features_of(faces, train_items), train_ids)
    scores, found = match(features_of(faces, probe_items), templates, ids)
    want = rank1_by_band(found, probe_labels=probe_ids, enrolled=ids, train_counts=list(TRAIN_COUNTS.values()))
    assert result["identification"]["rank1"] == pytest.approx(want["rank1"])
    assert result["identification"]["n_probes"] == want["n_probes"]


def test_verification_alone_matches_the_pair_scores(faces, capsys):
    code, out, err = identify(capsys, faces, "--pairs", faces["pairs"], "--json", "--tag", "pairs")
    assert code == 0, err
    result = json.loads(out)
    assert "identification" not in result and result["verification"]["n_genuine"] == faces["n_pairs"][0]
    rows = [line.split() for line in faces["pairs"].read_text().splitlines()]
    first, second = features_of(faces, [r[0] for r in rows]), features_of(faces, [r[1] for r in rows])
    want = tar_at_far(pair_scores(first, second), [int(r[2]) for r in rows])
    for far, at in want["at_far"].items():
        assert result["verification"]["at_far"][far]["tar"] == pytest.approx(at["tar"])
        assert result["verification"]["at_far"][far]["threshold"] == pytest.approx(at["threshold"], abs=1e-5)


def test_missing_list_file_is_one_line_exit_2(faces, capsys):
    code, out, err = identify(capsys, faces, "--probe", faces["tmp"] / "nope.txt")
    assert code == 2 and err.count("\n") == 1
    assert err == f"openlt identify: error: --probe {faces['tmp'] / 'nope.txt'}: no such file (the probe list)\n"


@pytest.mark.parametrize("content,message", [
    ("a.png b.png 2\n", "line 1: same must be 0"),
    ("a.png b.png\n", "line 1: expected 'path1 path2 same'"),
    ("a.png,b.png,1\n", "not commas"),
    ("a.png\tb.png\t1\textra\n", "it has 4 tab-separated column(s)"),
    ("path1 path2 same\na.png b.png 1\n", "got 'same' (a header line? a pairs file has none"),
    ("../a.png b.png 1\n", "must stay inside the data root"),
    ("0/0.png 0/1.png 1\n", "needs genuine (1) and impostor (0) pairs"),
])
def test_bad_pairs_file(faces, capsys, content, message):
    bad = faces["tmp"] / "bad_pairs.txt"
    bad.write_text(content, encoding="utf-8")
    code, _, err = identify(capsys, faces, "--pairs", bad)
    assert code == 2 and err.count("\n") == 1 and message in err and "bad_pairs.txt" in err


def test_bad_lists_are_refused_before_the_model(faces, capsys):
    gallery = write_list(faces["tmp"] / "bad_gallery.txt", [("0/0.png", 0), ("0/1.png", -1)])
    code, _, err = identify(capsys, faces, "--probe", faces["probe"], "--gallery", gallery)
    assert code == 2 and "bad_gallery.txt, line 2: a gallery image needs its identity" in err
    probe = write_list(faces["tmp"] / "missing_image.txt", [("0/0.png", 0), ("0/999.png", 0)])
    code, _, err = identify(capsys, faces, "--probe", probe)
    assert code == 2 and "missing_image.txt, line 2: image '0/999.png' not found" in err
    code, _, err = identify(capsys, faces, "--distractors", faces["distractors"])
    assert code == 2 and "give a probe list" in err


def test_face_transform_normalises_to_minus_one_one(faces):
    cfg = build_config(CONFIG, [f"data.root={faces['tmp'] / 'root'}", f"data.split_dir={faces['tmp'] / 'splits'}",
                                "data.image_size=16"])
    data = prepare_data(cfg)
    assert data.family == "face"
    white, black = Image.new("RGB", (16, 16), (255, 255, 255)), Image.new("RGB", (16, 16), (0, 0, 0))
    for train in (False, True):
        t = data.transform(train)
        assert t(white).shape == (3, 16, 16) and float(t(white).min()) == 1.0 and float(t(black).max()) == -1.0
    half = np.zeros((16, 16, 3), np.uint8)
    half[:, :8] = 255  # left half white: a training flip may move it, the evaluation transform never does
    out = data.transform(False)(Image.fromarray(half))
    assert float(out[0, 0, 0]) == 1.0 and float(out[0, 0, 15]) == -1.0


def test_read_pairs_file_lists_each_image_once(tmp_path):
    path = tmp_path / "p.txt"
    path.write_text("# a comment\na.png b.png 1\n\nb.png ./c.png 0\n", encoding="utf-8")
    pairs = read_pairs_file(path)
    assert pairs.first == ["a.png", "b.png"] and pairs.second == ["b.png", "c.png"] and pairs.same == [1, 0]
    assert pairs.lines == [2, 4] and pairs.images().items == ["a.png", "b.png", "c.png"]


def test_a_pairs_file_keeps_a_no_break_space_inside_a_name(tmp_path):
    # str.split() cut "10.00.00\u202fAM.png" (a macOS screenshot's name) in two: four columns, refused
    path = tmp_path / "p.txt"
    path.write_text("shot 10.00.00\u202fAM.png\tb.png\t1\na\u00a0b.png   c.png 0\n", encoding="utf-8")
    pairs = read_pairs_file(path)
    assert pairs.first == ["shot 10.00.00\u202fAM.png", "a\u00a0b.png"] and pairs.second == ["b.png", "c.png"]
    assert pairs.same == [1, 0]


def test_probes_that_are_training_or_gallery_images_are_refused(faces, capsys):
    """A probe that is a template's own image would match itself (rank-1 inflated): refused, also under another
    name (a symlink), with the count and an example; a held-out probe list beside it is accepted."""
    train = [("0/0.png", 0), ("1/3.png", 1), ("1/4.png", 1)]  # training images of the run (TRAIN_COUNTS)
    probe = write_list(faces["tmp"] / "leak_train.txt", [("0/30.png", 0), *train])
    code, _, err = identify(capsys, faces, "--probe", probe)
    assert code == 2 and err.count("\n") == 1
    assert "leak_train.txt: 3 of 4 probe image(s) are training images of the run" in err
    assert "e.g. line 2 '0/0.png' = " in err and "MS1M_LT_train.txt, line 1" in err
    (faces["tmp"] / "root" / "0" / "alias.png").symlink_to(faces["tmp"] / "root" / "0" / "1.png")
    try:
        probe = write_list(faces["tmp"] / "leak_link.txt", [("0/alias.png", 0)])
        code, _, err = identify(capsys, faces, "--probe", probe)
        assert code == 2 and "leak_link.txt: 1 of 1 probe image(s) are training images" in err
        assert "line 1 '0/alias.png' = " in err and "MS1M_LT_train.txt, line 2" in err
    finally:
        (faces["tmp"] / "root" / "0" / "alias.png").unlink()
    gallery_rows = Path(faces["gallery"]).read_text(encoding="utf-8").split()
    probe = write_list(faces["tmp"] / "leak_gallery.txt", [("0/30.png", 0), (gallery_rows[2], 1)])
    code, _, err = identify(capsys, faces, "--probe", probe, "--gallery", faces["gallery"])
    assert code == 2 and err.count("\n") == 1
    assert "leak_gallery.txt: 1 of 2 probe image(s) are images of the gallery list" in err
    assert f"e.g. line 2 '{gallery_rows[2]}' = " in err and "gallery.txt, line 2" in err
    distractor_rows = Path(faces["distractors"]).read_text(encoding="utf-8").split()
    probe = write_list(faces["tmp"] / "leak_distractor.txt", [("0/30.png", 0), (distractor_rows[0], -1)])
    code, _, err = identify(capsys, faces, "--probe", probe, "--distractors", faces["distractors"])
    assert code == 2 and err.count("\n") == 1  # every probe matched itself as a distractor: rank-1 83 -> 0 (trial 5)
    assert "leak_distractor.txt: 1 of 2 probe image(s) are images of the distractor list" in err
    assert f"e.g. line 2 '{distractor_rows[0]}' = " in err and "distractors.txt, line 1" in err
    assert not list(faces["run"].glob("identification*leak*"))


def test_a_run_whose_images_moved_takes_a_data_root_override(faces, capsys):
    """The run's own training images (templates, and the held-out check) are read from RUN/config.yaml's data.root,
    not from --root: once they moved, one line naming config.yaml's key and the override to pass (was 'data root
    does not exist or is not a folder' with the old path, and no override accepted); data.root=NEW then identifies,
    with the same numbers; keys that describe the trained run are refused (issue 14)."""
    moved = faces["tmp"] / "moved_run"
    shutil.copytree(faces["run"], moved)
    root, gone = faces["tmp"] / "root", faces["tmp"] / "gone"
    config = moved / "config.yaml"
    text = config.read_text(encoding="utf-8")
    assert text.count(f"root: {root}\n") == 1
    config.write_text(text.replace(f"root: {root}\n", f"root: {gone}\n"), encoding="utf-8")
    args = ["identify", str(moved), "--probe", str(faces["probe"]), "--root", str(root), "--quiet", "--json",
            "--tag", "moved"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err == (f"openlt identify: error: {config}: data.root {gone} is not a folder; `openlt identify` reads the "
                   "run's data there (the training images' features are the templates, and no probe may be one of "
                   "them; --root is only where the lists' paths are): if the data moved, pass data.root=NEW_FOLDER "
                   f"(`openlt identify {moved} data.root=NEW_FOLDER ...`)\n")
    assert main([*args, f"data.root={gone}"]) == 2
    assert capsys.readouterr().err == f"openlt identify: error: data.root={gone}: no such folder\n"
    assert main([*args, "model.backbone=resnet18"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("openlt identify: error: model.backbone is not an identify setting: `openlt identify RUN "
                          "key=value` may override data.root, ") and err.count("\n") == 1
    edited = faces["tmp"] / "edited_splits"
    shutil.copytree(faces["tmp"] / "splits", edited)
    train = edited / "MS1M_LT_train.txt"
    train.write_text("".join(train.read_text(encoding="utf-8").splitlines(keepends=True)[1:]), encoding="utf-8")
    assert main([*args, f"data.root={root}", f"data.split_dir={edited}"]) == 2
    err = capsys.readouterr().err  # templates from other training images than the run's: refused as eval does
    assert f"{train} is not the train split the run was trained on" in err and err.count("\n") == 1
    assert not Run(moved).identification_path("moved").exists()
    assert main([*args, f"data.root={root}", "eval.batch_size=5"]) == 0
    moved_result = json.loads(capsys.readouterr().out)
    assert identify(capsys, faces, "--probe", faces["probe"], "--tag", "unmoved")[0] == 0
    unmoved = json.loads(Run(faces["run"]).identification_path("unmoved").read_text())
    assert moved_result["identification"]["rank1"] == unmoved["identification"]["rank1"]
    assert moved_result["open_set"]["n_non_mated"] == unmoved["open_set"]["n_non_mated"] == 8


@pytest.mark.parametrize("content,message", [
    ("0/30.png 0/30.png 1\n0/30.png 1/12.png 0\n", "line 1: a pair of an image with itself: its score is 1"),
    ("0/30.png ./0/30.png 0\n0/30.png 1/12.png 1\n", "line 1: a pair of an image with itself: its score is 1"),
    ("0/30.png 1/12.png 1\n0/31.png 1/12.png 1\n0/30.png 1/12.png 0\n",
     "line 3: the pair '0/30.png' '1/12.png' is 0 here but 1 at line 1 (same and different identity): keep the "
     "right one"),
    ("0/30.png 1/12.png 0\n0/30.png 0/31.png 1\n1/12.png 0/30.png 0\n",
     "line 3: the pair '1/12.png' '0/30.png' repeats line 1 (a pair counts once, in either order): remove one"),
    ("0/30.png 1/12.png 0\n0/30.png 0/31.png 1\n0/30.png 0/31.png 1\n",
     "line 3: the pair '0/30.png' '0/31.png' repeats line 2"),
    ("0/30.png 1/12.png 0\n2/10.png 1/12.png 0\n", "needs genuine (1) and impostor (0) pairs; it has only impostor"),
])
def test_degenerate_pairs_are_refused(faces, capsys, content, message):
    """A self-pair (TAR 100 from a pair that measures nothing), a pair given twice (also reversed: counted twice)
    or as both same and different, a file without genuine or impostor pairs (TAR at FAR undefined): one line
    naming the file and line, exit 2, nothing written (issue 14)."""
    bad = faces["tmp"] / "degenerate_pairs.txt"
    bad.write_text(content, encoding="utf-8")
    code, _, err = identify(capsys, faces, "--pairs", bad, "--tag", "degenerate")
    assert code == 2 and err.count("\n") == 1, err
    assert err.startswith("openlt identify: error: ") and str(bad) in err and message in err
    assert not Run(faces["run"]).identification_path("degenerate").exists()


def test_a_self_pair_through_a_symlink_is_refused(faces, capsys):
    link = faces["tmp"] / "root" / "0" / "pair_alias.png"
    link.symlink_to(faces["tmp"] / "root" / "0" / "30.png")
    try:
        pairs = faces["tmp"] / "alias_pairs.txt"
        pairs.write_text("0/30.png 1/12.png 0\n0/pair_alias.png 0/30.png 1\n", encoding="utf-8")
        code, _, err = identify(capsys, faces, "--pairs", pairs)
        assert code == 2 and err == (f"openlt identify: error: {pairs}, line 2: a pair of an image with itself "
                                     "('0/pair_alias.png' and '0/30.png' are one file): its score is 1, accepted at "
                                     "any threshold; a verification pair needs two images\n")
    finally:
        link.unlink()


def test_probes_of_no_enrolled_identity_are_refused(faces, capsys):
    """Probes of no enrolled identity (-1, a new identity the gallery does not enrol): rank-1 and the open-set rates
    have nothing to count (was: exit 0 with every rank-1 '-'); an empty probe list; probes all enrolled: the open
    set is said to be not measured (issue 14)."""
    probe = write_list(faces["tmp"] / "unenrolled.txt", [("5/5.png", -1), ("6/5.png", 6), ("6/6.png", 6)])
    code, _, err = identify(capsys, faces, "--probe", probe, "--tag", "unenrolled")
    assert code == 2 and err == (f"openlt identify: error: {probe}: none of its 3 probe(s) has an enrolled identity "
                                 "(labels -1, 6; enrolled: the run's 0..3): rank-1 and the open-set rates need probes "
                                 "of enrolled identities; enrol new ones with --gallery\n")
    assert not Run(faces["run"]).identification_path("unenrolled").exists()
    empty = faces["tmp"] / "empty_probe.txt"
    empty.write_text("# nothing\n", encoding="utf-8")
    code, _, err = identify(capsys, faces, "--probe", empty)  # (trial 16 D12: was "split file ... lists no images")
    assert code == 2 and err == (f"openlt identify: error: --probe list {empty} lists no images (only blank or '#' "
                                 f"lines): give one 'path identity' line per image\n")
    code, _, err = identify(capsys, faces, "--probe", faces["probe"], "--gallery", empty)
    assert code == 2 and err.startswith(f"openlt identify: error: --gallery list {empty} lists no images")
    code, _, err = identify(capsys, faces, "--probe", faces["probe"], "--distractors", empty)
    assert code == 2 and err == (f"openlt identify: error: --distractors list {empty} lists no images (only blank or "
                                 f"'#' lines): give one 'path -1' line per image\n")
    probe = write_list(faces["tmp"] / "mated.txt", [("0/30.png", 0), ("2/10.png", 2)])
    code, out, err = identify(capsys, faces, "--probe", probe, "--tag", "mated")
    assert code == 0, err
    assert "open set: not measured (needs probes of enrolled and of unenrolled identities (label -1))" in out


def test_distractors_of_an_identity_are_refused(faces, capsys):
    """A distractor labelled with an identity (was ignored: counted as no one's), one that is an image of the gallery
    list or a training image of the run (a copy of a template's image of no identity: it took rank-1 from that
    identity's probes): one line naming the distractor list and line, exit 2, nothing written (issue 14)."""
    probe = faces["probe"]
    gallery_rows = Path(faces["gallery"]).read_text(encoding="utf-8").split()
    cases = [
        ([("7/0.png", -1), ("8/0.png", 3)], [], "line 2: a distractor has no identity (label -1), got 3: an image of "
         "a known identity belongs in the gallery list (--gallery) or the probe list"),
        ([("7/0.png", -1), (gallery_rows[0], -1)], ["--gallery", faces["gallery"]],
         f"line 2: distractor '{gallery_rows[0]}' is an image of the gallery list ({faces['gallery']}, line 1): a "
         "distractor must be of no enrolled identity; remove it"),
        ([("0/1.png", -1)], [], "line 1: distractor '0/1.png' is a training image of the run ("),
    ]
    for rows, extra, message in cases:
        distractors = write_list(faces["tmp"] / "bad_distractors.txt", rows)
        code, _, err = identify(capsys, faces, "--probe", probe, "--distractors", distractors, *extra,
                                "--tag", "baddistractors")
        assert code == 2 and err.count("\n") == 1, err
        assert err.startswith(f"openlt identify: error: {distractors}, {message}"), err
    assert "MS1M_LT_train.txt, line 2)" in err
    assert not Run(faces["run"]).identification_path("baddistractors").exists()


def test_identify_config_takes_a_list_of_overrides(faces):
    from openlt.engine.identify import identify_config
    from openlt.errors import ConfigError

    run = Run(faces["run"])
    with pytest.raises(ConfigError, match=r"^overrides must be a list of 'key=value' strings, got one string "
                                          r"'data.workers=0': pass \['data.workers=0'\]$"):
        identify_config(run, "best", "data.workers=0")
    assert identify_config(run, "best", ["eval.batch_size=7"]).eval.batch_size == 7
    with pytest.raises(ConfigError, match="^eval.open_score is not an identify setting"):
        identify_config(run, "best", ["eval.open_score=energy"])


def test_pairs_of_training_images_are_refused(faces, capsys):
    """A verification pair naming a training image of the run (also through a symlink: compared as files) measures
    what the network memorised (was accepted): refused like such probes, with the count of pairs and the first line
    (issue 14)."""
    link = faces["tmp"] / "root" / "1" / "train_alias.png"
    link.symlink_to(faces["tmp"] / "root" / "1" / "3.png")  # identity 1's training images are 0..7
    try:
        pairs = faces["tmp"] / "train_pairs.txt"
        pairs.write_text("0/30.png 0/31.png 1\n0/30.png 1/12.png 0\n1/train_alias.png 1/12.png 1\n"
                         "0/0.png 2/10.png 0\n", encoding="utf-8")
        code, _, err = identify(capsys, faces, "--pairs", pairs, "--tag", "trainpairs")
        assert code == 2 and err == (f"openlt identify: error: {pairs}: 2 of 4 pair(s) name training images of the "
                                     f"run, e.g. line 3 '1/train_alias.png' = {faces['tmp'] / 'splits'}/"
                                     "MS1M_LT_train.txt, line 28: verification pairs must be held out (e.g. the test "
                                     "split), or TAR measures what the network memorised; remove them\n")
        assert not Run(faces["run"]).identification_path("trainpairs").exists()
    finally:
        link.unlink()


@pytest.mark.parametrize("extra,message", [
    (["--root", "{tmp}/nope"], "--root {tmp}/nope: no such folder"),
    (["--root", "{probe}"], "--root {probe}: not a folder"),
    (["--distractors", "{distractors}", "--distractor-root", "{tmp}/nope"], "--distractor-root {tmp}/nope: no such "
     "folder"),
    (["--distractor-root", "{tmp}/root"], "--distractor-root is where the distractor list's paths are: it needs "
     "--distractors"),
])
def test_image_folders_that_are_not_folders(faces, capsys, extra, message):
    """--root / --distractor-root that are not folders (was 'data root does not exist or is not a folder: X',
    naming no option), --distractor-root without distractors (was ignored): one line, exit 2 (issue 14)."""
    fill = {"tmp": faces["tmp"], "probe": faces["probe"], "distractors": faces["distractors"]}
    code, _, err = identify(capsys, faces, "--probe", faces["probe"], *[e.format(**fill) for e in extra])
    assert code == 2 and err == f"openlt identify: error: {message.format(**fill)}\n"


def test_a_gallery_image_that_is_a_training_image_of_another_identity_is_refused(faces, capsys):
    """A gallery image enrolling identity 2 that the run trained as identity 0: one label is wrong (was accepted:
    identity 2's template built from an image of identity 0); the same image under its own identity is accepted."""
    gallery = write_list(faces["tmp"] / "relabelled_gallery.txt", [("2/10.png", 2), ("0/5.png", 2)])
    code, _, err = identify(capsys, faces, "--probe", faces["probe"], "--gallery", gallery, "--tag", "relabelled")
    assert code == 2 and err == (f"openlt identify: error: {gallery}, line 2: '0/5.png' enrols identity 2, but it is "
                                 f"a training image of identity 0 ({faces['tmp'] / 'splits'}/MS1M_LT_train.txt, line "
                                 "6): correct one of the two labels\n")
    assert not Run(faces["run"]).identification_path("relabelled").exists()
    gallery = write_list(faces["tmp"] / "own_gallery.txt", [("2/10.png", 2), ("0/5.png", 0)])
    code, _, err = identify(capsys, faces, "--probe", faces["probe"], "--gallery", gallery, "--tag", "relabelled")
    assert code == 0, err


def test_json_stdout_is_the_json_alone_without_quiet(faces, capsys):
    """--json: stdout is the JSON document (a user pipes it into jq); the feature cache's line goes to stderr
    (trial 8 D4: `features train (...) float32: reused (...)` came first on stdout unless --quiet)."""
    code = main(["identify", str(faces["run"]), "--probe", str(faces["probe"]), "--json", "--tag", "jsonout"])
    out, err = capsys.readouterr()
    assert code == 0, err
    result = json.loads(out)  # the whole of stdout
    assert result == json.loads(Run(faces["run"]).identification_path("jsonout").read_text())
    assert "features train" in err and "features train" not in out
    code = main(["identify", str(faces["run"]), "--probe", str(faces["probe"]), "--tag", "jsonout"])  # the table
    out, err = capsys.readouterr()
    assert code == 0 and out.startswith("features train") and "rank-1 %" in out


def test_the_chunk_size_does_not_change_the_result(faces, capsys):
    results = []
    for chunk in (1, 2, 65536):
        code, out, err = identify(capsys, faces, "--probe", faces["probe"], "--gallery", faces["gallery"],
                                  "--distractors", faces["distractors"], "--chunk-size", chunk, "--json",
                                  "--tag", f"chunk{chunk}")
        assert code == 0, err
        results.append({k: v for k, v in json.loads(out).items() if k != "files"})
    assert results[0] == results[1] == results[2]
    assert "warning" not in results[0]  # real features spread: no warning


def test_features_without_spread_are_warned_about(faces, capsys):
    """Probes and pairs that are copies of one image (features the same up to float rounding): one warning in
    identification.json, the JSON and under the table (trial 8 D5), as `openlt eval` warns for open-set scores."""
    tmp, root = faces["tmp"], faces["tmp"] / "root"
    (root / "same").mkdir(exist_ok=True)
    source = next((root / "5").iterdir())
    for i in range(8):
        shutil.copyfile(source, root / "same" / f"{i}.png")  # other files (inodes), the same pixels
    probe = write_list(tmp / "probe_same.txt", [(f"same/{i}.png", i % 4) for i in range(6)])
    pairs = tmp / "pairs_same.txt"
    pairs.write_text("same/0.png same/1.png 1\nsame/2.png same/3.png 0\nsame/4.png same/5.png 0\n", encoding="utf-8")
    code, out, err = identify(capsys, faces, "--probe", probe, "--pairs", pairs, "--json", "--tag", "same")
    assert code == 0, err
    warning = json.loads(out)["warning"]
    assert warning.startswith("the probe and the verification pairs' features have no spread (every image gives "
                              "the same feature up to float rounding")
    assert "reflect float rounding and the tie rule (the lower gallery index), not the data" in warning
    assert json.loads(Run(faces["run"]).identification_path("same").read_text())["warning"] == warning
    code, out, err = identify(capsys, faces, "--probe", probe, "--tag", "same")
    assert code == 0, err
    lines = out.splitlines()  # the table, its warning, the file
    assert lines[-2].startswith("warning: the probe features have no spread (every image gives the same feature")
    assert lines[-1].startswith("identification: ")


@pytest.mark.parametrize("option", ["--probe", "--gallery", "--distractors", "--pairs"])
def test_a_folder_for_a_list_option_names_the_option(faces, capsys, option):
    """A folder of images given where a list file goes (trial 8, D14): said so, not 'list not found'."""
    probe = [] if option in ("--probe", "--pairs") else ["--probe", faces["probe"]]
    code, out, err = identify(capsys, faces, *probe, option, faces["tmp"])
    assert code == 2 and err.count("\n") == 1
    assert f"{option} {faces['tmp']}: is a folder; {option} takes a" in err and "not found" not in err
