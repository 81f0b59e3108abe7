"""ResNet-20 for CIFAR, as in open_lth's ``cifar_resnet_20``."""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

from trainer.models import base

# (width, blocks) per stage; ResNet-20 = 1 conv + 3 stages x 3 blocks x 2 convs + 1 FC.
RESNET20_PLAN: tuple[tuple[int, int], ...] = ((16, 3), (32, 3), (64, 3))


class BasicBlock(nn.Module):
    """Two 3x3 conv + BN layers around an identity or 1x1-conv + BN shortcut.

    Args:
        in_channels: Channels of the block input.
        out_channels: Channels of the block output.
        stride: Stride of the first conv (and of the shortcut conv); 2 halves H and W.

    Source: open_lth ``models/cifar_resnet.py`` (``Model.Block``).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block.

        Args:
            x: (B, in_channels, H, W).
        Returns:
            (B, out_channels, H / stride, W / stride), rounded up.
        """
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """CIFAR ResNet: conv3x3 + BN + ReLU, stages of BasicBlocks, global average pool, FC.

    Parameter names follow open_lth: ``conv``, ``bn``, ``blocks.<i>.{conv1,bn1,conv2,bn2}``,
    ``blocks.<i>.shortcut.{0,1}`` and the classifier ``fc``.

    Args:
        plan: (width, number of blocks) per stage; every stage after the first starts with a
            stride-2 block.
        input_shape: (C, H, W) of one example.
        num_classes: Number of output logits.

    Source: He et al. 2016 (arXiv 1512.03385), §4.2; open_lth ``models/cifar_resnet.py``.
    """

    first_layer: str = "conv.weight"
    output_layer: str = "fc.weight"

    def __init__(
        self,
        plan: tuple[tuple[int, int], ...],
        input_shape: tuple[int, int, int],
        num_classes: int,
    ) -> None:
        super().__init__()
        channels = plan[0][0]
        self.conv = nn.Conv2d(input_shape[0], channels, kernel_size=3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(channels)
        blocks = []
        for stage, (width, num_blocks) in enumerate(plan):
            for index in range(num_blocks):
                stride = 2 if stage > 0 and index == 0 else 1
                blocks.append(BasicBlock(channels, width, stride))
                channels = width
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map a batch to logits.

        Args:
            x: (B, C, H, W) float32.
        Returns:
            (B, num_classes) logits.
        """
        x = F.relu(self.bn(self.conv(x)))  # (B, 16, H, W)
        x = self.blocks(x)  # (B, 64, H/4, W/4), rounded up
        # Global average pool; equals open_lth's avg_pool2d(x, W) on square inputs.
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)  # (B, 64, h, w) -> (B, 64)
        return self.fc(x)  # (B, num_classes)


def resnet20(
    input_shape: tuple[int, int, int], num_classes: int, generator: torch.Generator
) -> nn.Module:
    """Build ResNet-20 (widths 16/32/64; 272,474 parameters on CIFAR-10).

    Args:
        input_shape: (C, H, W) of one example.
        num_classes: Number of output logits.
        generator: CPU generator that fully determines the initial weights.
    Returns:
        An initialized :class:`CifarResNet`.
    Raises:
        ValueError: invalid ``input_shape``, ``num_classes`` or generator device.
        TypeError: ``generator`` is not a ``torch.Generator``.
    Source: open_lth ``cifar_resnet_20``.
    """
    factory = functools.partial(CifarResNet, RESNET20_PLAN)
    return base.instantiate(factory, input_shape, num_classes, generator)
