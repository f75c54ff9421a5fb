"""How `openlt` ends when something stops it: Ctrl-C (130) and SIGTERM (143) as one line, a bug as one line
"internal error" (exit 1, the traceback with --debug), and options every command shares (--device, --name) refused
before any work. The real training processes stopped by SIGKILL / SIGTERM are in test_crash_safety.py."""

from __future__ import annotations

import os
import signal
import time

import pytest

import openlt.cli as cli
from openlt.cli import Terminated, main

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")


def run_main(capsys, *args) -> tuple[int, list[str]]:
    code = main([str(a) for a in args])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    return code, err


def failing_with(exc: BaseException):
    def load_registries():
        raise exc
    return load_registries


@pytest.mark.parametrize("exc", [ValueError("bad value\nsecond line"), KeyError("k"), AssertionError(),
                                 RuntimeError("CUDA error: device-side assert triggered"), ZeroDivisionError("x")])
def test_a_bug_is_one_line_naming_it_and_exit_1(monkeypatch, capsys, tmp_path, exc):
    monkeypatch.setattr(cli, "load_registries", failing_with(exc))
    code, err = run_main(capsys, "summary", tmp_path)
    assert code == 1 and len(err) == 1, err
    assert err[0].startswith(f"openlt summary: internal error: {type(exc).__name__}")
    assert err[0].endswith("(run with --debug for the traceback)")


def test_debug_shows_the_traceback_of_a_bug(monkeypatch, tmp_path):
    monkeypatch.setattr(cli, "load_registries", failing_with(ValueError("boom")))
    with pytest.raises(ValueError, match="boom"):
        main(["--debug", "summary", str(tmp_path)])


@pytest.mark.parametrize("exc, code, how", [(KeyboardInterrupt(), 130, "Ctrl-C"), (Terminated(), 143, "SIGTERM")])
def test_an_interrupt_is_one_line_and_exit_128_plus_the_signal(monkeypatch, capsys, tmp_path, exc, code, how):
    monkeypatch.setattr(cli, "load_registries", failing_with(exc))
    got, err = run_main(capsys, "summary", tmp_path)
    assert got == code and err == [f"openlt summary: interrupted ({how})"]


def test_a_real_sigterm_ends_the_command_as_ctrl_c_does_and_the_handler_is_restored(monkeypatch, capsys, tmp_path):
    def load_registries():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(30)  # the handler raises in here
        raise AssertionError("SIGTERM was not handled")

    before = signal.getsignal(signal.SIGTERM)
    monkeypatch.setattr(cli, "load_registries", load_registries)
    started = time.monotonic()
    code, err = run_main(capsys, "summary", tmp_path)
    assert code == 143 and err == ["openlt summary: interrupted (SIGTERM)"]
    assert time.monotonic() - started < 20
    assert signal.getsignal(signal.SIGTERM) == before


@pytest.mark.parametrize("command", ["train", "eval", "predict", "features"])
@pytest.mark.parametrize("device", ["bogus", "cuda:x", "cpu:0", "gpu", ""])
def test_a_bad_device_is_refused_before_any_work(capsys, tmp_path, command, device):
    """The run does not exist: had any work started, the error would name it instead."""
    args = {"train": ["train", tmp_path / "no-config.yaml"], "eval": ["eval", tmp_path / "no-run"],
            "predict": ["predict", tmp_path / "no-run", tmp_path / "x.png"],
            "features": ["features", tmp_path / "no-run"]}[command]
    code, err = run_main(capsys, *args, "--device", device)
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith(f"openlt {command}: error: --device must be auto, cpu, cuda, cuda:N or mps, got "), err
    assert not any(tmp_path.iterdir())
