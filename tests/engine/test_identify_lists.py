"""What `openlt identify` checks of its list files and options (trial 16): one file listed twice under two names
(D6: a probe through a symlink was counted twice), and --device naming the option (D11); session 27's hostile try:
a run folder it cannot write into (said before any work, not after the matching), a device that is not there
(before every image's header is read), pairs of paths with spaces (tab-separated columns), probes naming an
identity enrolled nowhere (a warning)."""

import importlib.util
import json
import os
from pathlib import Path

import pytest
import torch

# test_identify_checks.py's trained run (a module-scoped pytest fixture) and its cli, loaded from the file (the tests
# are no package: --import-mode=importlib)
_spec = importlib.util.spec_from_file_location("identify_checks_module", Path(__file__).with_name(
    "test_identify_checks.py"))
_checks = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_checks)
faces, cli = _checks.faces, _checks.cli


@pytest.mark.parametrize("kind,label", [("probe", 0), ("gallery", 0), ("distractors", -1)])
def test_one_file_under_two_names_in_a_list_is_refused(faces, capsys, tmp_path, kind, label):
    """(Trial 16 D6: `cyan/0.png` and `cyan/zero_link.png -> 0.png` were two zero-shot probes, rank-1 over one
    file counted twice; the same name twice, or as ./a, was refused.) Compared by device and inode, as the probe-vs-
    gallery check and the pairs are."""
    run, root = faces["run"], faces["root"]
    link = root / "0" / f"link_{kind}.png"
    link.symlink_to("11.png")
    try:
        rows = [f"0/11.png {label}", f"0/12.png {label}", f"0/{link.name} {label}"]
        listed = tmp_path / f"{kind}.txt"
        listed.write_text("\n".join(rows) + "\n")
        probe = listed if kind == "probe" else faces["tmp"] / "probe.txt"
        extra = [] if kind == "probe" else [f"--{kind}", listed]
        if kind != "probe":  # a probe list that does not share these images
            probe = tmp_path / "probe.txt"
            probe.write_text("1/11.png 1\n2/11.png 2\n9/0.png -1\n")
        code, out, err = cli(capsys, "identify", run.path, "--probe", probe, *extra, "--quiet")
        assert code == 2 and out == "" and err == (
            f"openlt identify: error: {listed}, line 3: '0/{link.name}' is the same file as '0/11.png' (line 1; a "
            f"symlink or a hard link): each {kind} image is listed once; remove one\n")
    finally:
        link.unlink()
    assert not list(run.path.glob("identification*"))


@pytest.mark.parametrize("command", ["identify", "features"])
def test_a_device_that_is_not_there_names_the_option(faces, capsys, monkeypatch, command):
    """(Trial 16 D11: `--device cuda` without a GPU said `train.device='cuda' ...; use train.device=cpu or auto`, as
    `predict` did not.)"""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    run = faces["run"]
    extra = ["--probe", faces["tmp"] / "probe.txt"] if command == "identify" else []
    code, out, err = cli(capsys, command, run.path, *extra, "--device", "cuda", "--quiet")
    assert code == 2 and out == "" and err == (f"openlt {command}: error: --device cuda but no CUDA device is "
                                               f"available; use --device cpu or auto\n")


def test_a_run_folder_it_cannot_write_into_is_said_before_any_work(faces, capsys, monkeypatch):
    """(Session 27: as another user, identify extracted and matched every feature, then failed to write
    identification.json, printing nothing.)"""
    run = faces["run"]
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: not (Path(path) == run.path and mode & os.W_OK)
                        and real_access(path, mode))
    called = []
    monkeypatch.setattr(_checks.identify_module, "prepare_data", lambda *a, **k: called.append(1))
    code, out, err = cli(capsys, "identify", run.path, "--probe", faces["tmp"] / "probe.txt", "--quiet")
    assert code == 2 and out == "" and not called and err == (
        f"openlt identify: error: {run.path}: cannot write identification.json into the run's folder (permission "
        f"denied or a read-only filesystem): copy the run somewhere writable and identify the copy\n")


