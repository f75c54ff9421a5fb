"""Decoupled stage 2 end to end on a tiny generated image folder: stage 1 -> feature cache -> cRT / NCM /
tau-norm / LWS runs through the CLI; the cache is reused while fresh and rebuilt when stale."""

import json
import logging
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from fake_writer import FakeWriter
from tiny_run import train_with_cli  # tests/helpers
from openlt.config import TRAINS_NOTHING
from openlt.cli import main
from openlt.engine.features import load_features
from openlt.engine.run import open_run

REPORT_FIGURES = "unrasterized"  # tests/conftest.py: report.html figures built, not rendered (none is looked at)

CONFIGS = Path(__file__).parents[2] / "configs" / "fmnist_lt"
TINY = ["data.dataset=image-folder", "data.image_size=16", "model.backbone=resnet10", "train.epochs=2",
        "train.batch_size=16", "train.lr=0.05", "eval.batch_size=64", "eval.many_above=30", "eval.few_below=15",
        "data.split.n_max=40", "data.split.n_min=8", "data.split.open_classes=[eel]", "data.split.val_per_class=4",
        "data.split.test_per_class=6", "data.split.order=label", "train.device=cpu",
        "train.amp=none"]  # float32: the cache is compared with the network computed here in float32


def cli(*args):
    return main([str(a) for a in args])


@pytest.fixture(scope="module")
def stage1(tmp_path_factory, single_thread):
    return train_with_cli(tmp_path_factory.mktemp("decouple"), TINY)


def stage2(stage1, method, tmp, *extra):
    out = tmp / f"s2-{method}"
    training = [] if method in TRAINS_NOTHING else ["train.epochs=2", "train.batch_size=16"]  # refused otherwise
    code = cli("train", CONFIGS / f"decouple_{method}.yaml", f"train.init_from={stage1}", f"out_dir={out}",
               *training, "train.device=cpu", *extra, "--quiet")
    assert code == 0
    return next(out.iterdir())


def test_features_command_caches_every_split_and_reuses_it(stage1, capsys):
    assert cli("features", stage1, "--dtype", "float16") == 0
    out = capsys.readouterr().out
    assert out.count("extracted") == 4 or "stale, rebuilt" in out  # train/val/test/open
    files = {s: open_run(stage1).feature_cache(s) for s in ("train", "val", "test", "open")}
    assert all(f.is_file() for f in files.values())
    stamps = {s: f.stat().st_mtime_ns for s, f in files.items()}
    tensors = load_file(files["train"])
    assert tensors["features"].dtype == torch.float16 and tensors["features"].shape[1] == 512
    assert cli("features", stage1, "--dtype", "float16") == 0
    assert capsys.readouterr().out.count("reused") == 4
    assert {s: f.stat().st_mtime_ns for s, f in files.items()} == stamps  # not rewritten


def test_cache_matches_the_network_and_is_rebuilt_when_stale(stage1, caplog):
    caplog.set_level(logging.INFO, logger="openlt")  # the library logs; only the CLI prints
    run = open_run(stage1)
    feats = load_features(run, ("train", "val"), quiet=True)
    # the cached features are exactly what the frozen network computes (eval mode, no augmentation)
    from openlt.engine.runtime import load_run_model

    _, data, model, _ = load_run_model(run)
    model.eval()
    images = torch.stack([data.dataset("val")[i][0] for i in range(3)])
    with torch.no_grad():
        direct = model.features(images)[1]
    assert torch.allclose(feats["val"]["features"][:3], direct, atol=1e-5)
    # a changed checkpoint makes the cache stale
    path = run.feature_cache("val")
    ckpt = run.checkpoint("best")
    saved = ckpt.read_bytes()
    try:
        tensors = load_file(ckpt)
        from safetensors import safe_open
        from safetensors.torch import save_file

        with safe_open(str(ckpt), "pt") as fh:
            meta = fh.metadata()
        key = next(k for k in tensors if k.endswith("classifier.fc.bias"))
        tensors[key] = tensors[key] + 1.0
        save_file(tensors, str(ckpt), metadata=meta)
        load_features(run, ("val",), quiet=False)
        assert "stale, rebuilt" in caplog.text
    finally:
        ckpt.write_bytes(saved)
    # a corrupt cache file is rebuilt, not trusted
    path.write_bytes(b"not a safetensors file")
    load_features(run, ("val",), quiet=False)
    assert "unreadable, rebuilt" in caplog.text
    assert load_file(path)["features"].shape[0] == len(feats["val"]["labels"])


