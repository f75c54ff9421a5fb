"""ModulatedAttention: shapes for any spatial size, identity at init, spatial softmax, gradients, maps."""

from __future__ import annotations

import pytest
import torch

from openlt.errors import ConfigError
from openlt.models.attention import ModulatedAttention

SIZES = [(4, 4), (7, 7), (2, 3), (1, 1)]


pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _randomize_out(att: ModulatedAttention) -> None:
    with torch.no_grad():
        att.out.weight.normal_(0, 0.1)


@pytest.mark.parametrize("channels", [8, 16, 5])
@pytest.mark.parametrize("hw", SIZES)
@pytest.mark.parametrize("hidden", [None, 6])
def test_shape_and_identity_at_init(channels, hw, hidden):
    att = ModulatedAttention(channels, hidden_channels=hidden)
    x = torch.randn(3, channels, *hw)
    y = att(x)
    assert y.shape == x.shape
    torch.testing.assert_close(y, x, rtol=0, atol=0)  # zero-initialised output conv: SA(f) == 0
    assert att.last_spatial_attention.shape == (3, 1, *hw)
    assert att.last_self_attention.shape == (3, hw[0] * hw[1], hw[0] * hw[1])


@pytest.mark.parametrize("hw", SIZES)
@pytest.mark.parametrize("spatial_size", [None, 7, (2, 3)])
def test_spatial_attention_sums_to_one(hw, spatial_size):
    att = ModulatedAttention(8, spatial_size=spatial_size)
    if att.position_bias is not None:
        with torch.no_grad():
            att.position_bias.normal_()
    x = torch.randn(4, 8, *hw)
    _, maps = att.forward_with_maps(x)
    ma = maps["spatial"]
    assert ma.shape == (4, 1, *hw)
    assert (ma >= 0).all()
    torch.testing.assert_close(ma.sum(dim=(1, 2, 3)), torch.ones(4))
    torch.testing.assert_close(maps["self"].sum(-1), torch.ones(4, hw[0] * hw[1]))


@pytest.mark.parametrize("hw", SIZES[:3])
def test_output_is_f_plus_ma_times_sa(hw):
    att = ModulatedAttention(6, hidden_channels=4)
    _randomize_out(att)
    x = torch.randn(2, 6, *hw)
    y, maps = att.forward_with_maps(x)
    torch.testing.assert_close(y, x + maps["spatial"] * maps["context"])
    # the non-local block by hand
    theta = att.theta(x).flatten(2)
    phi = att.phi(x).flatten(2)
    g = att.g(x).flatten(2)
    attn = torch.softmax(theta.transpose(1, 2) @ phi, dim=-1)
    ctx = (g @ attn.transpose(1, 2)).reshape(2, att.inter_channels, *hw)
    torch.testing.assert_close(maps["context"], att.out(ctx))
    torch.testing.assert_close(maps["self"], attn)


@pytest.mark.parametrize("hw", SIZES[:3])
@pytest.mark.parametrize("hidden", [None, 4])
def test_gradients_reach_every_parameter(hw, hidden):
    att = ModulatedAttention(8, spatial_size=3, hidden_channels=hidden)
    _randomize_out(att)  # at init the zero output conv blocks the gradient to theta/phi/g/MA
    x = torch.randn(2, 8, *hw, requires_grad=True)
    att(x).pow(2).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for name, p in att.named_parameters():  # position_bias (3x3) is resized to hw and still trained
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_zero_out_conv_gets_gradient_and_block_leaves_identity():
    att = ModulatedAttention(8)
    x = torch.randn(4, 8, 4, 4)
    target = torch.randn_like(x)
    opt = torch.optim.SGD(att.parameters(), lr=0.5)
    torch.testing.assert_close(att(x), x, rtol=0, atol=0)
    loss = (att(x) - target).pow(2).mean()
    loss.backward()
    assert att.out.weight.grad.abs().sum() > 0
    opt.step()
    assert not torch.allclose(att(x), x)


def test_size_agnostic_same_module_many_sizes():
    att = ModulatedAttention(8, spatial_size=7)
    _randomize_out(att)
    with torch.no_grad():
        att.position_bias.normal_()
    for hw in [(7, 7), (4, 4), (2, 3), (9, 5)]:
        x = torch.randn(2, 8, *hw)
        assert att(x).shape == x.shape


def test_spatial_attention_depends_on_input():
    att = ModulatedAttention(8)
    x = torch.randn(2, 8, 4, 4)
    ma = att.spatial_attention(x)
    assert not torch.allclose(ma[0], ma[1])
    assert not torch.allclose(ma[0], torch.full_like(ma[0], 1 / 16))


def test_position_bias_is_a_prior_over_positions():
    att = ModulatedAttention(4, spatial_size=(2, 3))
    with torch.no_grad():
        att.spatial.weight.zero_()
        att.position_bias.zero_()
        att.position_bias[0, 0, 1, 2] = 5.0
    ma = att.spatial_attention(torch.randn(3, 4, 2, 3))
    expected = torch.softmax(att.position_bias.detach().flatten(), 0).reshape(1, 1, 2, 3).expand(3, 1, 2, 3)
    torch.testing.assert_close(ma, expected)


def test_record_maps_off_and_channels_last():
    att = ModulatedAttention(8, record_maps=False)
    _randomize_out(att)
    x = torch.randn(2, 8, 4, 4)
    y = att(x)
    assert att.last_spatial_attention is None and att.last_self_attention is None
    y_cl = att(x.to(memory_format=torch.channels_last))
    torch.testing.assert_close(y_cl, y)


