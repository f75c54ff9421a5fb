"""`openlt identify` hashes the run's checkpoint once: the sha256 it records (checkpoint_identity) is the one the
feature cache's key is made with (load_features' `checkpoint_sha256`), not a second read of a large file."""

import importlib.util
import json
from pathlib import Path

from openlt.engine import features as features_module
from openlt.engine import inference as inference_module
from openlt.io import sha256_file

# test_identify_checks.py's trained run (a module-scoped pytest fixture) and its cli, loaded from the file (the tests
# are no package: --import-mode=importlib)
_spec = importlib.util.spec_from_file_location("identify_checks_module", Path(__file__).with_name(
    "test_identify_checks.py"))
_checks = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_checks)
faces, cli = _checks.faces, _checks.cli


def test_identify_hashes_the_checkpoint_once_and_caches_features_under_that_hash(faces, capsys,
                                                                                monkeypatch):
    run, tmp = faces["run"], faces["tmp"]
    checkpoint = run.checkpoint("best")
    hashed = []

    def counting(path, *args, **kwargs):
        hashed.append(str(path))
        return sha256_file(path, *args, **kwargs)

    monkeypatch.setattr(features_module, "sha256_file", counting)
    monkeypatch.setattr(inference_module, "sha256_file", counting)
    for tag in ("first", "second"):  # the second reuses the feature cache the first wrote under the same hash
        hashed.clear()
        code, out, err = cli(capsys, "identify", run.path, "--probe", tmp / "probe.txt", "--tag", tag, "--quiet")
        assert code == 0, err
        assert hashed.count(str(checkpoint)) == 1, hashed
        recorded = json.loads(run.identification_path(tag).read_text())
        assert recorded["checkpoint_sha256"] == sha256_file(checkpoint)
    key, _ = features_module._read(run.feature_cache("train"))
    assert key["checkpoint_sha256"] == sha256_file(checkpoint)
