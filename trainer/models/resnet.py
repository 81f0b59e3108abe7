"""ResNet-20 for CIFAR, as in open_lth's ``cifar_resnet_20``, optionally with ToST's jumps."""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

from trainer.models import base

# (width at Arch.width 1, blocks) per stage.
# ResNet-20 = 1 conv + 3 stages x 3 blocks x 2 convs + 1 FC.
RESNET20_PLAN: tuple[tuple[int, int], ...] = ((16, 3), (32, 3), (64, 3))

# ToST's constant initial weight of the 1x1 jump convs (``resnet_modified.py``).
JUMP_INIT: float = 1e-4


class BasicBlock(nn.Module):
    """Two 3x3 conv + BN layers around an identity or 1x1-conv + BN shortcut.

    With ``arch.skip_connections``, two 1x1 "jump" convs + BN are added (ToST): ``conv_jump1``
    / ``conv_jump1_bn`` (in -> out, the stride of ``conv1``) adds to ``bn1``'s output, and
    ``conv_jump2`` / ``conv_jump2_bn`` (out -> out) maps the first activation onto the block
    output. Without it these modules do not exist.

    Args:
        in_channels: Channels of the block input.
        out_channels: Channels of the block output.
        stride: Stride of the first conv (and of the shortcut conv); 2 halves H and W.
        arch: Architecture options; ``activation`` and ``skip_connections`` apply.

    Source: open_lth ``models/cifar_resnet.py`` (``Model.Block``); jumps: ToST
        ``skip_connection/models/resnet_modified.py`` (``BasicBlock``), METHODS.md §2.5.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int,
        arch: base.Arch = base.DEFAULT_ARCH,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(
            in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False
        )
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        # An empty Sequential is the identity; a projection only where the shape changes.
        self.shortcut = nn.Sequential()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )
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
    """CIFAR ResNet: conv3x3 + BN + activation, stages of BasicBlocks, global average pool, FC.

    Parameter names follow open_lth: ``conv``, ``bn``, ``blocks.<i>.{conv1,bn1,conv2,bn2}``,
    ``blocks.<i>.shortcut.{0,1}`` and the classifier ``fc``; with ``arch.skip_connections``
    also ``blocks.<i>.{conv_jump1,conv_jump1_bn,conv_jump2,conv_jump2_bn}``. Stage widths
    scale with ``arch.width``; the activation (ReLU by default) is the parameter-free ``act``.

    Args:
        plan: (width at Arch.width 1, number of blocks) per stage; every stage after the first
            starts with a stride-2 block.
        input_shape: (C, H, W) of one example.
        num_classes: Number of output logits.
        arch: Architecture options; all fields apply.

    Source: He et al. 2016 (arXiv 1512.03385), §4.2; open_lth ``models/cifar_resnet.py``.
    """

    first_layer: str = "conv.weight"
    output_layer: str = "fc.weight"

    def __init__(
        self,
        plan: tuple[tuple[int, int], ...],
        input_shape: tuple[int, int, int],
        num_classes: int,
        arch: base.Arch = base.DEFAULT_ARCH,
    ) -> None:
        super().__init__()
        channels = base.scale_width(plan[0][0], arch)
        self.conv = nn.Conv2d(input_shape[0], channels, kernel_size=3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(channels)
        blocks = []
        for stage, (planned, num_blocks) in enumerate(plan):
            width = base.scale_width(planned, arch)
            for index in range(num_blocks):
                stride = 2 if stage > 0 and index == 0 else 1
                blocks.append(BasicBlock(channels, width, stride, arch))
                channels = width
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
        x = self.act(self.bn(self.conv(x)))  # (B, 16, H, W) at width 1
        x = self.blocks(x)  # (B, 64, H/4, W/4) at width 1, rounded up
        # Global average pool; equals open_lth's avg_pool2d(x, W) on square inputs.
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)  # (B, 64, h, w) -> (B, 64)
        return self.fc(x)  # (B, num_classes)


# ResNet-20 (widths 16/32/64; 272,474 parameters on CIFAR-10 at the default Arch); open_lth
# cifar_resnet_20. Called as resnet20(input_shape, num_classes, generator, arch=Arch()).
resnet20 = base.Builder(functools.partial(CifarResNet, RESNET20_PLAN))
