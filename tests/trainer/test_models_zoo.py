"""Tests for the model zoo's architectures: counts against the sources, option-A shortcuts,
ResNet-18 stems, VGG-19 and MobileNetV2 structure (dropout variants: test_models_dropout.py).

Counts come from models constructed on the ``meta`` device (no memory, no init); only small or
width-reduced models are built for real.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from trainer import models
from trainer.models import Arch
from trainer.models import base
from trainer.models import resnet

CIFAR = (3, 32, 32)
DIGITS = (1, 8, 8)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _meta(name: str, shape: tuple[int, int, int] = CIFAR, classes: int = 10, **arch) -> nn.Module:
    return base.construct(models.get(name).factory, shape, classes, Arch(**arch))


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _out_shapes(model: nn.Module, x: torch.Tensor, names: list[str]) -> dict[str, tuple]:
    """Output shapes of the named submodules during one eval forward pass of ``x``."""
    shapes: dict[str, tuple] = {}
    hooks = [
        model.get_submodule(n).register_forward_hook(
            lambda _m, _i, out, n=n: shapes.__setitem__(n, tuple(out.shape))
        )
        for n in names
    ]
    with torch.no_grad():
        model.eval()(x)
    for hook in hooks:
        hook.remove()
    return shapes


# --- parameter counts ---------------------------------------------------------------------------

# (key, input shape, classes, exact parameter count of our model).
EXACT_PARAMS = [
    ("resnet20", CIFAR, 10, 272_474),
    ("resnet32", CIFAR, 10, 466_906),
    ("resnet56", CIFAR, 10, 855_770),
    ("resnet20_a", CIFAR, 10, 269_722),
    ("resnet32_a", CIFAR, 10, 464_154),
    ("resnet56_a", CIFAR, 10, 853_018),  # DLTH's ResNet-56 on CIFAR-10 (akamaster: 0.85M)
    ("resnet18", CIFAR, 10, 11_173_962),
    ("resnet18_imagenet", (3, 224, 224), 1000, 11_689_512),  # torchvision resnet18
    ("resnet18_imagenet", CIFAR, 10, 11_181_642),
    ("vgg11", CIFAR, 10, 9_231_114),
    ("vgg16", CIFAR, 10, 14_728_266),
    ("vgg19", CIFAR, 10, 20_040_522),
    ("mobilenet_v2", CIFAR, 10, 2_296_922),  # kuangliu MobileNetV2
]


@pytest.mark.parametrize(("name", "shape", "classes", "count"), EXACT_PARAMS)
def test_exact_parameter_counts(name: str, shape: tuple, classes: int, count: int) -> None:
    assert _params(_meta(name, shape, classes)) == count


# (key, input shape, classes, published figure): He et al. Table 6 / akamaster (CIFAR ResNets,
# option A), kuangliu README and torchvision's model table (ResNet-18), open_lth / F&C Fig. 2
# (VGG). The published figures are rounded, so the check is +-1 %.
PUBLISHED_PARAMS = [
    ("resnet20", CIFAR, 10, 0.27e6),
    ("resnet20_a", CIFAR, 10, 0.27e6),
    ("resnet32_a", CIFAR, 10, 0.46e6),
    ("resnet56", CIFAR, 10, 0.85e6),
    ("resnet56_a", CIFAR, 10, 0.85e6),
    ("resnet18", CIFAR, 10, 11.17e6),
    ("resnet18_imagenet", (3, 224, 224), 1000, 11.69e6),
    ("vgg16", CIFAR, 10, 14.7e6),
    ("vgg19", CIFAR, 10, 20.0e6),
]


def _option_a_resnet_params(n: int, classes: int = 10) -> int:
    """Parameters of He et al.'s CIFAR ResNet-(6n+2) with option A, counted by hand."""
    total = 3 * 16 * 9 + 2 * 16  # stem conv (no bias) + BN (gamma, beta)
    in_channels = 16
    for width in (16, 32, 64):
        for _ in range(n):
            total += in_channels * width * 9 + width * width * 9 + 2 * (2 * width)
            in_channels = width
    return total + 64 * classes + classes  # FC with bias