def test_tau_norm_run_chooses_tau_on_validation_and_keeps_the_backbone(stage1, tmp_path):
    run = stage2(stage1, "tau_norm", tmp_path)
    details = json.loads((run / "decouple.json").read_text())
    assert details["method"] == "tau_norm" and len(details["tau_curve"]) == 21
    best = max(p["overall"] for p in details["tau_curve"])
    chosen = next(p for p in details["tau_curve"] if p["tau"] == details["tau"])
    assert chosen["overall"] == best  # chosen on validation
    assert (run / "tau_curve.png").stat().st_size > 1000
    s1, s2 = load_file(stage1 / "checkpoints/best.safetensors"), load_file(run / "checkpoints/best.safetensors")
    body = [k for k in s1 if not k.startswith("model.classifier.")]
    assert body and all(torch.equal(s1[k], s2[k]) for k in body)
    w1, w2 = s1["model.classifier.fc.weight"], s2["model.classifier.fc.weight"]
    expected = w1 / w1.norm(dim=1, keepdim=True) ** details["tau"]
    assert torch.allclose(w2, expected, atol=1e-6) and torch.all(s2["model.classifier.fc.bias"] == 0)
    metrics = json.loads((run / "metrics.json").read_text())
    assert 0 <= metrics["closed"]["overall"] <= 1 and "f_measure" in metrics["open"]


def test_tau_zero_run_equals_the_joint_classifier_without_bias(stage1, tmp_path):
    run = stage2(stage1, "tau_norm", tmp_path, "decouple.taus=[0.0]")
    s1, s2 = load_file(stage1 / "checkpoints/best.safetensors"), load_file(run / "checkpoints/best.safetensors")
    assert torch.equal(s1["model.classifier.fc.weight"], s2["model.classifier.fc.weight"])


@pytest.mark.parametrize("method", ["crt", "lws", "ncm"])
def test_each_method_is_an_ordinary_run(stage1, tmp_path, method, capsys):
    run = stage2(stage1, method, tmp_path)
    metrics = json.loads((run / "metrics.json").read_text())
    assert 0 <= metrics["closed"]["overall"] <= 1 and metrics["open"]["n_open"] > 0
    log = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert log and ("val" in log[-1])
    if method in ("crt", "lws"):
        assert len(log) == 2 and all("train_loss" in r for r in log)  # one record per epoch
    # the stage-2 run evaluates and predicts from its own directory like any run
    capsys.readouterr()
    assert cli("eval", run, "--json", "--quiet") == 0
    assert json.loads(capsys.readouterr().out)["closed"]["overall"] == metrics["closed"]["overall"]
    image = next((stage1.parent.parent / "images" / "ant").iterdir())
    assert cli("predict", run, image) == 0


def test_lws_at_a_vanishing_lr_is_the_joint_classifier(stage1, tmp_path):
    # train.lr must be > 0; at 1e-30 the unit scales do not move (1 - 1e-30 * g rounds to 1 in float32)
    run = stage2(stage1, "lws", tmp_path, "train.lr=1e-30", "train.weight_decay=0")
    s1, s2 = load_file(stage1 / "checkpoints/best.safetensors"), load_file(run / "checkpoints/best.safetensors")
    assert torch.allclose(s1["model.classifier.fc.weight"], s2["model.classifier.fc.weight"])
    assert torch.allclose(s1["model.classifier.fc.bias"], s2["model.classifier.fc.bias"])


@pytest.mark.parametrize("metric,center", [("euclidean", False), ("cosine", True)])
def test_ncm_head_equals_the_ncm_classifier(stage1, tmp_path, metric, center):
    from openlt.decoupling import NCMClassifier
    from openlt.engine.runtime import load_run_model

    run = stage2(stage1, "ncm", tmp_path, f"model.head.ncm_metric={metric}", f"model.head.ncm_center={center}")
    feats = load_features(open_run(stage1), ("train", "val"), quiet=True)
    ncm = NCMClassifier(metric, center=center).fit(feats["train"]["features"], feats["train"]["labels"])
    _, _, model, _ = load_run_model(open_run(run))  # the saved head (with its feature mean when centred)
    x = feats["val"]["features"]
    assert torch.allclose(model.classifier(x), 16.0 * ncm.logits(x), atol=1e-4)
    if center:  # centring changes the logits: the option reaches the head
        plain = NCMClassifier(metric).fit(feats["train"]["features"], feats["train"]["labels"])
        assert not torch.allclose(model.classifier(x), 16.0 * plain.logits(x), atol=1e-3)


