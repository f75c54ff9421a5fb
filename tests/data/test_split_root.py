"""Where a split folder's images are (issue 14): `openlt split` records the image root absolute, a run records the
root it read, a split folder of an older openlt with a relative root is refused (its working directory is not
known), and an empty data.root override is refused rather than read as "the manifest's root"."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from openlt.cli import main
from openlt.config import build_config
from openlt.data.build import prepare_data
from openlt.errors import ConfigError, DataError

from images import make_image_folder
from synthetic_run import make_run
from tiny_run import cli  # tests/helpers

SPLIT = ["--dataset", "image-folder", "--profile", "none", "--open-classes", "1", "--val-per-class", "2",
         "--test-per-class", "2"]
INPUT = ["data.dataset=image-folder", "data.image_size=16"]


@pytest.fixture(scope="module")
def split(tmp_path_factory) -> tuple[Path, Path]:
    """(the folder `openlt split --root data` ran in, the split folder splits/s1 it wrote there)."""
    where = tmp_path_factory.mktemp("split_root")
    make_image_folder(where / "data", {"ant": 12, "bee": 10, "cat": 8, "dog": 8})
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(where)
        code = main(["split", *SPLIT, "--root", "data", "--out", "splits/s1"])
    assert code == 0
    return where, where / "splits" / "s1"


def test_split_records_the_root_absolute(split):
    where, folder = split
    assert json.loads((folder / "manifest.json").read_text())["root"] == str(where / "data")


def test_a_run_without_data_root_records_the_root_it_read(split, tmp_path, monkeypatch):
    where, folder = split
    other = tmp_path / "elsewhere"
    make_image_folder(other / "data", {"ant": 12, "bee": 10, "cat": 8, "dog": 8}, seed=1)  # same names, other pixels
    monkeypatch.chdir(other)
    cfg = build_config(None, [*INPUT, f"data.split_dir={folder}"])
    data = prepare_data(cfg)
    assert cfg.data.root == str(where / "data")  # what config.yaml records, from any working directory
    assert data.manifest["root"] == str(where / "data")  # and the run's split_manifest.json
    assert str(data.loader.root) == str(where / "data")


def _old_split(folder: Path, tmp_path: Path) -> Path:
    """A copy of `folder` as an older openlt wrote it: its manifest's root relative ("data")."""
    old = tmp_path / "old_split"
    old.mkdir()
    for path in folder.iterdir():
        (old / path.name).write_bytes(path.read_bytes())
    manifest = json.loads((old / "manifest.json").read_text())
    (old / "manifest.json").write_text(json.dumps({**manifest, "root": "data"}))
    return old


def test_an_older_split_with_a_relative_root_is_refused_without_data_root(split, tmp_path, monkeypatch):
    where, folder = split
    old = _old_split(folder, tmp_path)
    make_image_folder(tmp_path / "data", {"ant": 12, "bee": 10, "cat": 8, "dog": 8}, seed=1)  # a ./data here
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError) as caught:
        prepare_data(build_config(None, [*INPUT, f"data.split_dir={old}"]))
    assert str(caught.value) == (
        f"{old / 'manifest.json'} records the image root 'data' relative to the working directory `openlt split` "
        f"ran in (an older openlt), which is not known now: give data.root=FOLDER, the image folder that split "
        f"lists, as an absolute path (a run's config.yaml: set data.root there)")
    cfg = build_config(None, [*INPUT, f"data.split_dir={old}", f"data.root={where / 'data'}"])
    assert str(prepare_data(cfg).loader.root) == str(where / "data")  # with data.root it is read


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    made, _ = make_run(tmp_path_factory.mktemp("split_root_run") / "run")
    return made


def test_a_null_data_root_override_of_eval_is_refused(run, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = cli(capsys, "eval", run.path, "data.root=null")
    assert (code, out) == (2, "")
    assert err.strip() == (f"openlt eval: error: data.root= (empty, null) is refused: give the folder of the run's "
                           f"images, data.root=FOLDER, or leave the override out to read them where "
                           f"{run.config_file} says")


@pytest.mark.parametrize("key", ["data.root", "data.split_dir", "data.open_root"])
@pytest.mark.parametrize("value", ["", "  "])
def test_an_empty_data_folder_override_of_eval_is_refused_naming_it(run, capsys, tmp_path, monkeypatch, key, value):
    monkeypatch.chdir(tmp_path)  # (data.split_dir= was null: eval built the splits anew instead of the run's)
    code, out, err = cli(capsys, "eval", run.path, f"{key}={value}")
    assert (code, out) == (2, "")
    assert err.strip() == (f"openlt eval: error: override '{key}={value}': config key '{key}' is empty: give the "
                           f"folder, {key}=FOLDER, or leave the override out")
    assert not list(tmp_path.iterdir())


def test_an_empty_data_root_override_of_identify_is_refused(run, tmp_path):
    from openlt.engine.identify import identify_config

    with pytest.raises(ConfigError, match=r"^data\.root= \(empty, null\) is refused: give the folder of the run's "
                                          r"images, data\.root=FOLDER, "):
        identify_config(run, overrides=["data.root=null"])
    with pytest.raises(ConfigError, match=r"^override 'data\.split_dir=': config key 'data\.split_dir' is empty"):
        identify_config(run, overrides=["data.split_dir="])