@pytest.mark.parametrize(("n", "name"), [(3, "resnet20_a"), (5, "resnet32_a"), (9, "resnet56_a")])
def test_option_a_counts_match_a_hand_count(n: int, name: str) -> None:
    assert _params(_meta(name)) == _option_a_resnet_params(n)
    assert _option_a_resnet_params(9) == 853_018  # DLTH's ResNet-56 on CIFAR-10


@pytest.mark.parametrize(("name", "shape", "classes", "published"), PUBLISHED_PARAMS)
def test_parameter_counts_match_the_published_figures(
    name: str, shape: tuple, classes: int, published: float
) -> None:
    assert _params(_meta(name, shape, classes)) == pytest.approx(published, rel=0.01)


@pytest.mark.parametrize("name", ["conv2", "conv2_dropout"])
def test_conv2_has_the_frankle_carbin_4p3m_weights(name: str) -> None:
    weights = models.count_weights(name, CIFAR, 10)
    assert weights == 4_300_992 == pytest.approx(4.3e6, rel=0.01)


def test_mobilenet_v2_is_the_paper_layout_plus_kuangliu_extras() -> None:
    # The quoted 2.24M (torchvision mobilenet_v2 with 10 classes: 2,236,682) has no projection
    # shortcuts and no expansion conv in the first block (expansion 1); kuangliu adds both.
    model = _meta("mobilenet_v2")
    shortcuts = sum(_params(block.shortcut) for block in model.layers)
    first = model.layers[0]
    first_expansion = _params(first.conv1) + _params(first.bn1)
    assert (shortcuts, first_expansion) == (59_152, 32 * 32 + 2 * 32)
    paper = _params(model) - shortcuts - first_expansion
    assert paper == 2_236_682 == pytest.approx(2.24e6, rel=0.01)


# --- option-A shortcuts -------------------------------------------------------------------------


def test_zero_pad_shortcut_subsamples_and_pads_channels_as_akamaster() -> None:
    x = torch.randn(2, 16, 8, 8, generator=_gen(0))
    out = resnet.ZeroPadShortcut(16, 32, stride=2)(x)
    assert out.shape == (2, 32, 4, 4)
    assert torch.equal(out[:, 8:24], x[:, :, ::2, ::2])
    assert torch.count_nonzero(out[:, :8]) == 0 and torch.count_nonzero(out[:, 24:]) == 0
    planes = 32  # akamaster / DLTH: F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, planes//4, planes//4))
    assert torch.equal(out, F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, planes // 4, planes // 4)))


def test_zero_pad_shortcut_odd_padding_stride_one_and_shrinking() -> None:
    x = torch.randn(1, 5, 3, 3, generator=_gen(1))
    out = resnet.ZeroPadShortcut(5, 10, stride=2)(x)  # 5 new channels: 2 before, 3 after
    assert out.shape == (1, 10, 2, 2)
    assert torch.equal(out[:, 2:7], x[:, :, ::2, ::2])
    assert torch.count_nonzero(out[:, :2]) == 0 and torch.count_nonzero(out[:, 7:]) == 0
    same = resnet.ZeroPadShortcut(5, 6, stride=1)(x)
    assert same.shape == (1, 6, 3, 3) and torch.equal(same[:, :5], x)
    with pytest.raises(ValueError, match="cannot shrink"):
        resnet.ZeroPadShortcut(8, 4, stride=2)
    with pytest.raises(ValueError, match="shortcut must be one of"):
        resnet.BasicBlock(4, 8, 2, shortcut="B")


@pytest.mark.parametrize("depth", [20, 32, 56])
def test_option_a_drops_exactly_the_projection_parameters(depth: int) -> None:
    projection, option_a = _meta(f"resnet{depth}"), _meta(f"resnet{depth}_a")
    proj_params = {n: p for n, p in projection.named_parameters() if ".shortcut." in n}
    # Two projections (16 -> 32, 32 -> 64): 1x1 convs 512 + 2,048, BN (gamma, beta) 64 + 128.
    assert sum(p.numel() for p in proj_params.values()) == 512 + 64 + 2048 + 128 == 2752
    assert _params(projection) - _params(option_a) == 2752
    assert [n for n, _ in projection.named_parameters() if n not in proj_params] == [
        n for n, _ in option_a.named_parameters()
    ]
    assert not any(".shortcut." in n for n, _ in option_a.named_buffers())
    pads = [b.shortcut for b in option_a.blocks if isinstance(b.shortcut, resnet.ZeroPadShortcut)]
    assert len(pads) == 2 and all(not list(s.parameters()) for s in pads)


def test_option_a_block_forward_adds_the_padded_input() -> None:
    model = models.build("resnet20_a", CIFAR, 10, _gen(2)).eval()
    block = model.blocks[3]  # 16 -> 32 channels, stride 2
    x = torch.randn(2, 16, 8, 8, generator=_gen(3))
    with torch.no_grad():
        residual = block.bn2(block.conv2(F.relu(block.bn1(block.conv1(x)))))
        expected = F.relu(residual + F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, 8, 8)))
        torch.testing.assert_close(block(x), expected, rtol=0, atol=0)


