"""`openlt features --splits` (engine/features.py `_present`): a split the run does not have is one line naming it,
why and the splits it has (trial 16 D7: `--splits val open` on a run with data.val_split: null exited 0, nothing
extracted and nothing said); a split named twice is extracted and reported once; without --splits, every split the
run has, as before."""

import importlib.util
from pathlib import Path

# test_identify_checks.py's trained run (a module-scoped pytest fixture: train and test splits, data.val_split and
# data.open_split null) and its cli, loaded from the file (the tests are no package: --import-mode=importlib)
_spec = importlib.util.spec_from_file_location("identify_checks_module", Path(__file__).with_name(
    "test_identify_checks.py"))
_checks = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_checks)
faces, cli = _checks.faces, _checks.cli


def test_a_split_the_run_does_not_have_is_named(faces, capsys):
    run = faces["run"]
    for splits, said in ((["val", "open"], "val and no open split (data.val_split is null; data.open_split is null)"),
                         (["test", "open"], "open split (data.open_split is null)")):
        code, out, err = cli(capsys, "features", run.path, "--splits", *splits)
        assert code == 2 and out == "" and err == (f"openlt features: error: run {run.path} has no {said}: --splits "
                                                   f"can name train, test\n")
    assert not (run.path / "features" / "test.safetensors").exists()  # refused before any work


def test_a_split_named_twice_is_extracted_once_and_the_default_is_every_split_the_run_has(faces, capsys):
    run = faces["run"]
    code, out, err = cli(capsys, "features", run.path, "--splits", "test", "test")
    assert code == 0 and [line.split()[1] for line in out.splitlines() if line.startswith("features ")] == ["test"]
    code, out, err = cli(capsys, "features", run.path)
    assert code == 0 and [line.split()[1] for line in out.splitlines() if line.startswith("features ")] == [
        "train", "test"]
    assert out.endswith(f"feature cache: {run.features_dir}\n")