def test_a_folder_named_as_the_result_file_is_said_before_any_work(faces, capsys, monkeypatch):
    """(Session 27: a folder identification-TAG.json in the run was found only when the result was renamed onto it.)"""
    run = faces["run"]
    (run.path / "identification-blocked.json").mkdir()
    called = []
    monkeypatch.setattr(_checks.identify_module, "prepare_data", lambda *a, **k: called.append(1))
    try:
        code, out, err = cli(capsys, "identify", run.path, "--probe", faces["tmp"] / "probe.txt", "--tag", "blocked",
                             "--quiet")
    finally:
        (run.path / "identification-blocked.json").rmdir()
    assert code == 2 and out == "" and not called and err == (
        f"openlt identify: error: {run.path / 'identification-blocked.json'} is a folder, where identify writes its "
        f"result: move it away, or give another --tag\n")


def test_a_device_that_is_not_there_is_said_before_the_images_headers_are_read(faces, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    probe = faces["tmp"] / "missing_image_probe.txt"
    probe.write_text("0/11.png 0\n0/999.png 0\n9/0.png -1\n")  # 0/999.png is not there: read after the device
    code, _, err = cli(capsys, "identify", faces["run"].path, "--probe", probe, "--device", "cuda", "--quiet")
    assert code == 2 and "--device cuda but no CUDA device is available" in err, err


def test_pairs_of_paths_with_spaces_take_tab_separated_columns(faces, capsys, tmp_path):
    root = faces["root"]
    spaced = root / "0" / "with space.png"
    spaced.write_bytes((root / "0" / "13.png").read_bytes())
    try:
        pairs = tmp_path / "pairs.txt"
        pairs.write_text("0/with space.png\t0/12.png\t1\n1/11.png 1/12.png 1\n0/11.png\t1/11.png\t0\n"
                         "2/11.png 3/11.png 0\n")
        code, out, err = cli(capsys, "identify", faces["run"].path, "--pairs", pairs, "--tag", "spaces", "--json")
        assert code == 0, err
        assert json.loads(out)["verification"]["n_genuine"] == 2
        pairs.write_text("0/with space.png 0/12.png 1\n")
        code, out, err = cli(capsys, "identify", faces["run"].path, "--pairs", pairs, "--quiet")
        assert code == 2 and err == (
            f"openlt identify: error: {pairs}, line 1: expected 'path1 path2 same' (same: 0 or 1), got "
            f"'0/with space.png 0/12.png 1'; a path with spaces needs the three columns separated by tabs\n")
    finally:
        spaced.unlink()


def test_probes_naming_an_identity_enrolled_nowhere_are_named_under_the_table(faces, capsys, tmp_path):
    """(Session 27: a typo `0/7.png 200`, or zero-shot probes without their --gallery, counted as unenrolled probes
    without a word.) Unenrolled as label -1 is, by design (MegaFace-style lists keep a probe's own identity), and
    named in the result and under the table."""
    probe = tmp_path / "probe.txt"
    probe.write_text("0/11.png 0\n1/11.png 1\n1/12.png 200\n9/0.png -1\n2/11.png 7\n")
    code, out, err = cli(capsys, "identify", faces["run"].path, "--probe", probe, "--tag", "nowhere", "--quiet")
    assert code == 0 and err == "", err
    assert ("note: probes of 2 identities enrolled nowhere (7, 200) count as unenrolled, to be rejected, as label -1 "
            "does; enrol new identities with --gallery") in out
    result = json.loads(faces["run"].identification_path("nowhere").read_text())
    assert result["open_set"]["unenrolled_identities"] == [7, 200] and result["open_set"]["n_non_mated"] == 3
    code, out, err = cli(capsys, "identify", faces["run"].path, "--probe", faces["tmp"] / "probe.txt", "--quiet")
    assert code == 0 and "enrolled nowhere" not in out, out


def test_an_image_it_may_not_read_is_named_with_its_list_and_line(tmp_path, monkeypatch):
    """(Session 27: an image of mode 000 was 'not an image PIL can read: [Errno 13] Permission denied'.)"""
    from openlt.data.datasets import FileImageLoader
    from openlt.data.splitfile import SplitEntries

    (tmp_path / "a.png").write_bytes(b"")
    entries = SplitEntries(tmp_path / "probe.txt", ["a.png"], [0], [4])

    def refuse(path, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(_checks.identify_module.Image, "open", refuse)  # as mode 000 for a user other than root
    with pytest.raises(Exception, match=r"probe.txt, line 4: image 'a.png' under .* cannot be read \(permission "
                                        r"denied\)"):
        _checks.identify_module.check_headers(entries, FileImageLoader(tmp_path))
