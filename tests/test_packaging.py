"""Packaging: the configs ship inside the package and are found by name; a built wheel, installed into a fresh
virtual environment, splits, trains a packaged config and predicts from a folder outside the repository."""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from openlt.cli import main
from openlt.config import PACKAGED_CONFIGS, build_config, packaged_configs, resolve_config
from openlt.data.fashion_mnist import DEBIAN_DIR
from openlt.engine.bench import load_bench
from openlt.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def test_the_repository_configs_folder_is_the_packaged_one():
    assert (ROOT / "configs").resolve() == PACKAGED_CONFIGS
    names = packaged_configs()
    assert "fmnist_lt/plain" in names and "bench/fmnist_lt" in names and len(names) == len(
        list(PACKAGED_CONFIGS.rglob("*.yaml")))


def test_a_config_is_named_or_given_as_a_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no configs/ folder here
    packaged = PACKAGED_CONFIGS / "fmnist_lt" / "plain.yaml"
    for value in ("fmnist_lt/plain", "fmnist_lt/plain.yaml", "configs/fmnist_lt/plain.yaml"):
        assert resolve_config(value) == packaged
    assert build_config("fmnist_lt/plain").name == "plain"
    mine = tmp_path / "fmnist_lt" / "plain.yaml"  # a file of that name wins over the packaged config
    mine.parent.mkdir()
    mine.write_text("name: mine\n")
    assert resolve_config("fmnist_lt/plain.yaml") == Path("fmnist_lt/plain.yaml")
    assert build_config("fmnist_lt/plain.yaml").name == "mine"
    with pytest.raises(ConfigError, match=r"config file not found: fmnist_lt/plan .*closest: fmnist_lt/plain"):
        build_config("fmnist_lt/plan")


def test_bench_spec_entries_and_specs_may_name_packaged_configs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = tmp_path / "spec.yaml"
    spec.write_text("methods:\n  - {name: plain, config: fmnist_lt/plain}\n")
    assert load_bench(spec).methods[0].config == (PACKAGED_CONFIGS / "fmnist_lt" / "plain.yaml").resolve()
    assert load_bench("bench/fmnist_lt_plain").methods[0].config.name == "plain.yaml"  # ../fmnist_lt/plain.yaml
    spec.write_text("methods:\n  - {name: plain, config: fmnist_lt/nope}\n")
    with pytest.raises(ConfigError, match="method 'plain': config not found"):
        load_bench(spec)


def test_configs_command_lists_names_with_their_first_comment(capsys):
    assert main(["configs", "fmnist_lt/"]) == 0
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if line.split()[:1] == ["fmnist_lt/plain"])
    names = [line.split()[0] for line in out.splitlines()[1:]]
    assert "Plain baseline (stage 1 of OLTR" in line and names and all(n.startswith("fmnist_lt/") for n in names)
    assert main(["configs", "no-such-config"]) == 2
    assert "no packaged config name contains 'no-such-config'" in capsys.readouterr().err


def _fresh_venv(tmp: Path) -> Path:
    """A virtual environment without openlt that sees this interpreter's installed packages (torch, numpy, ...)
    through a .pth file; that file adds those folders only, not the .pth files in them (so not the editable
    install of the repository)."""
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    shared = [p for p in site.getsitepackages() + [sysconfig.get_paths()["purelib"]] if Path(p).is_dir()]
    (Path(purelib) / "shared_packages.pth").write_text("\n".join(dict.fromkeys(shared)) + "\n")
    return venv


@pytest.mark.skipif(not (DEBIAN_DIR / "train-images-idx3-ubyte.gz").is_file(), reason="needs Fashion-MNIST")
def test_wheel_installs_and_runs_outside_the_repository(tmp_path):
    # the wheel is built from a clean copy of the sources (a build/ folder in the checkout may hold stale files)
    source = tmp_path / "source"
    shutil.copytree(ROOT / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")} | {"OMP_NUM_THREADS": "1"}
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", str(source), "-w", str(tmp_path / "dist")],
                   check=True, env=env, cwd=tmp_path)
    wheel = next((tmp_path / "dist").glob("openlt-*.whl"))
    venv = _fresh_venv(tmp_path)
    python = venv / "bin" / "python"
    # --ignore-installed: pip must not touch the repository's editable install it can see through the .pth
    subprocess.run([str(python), "-m", "pip", "--disable-pip-version-check", "-q", "install", "--no-deps",
                    "--no-index", "--ignore-installed", "--no-compile", str(wheel)], check=True, env=env)
    work = tmp_path / "elsewhere"
    work.mkdir()

    def openlt(*args: str) -> str:
        done = subprocess.run([str(venv / "bin" / "openlt"), *args], cwd=work, env=env, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout

    where = subprocess.run([str(python), "-c", "import openlt; print(openlt.__file__)"], cwd=work, env=env,
                           check=True, capture_output=True, text=True).stdout.strip()
    assert Path(where).is_relative_to(venv) and not Path(where).is_relative_to(ROOT)  # the wheel's copy, not src/
    assert "fmnist_lt/plain" in openlt("configs")
    openlt("split", "--dataset", "fashion-mnist", "--out", "splits", "--n-max", "40", "--n-min", "4",
           "--val-per-class", "5", "--test-per-class", "10")
    out = openlt("train", "fmnist_lt/plain", "data.split_dir=splits", "train.epochs=1", "train.batch_size=32",
                 "train.device=cpu", "--quiet")
    assert "closed-set top-1" in out
    run = next((work / "runs").glob("plain-*"))
    image = work / "shoe.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (28, 28), dtype=np.uint8)).save(image)
    first = openlt("predict", str(run), str(image)).splitlines()[0]
    assert first.startswith(str(image)) and ("unknown" in first or any(
        name in first for name in ("t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "bag", "boot")))
