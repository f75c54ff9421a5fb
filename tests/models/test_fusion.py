"""fold_batch_norm: an eval-mode copy whose convolutions absorb their batch norms; same outputs, model untouched."""

import pytest
import torch
from torch import nn

from openlt.config import Config
from openlt.models.fusion import fold_batch_norm, inference_copy
from openlt.models.model import build_model


def _trained_statistics(model: nn.Module) -> nn.Module:
    """Batch norms with non-trivial running statistics and affine parameters (fresh ones are the identity)."""
    gen = torch.Generator().manual_seed(0)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            n = module.num_features
            module.running_mean.copy_(torch.randn(n, generator=gen) * 0.5)
            module.running_var.copy_(torch.rand(n, generator=gen) * 2 + 0.1)
            module.weight.data.copy_(torch.randn(n, generator=gen))
            module.bias.data.copy_(torch.randn(n, generator=gen))
    return model


def _model(backbone: str, size: int) -> nn.Module:
    cfg = Config()
    cfg.model.backbone = backbone
    return _trained_statistics(build_model(cfg, num_classes=5, in_chans=3, image_size=size))


@pytest.mark.parametrize("backbone,size", [("resnet10", 28), ("resnet10", 64), ("resnet50", 32)])
def test_folded_copy_gives_the_same_outputs_without_batch_norms(backbone, size):
    model = _model(backbone, size).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    folded = fold_batch_norm(model)
    assert model.training  # the model itself is not changed: mode, modules, weights
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert not folded.training
    x = torch.randn(4, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, got = model.eval()(x), folded(x)
    for key in ("logits", "feature"):  # float rounding, relative to the outputs' scale (deep nets amplify it)
        scale = expected[key].abs().max()
        assert (got[key] - expected[key]).abs().max() <= 1e-5 * scale, key


def test_pairs_it_does_not_know_are_left_alone():
    # a module whose conv and batch norm are not consecutive in its forward: folding them would change it
    class Other(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1, self.bn1 = nn.Conv2d(3, 3, 1), nn.BatchNorm2d(3)

        def forward(self, x):
            return self.conv1(self.bn1(x))

    folded = fold_batch_norm(_trained_statistics(Other()))
    assert isinstance(folded.bn1, nn.BatchNorm2d)


def test_batch_norm_without_running_statistics_is_not_folded():
    cfg = Config()
    cfg.model.backbone = "resnet10"
    model = build_model(cfg, num_classes=3, in_chans=3, image_size=28)
    model.backbone.bn1 = nn.BatchNorm2d(64, track_running_stats=False)
    folded = fold_batch_norm(model)
    assert isinstance(folded.backbone.bn1, nn.BatchNorm2d)
    assert not isinstance(folded.backbone.layer1[0].bn1, nn.BatchNorm2d)  # the others are


def test_no_tensor_is_copied_only_the_folded_convolutions_are_new():
    # a structural copy: the model mid-training keeps its gradients, and copying costs no weight memory (the copy's
    # parameters are its own Parameter objects on the model's memory)
    model = _model("resnet10", 28)
    model(torch.randn(2, 3, 28, 28))["logits"].sum().backward()
    folded = fold_batch_norm(model)
    own = {t.data_ptr() for t in [*model.parameters(), *model.buffers()]}
    folded_convs = {name for name, m in folded.named_modules() if isinstance(m, nn.Conv2d) and m.bias is not None}
    assert folded_convs  # (the folded ones gained a bias)
    for name, tensor in [*folded.named_parameters(), *folded.named_buffers()]:
        if name.rsplit(".", 1)[0] in folded_convs:
            assert tensor.data_ptr() not in own, name
        else:
            assert tensor.data_ptr() in own, name
    assert all(p.grad is not None for p in model.backbone.parameters())  # the model keeps its own


def test_changing_the_copy_leaves_the_model_alone():
    model = _model("resnet10", 28).eval()
    folded = fold_batch_norm(model)
    folded.train()
    assert not model.training and not model.backbone.layer1[0].training
    folded.classifier.register_forward_hook(lambda *args: None)
    folded.backbone.extra = nn.Identity()
    folded.register_buffer("added", torch.zeros(1))
    assert not model.classifier._forward_hooks
    assert not hasattr(model.backbone, "extra") and "added" not in dict(model.named_buffers())
    assert isinstance(model.backbone.layer1[0].bn1, nn.BatchNorm2d) and model.backbone.layer1[0].conv1.bias is None


def test_a_module_met_twice_is_one_module_in_the_copy():
    shared = nn.Linear(3, 3)
    model = nn.Sequential(shared, nn.ReLU(), shared)
    folded = fold_batch_norm(model)
    assert folded[0] is folded[2] and folded[0] is not shared
    x = torch.randn(2, 3)
    assert torch.equal(folded(x), model(x))


def test_inference_copy_leaves_the_model_in_eval_mode():
    model = _model("resnet10", 28).train()
    folded = inference_copy(model)
    assert not model.training and not folded.training
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())


class _Recorder:
    """A forward hook that is an object (a feature collector): the copy must call this one, not a copy of it."""

    def __init__(self):
        self.outputs = []

    def __call__(self, module, inputs, output):
        self.outputs.append(output.detach().clone())


def test_the_copy_calls_the_callers_own_hook_objects():
    model = _model("resnet10", 28)
    recorder = _Recorder()
    model.backbone.layer4.register_forward_hook(recorder)
    with torch.no_grad():
        fold_batch_norm(model)(torch.randn(2, 3, 28, 28))
    assert len(recorder.outputs) == 1  # deep-copied, the hook would have recorded into a copy the caller never sees


@pytest.mark.parametrize("hooked", ["backbone.bn1", "backbone.conv1", "backbone.layer1.0.bn2"])
def test_a_pair_with_a_hook_is_not_folded(hooked):
    # folding would drop the batch norm's hook, or hand the convolution's hook the batch norm's output
    model = _model("resnet10", 28).eval()
    recorder = _Recorder()
    model.get_submodule(hooked).register_forward_hook(recorder)
    x = torch.randn(2, 3, 28, 28)
    with torch.no_grad():
        model(x)
        folded = fold_batch_norm(model)
        folded(x)
    assert isinstance(folded.get_submodule(hooked.replace("conv", "bn")), nn.BatchNorm2d)
    assert not isinstance(folded.backbone.layer2[0].bn1, nn.BatchNorm2d)  # the pairs without a hook are folded
    expected, got = recorder.outputs
    assert torch.allclose(got, expected, atol=1e-5)


def test_a_model_with_a_parametrization_is_copied():
    # torch.nn.utils.parametrize (parametrizations.weight_norm, orthogonal, ...) refuses copy.copy of the module
    from torch.nn.utils.parametrizations import weight_norm

    model = _model("resnet10", 28).eval()
    weight_norm(model.backbone.layer1[0].conv1)  # a parametrized convolution: not folded, but copied
    weight_norm(model.classifier.fc if hasattr(model.classifier, "fc") else model.classifier)
    x = torch.randn(2, 3, 28, 28)
    with torch.no_grad():
        expected, got = model(x)["logits"], inference_copy(model)(x)["logits"]
    assert torch.allclose(got, expected, atol=1e-5 * expected.abs().max())


def test_a_module_held_in_a_plain_attribute_is_the_copys_own():
    # a wrapper that calls its network through a list: the copy must call its own (eval, folded) network, not run
    # the model's in training mode (other outputs, and the model's batch-norm statistics moved)
    class Wrapper(nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net, self.calls = net, [net]

        def forward(self, x):
            return self.calls[0](x)["logits"]

    model = Wrapper(_model("resnet10", 28)).train()
    statistics = model.net.backbone.bn1.running_mean.clone()
    x = torch.randn(4, 3, 28, 28)
    with torch.no_grad():
        got = fold_batch_norm(model)(x)
        assert torch.equal(model.net.backbone.bn1.running_mean, statistics) and model.training
        expected = model.eval()(x)
    assert torch.allclose(got, expected, atol=1e-5 * expected.abs().max())


@pytest.mark.parametrize("convert", ["half", "double", "requires_grad"])
def test_converting_the_copy_leaves_the_models_parameters_alone(convert):
    # the copy shares the model's weights, not its Parameter objects: .half() / .to(dtype) / .to(device) set
    # param.data, which on a shared parameter changed the model being trained (its dtype, device, requires_grad)
    model = _model("resnet10", 28)
    model(torch.randn(2, 3, 28, 28))["logits"].sum().backward()
    before = {name: (p.dtype, p.requires_grad, p.grad is not None) for name, p in model.named_parameters()}
    folded = inference_copy(model)
    {"half": folded.half, "double": folded.double, "requires_grad": lambda: folded.requires_grad_(False)}[convert]()
    assert {name: (p.dtype, p.requires_grad, p.grad is not None) for name, p in model.named_parameters()} == before
    model.train()(torch.randn(2, 3, 28, 28))["logits"].sum().backward()  # the model still trains
