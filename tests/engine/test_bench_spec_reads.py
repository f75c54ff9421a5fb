"""Loading a bench spec parses its split files once per distinct data section, not once per method and check (a
45-method spec on one split read it ~60 times: 12 s of `load_bench`, 40 s of the spec tests)."""

import json
from pathlib import Path

import pytest

import openlt.engine.precheck as precheck
from openlt.engine import bench
from openlt.engine.bench import load_bench
from openlt.errors import ConfigError, DataError
from tiny_run import small_split


def _spec(tmp_path: Path, split: Path, methods: list[dict]) -> Path:
    (tmp_path / "tiny.yaml").write_text("name: tiny\n")
    path = tmp_path / "bench.yaml"
    path.write_text(json.dumps({"name": "x", "seeds": [0], "out_dir": str(tmp_path / "out"), "methods": methods,
                                "overrides": ["data.dataset=image-folder", f"data.split_dir={split}",
                                              "data.image_size=16", "model.backbone=resnet10"]}))
    return path


def _counting_reads(monkeypatch) -> list[str]:
    reads = []

    def split_data(cfg):
        reads.append(cfg.data.split_dir)
        return precheck.split_data(cfg)

    monkeypatch.setattr(bench, "split_data", split_data)
    return reads


def test_one_read_for_every_method_and_check_on_the_same_split(tmp_path, monkeypatch):
    split = small_split(tmp_path)
    methods = [{"name": "plain", "config": "tiny.yaml"},
               {"name": "openmax", "config": "tiny.yaml", "overrides": ["eval.open_score=openmax"]},
               {"name": "crt", "config": "tiny.yaml", "init_from": "plain",
                "overrides": ["decouple.method=crt"]},
               {"name": "plain+energy", "eval_of": "plain", "overrides": ["eval.open_score=energy"]},
               {"name": "plain+auto", "eval_of": "plain", "overrides": ["eval.open_threshold=auto"]}]
    reads = _counting_reads(monkeypatch)
    spec = load_bench(_spec(tmp_path, split, methods))
    assert len(spec.methods) == 5
    assert reads == [str(split)]


def test_methods_on_different_splits_each_read_their_own(tmp_path, monkeypatch):
    split, other = small_split(tmp_path / "a"), small_split(tmp_path / "b")
    methods = [{"name": "plain", "config": "tiny.yaml", "overrides": ["eval.open_score=openmax"]},
               {"name": "other", "config": "tiny.yaml",
                "overrides": [f"data.split_dir={other}", "eval.open_score=openmax"]}]
    reads = _counting_reads(monkeypatch)
    load_bench(_spec(tmp_path, split, methods))
    assert sorted(reads) == sorted([str(split), str(other)])


def test_a_method_differing_only_in_its_data_is_checked_on_its_own_data(tmp_path):
    # the cache is keyed by the data section: data.val_split=null is its own read, and its method is refused as
    # a run would be (a stage 2 choosing its epoch on a validation split; auto threshold on an open split)
    split = small_split(tmp_path)
    plain = [{"name": "plain", "config": "tiny.yaml"},
             {"name": "crt", "config": "tiny.yaml", "init_from": "plain",
              "overrides": ["decouple.method=crt", "decouple.keep=best"]}]
    noval = {"name": "noval", "config": "tiny.yaml", "overrides": ["data.val_split=null", "eval.open_threshold=0.5"]}
    stage2 = {"name": "crt_noval", "config": "tiny.yaml", "init_from": "noval",
              "overrides": ["decouple.method=crt", "decouple.keep=best"]}
    with pytest.raises(ConfigError, match="method 'crt_noval'.*decouple.keep=best"):
        load_bench(_spec(tmp_path, split, [*plain, noval, stage2]))
    auto = {"name": "noval", "config": "tiny.yaml", "overrides": ["data.val_split=null"]}
    with pytest.raises(ConfigError, match="method 'noval'.*eval.open_threshold=auto"):
        load_bench(_spec(tmp_path, split, [*plain, auto]))


def test_a_method_on_a_missing_split_folder_is_refused_before_any_run_is_trained(tmp_path, capsys):
    # trial: `p5` with data.split_dir=nope, after `plain`: the bench trained plain (hours on a real spec), then
    # stopped at p5's turn with `split folder not found: nope`
    from openlt.cli import main
    split = small_split(tmp_path)
    methods = [{"name": "plain", "config": "tiny.yaml"},
               {"name": "p5", "config": "tiny.yaml", "overrides": [f"data.split_dir={tmp_path / 'nope'}"]}]
    spec = _spec(tmp_path, split, methods)
    assert main(["bench", str(spec)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("openlt bench: error: bench spec ") and "\n" not in err
    assert f"method 'p5' (config {tmp_path / 'tiny.yaml'}): split folder not found: {tmp_path / 'nope'}" in err
    assert not (tmp_path / "out").exists()


def test_a_finished_method_is_reused_without_its_split_folder(tmp_path):
    # a method whose runs are all finished needs no split folder (it may have moved since): reused, not refused
    split = small_split(tmp_path)
    spec = load_bench(_spec(tmp_path, split, [{"name": "plain", "config": "tiny.yaml",
                                               "overrides": [f"data.split_dir={tmp_path / 'gone'}"]}]))
    assert "plain" in spec.split_problems
    run = tmp_path / "out" / "plain-s0-20250101-000000"
    run.mkdir(parents=True)
    (run / "metrics.json").write_text("{}")
    bench._check_split_folders(spec)  # (nothing to train: no refusal)
    (run / "metrics.json").unlink()
    with pytest.raises(DataError, match="method 'plain'.*split folder not found"):
        bench._check_split_folders(spec)


def test_a_method_whose_image_folder_is_missing_is_refused_naming_data_root(tmp_path):
    # review of 29247bb: the split folder was fine and data.root missing, and the refusal said to fix data.split_dir
    split = small_split(tmp_path)
    spec = load_bench(_spec(tmp_path, split, [{"name": "moved", "config": "tiny.yaml",
                                               "overrides": [f"data.root={tmp_path / 'moved'}"]}]))
    with pytest.raises(DataError) as caught:
        bench._check_split_folders(spec)
    assert f"data root does not exist or is not a folder: {tmp_path / 'moved'}" in str(caught.value)
    assert str(caught.value).endswith("nothing was trained (fix data.root or data.split_dir of this method, or "
                                      "its split files)")


def test_a_config_found_only_among_the_packaged_ones_is_named(tmp_path, caplog):
    split = small_split(tmp_path / "split")
    path = _spec(tmp_path, split, [{"name": "p", "config": "fmnist_lt/plain.yaml"}, {"name": "t", "config": "tiny.yaml"}])
    with caplog.at_level("INFO", logger="openlt.engine.bench"):
        spec = load_bench(path)
    assert spec.methods[0].config.name == "plain.yaml" and spec.methods[0].config.parent.name == "fmnist_lt"
    said = [r.getMessage() for r in caplog.records if "packaged config" in r.getMessage()]
    assert said == [f"bench spec {path}: method 'p': config fmnist_lt/plain.yaml is openlt's packaged config "
                    f"{spec.methods[0].config} (no such file beside the spec)"]  # tiny.yaml, beside it: nothing said