def test_bad_arguments():
    with pytest.raises(ConfigError):
        ModulatedAttention(0)
    with pytest.raises(ConfigError):
        ModulatedAttention(8, spatial_size=(2, 3, 4))
    with pytest.raises(ConfigError):
        ModulatedAttention(8, hidden_channels=0)
    att = ModulatedAttention(8)
    with pytest.raises(ValueError, match="expects"):
        att(torch.randn(2, 4, 3, 3))


# -- model.attention_spatial: the public code's fc layer beside the 1x1 conv ----------------------------------


def _fc_attention(channels=4, map_size=(2, 3)):
    att = ModulatedAttention(channels, spatial="fc", map_size=map_size)
    _randomize_out(att)
    return att


def test_fc_spatial_attention_shape_softmax_and_formula():
    att = _fc_attention()
    assert att.fc_spatial.weight.shape == (6, 4 * 6) and att.spatial is None
    x = torch.randn(3, 4, 2, 3)
    y, maps = att.forward_with_maps(x)
    assert y.shape == x.shape and maps["spatial"].shape == (3, 1, 2, 3)
    torch.testing.assert_close(maps["spatial"].sum(dim=(1, 2, 3)), torch.ones(3))
    # the public code: softmax(fc_spatial(x.view(-1, H * W * C))) reshaped to the map, channel-major flattening
    expected = torch.softmax(x.view(3, -1) @ att.fc_spatial.weight.t() + att.fc_spatial.bias, dim=1)
    torch.testing.assert_close(maps["spatial"], expected.view(3, 1, 2, 3))
    torch.testing.assert_close(y, x + maps["spatial"] * maps["context"])
    torch.testing.assert_close(att(x.to(memory_format=torch.channels_last)), y)
    y.pow(2).sum().backward()
    assert att.fc_spatial.weight.grad.abs().sum() > 0 and att.fc_spatial.bias.grad.abs().sum() > 0


def test_fc_spatial_attention_refuses_another_map_size():
    att = _fc_attention(map_size=7)
    assert att(torch.randn(1, 4, 7, 7)).shape == (1, 4, 7, 7)
    with pytest.raises(ConfigError, match=r"built for 7x7 feature maps.*got 4x4 maps.*attention_spatial=conv"):
        att(torch.randn(1, 4, 4, 4))


def test_fc_can_make_one_positions_attention_depend_on_another_positions_input():
    x = torch.randn(1, 4, 2, 3)
    moved = x.clone()
    moved[0, :, 1, 2] += 3.0  # change only the input at position q = 5

    def ratio(att, inp):  # attention at p = 0 relative to p = 1: the softmax's normalisation cancels
        ma = att.spatial_attention(inp).flatten()
        return (ma[0] / ma[1]).item()

    conv = ModulatedAttention(4)
    assert ratio(conv, x) == pytest.approx(ratio(conv, moved), rel=1e-5)  # a 1x1 conv cannot: logit_p sees f_p only
    fc = _fc_attention()
    with torch.no_grad():
        fc.fc_spatial.weight.zero_()
        fc.fc_spatial.bias.zero_()
        fc.fc_spatial.weight[0, 2 * 6 + 5] = 1.0  # logit at position 0 = channel 2 of position 5
    assert ratio(fc, moved) == pytest.approx(ratio(fc, x) * torch.exp(torch.tensor(3.0)).item(), rel=1e-5)


def test_conv_spatial_is_the_default_bit_for_bit():
    torch.manual_seed(3)
    default = ModulatedAttention(8, spatial_size=3)
    after_default = torch.rand(1)
    torch.manual_seed(3)
    conv = ModulatedAttention(8, spatial_size=3, spatial="conv", map_size=(5, 5))  # map_size: unused by conv
    assert torch.equal(torch.rand(1), after_default)  # the same random draws at build
    assert list(conv.state_dict()) == list(default.state_dict())
    assert all(torch.equal(conv.state_dict()[k], v) for k, v in default.state_dict().items())
    _randomize_out(default)
    conv.load_state_dict(default.state_dict())
    x = torch.randn(2, 8, 4, 4)
    assert torch.equal(conv(x), default(x))


def test_fc_spatial_bad_arguments():
    with pytest.raises(ConfigError, match="attention_spatial must be one of conv, fc"):
        ModulatedAttention(8, spatial="linear")
    with pytest.raises(ConfigError, match="map_size"):
        ModulatedAttention(8, spatial="fc")
    with pytest.raises(ConfigError, match="hidden_channels"):
        ModulatedAttention(8, spatial="fc", map_size=2, hidden_channels=4)
    with pytest.raises(ConfigError, match="spatial_size"):
        ModulatedAttention(8, 3, spatial="fc", map_size=2)
    with pytest.raises(ConfigError, match="map_size"):
        ModulatedAttention(8, spatial="fc", map_size=(2, 0))


def test_build_model_sizes_fc_from_the_image_size():
    from openlt.config import Config
    from openlt.models.model import build_model

    cfg = Config()
    cfg.model.backbone, cfg.model.attention, cfg.model.attention_spatial = "resnet10", True, "fc"
    model = build_model(cfg, num_classes=3, in_chans=1, image_size=16)  # small-input stem: 16 px -> 2x2 maps
    assert model.attention.map_size == (2, 2) and model.attention.fc_spatial.in_features == 512 * 4
    assert not any(m.training is False for m in model.modules())  # the size probe left train mode on
    assert model(torch.randn(2, 1, 16, 16))["logits"].shape == (2, 3)
    with pytest.raises(ConfigError, match="built for 2x2"):
        model(torch.randn(2, 1, 32, 32))
