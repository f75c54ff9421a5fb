"""A run name too long for its run folder (issue 14): refused by the name check (`openlt config`, `train name=`,
`train --name`, a bench method's name) before anything is created, naming the key and the limit; the longest
accepted name really makes a run folder, also the -2 of a second run in the same second."""

import json

import pytest

from openlt.config import MAX_RUN_NAME_BYTES, build_config, run_name_problem
from openlt.engine.bench import load_bench
from openlt.engine.run import new_run, publish_run, staged_run
from openlt.errors import ConfigError
from tiny_run import cli

LIMIT = "must be at most 231 bytes long (a file name holds 255; the run folder adds -YYYYmmdd-HHMMSS), got"


def test_the_limit_leaves_room_for_the_timestamp_in_255_bytes():
    assert MAX_RUN_NAME_BYTES == 231 and MAX_RUN_NAME_BYTES + len("-20261130-025614-9999999") == 255
    assert run_name_problem("x" * 231) is None and run_name_problem("é" * 115) is None  # 230 bytes
    assert run_name_problem("x" * 232) == f"{LIMIT} 232 bytes ('xxxxxxxxxxxxxxxxxxxx'...)"
    assert run_name_problem("é" * 116).startswith(f"{LIMIT} 232 bytes")  # counted in UTF-8 bytes, not characters


@pytest.mark.parametrize("how", ["config", "train-override", "train-option"])
def test_an_over_long_name_is_one_line_before_anything_is_created(tmp_path, capsys, how):
    (tmp_path / "tiny.yaml").write_text("train: {epochs: 1}\n")
    name, out = "x" * 300, tmp_path / "lruns"
    args = {"config": ["config", tmp_path / "tiny.yaml", f"name={name}"],
            "train-override": ["train", tmp_path / "tiny.yaml", f"out_dir={out}", f"name={name}"],
            "train-option": ["train", tmp_path / "tiny.yaml", f"out_dir={out}", "--name", name]}[how]
    code, stdout, err = cli(capsys, *args)
    assert code == 2 and stdout == "", stdout
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    key = "--name" if how == "train-option" else "config key 'name'"
    assert lines[0].endswith(f"{key} {LIMIT} 300 bytes ('xxxxxxxxxxxxxxxxxxxx'...)"), err
    assert not out.exists()


def test_the_longest_name_makes_run_folders(tmp_path):
    cfg = build_config(None, [f"out_dir={tmp_path / 'runs'}", f"name={'é' * 115}x"])  # 231 bytes
    first = new_run(cfg)
    assert first.path.is_dir() and len(first.path.name.encode()) == 231 + len("-YYYYmmdd-HHMMSS")
    stage = staged_run(cfg)
    second = publish_run(stage, cfg)  # the same second: -2, or the next second's stamp
    assert second.path.is_dir() and second.path != first.path
    with pytest.raises(ConfigError, match="run name must be at most 231 bytes"):
        new_run(cfg, name="y" * 232)


def test_a_bench_method_name_too_long_for_its_runs_is_refused_at_load(tmp_path):
    (tmp_path / "tiny.yaml").write_text("name: tiny\n")
    path = tmp_path / "bench.yaml"
    method = "m" * 225  # m...-s10000: 232 bytes with the largest seed
    path.write_text(json.dumps({"name": "x", "seeds": [0, 10000], "out_dir": str(tmp_path / "out"),
                                "methods": [{"name": method, "config": "tiny.yaml"}]}))
    with pytest.raises(ConfigError) as info:
        load_bench(path)
    assert str(info.value) == (f"bench spec {path}: method {method!r} gives the run name {method}-s10000, which "
                               f"{LIMIT} 232 bytes ('mmmmmmmmmmmmmmmmmmmm'...)")
    assert load_bench(path, seeds=[0]).methods[0].name == method  # m...-s0: 228 bytes
    assert not (tmp_path / "out").exists()
