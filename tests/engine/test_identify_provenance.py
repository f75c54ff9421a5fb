"""trial 12 D4: identification.json can be traced to its inputs: the run as an absolute path (as metrics.json
records it), the list files as absolute paths with their sha256, and the folders their images were read from
(--root, --distractor-root, the run's own data) as absolute paths; it recorded the paths as typed, relative to the
working directory of the call, no folder and no hash."""

import importlib.util
import json
import shutil
from pathlib import Path

from openlt.io import sha256_file

# test_identify_checks.py's trained run (a module-scoped pytest fixture) and its cli, loaded from the file (the tests
# are no package: --import-mode=importlib)
_spec = importlib.util.spec_from_file_location("identify_checks_module", Path(__file__).with_name(
    "test_identify_checks.py"))
_checks = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_checks)
faces, cli = _checks.faces, _checks.cli


def test_identification_json_records_absolute_inputs_with_hashes(faces, capsys, monkeypatch):
    tmp, run = faces["tmp"], faces["run"]
    other = tmp / "elsewhere" / "dis"  # another distractor folder behind the same list
    shutil.copytree(faces["root"] / "dis", other)
    monkeypatch.chdir(tmp)  # every path below as typed, relative to the working directory
    relative_run = run.path.relative_to(tmp)
    recorded = {}
    for tag, distractor_root in (("here", "root"), ("there", "elsewhere")):
        code, out, err = cli(capsys, "identify", relative_run, "--probe", "probe.txt", "--root", "root",
                             "--distractors", "distractors.txt", "--distractor-root", distractor_root,
                             "--pairs", "pairs.txt", "--tag", tag, "--quiet")
        assert code == 0, err
        recorded[tag] = json.loads(run.identification_path(tag).read_text())
    result = recorded["here"]
    assert result["run"] == str(run.path.resolve())
    lists = {kind: tmp / f"{kind}.txt" for kind in ("probe", "distractors", "pairs")}
    assert result["files"] == {kind: str(path) for kind, path in lists.items()}
    assert result["files_sha256"] == {kind: sha256_file(path) for kind, path in lists.items()}
    assert result["data"] == {"root": str(faces["root"]), "open_root": None, "split_dir": str(tmp / "splits"),
                              "list_root": str(tmp / "root"), "distractor_root": str(tmp / "root")}
    # the two calls differ only in the distractors' folder, and the record tells them apart
    assert recorded["there"]["data"]["distractor_root"] == str(tmp / "elsewhere")
    assert recorded["there"]["files"] == result["files"]


def test_the_default_folders_and_a_changed_list_are_recorded(faces, capsys, monkeypatch):
    tmp, run = faces["tmp"], faces["run"]
    monkeypatch.chdir(tmp)
    probe = tmp / "probe_edit.txt"
    probe.write_text((tmp / "probe.txt").read_text())
    hashes = []
    for tag in ("before", "after"):
        code, out, err = cli(capsys, "identify", run.path, "--probe", probe.name, "--tag", tag, "--quiet")
        assert code == 0, err
        result = json.loads(run.identification_path(tag).read_text())
        # no --root: the lists' images are the run's own data.root, and so are the distractors'
        assert result["data"]["list_root"] == result["data"]["distractor_root"] == str(faces["root"])
        assert result["files"] == {"probe": str(probe)}
        hashes.append(result["files_sha256"]["probe"])
        probe.write_text("\n".join(probe.read_text().splitlines()[:-1]) + "\n")  # one probe less: another list
    assert hashes[0] == sha256_file(tmp / "probe.txt") and hashes[0] != hashes[1]