def test_option_a_init_draws_in_module_order() -> None:
    state = models.build("resnet20_a", CIFAR, 10, _gen(11)).state_dict()
    gen = _gen(11)
    for key, value in state.items():
        if not key.endswith(".weight"):
            continue
        if value.dim() == 1:  # BatchNorm2d: U(0, 1)
            expected = torch.empty_like(value).uniform_(0.0, 1.0, generator=gen)
        else:  # kaiming normal, fan_in, ReLU gain
            std = (2.0 / value[0].numel()) ** 0.5
            expected = torch.empty_like(value).normal_(0.0, std, generator=gen)
        assert torch.equal(value, expected), key


def test_option_a_resnets_take_tost_jumps() -> None:
    plain = models.count_weights("resnet20_a", CIFAR, 10)
    jumps = models.count_weights("resnet20_a", CIFAR, 10, Arch(skip_connections=True))
    assert jumps - plain == 3 * 512 + 1536 + 2 * 2048 + 6144 + 2 * 8192  # as resnet20's
    model = models.build("resnet20_a", DIGITS, 10, _gen(0), Arch(skip_connections=True))
    assert isinstance(model.blocks[3].shortcut, resnet.ZeroPadShortcut)
    assert torch.equal(model.blocks[3].conv_jump1.weight, torch.full((32, 16, 1, 1), 1e-4))
    with torch.no_grad():
        assert model(torch.randn(2, *DIGITS, generator=_gen(1))).shape == (2, 10)


# --- ResNet-18: CIFAR vs ImageNet stem ----------------------------------------------------------


def test_resnet18_cifar_and_imagenet_differ_only_in_the_stem() -> None:
    cifar, imagenet = _meta("resnet18"), _meta("resnet18_imagenet")
    assert (cifar.conv.kernel_size, cifar.conv.stride, cifar.conv.padding) == (
        (3, 3), (1, 1), (1, 1),
    )  # fmt: skip
    assert (imagenet.conv.kernel_size, imagenet.conv.stride, imagenet.conv.padding) == (
        (7, 7), (2, 2), (3, 3),
    )  # fmt: skip
    assert not cifar.stem_pool and imagenet.stem_pool
    cifar_shapes = {n: p.shape for n, p in cifar.named_parameters()}
    imagenet_shapes = {n: p.shape for n, p in imagenet.named_parameters()}
    assert list(cifar_shapes) == list(imagenet_shapes)
    assert {n for n in cifar_shapes if cifar_shapes[n] != imagenet_shapes[n]} == {"conv.weight"}
    # 4 stages of 2 BasicBlocks at 64/128/256/512; projections open stages 2-4.
    assert [b.conv2.out_channels for b in cifar.blocks] == [64, 64, 128, 128, 256, 256, 512, 512]
    assert [i for i, b in enumerate(cifar.blocks) if len(b.shortcut)] == [2, 4, 6]


