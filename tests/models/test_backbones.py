"""Backbone contract, stems, local pretrained loading and error paths (CPU, small inputs)."""

from __future__ import annotations

import sys
import warnings

import pytest
import torch
from torch import nn
from torchvision.models import resnet as tv_resnet

from openlt.errors import ConfigError
from openlt.models import BACKBONES, CLASSIFIERS, Backbone, LinearClassifier, build_backbone, build_classifier

OUT_DIM = {
    "resnet10": 512,
    "resnet18": 512,
    "resnet34": 512,
    "resnet50": 2048,
    "resnet101": 2048,
    "resnet152": 2048,
    "resnext50_32x4d": 2048,
}
FORWARD_ONLY = {"resnet101", "resnet152"}  # deep: the backward check on the others covers the code path


pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def test_registry_has_the_documented_names():
    cifar = {"resnet20", "resnet32", "resnet44", "resnet56", "resnet110"}  # tests/models/test_cifar_resnet.py
    assert set(BACKBONES.names()) == set(OUT_DIM) | cifar


@pytest.mark.parametrize("name", sorted(OUT_DIM))
def test_backbone_contract(name):
    bb = build_backbone(name)
    assert isinstance(bb, Backbone) and bb.name == name and bb.out_dim == OUT_DIM[name]
    size = 64 if bb.out_dim == 512 else 32  # keep the 2048-d models cheap on a small CPU
    x = torch.randn(2, 3, size, size)
    if name in FORWARD_ONLY:
        bb.eval()
        with torch.no_grad():
            fmap, pooled = bb(x)
    else:
        bb.train()
        fmap, pooled = bb(x)
    assert fmap.shape == (2, bb.out_dim, size // 32, size // 32)
    assert pooled.shape == (2, bb.out_dim)
    assert torch.equal(pooled, fmap.mean((2, 3)))
    if name not in FORWARD_ONLY:
        (fmap.square().mean() + pooled.sum()).backward()
        no_grad = [n for n, p in bb.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
        assert not no_grad


def test_small_input_grayscale_resnet10():
    bb = build_backbone("resnet10", small_input=True, in_chans=1).eval()
    assert bb.conv1.in_channels == 1 and bb.conv1.kernel_size == (3, 3) and bb.conv1.stride == (1, 1)
    assert isinstance(bb.maxpool, nn.Identity)
    with torch.no_grad():
        fmap, pooled = bb(torch.randn(2, 1, 28, 28))
    assert fmap.shape == (2, 512, 4, 4)  # 28 -> 28 -> 14 -> 7 -> 4
    assert pooled.shape == (2, 512)


def test_in_chans_with_imagenet_stem():
    bb = build_backbone("resnet18", in_chans=1).eval()
    assert bb.conv1.in_channels == 1 and bb.conv1.kernel_size == (7, 7) and bb.conv1.stride == (2, 2)
    with torch.no_grad():
        fmap, _ = bb(torch.randn(1, 1, 64, 64))
    assert fmap.shape == (1, 512, 2, 2)


def test_resnet10_layout():
    bb = build_backbone("resnet10")
    for i in range(1, 5):
        layer = getattr(bb, f"layer{i}")
        assert len(layer) == 1 and isinstance(layer[0], tv_resnet.BasicBlock)
    assert not hasattr(bb, "fc") and not hasattr(bb, "avgpool")


def test_channels_last_matches():
    bb = build_backbone("resnet10", small_input=True).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ref = bb(x)[1]
        out = bb.to(memory_format=torch.channels_last)(x.to(memory_format=torch.channels_last))[1]
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)


def _trained_resnet10(**kw):
    src = build_backbone("resnet10", **kw)
    src.train()
    with torch.no_grad():  # move BN running statistics off their defaults
        src(torch.randn(4, src.conv1.in_channels, 32, 32))
    return src.eval()


def test_pretrained_roundtrip_is_exact(tmp_path):
    src = _trained_resnet10()
    path = tmp_path / "r10.pth"
    torch.save(src.state_dict(), path)
    torch.manual_seed(123)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dst = build_backbone("resnet10", pretrained=str(path)).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        a, b = src(x), dst(x)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_pretrained_strips_dataparallel_prefix(tmp_path):
    src = _trained_resnet10()
    path = tmp_path / "dp.pt"
    torch.save({f"module.{k}": v for k, v in src.state_dict().items()}, path)
    dst = build_backbone("resnet10", pretrained=path)
    assert torch.equal(dst.layer4[0].conv2.weight, src.layer4[0].conv2.weight)


def test_pretrained_safetensors(tmp_path):
    safetensors_torch = pytest.importorskip("safetensors.torch")
    src = _trained_resnet10(small_input=True)
    path = tmp_path / "r10.safetensors"
    safetensors_torch.save_file({k: v.contiguous() for k, v in src.state_dict().items()}, str(path))
    dst = build_backbone("resnet10", small_input=True, pretrained=path).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(src(x)[1], dst(x)[1])


def test_torchvision_state_dict_drops_fc_silently(tmp_path):
    net = tv_resnet.resnet18(weights=None)
    path = tmp_path / "tv_r18.pth"
    torch.save(net.state_dict(), path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        bb = build_backbone("resnet18", pretrained=path)
    assert torch.equal(bb.conv1.weight, net.conv1.weight)
    assert torch.equal(bb.layer4[1].conv2.weight, net.layer4[1].conv2.weight)


def test_mismatched_conv1_is_skipped_with_warning(tmp_path, caplog):
    src = _trained_resnet10()  # 3-channel stem
    path = tmp_path / "r10_rgb.pth"
    torch.save(src.state_dict(), path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a logged warning (openlt: warning: on the CLI), not a Python UserWarning
        dst = build_backbone("resnet10", in_chans=1, pretrained=path)
        build_backbone("resnet10", in_chans=1, pretrained=path)  # the same file and backbone again: no second line
    [record] = [r for r in caplog.records if r.levelname == "WARNING"]
    assert record.getMessage() == (f"pretrained weights {str(path)!r}: loaded 59 tensors, skipped 1: conv1.weight "
                                   f"(shape (64, 3, 7, 7) vs (64, 1, 7, 7))")
    assert dst.conv1.weight.shape == (64, 1, 7, 7)
    for key, value in dst.state_dict().items():
        if key != "conv1.weight":
            assert torch.equal(value, src.state_dict()[key]), key


def test_weights_of_another_architecture_are_refused(tmp_path):
    """ResNet-34 weights for a resnet18 loaded half-way with a raw UserWarning naming 97 tensors, printed twice."""
    path = tmp_path / "r34.pth"
    torch.save(tv_resnet.resnet34(weights=None).state_dict(), path)
    with pytest.raises(ConfigError) as info:
        build_backbone("resnet18", pretrained=path)
    assert str(info.value) == (
        f"pretrained weights {str(path)!r} do not fit this backbone: 100 of the backbone's 100 tensors fit; 80 of the "
        f"file's 180 are not in the backbone (e.g. layer1.2.conv1.weight, layer1.2.bn1.weight, layer1.2.bn1.bias, "
        f"...): weights of another architecture? (model.pretrained must be of model.backbone)")
    torch.save(tv_resnet.resnet18(weights=None).state_dict(), path)  # resnet18 weights for a resnet34
    with pytest.raises(ConfigError, match=r"do not fit this backbone: 100 of the backbone's 180 tensors fit; 80 are "
                                          r"not in the file \(e\.g\. layer1\.2\.conv1\.weight"):
        build_backbone("resnet34", pretrained=path)
    state = _trained_resnet10().state_dict()
    state["layer2.0.conv1.weight"] = torch.zeros(128, 64, 1, 1)  # a shape that differs beyond the stem
    torch.save(state, path)
    with pytest.raises(ConfigError, match=r"1 differ in shape \(e\.g\. layer2\.0\.conv1\.weight \(shape "
                                          r"\(128, 64, 1, 1\) vs \(128, 64, 3, 3\)\)\)"):
        build_backbone("resnet10", pretrained=path)


def test_a_few_missing_tensors_are_one_warning(tmp_path, caplog):
    state = tv_resnet.resnet18(weights=None).state_dict()
    del state["layer4.1.bn2.running_var"]
    path = tmp_path / "r18.pth"
    torch.save(state, path)
    bb = build_backbone("resnet18", pretrained=path)
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == [
        f"pretrained weights {str(path)!r}: loaded 99 tensors, skipped 1: layer4.1.bn2.running_var (not in file)"]
    assert torch.equal(bb.layer4[1].bn2.weight, state["layer4.1.bn2.weight"])


class _Code:
    def __reduce__(self):
        return (print, ("ran",))


def test_a_pickle_with_code_is_refused_without_torchs_advice(tmp_path, capsys):
    path = tmp_path / "evil.pth"
    torch.save({"conv1.weight": _Code()}, path)
    with pytest.raises(ConfigError) as info:
        build_backbone("resnet10", pretrained=path)
    message = str(info.value)
    assert "\n" not in message and "weights_only" not in message and "trusted" not in message
    assert message.startswith(f"cannot read pretrained weights {str(path)!r}: it holds Python objects, not only "
                              f"tensors (") and "openlt reads tensors only and never runs code" in message
    assert "ran" not in capsys.readouterr().out


def test_missing_file(tmp_path):
    path = tmp_path / "nope.pth"
    with pytest.raises(ConfigError, match="nope.pth"):
        build_backbone("resnet10", pretrained=path)


@pytest.mark.parametrize("fname", ["garbage.pth", "garbage.safetensors"])
def test_garbage_file(tmp_path, fname):
    path = tmp_path / fname
    path.write_bytes(b"\x00\x01this is not a checkpoint\xff" * 10)
    with pytest.raises(ConfigError, match=fname) as info:
        build_backbone("resnet10", pretrained=path)
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_foreign_state_dict(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"encoder.weight": torch.zeros(3)}, path)
    with pytest.raises(ConfigError, match="no tensor matches"):
        build_backbone("resnet10", pretrained=path)


def test_unknown_name_suggests_close_match():
    with pytest.raises(ConfigError, match="resnet18") as info:
        build_backbone("resnt18")
    assert "Did you mean" in str(info.value) and "timm/" in str(info.value)


def test_bad_in_chans():
    with pytest.raises(ConfigError):
        build_backbone("resnet10", in_chans=0)


def test_timm_missing_raises(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # import timm -> ImportError
    with pytest.raises(ConfigError, match=r"openlt\[timm\]"):
        build_backbone("timm/resnet18")


def test_timm_small_input_unsupported():
    with pytest.raises(ConfigError, match="small_input"):
        build_backbone("timm/resnet18", small_input=True)


def test_timm_backbone():
    pytest.importorskip("timm")
    bb = build_backbone("timm/resnet18", in_chans=1).eval()
    assert bb.out_dim == 512 and bb.name == "timm/resnet18"
    with torch.no_grad():
        fmap, pooled = bb(torch.randn(2, 1, 64, 64))
    assert fmap.shape == (2, 512, 2, 2) and pooled.shape == (2, 512)
    torch.testing.assert_close(pooled, fmap.mean((2, 3)))
    with pytest.raises(ConfigError):
        build_backbone("timm/definitely_not_a_model")


def test_linear_classifier():
    head = build_classifier("linear", 512, 10)
    assert isinstance(head, LinearClassifier) and "linear" in CLASSIFIERS
    assert head(torch.randn(3, 512)).shape == (3, 10)
    assert LinearClassifier(8, 4, bias=False).fc.bias is None
    with pytest.raises(ConfigError):
        build_classifier("linear", 8, 4, scale=16.0)
    with pytest.raises(ConfigError, match="Known"):
        build_classifier("cosinee", 8, 4)


@pytest.mark.parametrize("amp", [False, True])
def test_the_stems_relu_after_its_max_pool_gives_torchvisions_outputs_and_gradients_bit_for_bit(amp):
    # forward_map pools before the ReLU (faster); torchvision's ResNet does conv1 -> bn1 -> relu -> maxpool
    backbone = build_backbone("resnet10")
    x = torch.randn(4, 3, 96, 96, generator=torch.Generator().manual_seed(3))

    def torchvision_order(m, images):
        y = m.maxpool(m.relu(m.bn1(m.conv1(images))))
        return m.layer4(m.layer3(m.layer2(m.layer1(y))))

    results = []
    for forward in (torchvision_order, lambda m, images: m.forward_map(images)):
        backbone.zero_grad(set_to_none=True)
        with torch.autocast("cpu", torch.bfloat16, enabled=amp):
            out = forward(backbone, x)
        out.float().square().mean().backward()
        results.append((out.detach(), {n: p.grad.clone() for n, p in backbone.named_parameters()}))
    (expected, expected_grads), (got, grads) = results
    assert torch.equal(got, expected)
    assert all(torch.equal(grads[n], expected_grads[n]) for n in grads)
    seen = []
    backbone.relu.register_forward_hook(lambda module, inputs, output: seen.append(output.shape[-1]))
    backbone.forward_map(x)
    assert seen == [24]  # the ReLU ran on the pooled map (96 px -> 48 after conv1 -> 24 after the pool)
