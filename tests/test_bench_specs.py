"""Every bench spec under configs/bench/ loads (keys, names, references, each config with its overrides), specs
that share an out_dir mean the same run by the same method name, and the README's reproduce lines name
specs that exist. Nothing is trained: `load_bench` only reads and builds configs."""

from __future__ import annotations

import functools
import re
from pathlib import Path

import pytest

try:
    from openlt.bench import load_bench
except ImportError:  # the bench module may move under engine/ (issue 13)
    from openlt.engine.bench import load_bench

ROOT = Path(__file__).parents[1]
SPECS = sorted((ROOT / "configs" / "bench").glob("*.yaml"))
# `load_bench(path)` once per test module: the specs do not change while it runs, and checking every spec's configs
# takes seconds
loaded = functools.cache(load_bench)


def test_there_are_specs():
    assert {"fmnist_lt.yaml", "seed_check.yaml"} <= {p.name for p in SPECS}


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.name)
def test_spec_loads(path):
    spec = loaded(path)
    assert spec.methods and spec.seeds


def _identity(spec, method) -> tuple:
    """What a run named METHOD-sSEED in the spec's out_dir is: its config, stage-1 source and overrides."""
    return (method.config, method.init_from, method.eval_of, tuple(spec.overrides), tuple(method.overrides))


def test_shared_out_dirs_agree_on_method_names():
    # a finished run is reused by name (METHOD-sSEED): two specs writing into one out_dir must not give the same
    # name to different runs, or one table would silently show the other's
    seen: dict[tuple, tuple[str, tuple]] = {}
    for path in SPECS:
        spec = loaded(path)
        for m in spec.methods:
            key = (spec.out_dir, m.name)
            identity = _identity(spec, m)
            if key in seen:
                other, other_identity = seen[key]
                assert identity == other_identity, (f"{path.name} and {other} both write {m.name!r} into "
                                                    f"{spec.out_dir} but mean different runs")
            else:
                seen[key] = (path.name, identity)


def test_readme_reproduce_lines_name_existing_specs():
    docs = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    named = {m for doc in docs for m in re.findall(r"configs/bench/([\w.-]+\.yaml)", doc.read_text())}
    assert named, "the README names no bench spec"
    missing = named - {p.name for p in SPECS}
    assert not missing, f"docs name bench specs that do not exist: {sorted(missing)}"
    readme = (ROOT / "README.md").read_text() + (ROOT / "docs" / "results.md").read_text()
    for path in SPECS:
        if path.name.startswith("fmnist_lt_"):  # the per-table specs: each reproduces something in the README
            assert f"configs/bench/{path.name}" in readme, f"{path.name} is not referenced in the README or docs/results.md"


def test_the_main_spec_runs_every_method_of_the_per_table_specs():
    # issue 16, item 6: one spec runs every method and detector the README's tables show; the per-table specs
    # are its subsets (a budget study, with its own short-budget runs, is not a table of methods)
    main = loaded(ROOT / "configs" / "bench" / "fmnist_lt.yaml")
    everything = {m.name for m in main.methods}
    for path in SPECS:
        spec = loaded(path)
        if path.name in ("fmnist_lt.yaml", "fmnist_lt_budget.yaml") or spec.out_dir != main.out_dir:
            continue
        missing = {m.name for m in spec.methods} - everything
        assert not missing, f"{path.name} has methods fmnist_lt.yaml does not run: {sorted(missing)}"