def test_crt_augmented_features_option_runs(stage1, tmp_path):
    run = stage2(stage1, "crt", tmp_path, "decouple.features=augmented", "train.epochs=1")
    assert json.loads((run / "decouple.json").read_text())["features"] == "augmented"


def test_keep_best_keeps_the_epoch_of_best_validation_accuracy(stage1, tmp_path):
    """decouple.keep=best (the public code's choice): the saved head is the one of the first epoch with the
    highest validation top-1, which decouple.json names; the default keeps the last epoch."""
    from openlt.engine.runtime import load_run_model

    run = stage2(stage1, "crt", tmp_path, "decouple.keep=best", "train.epochs=5", "train.lr=1.0")
    log = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    accs = [r["val"]["overall"] for r in log]
    kept = json.loads((run / "decouple.json").read_text())["kept_epoch"]
    assert kept == accs.index(max(accs)) + 1
    feats = load_features(open_run(stage1), ("val",), quiet=True)["val"]
    _, _, model, _ = load_run_model(open_run(run))
    known = feats["labels"] >= 0  # "overall" is the sample accuracy over the known validation images
    with torch.no_grad():
        pred = model.classifier(feats["features"][known]).argmax(1)
    assert float((pred == feats["labels"][known]).float().mean()) == pytest.approx(accs[kept - 1])
    last = stage2(stage1, "crt", tmp_path / "last")
    assert "kept_epoch" not in json.loads((last / "decouple.json").read_text())


def test_stage2_errors_are_clear(stage1, tmp_path, capsys):
    code = cli("train", CONFIGS / "decouple_crt.yaml", f"out_dir={tmp_path}", "--quiet")
    assert code == 2 and "needs train.init_from" in capsys.readouterr().err
    code = cli("train", CONFIGS / "decouple_crt.yaml", f"out_dir={tmp_path}", "decouple.method=bogus",
               f"train.init_from={stage1}", "--quiet")
    assert code == 2 and "unknown decouple.method" in capsys.readouterr().err
    code = cli("train", CONFIGS / "decouple_crt.yaml", f"out_dir={tmp_path}", "decouple.keep=first",
               f"train.init_from={stage1}", "--quiet")
    assert code == 2 and "unknown decouple.keep 'first'; known: last, best" in capsys.readouterr().err
    tau_run = stage2(stage1, "tau_norm", tmp_path)
    code = cli("train", CONFIGS / "decouple_crt.yaml", f"out_dir={tmp_path / 'x'}", f"train.init_from={tau_run}", "--quiet")
    assert code == 2 and "itself a decoupled run" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() or not os.listdir(tmp_path / "x")  # nothing half-written


def test_post_hoc_logit_adjustment_shifts_only_the_bias(stage1, tmp_path):
    from openlt.losses.rebalance import log_priors

    run = stage2(stage1, "logit_adjust", tmp_path)
    tau = json.loads((run / "decouple.json").read_text())["tau"]
    s1, s2 = load_file(stage1 / "checkpoints/best.safetensors"), load_file(run / "checkpoints/best.safetensors")
    counts = json.loads((stage1 / "split_manifest.json").read_text())["train_counts"]
    assert torch.equal(s1["model.classifier.fc.weight"], s2["model.classifier.fc.weight"])
    expected = s1["model.classifier.fc.bias"] - tau * log_priors(counts).float()
    assert torch.allclose(s2["model.classifier.fc.bias"], expected, atol=1e-6)


def test_decoupled_evaluation_from_the_cache_equals_the_network(stage1, tmp_path):
    from openlt.engine.runtime import collect_outputs, load_run_model, make_loader
    from openlt.engine.features import cached_head_outputs

    run = open_run(stage2(stage1, "crt", tmp_path))
    cfg, data, model, _ = load_run_model(run)
    device = torch.device("cpu")
    cached = cached_head_outputs(cfg, model, ["test", "open"], device, quiet=True)
    for split in ("test", "open"):
        live = collect_outputs(model, make_loader(data.dataset(split), 64, 0, device), device, split, quiet=True)
        assert torch.equal(cached[split]["labels"], live["labels"])
        assert torch.allclose(cached[split]["logits"], live["logits"], atol=1e-4)


