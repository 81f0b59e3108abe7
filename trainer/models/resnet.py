"""CIFAR ResNets (open_lth ``cifar_resnet_N``; option-A variants; ResNet-18), with ToST's jumps.

Every ResNet here is a :class:`CifarResNet`: a stem conv + BN, stages of :class:`BasicBlock`
and one FC after global average pooling. Plans, shortcuts and sources:

- ``resnet20/32/56``: He et al. 2016 §4.2 depths 6n+2 (n = 3, 5, 9), widths 16/32/64, 1x1-conv
  + BN projection shortcuts where the shape changes (open_lth ``cifar_resnet_N``).
- ``resnet20_a/32_a/56_a``: the same with He et al.'s option-A shortcuts (stride-2 subsample and
  zero-padded channels, no parameters), as in DLTH's ResNet-56 (``yueb17/DLTH``).
- ``resnet18``: the CIFAR ResNet-18 of kuangliu/pytorch-cifar, ToST and KD-ticket (3x3 stem of
  64, no max-pool, stages 64/128/256/512 of 2 blocks, projection shortcuts). Frankle & Carbin's
  "ResNet-18" is a 20-layer 16/32/64 net, i.e. ``resnet20`` (METHODS.md §2.1).

``resnet18_imagenet`` (torchvision's stem) is :mod:`trainer.models.resnet_imagenet`.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

from trainer.models import base

# (width at Arch.width 1, blocks) per stage; every stage after the first starts with stride 2.
# ResNet-(6n+2) = 1 conv + 3 stages x n blocks x 2 convs + 1 FC.
RESNET20_PLAN: tuple[tuple[int, int], ...] = ((16, 3), (32, 3), (64, 3))
RESNET32_PLAN: tuple[tuple[int, int], ...] = ((16, 5), (32, 5), (64, 5))
RESNET56_PLAN: tuple[tuple[int, int], ...] = ((16, 9), (32, 9), (64, 9))
# ResNet-18 = 1 conv + 4 stages x 2 blocks x 2 convs + 1 FC (+ 3 projection shortcuts).
RESNET18_PLAN: tuple[tuple[int, int], ...] = ((64, 2), (128, 2), (256, 2), (512, 2))

# ToST's constant initial weight of the 1x1 jump convs (``resnet_modified.py``).
JUMP_INIT: float = 1e-4

# Shortcut kinds where a block changes shape: a 1x1 conv + BN (He et al.'s option B, open_lth)
# or option A (subsample + zero channels, parameter-free).
SHORTCUTS: tuple[str, ...] = ("projection", "zero_pad")


class ZeroPadShortcut(nn.Module):
    """He et al.'s option-A shortcut: take every ``stride``-th pixel, zero-pad the channels.

    The new channels are split evenly around the input's (the extra one, if odd, at the end),
    which for ``out_channels == 2 * in_channels`` is akamaster's / DLTH's
    ``F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, planes // 4, planes // 4))``. No parameters.

    Args:
        in_channels: Channels of the input.
        out_channels: Channels of the output (>= ``in_channels``).
        stride: Spatial subsampling step (1 or 2).
    Raises:
        ValueError: ``out_channels < in_channels``.

    Source: He et al. 2016 (arXiv 1512.03385), §4.2 "option A"; akamaster/pytorch_resnet_cifar10
        ``resnet.py`` (``LambdaLayer``), used by yueb17/DLTH ``model/resnet_cifar10.py``.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        if out_channels < in_channels:
            raise ValueError(
                f"a zero-pad shortcut cannot shrink {in_channels} to {out_channels} channels"
            )
        self.stride = stride
        self.front = (out_channels - in_channels) // 2
        self.back = out_channels - in_channels - self.front

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in, H, W) -> (B, out, ceil(H / stride), ceil(W / stride)); new channels are 0."""
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, self.front, self.back))  # pads dim 1 (channels)

    def extra_repr(self) -> str:
        """Show the stride and the zero channels added before / after the input's."""
        return f"stride={self.stride}, pad=({self.front}, {self.back})"


def make_shortcut(in_channels: int, out_channels: int, stride: int, kind: str) -> nn.Module:
    """The shortcut of a block: identity (empty Sequential) if the shape is kept, else ``kind``.

    Args:
        in_channels: Block input channels.
        out_channels: Block output channels.
        stride: Stride of the block's first conv.
        kind: ``"projection"`` (1x1 conv with ``stride`` + BN) or ``"zero_pad"``
            (:class:`ZeroPadShortcut`).
    Returns:
        A module mapping (B, in, H, W) to the block's output shape.
    """
    if stride == 1 and in_channels == out_channels:
        return nn.Sequential()  # identity; holds nothing, so no names and no draws
    if kind == "zero_pad":
        return ZeroPadShortcut(in_channels, out_channels, stride)
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False),
        nn.BatchNorm2d(out_channels),
    )


