"""`openlt bench`: a tiny spec end to end, resume-and-skip, and spec errors before any run."""

import json
import re
from pathlib import Path

import pytest

from images import make_image_folder
from openlt.config import ConfigWarning
from openlt.engine.bench import BenchMethod, check_out_dir, load_bench, run_bench
from openlt.cli import main
from openlt.errors import ConfigError

CONFIGS = Path(__file__).parents[2] / "configs" / "fmnist_lt"
TINY = ["data.dataset=image-folder", "data.image_size=16", "model.backbone=resnet10", "train.epochs=1",
        "train.batch_size=16", "train.lr=0.05", "eval.batch_size=64", "eval.many_above=30", "eval.few_below=15",
        "data.split.n_max=40", "data.split.n_min=8", "data.split.open_classes=[eel]", "data.split.val_per_class=4",
        "data.split.test_per_class=6", "data.split.order=label", "train.device=cpu"]


def write_spec(tmp: Path, images: Path) -> Path:
    (tmp / "tiny.yaml").write_text("name: tiny\n")
    spec = {
        "name": "tiny", "out_dir": str(tmp / "bench"), "seeds": [0],
        "overrides": [f"data.root={images}", *TINY],
        "methods": [
            {"name": "plain", "config": "tiny.yaml"},
            {"name": "plain+energy", "eval_of": "plain", "overrides": ["eval.open_score=energy"]},
            {"name": "tau_norm", "config": str(CONFIGS / "decouple_tau_norm.yaml"), "init_from": "plain"},
        ],
    }
    path = tmp / "bench.yaml"
    path.write_text(json.dumps(spec))  # JSON is YAML
    return path


@pytest.fixture
def spec_path(tmp_path, single_thread):
    # each known class holds its profile count (n_max 40 .. n_min 8, label order) + 4 val + 6 test images
    images = make_image_folder(tmp_path / "images", {"ant": 50, "bee": 33, "cat": 23, "dog": 18, "eel": 10})
    return write_spec(tmp_path, images)


