"""Device resolution (`runtime.resolve_device`): every device this machine or this PyTorch build lacks is one
ConfigError naming where the name came from -- `--device mps` on a machine without MPS was an internal error
(exit 1), `load_run(..., device="xpu")` a bare RuntimeError."""

import pytest
import torch

import openlt
from openlt.cli import main
from openlt.engine import runtime
from openlt.engine.runtime import resolve_device
from openlt.errors import ConfigError
from synthetic_run import make_run

NO_MPS = not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
NO_XPU = not (hasattr(torch, "xpu") and torch.xpu.is_available())


@pytest.mark.skipif(not NO_MPS, reason="this machine has MPS")
def test_mps_without_mps_is_one_line_exit_2(tmp_path, capsys, single_thread):
    run, _ = make_run(tmp_path / "run")
    for command in (["predict", run.path, tmp_path / "missing.png"], ["eval", run.path]):
        code = main([str(a) for a in command] + ["--device", "mps"])
        out, err = capsys.readouterr()
        assert code == 2 and out == ""
        assert err == (f"openlt {command[0]}: error: --device mps but no MPS (Apple GPU) device is available; use "
                       f"--device cpu or auto\n")
    with pytest.raises(ConfigError, match=r"^device='mps' but no MPS \(Apple GPU\) device is available; use "
                                          r"device=cpu or auto$"):
        openlt.load_run(run.path, device="mps")
    if NO_XPU:  # a device type outside the config's syntax reaches load_run: refused the same way
        with pytest.raises(ConfigError, match=r"^device='xpu' but no XPU \(Intel GPU\) device is available"):
            openlt.load_run(run.path, device="xpu")


def test_every_missing_device_type_and_index_is_refused(monkeypatch):
    if NO_MPS:
        with pytest.raises(ConfigError, match=r"^train.device='mps' but no MPS \(Apple GPU\) device is available; "
                                              r"use train.device=cpu or auto$"):
            resolve_device("mps")
    with pytest.raises(ConfigError, match=r"^--device bogus is not a device \(auto, cpu, cuda, cuda:N, mps\); use "
                                          r"--device cpu or auto$"):
        resolve_device("bogus", "--device")
    with pytest.raises(ConfigError, match=r"^train.device='meta' but no meta device is available"):
        resolve_device("meta")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda:1") == torch.device("cuda:1")
    with pytest.raises(ConfigError, match=r"^--device cuda:2 but there is no CUDA device 2 \(this machine has 2: "
                                          r"0\.\.1\); use --device cpu or auto$"):
        resolve_device("cuda:2", "--device")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match=r"^train.device='cuda:1' but no CUDA device is available; use "
                                          r"train.device=cpu or auto$"):
        resolve_device("cuda:1")
    assert resolve_device("cpu") == torch.device("cpu") and resolve_device("auto") == torch.device("cpu")
    assert runtime.DEVICE_KINDS["xpu"] == "XPU (Intel GPU)"