class BasicBlock(nn.Module):
    """Two 3x3 conv + BN layers around an identity, projection or option-A shortcut.

    With ``arch.skip_connections``, two 1x1 "jump" convs + BN are added (ToST): ``conv_jump1``
    / ``conv_jump1_bn`` (in -> out, the stride of ``conv1``) adds to ``bn1``'s output, and
    ``conv_jump2`` / ``conv_jump2_bn`` (out -> out) maps the first activation onto the block
    output. Without it these modules do not exist.

    Args:
        in_channels: Channels of the block input.
        out_channels: Channels of the block output.
        stride: Stride of the first conv (and of the shortcut); 2 halves H and W.
        arch: Architecture options; ``activation`` and ``skip_connections`` apply.
        shortcut: Kind of shortcut where the shape changes, one of :data:`SHORTCUTS`.
    Raises:
        ValueError: an unknown ``shortcut``.

    Source: open_lth ``models/cifar_resnet.py`` (``Model.Block``); option A: He et al. 2016
        §4.2; jumps: ToST ``skip_connection/models/resnet_modified.py`` (``BasicBlock``),
        METHODS.md §2.5.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int,
        arch: base.Arch = base.DEFAULT_ARCH,
        shortcut: str = "projection",
    ) -> None:
        super().__init__()
        if shortcut not in SHORTCUTS:
            raise ValueError(f"shortcut must be one of {list(SHORTCUTS)}, got {shortcut!r}")
        self.conv1 = nn.Conv2d(
            in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False
        )
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut = make_shortcut(in_channels, out_channels, stride, shortcut)
        self.jumps = arch.skip_connections
        if self.jumps:
            self.conv_jump1 = nn.Conv2d(
                in_channels, out_channels, kernel_size=1, stride=stride, bias=False
            )
            self.conv_jump1_bn = nn.BatchNorm2d(out_channels)
            self.conv_jump2 = nn.Conv2d(out_channels, out_channels, kernel_size=1, bias=False)
            self.conv_jump2_bn = nn.BatchNorm2d(out_channels)
        self.act = base.activation_module(arch)

    def post_init(self) -> None:
        """Set the jump weights after the seeded init; a no-op without jumps.

        Jump convs get :data:`JUMP_INIT`; jump BNs get weight 1 and bias 0 (their running
        statistics were already reset by ``base.init_``).

        Source: ToST ``resnet_modified.py`` (``fill_(0.0001)``; its BNs keep PyTorch's
        default init).
        """
        if not self.jumps:
            return
        jumps = ((self.conv_jump1, self.conv_jump1_bn), (self.conv_jump2, self.conv_jump2_bn))
        for conv, bn in jumps:
            nn.init.constant_(conv.weight, JUMP_INIT)
            nn.init.ones_(bn.weight)
            nn.init.zeros_(bn.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block.

        Args:
            x: (B, in_channels, H, W).
        Returns:
            (B, out_channels, H / stride, W / stride), rounded up.
        """
        if not self.jumps:
            out = self.act(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            return self.act(out + self.shortcut(x))
        out1 = self.bn1(self.conv1(x)) + self.conv_jump1_bn(self.conv_jump1(x))
        out2 = self.act(out1)  # (B, out_channels, H / stride, W / stride)
        out3 = self.bn2(self.conv2(out2))
        out4 = out3 + self.shortcut(x) + self.conv_jump2_bn(self.conv_jump2(out2))
        return self.act(out4)


class CifarResNet(nn.Module):
    """ResNet: stem conv + BN + activation, stages of BasicBlocks, global average pool, FC.

    Parameter names follow open_lth: ``conv``, ``bn``, ``blocks.<i>.{conv1,bn1,conv2,bn2}``,
    ``blocks.<i>.shortcut.{0,1}`` (projection shortcuts only) and the classifier ``fc``; with
    ``arch.skip_connections`` also ``blocks.<i>.{conv_jump1,conv_jump1_bn,conv_jump2,
    conv_jump2_bn}``. Stage widths scale with ``arch.width``; the activation (ReLU by default)
    is the parameter-free ``act``. The stem is a 3x3 stride-1 conv; subclasses change it with
    ``STEM_KERNEL`` / ``STEM_STRIDE`` / ``STEM_POOL`` (a 3x3 stride-2 max-pool, skipped once a
    spatial side is 1). Strided convs need no skipping: on a side of 1 they keep it at 1.

    Args:
        plan: (width at Arch.width 1, number of blocks) per stage; every stage after the first
            starts with a stride-2 block.
        input_shape: (C, H, W) of one example.
        num_classes: Number of output logits.
        arch: Architecture options; all fields apply.
        shortcut: Where a block changes shape, ``"projection"`` (1x1 conv + BN) or
            ``"zero_pad"`` (option A); see :data:`SHORTCUTS`.

    Source: He et al. 2016 (arXiv 1512.03385), §4.2; open_lth ``models/cifar_resnet.py``;
        ResNet-18: kuangliu/pytorch-cifar ``models/resnet.py`` (``ResNet18``).
    """

    first_layer: str = "conv.weight"
    output_layer: str = "fc.weight"
    STEM_KERNEL: int = 3
    STEM_STRIDE: int = 1
    STEM_POOL: bool = False

    def __init__(
        self,
        plan: tuple[tuple[int, int], ...],
        input_shape: tuple[int, int, int],
        num_classes: int,
        arch: base.Arch = base.DEFAULT_ARCH,
        shortcut: str = "projection",
    ) -> None:
        super().__init__()
        in_channels, height, width = input_shape
        channels = base.scale_width(plan[0][0], arch)
        kernel, stride = self.STEM_KERNEL, self.STEM_STRIDE
        self.conv = nn.Conv2d(
            in_channels, channels, kernel, stride=stride, padding=kernel // 2, bias=False
        )
        self.bn = nn.BatchNorm2d(channels)
        height, width = ((n + 2 * (kernel // 2) - kernel) // stride + 1 for n in (height, width))
        self.stem_pool = self.STEM_POOL and base.can_pool(height, width)
        blocks = []
        for stage, (planned, num_blocks) in enumerate(plan):
            out_channels = base.scale_width(planned, arch)
            for index in range(num_blocks):
                block_stride = 2 if stage > 0 and index == 0 else 1
                blocks.append(BasicBlock(channels, out_channels, block_stride, arch, shortcut))
                channels = out_channels
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(channels, num_classes)
        self.act = base.activation_module(arch)

    def post_init(self) -> None:
        """Apply each block's :meth:`BasicBlock.post_init` (called by ``base.instantiate``)."""
        for block in self.blocks:
            block.post_init()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map a batch to logits.

        Args:
            x: (B, C, H, W) float32.
        Returns:
            (B, num_classes) logits.
        """
        x = self.act(self.bn(self.conv(x)))  # (B, 16, H, W) for ResNet-20 at width 1
        if self.stem_pool:
            x = F.max_pool2d(x, kernel_size=3, stride=2, padding=1)  # (B, C', H/2, W/2)
        x = self.blocks(x)  # (B, 64, H/4, W/4) for ResNet-20 at width 1, rounded up
        # Global average pool; equals open_lth's avg_pool2d(x, W) on square inputs.
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)  # (B, C'', h, w) -> (B, C'')
        return self.fc(x)  # (B, num_classes)


def _builder(plan: tuple[tuple[int, int], ...], shortcut: str = "projection") -> base.Builder:
    """A :class:`base.Builder` for a CifarResNet (see ``trainer.models.build``)."""
    return base.Builder(functools.partial(CifarResNet, plan, shortcut=shortcut))


# Parameter counts below are on (3, 32, 32) with 10 classes at the default Arch. Each builder is
# called as builder(input_shape, num_classes, generator, arch=Arch()).
# ResNet-20, open_lth cifar_resnet_20: 272,474 parameters (0.27M, He et al. Table 6).
resnet20 = _builder(RESNET20_PLAN)
# ResNet-32, open_lth cifar_resnet_32: 466,906 parameters (0.46M).
resnet32 = _builder(RESNET32_PLAN)
# ResNet-56, open_lth cifar_resnet_56: 855,770 parameters (0.85M).
resnet56 = _builder(RESNET56_PLAN)
# Option-A ResNets (He et al.'s CIFAR setup; DLTH's ResNet-56): 2,752 parameters fewer, the two
# projections 16->32 (512 + 64 BN) and 32->64 (2,048 + 128 BN).
resnet20_a = _builder(RESNET20_PLAN, "zero_pad")  # 269,722 parameters
resnet32_a = _builder(RESNET32_PLAN, "zero_pad")  # 464,154 parameters
resnet56_a = _builder(RESNET56_PLAN, "zero_pad")  # 853,018 parameters (DLTH ResNet-56)
# CIFAR ResNet-18 (kuangliu/pytorch-cifar, ToST, KD-ticket): 11,173,962 parameters (11.17M).
resnet18 = _builder(RESNET18_PLAN)