def test_a_float16_cache_stays_float16_and_its_run_evaluates_as_on_float32_features(stage1, tmp_path):
    """Issue 17: load_features keeps a float16 cache's dtype (half the memory of its float32 copy); the decoupled
    evaluation's head and a KNN / Mahalanobis fit on it give exactly what they give on the same features in float32."""
    from openlt.engine.features import cached_head_outputs, head_outputs_on_cache
    from openlt.engine.runtime import load_run_model
    from openlt.openset import build_score
    from openlt.config import Config

    assert cli("features", stage1, "--dtype", "float16") == 0
    feats = load_features(open_run(stage1), dtype="float16", quiet=True)
    for split, cached in feats.items():
        assert cached["features"].dtype == torch.float16, split
        assert torch.equal(cached["features"], load_file(open_run(stage1).feature_cache(split))["features"])
    run = open_run(stage2(stage1, "crt", tmp_path, "decouple.cache_dtype=float16"))
    assert json.loads(run.decouple_file.read_text())["cache_dtype"] == "float16"
    cfg, _, model, _ = load_run_model(run)
    device = torch.device("cpu")
    half = cached_head_outputs(cfg, model, ["test"], device, quiet=True, keep=("logits", "feature"))["test"]
    as32 = {**feats["test"], "features": feats["test"]["features"].float()}
    whole = head_outputs_on_cache(model, as32, device, ("logits", "feature"))
    assert half["feature"].dtype == torch.float16 and torch.equal(half["logits"], whole["logits"])
    train32 = {"feature": feats["train"]["features"].float(), "labels": feats["train"]["labels"]}
    for name in ("knn", "mahalanobis"):
        a = build_score(name, Config().eval).fit({"feature": feats["train"]["features"], "labels": train32["labels"]})
        b = build_score(name, Config().eval).fit(train32)
        assert torch.equal(a.score(half), b.score(whole)), name


@pytest.mark.parametrize("method", ["crt", "tau_norm"])
def test_stage2_epochs_reach_tensorboard_through_the_epoch_log(stage1, tmp_path, monkeypatch, method):
    """Stage 2 logs through EpochLog: every metrics.jsonl record is also given to TensorBoard (step = epoch)."""
    from openlt.engine import tracking

    writers = []
    monkeypatch.setattr(tracking, "tensorboard_writer",
                        lambda log_dir, purge_step=None: writers.append(FakeWriter(log_dir)) or writers[-1])
    run = stage2(stage1, method, tmp_path)
    log = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    writer = writers[0]
    assert writer.log_dir == run / "tensorboard" and writer.closed
    assert writer.scalars == [(tag, value, r["epoch"]) for r in log for tag, value in tracking.scalars(r)]
    assert ("val/overall", log[-1]["val"]["overall"], log[-1]["epoch"]) in writer.scalars
    if method == "crt":  # one record per trained epoch
        assert [step for tag, _, step in writer.scalars if tag == "train/loss"] == [1, 2]
    else:  # tau_norm trains nothing: one record, the chosen head's validation accuracy
        assert len(log) == 1 and {step for _, _, step in writer.scalars} == {1}


def test_stage2_writes_tensorboard_event_files(stage1, tmp_path, monkeypatch):
    pytest.importorskip("tensorboard")
    monkeypatch.delenv("OPENLT_TENSORBOARD", raising=False)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = stage2(stage1, "lws", tmp_path)
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    assert {"train/loss", "train/lr", "val/overall"} <= set(events.Tags()["scalars"])
    assert [e.step for e in events.Scalars("train/loss")] == [1, 2]


BANDS = [  # (stage-1 run's eval overrides, stage-2 overrides, bands the stage 2 uses, the note it logs)
    ("adopted", ["eval.many_above=30", "eval.few_below=15"], [], (30, 15, False), "taken from the stage-1 run"),
    ("explicit-wins", ["eval.many_above=30", "eval.few_below=15"], ["eval.many_above=50", "eval.few_below=5"],
     (50, 5, False), "differ from those of the stage-1 run"),
    ("one-key-set", ["eval.many_above=30", "eval.few_below=15"], ["eval.few_below=10"], (100, 10, False),
     "differ from those of the stage-1 run"),
    ("inclusive-set", ["eval.many_above=30", "eval.few_below=15"], ["eval.inclusive_bands=true"], (100, 20, True),
     "differ"),
    ("explicit-default", ["eval.many_above=30", "eval.few_below=15"], ["eval.many_above=100"], (100, 20, False),
     "differ"),
    ("same", ["eval.many_above=30", "eval.few_below=15"], ["eval.many_above=30", "eval.few_below=15"],
     (30, 15, False), None),
]


