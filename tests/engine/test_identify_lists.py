"""What `openlt identify` checks of its list files and options (trial 16): one file listed twice under two names
(D6: a probe through a symlink was counted twice), and --device naming the option (D11)."""

import importlib.util
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
