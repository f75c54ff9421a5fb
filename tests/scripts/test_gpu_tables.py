"""scripts/gpu_tables.py (every run of the README's tables side by side on one GPU): each one-method or group spec it
writes is a valid bench spec of configs/bench/fmnist_lt.yaml's methods, and together they cover that spec."""

import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parents[2] / "scripts"))
import gpu_tables  # noqa: E402  (a script, not a package module)

from openlt.engine.bench import load_bench  # noqa: E402


@pytest.mark.parametrize("mode", sorted(gpu_tables.MODES))
def test_every_written_spec_loads_as_a_bench_spec(mode, tmp_path):
    # written outside the package's configs folder, as the script does (their method configs as absolute paths)
    stage1, groups = gpu_tables.write_specs(mode, tmp_path)
    for path in [*stage1.values(), *groups.values()]:
        spec = load_bench(path)
        assert spec.methods, path


def test_a_group_spec_carries_the_runs_its_methods_start_from():
    spec = yaml.safe_load(gpu_tables.SPEC.read_text())
    names = [m["name"] for m in gpu_tables.subset_spec(spec, "oltr", ["oltr_stage2+knn"])["methods"]]
    assert names == ["plain", "oltr_stage2", "oltr_stage2+knn"]


def test_the_tables_mode_runs_every_method_of_the_full_spec_but_the_sampler_study():
    spec = yaml.safe_load(gpu_tables.SPEC.read_text())
    stage1, groups, _ = gpu_tables.MODES["tables"]
    s1, sgroups, _ = gpu_tables.MODES["samplers"]
    covered = set(stage1) | {n for g in groups.values() for n in g} | set(s1) | {n for g in sgroups.values() for n in g}
    assert covered == {m["name"] for m in spec["methods"]}


@pytest.mark.parametrize("mode", sorted(gpu_tables.MODES))
def test_every_reported_table_spec_exists(mode):
    for name in gpu_tables.MODES[mode][2]:
        assert (gpu_tables.SPEC.parent / f"{name}.yaml").is_file(), name