def test_bench_runs_skips_and_resumes(spec_path, tmp_path, capsys):
    assert main(["bench", str(spec_path), "--quiet"]) == 0
    out = capsys.readouterr().out
    bench = tmp_path / "bench"
    for name in ("results.md", "results.csv", "report.html", "bands.png", "openset.png"):
        assert (bench / name).is_file()
    md = (bench / "results.md").read_text()
    # 1-epoch runs: their curves cannot be judged (‡, and its footnote naming the runs); tau_norm's own closed-form
    # fit has no curve, its stage 1's one evaluation marks it too
    assert "| plain ‡ | 1 |" in md and "| plain+energy ‡ | 1 |" in md and "| tau_norm ‡ | 1 |" in md
    assert "‡ the under-training check was not made: plain (1/1 runs: " in md
    html = (bench / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 2 and "plain-s0-" in html
    assert '/report.html"' in html and '/report-plain-energy.html"' in html  # every run's own report is linked
    plain = next(bench.glob("plain-s0-*"))
    assert json.loads((plain / "metrics-plain-energy.json").read_text())["calibration"]["score"] == "energy"
    assert "training" in out

    # a second bench trains nothing
    lines = []
    run_bench(load_bench(spec_path), quiet=True, log=lines.append)
    assert all("done" in line for line in lines if line.startswith("["))
    assert len(list(bench.glob("plain-s0-*"))) == 1

    # an interrupted run with a checkpoint is continued, one without is started again
    tau = next(bench.glob("tau_norm-s0-*"))
    (tau / "metrics.json").unlink()
    broken = bench / "tau_norm-s0-20000101-000000"  # killed before its first checkpoint
    (broken / "checkpoints").mkdir(parents=True)
    lines = []
    spec = load_bench(spec_path)
    spec.seeds = [0]
    run_bench(spec, quiet=True, log=lines.append)
    assert any("resuming the interrupted run" in line and "tau_norm" in line for line in lines)
    assert (tau / "metrics.json").is_file()
    assert not broken.exists()

    # --report-only trains and evaluates nothing: a run that is not finished is reported missing, with what
    # depends on it, and the table holds the rest
    (tau / "metrics.json").rename(tau / "metrics.json.bak")
    plain = next(bench.glob("plain-s0-*"))
    (plain / "metrics-plain-energy.json").rename(plain / "energy.bak")
    capsys.readouterr()
    assert main(["bench", str(spec_path), "--report-only", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "tau_norm seed 0: missing" in out and "plain+energy seed 0: missing" in out and "training" not in out.replace("under-training", "")
    md = (bench / "results.md").read_text()
    assert "| plain ‡ | 1 |" in md and "| tau_norm" not in md  # no row, and named under the table:
    assert "Not finished, so not in these means: " in md and "plain+energy-s0, tau_norm-s0 (the runs column" in md
    assert not (tau / "metrics.json").exists() and not (plain / "metrics-plain-energy.json").exists()


@pytest.mark.parametrize("change, message", [
    ({"methods": []}, "lists no methods"),
    ({"seeds": "0"}, "seeds must be"),
    ({"paper": "mnist"}, "unknown paper"),
    ({"bogus": 1}, "unknown key"),
    ({"methods": [{"name": "a", "config": "nope.yaml"}]}, "config not found"),
    ({"methods": [{"name": "a", "eval_of": "b"}]}, "must name a trained method listed before it; no trained method"),
    ({"methods": [{"name": "plain", "config": "tiny.yaml"}, {"name": "crt", "config": "tiny.yaml", "init_from": "plian"}]},
     r"init_from='plian' must name a trained method listed before it; did you mean 'plain'\? \(trained methods "
     r"before it: plain\)"),
    ({"methods": [{"name": "p", "config": "tiny.yaml"}, {"name": "e", "eval_of": "zzz"}]}, r"it \(trained methods before it: p\)$"),
    ({"methods": [{"name": "a b", "config": "tiny.yaml"}]}, "must be unique"),
    ({"methods": [{"name": "a", "config": "tiny.yaml", "overrides": ["train.epochz=1"]}]}, "train.epochz"),
])
def test_bench_spec_errors_come_before_any_run(tmp_path, change, message):
    (tmp_path / "tiny.yaml").write_text("name: tiny\n")
    spec = {"name": "x", "seeds": [0], "methods": [{"name": "a", "config": "tiny.yaml"}], **change}
    path = tmp_path / "bench.yaml"
    path.write_text(json.dumps(spec))
    with pytest.raises(ConfigError, match=message):
        load_bench(path)


TRAINED = {"name": "a", "config": "tiny.yaml"}
# a bench field of the wrong type, or an eval_of override with a typo: (spec change, texts the one line holds)
SPEC_TYPES = [
    ({"seeds": "a"}, ("seeds must be a non-empty list of distinct integers",)),
    ({"seeds": [0, "1"]}, ("seeds must be",)),
    ({"seeds": [0, True]}, ("seeds must be",)),
    ({"seeds": [-1]}, ("seeds must be", ">= 0")),
    ({"seeds": [1, 1]}, ("seeds must be", "distinct")),
    ({"seeds": []}, ("seeds must be",)),
    ({"name": 3}, ("name must be a non-empty text, got 3",)),
    ({"out_dir": ["runs"]}, ("out_dir must be a non-empty text",)),
    ({"paper": 5}, ("paper must be a non-empty text",)),
    ({"overrides": "train.epochs=1"}, ("overrides must be a list of key=value strings", "'train.epochs=1'")),
    ({"overrides": ["train.epochs"]}, ("overrides must be a list of key=value strings",)),
    ({"methods": {"name": "a", "config": "tiny.yaml"}}, ("methods must be a list of mappings",)),
    ({"methods": "a"}, ("methods must be a list",)),
    ({"methods": ["a"]}, ("methods[0] must be a mapping with a name",)),
    ({"methods": [{"name": 3, "config": "tiny.yaml"}]}, ("methods[0].name must be a non-empty text",)),
    ({"methods": [{"name": "a", "config": ["tiny.yaml"]}]}, ("method 'a': config must be a non-empty text",)),
    ({"methods": [{"name": "a", "config": "tiny.yaml", "overrides": "train.epochs=1"}]},
     ("method 'a': overrides must be a list of key=value strings",)),
    ({"methods": [TRAINED, {"name": "b", "eval_of": ["a"]}]}, ("method 'b': eval_of must be a non-empty text",)),
    ({"methods": [{"name": "a", "config": "tiny.yaml", "paper_row": "joint"}]}, ("paper_row 'joint'", "paper (None)")),
    ({"paper": "imagenet_lt", "methods": [{"name": "a", "config": "tiny.yaml", "paper_row": "nope"}]},
     ("paper_row 'nope' is not a row of the spec's paper (imagenet_lt)",)),
    # eval_of overrides are checked on the base method's config, as `openlt eval` would
    ({"methods": [TRAINED, {"name": "b", "eval_of": "a", "overrides": ["eval.open_scor=energy"]}]},
     ("method 'b' (eval_of 'a', overrides)", "unknown config key 'eval.open_scor'", "eval.open_score")),
    ({"methods": [TRAINED, {"name": "b", "eval_of": "a", "overrides": ["eval.open_score=energi"]}]},
     ("method 'b' (eval_of 'a', overrides)", "'energi'")),
    ({"methods": [TRAINED, {"name": "b", "eval_of": "a", "overrides": ["eval.open_threshold=high"]}]},
     ("method 'b'", "eval.open_threshold")),
    ({"methods": [TRAINED, {"name": "b", "eval_of": "a", "overrides": ["eval.keep_known=2"]}]},
     ("method 'b'", "eval.keep_known")),
    ({"methods": [TRAINED, {"name": "b", "eval_of": "a", "overrides": ["eval.openmax_distance=l1"]}]},
     ("method 'b'", "eval.openmax_distance")),
    ({"methods": [{"name": "a", "config": "tiny.yaml", "overrides": ["train.lr=-1"]}]},
     ("method 'a' (config", "train.lr")),
    # an empty data folder (a shell variable that expanded to nothing) was null: splits built into each run
    ({"overrides": ["data.split_dir="]}, ("override 'data.split_dir='", "config key 'data.split_dir' is empty")),
    ({"methods": [TRAINED, {"name": "b", "eval_of": "a", "overrides": ["data.open_root= "]}]},
     ("method 'b' (eval_of 'a', overrides)", "config key 'data.open_root' is empty")),
    # a seed in overrides would be replaced by the bench's seed without a word
    ({"overrides": ["seed=7"]}, ("overrides set 'seed=7'", "seeds come from its `seeds:`")),
    ({"methods": [{"name": "a", "config": "tiny.yaml", "overrides": [" seed = 7"]}]},
     ("method 'a': overrides set ' seed = 7'", "seeds come from its `seeds:`")),
    # a decoupled stage 2 without init_from was refused at its turn, after the methods before it had trained
    ({"methods": [TRAINED, {"name": "b", "config": "tiny.yaml", "overrides": ["decouple.method=ncm"]}]},
     ("method 'b' (config", "decouple.method=ncm fits a classifier on a stage-1 run's features: give the method "
                            "`init_from: METHOD`")),
]


@pytest.mark.parametrize("change, texts", SPEC_TYPES, ids=[str(i) for i in range(len(SPEC_TYPES))])
def test_a_bad_bench_field_is_one_line_naming_the_spec_and_field_before_any_run(tmp_path, capsys, change, texts):
    (tmp_path / "tiny.yaml").write_text("name: tiny\n")
    spec = {"name": "x", "seeds": [0], "out_dir": str(tmp_path / "out"), "methods": [TRAINED], **change}
    path = tmp_path / "bench.yaml"
    path.write_text(json.dumps(spec))
    assert main(["bench", str(path), "--quiet"]) == 2
    out, err = capsys.readouterr()
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err and out == "", err
    assert f"bench spec {path}" in err, err
    for text in texts:
        assert text in err, (text, err)
    assert not (tmp_path / "out").exists()  # nothing trained, nothing created


def test_shipped_bench_specs_load():
    for path in sorted((Path(__file__).parents[2] / "configs" / "bench").glob("*.yaml")):
        assert load_bench(path, ["data.root=/data", "data.split_dir=/splits"]).methods


EVAL_OF = {"name": "x", "seeds": [0], "methods": [TRAINED]}
# eval_of names that differ only by + - . would share one metrics-TAG.json in their base run
TAG_CLASHES = [("a+energy", "a-energy"), ("a.energy", "a+energy"), ("a-energy", "a.energy"), ("a+b.c", "a.b-c")]


@pytest.mark.parametrize("first, second", TAG_CLASHES)
def test_eval_of_names_that_share_a_file_tag_are_refused_naming_both(tmp_path, first, second):
    (tmp_path / "tiny.yaml").write_text("name: tiny\n")
    methods = [TRAINED, {"name": first, "eval_of": "a"}, {"name": second, "eval_of": "a"}]
    path = tmp_path / "bench.yaml"
    path.write_text(json.dumps({**EVAL_OF, "out_dir": str(tmp_path / "out"), "methods": methods}))
    with pytest.raises(ConfigError, match=re.escape(f"methods '{first}' and '{second}' would write the same "
                                                    f"metrics-{BenchMethod(first).tag}.json")):
        load_bench(path)
    # names whose tags differ are fine, and so is a trained method of the same tag
    path.write_text(json.dumps({**EVAL_OF, "out_dir": str(tmp_path / "out"), "methods": [
        TRAINED, {"name": first, "eval_of": "a"}, {"name": "a_energy", "eval_of": "a"},
        {"name": second, "config": "tiny.yaml"}]}))
    assert [m.tag for m in load_bench(path).methods if m.eval_of] == [BenchMethod(first).tag, "a_energy"]


def _out_dir_case(tmp_path, monkeypatch, case):
    """The out_dir of an out_dir case, made on disk."""
    if case == "root":
        return Path("/")
    if case == "home":
        monkeypatch.setenv("HOME", str(tmp_path / "home"))
        (tmp_path / "home").mkdir()
        return Path("~")
    out = tmp_path / "out"
    if case == "a-file":
        out.write_text("x")
    elif case == "cwd-of-a-project":
        monkeypatch.chdir(tmp_path)
        (tmp_path / "README.md").write_text("x")
        (tmp_path / "src").mkdir()
        return Path(".")
    elif case == "folder-of-other-files":
        out.mkdir()
        (out / "notes.txt").write_text("mine")
        (out / "photos").mkdir()
    elif case == "bench-of-benches":
        (out / "convergence" / "plain-s0-20260101-000000").mkdir(parents=True)
    elif case == "a-run":  # one run's folder (was: "holds files that are not a bench's (checkpoints, config.yaml...")
        (out / "checkpoints").mkdir(parents=True)
        (out / "config.yaml").write_text("name: plain\n")
        (out / "metrics.json").write_text("{}")
    elif case == "inside-a-run":  # a folder in one run's folder (was: accepted, its runs then files of that run)
        run = tmp_path / "runs" / "plain-s0-20260101-000000"
        (run / "checkpoints").mkdir(parents=True)
        (run / "config.yaml").write_text("name: plain\n")
        return run / "bench"
    return out


@pytest.mark.parametrize("case, says", [
    ("root", "is the filesystem root"), ("home", "is your home folder"), ("a-file", "is not a folder"),
    ("cwd-of-a-project", "holds files that are not a bench's (README.md, bench.yaml, src"),
    ("folder-of-other-files", "holds files that are not a bench's (notes.txt, photos)"),
    ("bench-of-benches", "holds files that are not a bench's (convergence)"),
    ("a-run", "is a run directory (it has a config.yaml), not a folder of a bench's runs"),
    ("inside-a-run", "is inside the run directory "),
])
def test_a_dangerous_out_dir_is_refused_before_any_run(tmp_path, monkeypatch, capsys, case, says):
    (tmp_path / "tiny.yaml").write_text("name: tiny\n")
    out = _out_dir_case(tmp_path, monkeypatch, case)
    path = tmp_path / "bench.yaml"
    path.write_text(json.dumps({**EVAL_OF, "out_dir": str(out)}))
    assert main(["bench", str(path), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and f"out_dir {out} {says}" in err, err
    # --out-dir on the command line is checked alike
    path.write_text(json.dumps({**EVAL_OF, "out_dir": str(tmp_path / "fine")}))
    assert main(["bench", str(path), "--out-dir", str(out), "--quiet"]) == 2
    assert f"--out-dir {out} {says}" in capsys.readouterr().err
    assert not (tmp_path / "fine").exists()


def test_a_bench_folder_of_runs_and_results_is_accepted(tmp_path):
    out = tmp_path / "out"
    (out / "a-s0-20260101-000000").mkdir(parents=True)
    (out / "a-s0-20260101-000000" / "config.yaml").write_text("name: a\n")
    (out / ".a-s1-20260101-000000.x.new-run").mkdir()
    for name in ("results.md", "results.csv", "report.html", "bands.png", "openset.png", "bench.log"):
        (out / name).write_text("x")
    check_out_dir(out, "out_dir")
    check_out_dir(tmp_path / "new" / "folder", "out_dir")
    (tmp_path / "config.yaml").write_text("name: a project's own config\n")  # a project folder, no run
    check_out_dir(tmp_path / "runs" / "bench", "out_dir")


def test_an_eval_of_name_too_long_for_a_tag_is_refused_by_the_tag_rule_before_any_work(tmp_path):
    """The rule of `openlt eval --tag` (engine/run.py check_tag), at load time, not after training."""
    long_name = "e" * 101
    (tmp_path / "tiny.yaml").write_text("name: tiny\n")
    path = tmp_path / "bench.yaml"
    path.write_text(json.dumps({**EVAL_OF, "out_dir": str(tmp_path / "out"),
                                "methods": [TRAINED, {"name": long_name, "eval_of": "a"}]}))
    with pytest.raises(ConfigError, match=re.escape(f"method {long_name!r} gives the file tag {long_name!r}: use 1 "
                                                    "to 100 ASCII letters")):
        load_bench(path)
    assert not (tmp_path / "out").exists()


# a finished run made with other settings than the spec builds now: (spec change, texts of the one refusal line)
EDITED = [
    ({"overrides": ["train.epochs=2", "data.split_dir=splits"]}, ("train.epochs: run 1, spec 2",)),
    ({"methods": [{"name": "a", "config": "tiny.yaml", "overrides": ["train.lr=0.5"]}]}, ("train.lr: run 0.05",)),
    ({"overrides": ["train.epochs=1", "data.split_dir=elsewhere"]}, ("data.split_dir", "elsewhere")),
    ({}, ()),  # unchanged: reused, paths compared resolved, name and out_dir ignored
]


@pytest.mark.parametrize("change, texts", EDITED, ids=[str(i) for i in range(len(EDITED))])
def test_a_finished_run_of_an_edited_spec_is_refused_not_reused(tmp_path, monkeypatch, change, texts):
    from openlt.config import build_config
    from openlt.engine.run import Run
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny.yaml").write_text("name: tiny\n")
    spec = {"name": "x", "seeds": [3], "out_dir": "out", "overrides": ["train.epochs=1", "data.split_dir=splits"],
            "methods": [{"name": "a", "config": "tiny.yaml", "overrides": ["train.lr=0.05"]}]}
    run = Run(tmp_path / "out" / "a-s3-20260101-000000")
    run.path.mkdir(parents=True)
    run.write_config(build_config(tmp_path / "tiny.yaml", ["train.epochs=1", "data.split_dir=splits", "train.lr=0.05",
                                                          "seed=3", "out_dir=out", "name=a-s3"]))
    run.metrics_file.write_text("{}")
    path = tmp_path / "bench.yaml"
    path.write_text(json.dumps({**spec, **change}))
    lines = []
    if not texts:
        run_bench(load_bench(path), quiet=True, log=lines.append, report_only=True)
        assert any(": done (" in line for line in lines), lines
        return
    with pytest.raises(ConfigError) as info:
        run_bench(load_bench(path), quiet=True, log=lines.append, report_only=True)
    message = str(info.value)
    assert "\n" not in message and run.path.name in message and "delete that run folder" in message, message
    for text in texts:
        assert text in message, (text, message)


@pytest.mark.parametrize("saved_amp, reused", [("none", True), ("bf16", False)])
def test_train_amp_is_compared_as_resolved_for_the_device(tmp_path, monkeypatch, saved_amp, reused):
    """A run saved with train.amp=none (the default before `auto`) matches a spec whose train.amp is `auto` on the
    CPU, where auto means none; a bf16 run does not."""
    from openlt.config import build_config
    from openlt.engine.run import Run
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny.yaml").write_text("name: tiny\n")
    overrides = ["train.epochs=1", "data.split_dir=splits", "train.device=cpu"]
    run = Run(tmp_path / "out" / "a-s3-20260101-000000")
    run.path.mkdir(parents=True)
    run.write_config(build_config(tmp_path / "tiny.yaml", [*overrides, f"train.amp={saved_amp}", "seed=3",
                                                          "out_dir=out", "name=a-s3"]))
    run.metrics_file.write_text("{}")
    path = tmp_path / "bench.yaml"
    path.write_text(json.dumps({"name": "x", "seeds": [3], "out_dir": "out", "overrides": overrides,
                                "methods": [{"name": "a", "config": "tiny.yaml"}]}))
    lines = []
    if reused:
        run_bench(load_bench(path), quiet=True, log=lines.append, report_only=True)
        assert any(": done (" in line for line in lines), lines
    else:
        with pytest.raises(ConfigError, match=re.escape("train.amp: run 'bf16', spec 'none'")):
            run_bench(load_bench(path), quiet=True, log=lines.append, report_only=True)


def test_a_command_line_override_a_method_sets_again_is_warned_about(tmp_path):
    """(Session 27: `openlt bench SPEC train.epochs=1` trained a method with `overrides: [train.epochs=384]` for 384
    epochs without a word: a method's own overrides come last.)"""
    (tmp_path / "tiny.yaml").write_text("name: tiny\n")
    spec = {"name": "x", "seeds": [0], "out_dir": str(tmp_path / "out"),
            "methods": [{"name": "a", "config": "tiny.yaml", "overrides": ["train.epochs=2"]},
                        {"name": "b", "config": "tiny.yaml"}]}
    path = tmp_path / "bench.yaml"
    path.write_text(json.dumps(spec))
    with pytest.warns(ConfigWarning) as said:
        loaded = load_bench(path, ["train.epochs=3"])
    assert [str(w.message) for w in said if issubclass(w.category, ConfigWarning)] == [
        f"bench spec {path}: method 'a' sets 'train.epochs=2' itself, after the command line's 'train.epochs=3' (a "
        f"method's own overrides come last): it runs with 'train.epochs=2'"]
    assert [m.name for m in loaded.methods] == ["a", "b"]


def test_a_key_twice_in_a_methods_overrides_is_warned_about(tmp_path):
    """(Session 27: `overrides: [train.lr=0.2, train.lr=0.3]` trained with 0.3 without a word; `openlt train`
    warns.)"""
    (tmp_path / "tiny.yaml").write_text("name: tiny\n")
    spec = {"name": "x", "seeds": [0], "out_dir": str(tmp_path / "out"),
            "methods": [{"name": "a", "config": "tiny.yaml", "overrides": ["train.lr=0.2", "train.lr=0.3"]}]}
    path = tmp_path / "bench.yaml"
    path.write_text(json.dumps(spec))
    with pytest.warns(ConfigWarning, match=f"train.lr is given twice in bench spec {path}, method 'a''s overrides "
                                           r"\('train.lr=0.2', then 'train.lr=0.3'\): the last wins"):
        load_bench(path)