def test_resnet18_spatial_sizes_follow_the_sources() -> None:
    names = ["conv", "blocks.1", "blocks.3", "blocks.5", "blocks.7"]
    cifar = models.build("resnet18", CIFAR, 10, _gen(0), Arch(width=0.125))
    got = _out_shapes(cifar, torch.randn(1, *CIFAR, generator=_gen(1)), names)
    assert [got[n][-1] for n in names] == [32, 32, 16, 8, 4]  # kuangliu: avg_pool2d(out, 4)
    imagenet = models.build("resnet18_imagenet", (3, 64, 64), 10, _gen(0), Arch(width=0.125))
    got = _out_shapes(imagenet, torch.randn(1, 3, 64, 64, generator=_gen(1)), names)
    assert [got[n][-1] for n in names] == [32, 16, 8, 4, 2]  # stem /2, max-pool /2, 3 x /2


def test_resnet18_imagenet_skips_the_max_pool_once_a_side_is_1() -> None:
    assert _meta("resnet18_imagenet", DIGITS).stem_pool  # 8 -> 4 after the stem conv
    assert not _meta("resnet18_imagenet", (1, 2, 2)).stem_pool  # 2 -> 1 after the stem conv
    model = models.build("resnet18_imagenet", (1, 2, 2), 3, _gen(0), Arch(width=0.125))
    with torch.no_grad():
        assert model(torch.randn(2, 1, 2, 2, generator=_gen(1))).shape == (2, 3)


# --- VGG-19 and MobileNetV2 ---------------------------------------------------------------------


def test_vgg19_is_open_lth_cifar_vgg_19() -> None:
    model = _meta("vgg19")
    widths = [c.conv.out_channels for c in model.convs]
    assert widths == [64, 64, 128, 128] + [256] * 4 + [512] * 8
    assert [i for i, pool in enumerate(model.pool_after) if pool] == [1, 3, 7, 11]
    assert model.fc.in_features == 512


def test_mobilenet_v2_structure_follows_kuangliu() -> None:
    model = _meta("mobilenet_v2")
    assert (model.conv1.kernel_size, model.conv1.stride, model.conv1.out_channels) == (
        (3, 3), (1, 1), 32,
    )  # fmt: skip
    assert len(model.layers) == 17
    assert [b.conv2.stride[0] for b in model.layers] == [1, 1, 1, 2, 1, 1, 2] + [1] * 6 + [
        2, 1, 1, 1,
    ]  # fmt: skip
    for block in model.layers:  # depthwise 3x3: one input channel per group
        assert block.conv2.groups == block.conv2.in_channels == block.conv2.out_channels
        assert block.conv2.weight.shape[1:] == (1, 3, 3)
    assert [b.conv1.out_channels for b in model.layers[:3]] == [32, 96, 144]  # expansion 1, 6
    assert [i for i, b in enumerate(model.layers) if len(b.shortcut)] == [0, 1, 10, 16]
    assert (model.conv2.out_channels, model.linear.in_features) == (1280, 1280)


def test_mobilenet_v2_width_scales_every_channel_including_1280() -> None:
    model = _meta("mobilenet_v2", width=0.5)
    assert (model.conv1.out_channels, model.conv2.out_channels) == (16, 640)
    assert model.linear.in_features == 640 and model.linear.out_features == 10
    assert [i for i, b in enumerate(model.layers) if len(b.shortcut)] == [0, 1, 10, 16]


def test_mobilenet_v2_residuals_and_final_map() -> None:
    model = models.build("mobilenet_v2", CIFAR, 10, _gen(0), Arch(width=0.25)).eval()
    x = torch.randn(2, *CIFAR, generator=_gen(1))
    assert _out_shapes(model, x, ["layers.16"])["layers.16"][-2:] == (4, 4)  # avg_pool2d(4)
    strided, identity = model.layers[3], model.layers[4]
    h = torch.randn(2, strided.conv1.in_channels, 8, 8, generator=_gen(2))
    with torch.no_grad():
        for block, residual in ((strided, False), (identity, True)):
            out = F.relu(block.bn1(block.conv1(h)))
            out = block.bn3(block.conv3(F.relu(block.bn2(block.conv2(out)))))
            torch.testing.assert_close(block(h), out + h if residual else out, rtol=0, atol=0)
            h = block(h)
