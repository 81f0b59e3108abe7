"""Tests for ``trainer.models.Arch``: width scaling, activations, ResNet jumps, count_weights."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from trainer import models
from trainer.models import Arch
from trainer.models import base

NAMES = sorted(models.MODELS)
NON_RESNETS = [n for n in NAMES if not n.startswith("resnet")]
NUM_CLASSES = 7
DIGITS = (1, 8, 8)
CIFAR = (3, 32, 32)
JUMP_SUFFIXES = ("conv_jump1", "conv_jump1_bn", "conv_jump2", "conv_jump2_bn")


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _weighted(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def _out_dim(module: nn.Module) -> int:
    return module.out_channels if isinstance(module, nn.Conv2d) else module.out_features


def _assert_same_state(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


# --- width --------------------------------------------------------------------------------------


def test_lenet_width_half_and_round_half_to_even() -> None:
    half = models.build("lenet_300_100", (1, 28, 28), 10, _gen(0), Arch(width=0.5))
    assert (half.fc1.in_features, half.fc1.out_features) == (784, 150)
    assert (half.fc2.in_features, half.fc2.out_features) == (150, 50)
    assert (half.fc3.in_features, half.fc3.out_features) == (50, 10)
    # 300 * 0.125 = 37.5 -> 38 and 100 * 0.125 = 12.5 -> 12 (Python's round); tiny -> 1.
    eighth = models.build("lenet_300_100", (1, 28, 28), 10, _gen(0), Arch(width=0.125))
    assert (eighth.fc1.out_features, eighth.fc2.out_features) == (38, 12)
    tiny = models.build("lenet_300_100", (1, 28, 28), 10, _gen(0), Arch(width=1e-6))
    assert (tiny.fc1.out_features, tiny.fc2.out_features, tiny.fc3.out_features) == (1, 1, 10)


@pytest.mark.parametrize(
    ("name", "width", "outs"),
    [
        ("conv2", 0.5, [32, 32, 128, 128, NUM_CLASSES]),
        ("resnet20", 0.5, [8] + [8, 8] * 3 + [16, 16, 16] + [16, 16] * 2 + [32, 32, 32]
         + [32, 32] * 2 + [NUM_CLASSES]),
        ("vgg11", 0.25, [16, 32, 64, 64, 128, 128, 128, 128, NUM_CLASSES]),
        ("vgg11", 1.5, [96, 192, 384, 384, 768, 768, 768, 768, NUM_CLASSES]),
    ],
)  # fmt: skip
def test_width_gives_concrete_layer_widths(name: str, width: float, outs: list[int]) -> None:
    model = models.build(name, CIFAR, NUM_CLASSES, _gen(0), Arch(width=width))
    assert [_out_dim(m) for _, m in _weighted(model)] == outs
    assert _weighted(model)[0][1].in_channels == 3


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("width", [0.3, 0.5, 1.7])
def test_width_scales_hidden_widths_only(name: str, width: float) -> None:
    reference = base.construct(models.get(name).factory, CIFAR, NUM_CLASSES)
    scaled = base.construct(models.get(name).factory, CIFAR, NUM_CLASSES, Arch(width=width))
    ref_layers, new_layers = _weighted(reference), _weighted(scaled)
    assert [n for n, _ in ref_layers] == [n for n, _ in new_layers]
    for (layer, ref), (_, new) in zip(ref_layers[:-1], new_layers[:-1], strict=True):
        assert _out_dim(new) == max(1, round(_out_dim(ref) * width)), layer
    assert _out_dim(new_layers[-1][1]) == NUM_CLASSES
    first_ref, first_new = ref_layers[0][1], new_layers[0][1]
    assert first_new.weight.shape[1:] == first_ref.weight.shape[1:]  # input side unscaled


def test_width_is_normalized_to_float() -> None:
    assert Arch(width=1) == Arch(width=1.0) == Arch()
    assert hash(Arch(width=2)) == hash(Arch(width=2.0))
    assert type(Arch(width=2).width) is float and type(Arch(beta=3).beta) is float


# --- count_weights ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("width", [0.5, 1.0, 1.5])
def test_count_weights_matches_the_built_model(name: str, width: float) -> None:
    arch = Arch(width=width)
    model = models.build(name, DIGITS, NUM_CLASSES, _gen(0), arch)
    expected = sum(m.weight.numel() for _, m in _weighted(model))
    assert models.count_weights(name, DIGITS, NUM_CLASSES, arch) == expected


def test_count_weights_pins_and_includes_resnet_jumps() -> None:
    assert models.count_weights("conv2", CIFAR, 10) == 4_300_992
    plain = models.count_weights("resnet20", CIFAR, 10)
    jumps = models.count_weights("resnet20", CIFAR, 10, Arch(skip_connections=True))
    model = models.build("resnet20", CIFAR, 10, _gen(0), Arch(skip_connections=True))
    assert jumps == sum(m.weight.numel() for _, m in _weighted(model))
    # Per block in -> out: in*out + out*out for the two 1x1 jumps.
    assert jumps - plain == 3 * 512 + 1536 + 2 * 2048 + 6144 + 2 * 8192


def test_count_weights_uses_no_rng_and_validates_like_build() -> None:
    before = torch.random.get_rng_state()
    models.count_weights("vgg16", CIFAR, 10, Arch(width=2.0))
    assert torch.equal(torch.random.get_rng_state(), before)
    with pytest.raises(ValueError, match="unknown model"):
        models.count_weights("resnet_20", CIFAR, 10)
    with pytest.raises(ValueError, match="input_shape"):
        models.count_weights("conv2", (32, 32), 10)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="num_classes"):
        models.count_weights("conv2", CIFAR, 0)
    with pytest.raises(ValueError, match="only ResNets"):
        models.count_weights("conv2", CIFAR, 10, Arch(skip_connections=True))
    with pytest.raises(TypeError, match="Arch"):
        models.count_weights("conv2", CIFAR, 10, {"width": 0.5})  # type: ignore[arg-type]


# --- activations --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arch", "reference"),
    [
        (Arch(activation="relu"), torch.relu),
        (Arch(activation="swish"), lambda x: x * torch.sigmoid(x)),
        (Arch(activation="mish"), lambda x: x * torch.tanh(F.softplus(x))),
        (Arch(activation="pswish"), lambda x: x * torch.sigmoid(2 * x)),
        (Arch(activation="pswish", beta=0.5), lambda x: x * torch.sigmoid(0.5 * x)),
    ],
    ids=["relu", "swish", "mish", "pswish", "pswish-beta0.5"],
)
def test_activation_module_computes_the_documented_function(arch: Arch, reference) -> None:
    act = base.activation_module(arch)
    x = torch.linspace(-6.0, 6.0, 241)
    torch.testing.assert_close(act(x), reference(x), rtol=1e-6, atol=1e-6)
    assert not list(act.parameters()) and not list(act.buffers()) and not act.state_dict()


def test_pswish_beta_is_a_plain_float() -> None:
    act = base.activation_module(Arch(activation="pswish", beta=3))
    assert isinstance(act, base.PSwish) and type(act.beta) is float and act.beta == 3.0


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("activation", ["swish", "mish", "pswish"])
def test_activation_changes_outputs_but_not_weights(name: str, activation: str) -> None:
    relu = models.build(name, DIGITS, NUM_CLASSES, _gen(5))
    other = models.build(name, DIGITS, NUM_CLASSES, _gen(5), Arch(activation=activation))
    _assert_same_state(relu, other)
    assert not any(isinstance(m, nn.ReLU) for m in other.modules())
    x = torch.randn(4, *DIGITS, generator=_gen(6))
    with torch.no_grad():
        assert not torch.allclose(relu(x), other(x))


@pytest.mark.parametrize(("activation", "fn"), [("relu", F.relu), ("pswish", None)])
def test_lenet_forward_is_fc_act_fc_act_fc(activation: str, fn) -> None:
    fn = fn or (lambda x: x * torch.sigmoid(2.0 * x))
    model = models.build("lenet_300_100", DIGITS, 10, _gen(7), Arch(activation=activation))
    x = torch.randn(3, *DIGITS, generator=_gen(8))
    with torch.no_grad():
        h = fn(F.linear(x.flatten(1), model.fc1.weight, model.fc1.bias))
        h = fn(F.linear(h, model.fc2.weight, model.fc2.bias))
        expected = F.linear(h, model.fc3.weight, model.fc3.bias)
        assert torch.equal(model(x), expected)


# --- ResNet jumps -------------------------------------------------------------------------------


def _jump_resnet(seed: int = 0) -> nn.Module:
    return models.build("resnet20", CIFAR, 10, _gen(seed), Arch(skip_connections=True))


def test_resnet_jumps_exist_with_tost_shapes_and_init() -> None:
    model = _jump_resnet()
    for block in model.blocks:
        for suffix in JUMP_SUFFIXES:
            assert hasattr(block, suffix)
        assert block.conv_jump1.weight.shape == (
            block.conv1.out_channels,
            block.conv1.in_channels,
            1,
            1,
        )
        assert block.conv_jump1.stride == block.conv1.stride
        assert block.conv_jump2.stride == (1, 1) and block.conv_jump2.bias is None
        for conv in (block.conv_jump1, block.conv_jump2):
            assert torch.equal(conv.weight, torch.full_like(conv.weight, 1e-4))
        for bn in (block.conv_jump1_bn, block.conv_jump2_bn):
            assert torch.equal(bn.weight, torch.ones_like(bn.weight))
            assert torch.equal(bn.bias, torch.zeros_like(bn.bias))
            assert torch.count_nonzero(bn.running_mean) == 0
        assert torch.count_nonzero(block.bn1.weight == 1) == 0  # still U(0, 1) draws
    plain = models.build("resnet20", CIFAR, 10, _gen(0))
    assert not any(hasattr(b, s) for b in plain.blocks for s in JUMP_SUFFIXES)


def test_resnet_jumps_are_deterministic_and_the_rest_is_seeded() -> None:
    _assert_same_state(_jump_resnet(1), _jump_resnet(1))
    a, b = _jump_resnet(1), _jump_resnet(2)
    assert not torch.equal(a.blocks[0].conv1.weight, b.blocks[0].conv1.weight)
    assert torch.equal(a.blocks[0].conv_jump2.weight, b.blocks[0].conv_jump2.weight)


def test_resnet_jumps_change_the_output_of_the_same_base_weights() -> None:
    plain = models.build("resnet20", CIFAR, 10, _gen(0))
    jumped = _jump_resnet(9)
    result = jumped.load_state_dict(plain.state_dict(), strict=False)
    assert result.unexpected_keys == []
    assert result.missing_keys and all(
        k.split(".")[2] in JUMP_SUFFIXES for k in result.missing_keys
    )
    assert len({k.rsplit(".", 1)[0] for k in result.missing_keys}) == 9 * 4
    x = torch.randn(2, *CIFAR, generator=_gen(10))
    with torch.no_grad():
        out_plain, out_jumped = plain(x), jumped(x)
        assert out_jumped.shape == (2, 10) and torch.isfinite(out_jumped).all()
        assert not torch.allclose(out_plain, out_jumped)
        # With zero jump convs (BN of zeros is zero) the jumped net is the plain one.
        for block in jumped.blocks:
            block.conv_jump1.weight.zero_()
            block.conv_jump2.weight.zero_()
        torch.testing.assert_close(jumped(x), out_plain, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("index", [0, 3])  # identity and projection shortcut
def test_resnet_jump_block_forward_follows_tost(index: int) -> None:
    model = _jump_resnet(4).eval()
    block = model.blocks[index]
    with torch.no_grad():
        for bn in (block.conv_jump1_bn, block.conv_jump2_bn):  # make eval BNs non-trivial
            bn.running_mean.uniform_(-1, 1, generator=_gen(1))
            bn.running_var.uniform_(0.5, 2, generator=_gen(2))
        x = torch.randn(2, block.conv1.in_channels, 8, 8, generator=_gen(3))
        out1 = block.bn1(block.conv1(x)) + block.conv_jump1_bn(block.conv_jump1(x))
        out2 = F.relu(out1)
        out4 = (
            block.bn2(block.conv2(out2))
            + block.shortcut(x)
            + block.conv_jump2_bn(block.conv_jump2(out2))
        )
        torch.testing.assert_close(block(x), F.relu(out4), rtol=0, atol=0)


@pytest.mark.parametrize("name", NON_RESNETS)
def test_skip_connections_on_other_models_raise(name: str) -> None:
    cls = type(base.construct(models.get(name).factory, DIGITS, NUM_CLASSES)).__name__
    with pytest.raises(ValueError, match=f"{cls} .*only ResNets support"):
        models.build(name, DIGITS, NUM_CLASSES, _gen(0), Arch(skip_connections=True))


# --- validation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"width": 0}, "width"), ({"width": -0.5}, "width"), ({"width": math.nan}, "width"),
        ({"width": math.inf}, "width"), ({"width": "1"}, "width"), ({"width": True}, "width"),
        ({"beta": 0.0}, "beta"), ({"beta": -2.0}, "beta"), ({"beta": math.nan}, "beta"),
        ({"activation": "gelu"}, "activation"), ({"activation": "ReLU"}, "activation"),
        ({"activation": None}, "activation"),
        ({"skip_connections": 1}, "skip_connections"),
        ({"skip_connections": "yes"}, "skip_connections"),
    ],
)  # fmt: skip
def test_invalid_arch_raises_value_error_naming_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError, match=f"Arch.{field}") as info:
        Arch(**kwargs)
    assert repr(next(iter(kwargs.values()))) in str(info.value)


def test_arch_is_frozen_and_keyword_only() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Arch().width = 2.0  # type: ignore[misc]
    with pytest.raises(TypeError):
        Arch(0.5)  # type: ignore[misc]


def test_build_rejects_a_non_arch() -> None:
    with pytest.raises(TypeError, match="Arch"):
        models.build("lenet_300_100", DIGITS, 10, _gen(0), {"width": 0.5})  # type: ignore[arg-type]