@pytest.mark.parametrize("stage1_overrides, stage2_overrides, used, note",
                         [b[1:] for b in BANDS], ids=[b[0] for b in BANDS])
def test_decoupled_stage2_keeps_bands_it_sets_and_says_when_they_differ(tmp_path, stage1_overrides,
                                                                        stage2_overrides, used, note):
    from openlt.config import build_config
    from openlt.engine.decouple import adopt_representation
    from openlt.engine.run import Run

    (tmp_path / "s1").mkdir()
    source = Run(tmp_path / "s1")
    source.write_config(build_config(None, ["data.split_dir=/x/splits", *stage1_overrides]))
    cfg = build_config(CONFIGS / "decouple_crt.yaml", [f"train.init_from={source.path}", *stage2_overrides])
    lines = []
    adopt_representation(cfg, source, lines.append)
    assert (cfg.eval.many_above, cfg.eval.few_below, cfg.eval.inclusive_bands) == used
    said = [line for line in lines if "shot bands" in line]
    assert (said == []) if note is None else (len(said) == 1 and note in said[0]), lines


def _stage1_source(tmp_path, *overrides):
    from openlt.config import build_config
    from openlt.engine.run import Run

    (tmp_path / "s1").mkdir()
    source = Run(tmp_path / "s1")
    source.write_config(build_config(None, ["data.split_dir=/x/splits", "model.backbone=resnet10", *overrides]))
    return source


REFUSED = [  # explicit stage-2 data / model keys that differ from the stage-1 run's: (overrides, key, both values)
    (["data.dataset=cifar10"], "data.dataset", "cifar10", "fashion-mnist"),
    (["data.image_size=32"], "data.image_size", "32", "None"),
    (["model.backbone=resnet18"], "model.backbone", "resnet18", "resnet10"),
    (["model.attention=true"], "model.attention", "True", "False"),
]  # (an explicit model.classifier other than the method's head: refused by the config check, tests/test_config_boundary.py)


@pytest.mark.parametrize("overrides, key, mine, theirs", REFUSED, ids=[r[1] for r in REFUSED])
def test_decoupled_stage2_refuses_explicit_data_and_model_keys_that_differ(tmp_path, overrides, key, mine, theirs):
    from openlt.config import build_config
    from openlt.engine.decouple import adopt_representation
    from openlt.errors import ConfigError

    source = _stage1_source(tmp_path)
    cfg = build_config(CONFIGS / "decouple_crt.yaml", [f"train.init_from={source.path}", *overrides])
    with pytest.raises(ConfigError) as err:
        adopt_representation(cfg, source, lambda line: None)
    text = str(err.value)
    assert len(text.splitlines()) == 1 and f"{key}={mine}" in text and theirs in text and overrides[0] in text


def test_decoupled_stage2_refuses_keys_of_its_own_config_file_and_names_each(tmp_path):
    from openlt.config import build_config
    from openlt.engine.decouple import adopt_representation
    from openlt.errors import ConfigError

    source = _stage1_source(tmp_path)
    own = tmp_path / "my_crt.yaml"
    own.write_text(f"base: {CONFIGS / 'decouple_crt.yaml'}\ndata:\n  dataset: cifar10\n  image_size: 32\n")
    cfg = build_config(own, [f"train.init_from={source.path}", "model.backbone=resnet18"])
    with pytest.raises(ConfigError) as err:
        adopt_representation(cfg, source, lambda line: None)
    lines = str(err.value).splitlines()
    assert len(lines) == 3 and f"{own}, line 3" in lines[0] and "data.dataset=cifar10" in lines[0]
    assert "data.image_size=32" in lines[1] and "model.backbone=resnet18" in lines[2]


