import pytest
import torch
from torch import nn

from openlt.engine.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from openlt.errors import RunDirError


def model_and_optimizer(seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    loss = model(torch.randn(5, 4)).sum()
    loss.backward()
    opt.step()
    return model, opt


def test_round_trip_restores_weights_optimizer_and_state(tmp_path):
    model, opt = model_and_optimizer(0)
    save_checkpoint(tmp_path / "c.safetensors", model, opt, {"epoch": 3, "best_val": 0.5})
    other, other_opt = model_and_optimizer(1)
    state = load_checkpoint(tmp_path / "c.safetensors", other, other_opt)
    assert state == {"epoch": 3, "best_val": 0.5}
    for a, b in zip(model.state_dict().values(), other.state_dict().values()):
        assert torch.equal(a, b)
    assert torch.equal(opt.state_dict()["state"][0]["momentum_buffer"], other_opt.state_dict()["state"][0]["momentum_buffer"])
    assert not list(tmp_path.glob(".*.tmp")), "temporary file left behind"


def test_missing_corrupt_and_foreign_files(tmp_path):
    model, _ = model_and_optimizer()
    with pytest.raises(RunDirError, match="not found"):
        load_checkpoint(tmp_path / "none.safetensors", model)
    (tmp_path / "junk.safetensors").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(RunDirError, match="corrupt"):
        read_checkpoint(tmp_path / "junk.safetensors")
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(tmp_path / "foreign.safetensors"))
    with pytest.raises(RunDirError, match="not written by openlt"):
        read_checkpoint(tmp_path / "foreign.safetensors")


def test_truncated_file_is_corrupt(tmp_path):
    model, opt = model_and_optimizer()
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, model, opt)
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(RunDirError, match="corrupt"):
        load_checkpoint(path, model)


def test_checkpoint_of_another_architecture_is_refused(tmp_path):
    model, _ = model_and_optimizer()
    save_checkpoint(tmp_path / "c.safetensors", model)
    other = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 5))
    with pytest.raises(RunDirError, match="does not match"):
        load_checkpoint(tmp_path / "c.safetensors", other)


def test_a_sync_bn_checkpoint_loads_into_the_plain_model_and_back(tmp_path):
    """train.sync_bn (GPUs under torchrun) converts batch norms to SyncBatchNorm before the optimizer is built;
    its checkpoints must resume into a converted model (weights and optimizer state) and load into the plain
    model that evaluation and predict build. SyncBatchNorm has no CPU kernel, so only the conversion runs here."""
    from openlt.config import build_config
    from openlt.models.model import build_model

    cfg = build_config("configs/fmnist_lt/oltr_stage2.yaml", ["data.split_dir=unused"])
    torch.manual_seed(0)
    plain = build_model(cfg, 8, in_chans=1, image_size=28)
    synced = nn.SyncBatchNorm.convert_sync_batchnorm(build_model(cfg, 8, in_chans=1, image_size=28))
    assert any(isinstance(m, nn.SyncBatchNorm) for m in synced.modules())
    with torch.no_grad():
        for p in synced.parameters():
            p.add_(torch.randn_like(p))
        for name, b in synced.named_buffers():
            if b.is_floating_point():
                b.add_(1.0)
    optimizer = torch.optim.SGD(synced.parameters(), lr=0.1, momentum=0.9)
    for p in synced.parameters():
        p.grad = torch.randn_like(p)
    optimizer.step()
    save_checkpoint(tmp_path / "last.safetensors", synced, optimizer, {"epoch": 3})

    load_checkpoint(tmp_path / "last.safetensors", plain)  # evaluation's model
    for (name, a), (_, b) in zip(plain.state_dict().items(), synced.state_dict().items()):
        assert torch.equal(a, b), name
    again = nn.SyncBatchNorm.convert_sync_batchnorm(build_model(cfg, 8, in_chans=1, image_size=28))
    resumed = torch.optim.SGD(again.parameters(), lr=0.1, momentum=0.9)
    assert load_checkpoint(tmp_path / "last.safetensors", again, resumed) == {"epoch": 3}
    saved, loaded = optimizer.state_dict()["state"], resumed.state_dict()["state"]
    assert saved.keys() == loaded.keys()
    for idx in saved:
        assert torch.equal(saved[idx]["momentum_buffer"], loaded[idx]["momentum_buffer"]), idx