def test_decoupled_stage2_takes_inherited_or_equal_settings_and_keeps_loader_settings(tmp_path, monkeypatch):
    """Values the base: chain gives (fmnist_lt/plain's backbone) are the stage-1 run's, with a note naming them;
    explicit values equal to the stage-1 run's (a relative path to the same folder) pass; data.workers and the
    head's options stay the stage-2 config's."""
    from openlt.config import build_config
    from openlt.engine.decouple import adopt_representation

    source = _stage1_source(tmp_path, "model.backbone=resnet18", f"data.split_dir={tmp_path / 'splits'}")
    monkeypatch.chdir(tmp_path)
    cfg = build_config(CONFIGS / "decouple_ncm.yaml", [f"train.init_from={source.path}", "data.split_dir=splits",
                                                        "data.workers=3", "model.head.ncm_metric=euclidean"])
    lines = []
    adopt_representation(cfg, source, lines.append)
    assert (cfg.model.backbone, cfg.data.split_dir, cfg.data.workers) == ("resnet18", str(tmp_path / "splits"), 3)
    assert (cfg.model.classifier, cfg.model.head.ncm_metric) == ("ncm", "euclidean")
    note = [line for line in lines if "taken from the stage-1 run" in line]
    assert len(note) == 1 and "model.backbone=resnet18 (this config: resnet10)" in note[0]
    assert "data.split_dir" not in note[0] and "data.workers" not in note[0]


def test_decoupled_stage2_with_another_split_is_refused_before_any_work(stage1, tmp_path, capsys):
    other = tmp_path / "other"
    other.mkdir()
    out = tmp_path / "out"
    code = cli("train", CONFIGS / "decouple_crt.yaml", f"train.init_from={stage1}", f"out_dir={out}",
               f"data.split_dir={other}", "data.image_size=32", "train.epochs=1", "--quiet")
    err = capsys.readouterr().err
    assert code == 2 and "data.image_size=32" in err and "16" in err
    assert not out.exists() or not os.listdir(out)
    # another split folder alone is where the stage-1 run's data is now (as for `openlt eval RUN data.split_dir=`):
    # its files are checked before any work (an empty folder has none)
    code = cli("train", CONFIGS / "decouple_crt.yaml", f"train.init_from={stage1}", f"out_dir={out}",
               f"data.split_dir={other}", "train.epochs=1", "--quiet")
    err = capsys.readouterr().err
    assert code == 2 and str(other) in err and "train.txt" in err
    assert not out.exists() or not os.listdir(out)


def test_decoupled_stage2_takes_a_relative_class_names_file_the_stage1_run_saved_absolute(tmp_path, monkeypatch):
    """data.class_names=names.txt from the working directory is the file the stage-1 run saved as /abs/names.txt
    (trial 16 item 2: was refused as differing); another file is refused, its resolved path named, with the
    stage-1 run's file as the way out."""
    from openlt.config import build_config
    from openlt.engine.decouple import adopt_representation
    from openlt.errors import ConfigError

    for name in ("names.txt", "other.txt"):
        (tmp_path / name).write_text("a\nb\n")
    source = _stage1_source(tmp_path, f"data.class_names={tmp_path / 'names.txt'}")
    monkeypatch.chdir(tmp_path)
    cfg = build_config(CONFIGS / "decouple_crt.yaml", [f"train.init_from={source.path}", "data.class_names=names.txt"])
    adopt_representation(cfg, source, lambda line: None)
    assert cfg.data.class_names == str(tmp_path / "names.txt")
    cfg = build_config(CONFIGS / "decouple_crt.yaml", [f"train.init_from={source.path}", "data.class_names=other.txt"])
    with pytest.raises(ConfigError) as err:
        adopt_representation(cfg, source, lambda line: None)
    text = str(err.value)
    assert len(text.splitlines()) == 1 and f"data.class_names=other.txt ({tmp_path / 'other.txt'})" in text, text
    assert f"data.class_names={tmp_path / 'names.txt'}" in text and "drop data.class_names to use" in text, text


def test_a_stage2_records_the_recipe_it_was_fitted_with(stage1, tmp_path):
    """A decoupled stage 2's checkpoints record the training keys it was fitted with (state "recipe"), as a stage
    1's do: `openlt summary` names it by them, and a config.yaml edited after the fit does not change its recipe
    (was: no record, so train.epochs edited to 48 named a 2-epoch cRT run a 48-epoch one)."""
    import yaml

    from openlt.engine.checkpoint import checkpoint_state
    from openlt.reporting.summary import RESUMED_KEY, load_metrics, run_recipe

    run = stage2(stage1, "crt", tmp_path)
    state = checkpoint_state(run / "checkpoints" / "last.safetensors")
    assert state["recipe"]["train.epochs"] == 2 and state["recipe"]["decouple.method"] == "crt"
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["train"]["epochs"] = 48
    (run / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    recipe = run_recipe(load_metrics(run / "metrics.json"))
    assert recipe["train.epochs"] == 2 and recipe[RESUMED_KEY] == "none"
