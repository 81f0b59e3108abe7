"""MobileNetV2 for CIFAR, as in kuangliu/pytorch-cifar (used by P1, Liu et al. ICML 2021)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from trainer.models import base

# (expansion, out channels at Arch.width 1, blocks, stride of the first block) per stage.
# Sandler et al. Table 2 with the CIFAR changes of kuangliu: stride 1 in the stem and in the
# second stage (24 channels), so 32x32 inputs end on 4x4 maps.
MOBILENET_V2_PLAN: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 1),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
STEM_WIDTH: int = 32  # channels of the 3x3 stem conv at Arch.width 1
HEAD_WIDTH: int = 1280  # channels of the last 1x1 conv at Arch.width 1


class InvertedResidual(nn.Module):
    """Expand (1x1) -> depthwise 3x3 -> project (1x1, linear), each with BN.

    ``conv2`` is a depthwise ``Conv2d`` (``groups`` = its channels, weight (C, 1, 3, 3)): a
    prunable conv weight like any other. The residual follows kuangliu, not the paper: stride-1
    blocks add ``shortcut(x)`` (identity, or 1x1 conv + BN where the planned widths differ);
    stride-2 blocks have none. Whether there is a projection depends on the planned widths only,
    so parameter names do not depend on ``arch.width``.

    Args:
        planned_in: Input channels at Arch.width 1.
        planned_out: Output channels at Arch.width 1.
        expansion: Hidden channels = ``expansion * planned_in``, then scaled.
        stride: Stride of the depthwise conv (1 or 2).
        arch: Architecture options; ``width`` and ``activation`` apply.

    Source: Sandler et al. 2018 (arXiv 1801.04381), §3.3 and Table 1; kuangliu/pytorch-cifar
        ``models/mobilenetv2.py`` (``Block``; ReLU instead of ReLU6).
    """

    def __init__(
        self, planned_in: int, planned_out: int, expansion: int, stride: int, arch: base.Arch
    ) -> None:
        super().__init__()
        in_channels, out_channels = (base.scale_width(n, arch) for n in (planned_in, planned_out))
        hidden = base.scale_width(expansion * planned_in, arch)
        self.stride = stride
        self.conv1 = nn.Conv2d(in_channels, hidden, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(hidden)
        self.conv2 = nn.Conv2d(
            hidden, hidden, kernel_size=3, stride=stride, padding=1, groups=hidden, bias=False
        )
        self.bn2 = nn.BatchNorm2d(hidden)
        self.conv3 = nn.Conv2d(hidden, out_channels, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.shortcut = nn.Sequential()  # identity
        if stride == 1 and planned_in != planned_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False),
                nn.BatchNorm2d(out_channels),
            )
        self.act = base.activation_module(arch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in, H, W) -> (B, out, H / stride, W / stride), rounded up."""
        out = self.act(self.bn1(self.conv1(x)))  # (B, hidden, H, W)
        out = self.act(self.bn2(self.conv2(out)))  # (B, hidden, H / stride, W / stride)
        out = self.bn3(self.conv3(out))  # (B, out, H / stride, W / stride); no activation
        return out + self.shortcut(x) if self.stride == 1 else out


class MobileNetV2(nn.Module):
    """CIFAR MobileNetV2: 3x3 stem, 17 inverted residual blocks, 1x1 conv to 1280, pool, FC.

    Parameter names follow kuangliu: ``conv1`` / ``bn1`` (stem), ``layers.<i>.{conv1,bn1,
    conv2,bn2,conv3,bn3}`` and ``layers.<i>.shortcut.{0,1}``, ``conv2`` / ``bn2`` (head) and the
    classifier ``linear``. ``arch.width`` is the width multiplier: it scales every channel count,
    the 1280 of the head included. Strided convs need no skipping on small inputs (on a side of 1
    they keep it at 1), so 8x8 and 28x28 inputs work.

    Args:
        input_shape: (C, H, W) of one example.
        num_classes: Number of output logits.
        arch: Architecture options; ``width`` and ``activation`` apply.
    Raises:
        ValueError: ``arch.skip_connections`` is set (only ResNets support it).

    Source: Sandler et al. 2018 (arXiv 1801.04381); kuangliu/pytorch-cifar
        ``models/mobilenetv2.py`` (``MobileNetV2``); used by Liu et al. ICML 2021 (METHODS.md
        §2.2, §5.2).
    """

    first_layer: str = "conv1.weight"
    output_layer: str = "linear.weight"

    def __init__(
        self,
        input_shape: tuple[int, int, int],
        num_classes: int,
        arch: base.Arch = base.DEFAULT_ARCH,
    ) -> None:
        super().__init__()
        base.reject_skip_connections(self, arch)
        stem, head = base.scale_width(STEM_WIDTH, arch), base.scale_width(HEAD_WIDTH, arch)
        self.conv1 = nn.Conv2d(input_shape[0], stem, kernel_size=3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        blocks, planned = [], STEM_WIDTH
        for expansion, planned_out, num_blocks, stride in MOBILENET_V2_PLAN:
            for index in range(num_blocks):
                first_stride = stride if index == 0 else 1
                block = InvertedResidual(planned, planned_out, expansion, first_stride, arch)
                blocks.append(block)
                planned = planned_out
        self.layers = nn.Sequential(*blocks)
        self.conv2 = nn.Conv2d(base.scale_width(planned, arch), head, kernel_size=1, bias=False)
        self.bn2 = nn.BatchNorm2d(head)
        self.linear = nn.Linear(head, num_classes)
        self.act = base.activation_module(arch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map a batch to logits.

        Args:
            x: (B, C, H, W) float32.
        Returns:
            (B, num_classes) logits.
        """
        x = self.act(self.bn1(self.conv1(x)))  # (B, 32, H, W) at width 1
        x = self.layers(x)  # (B, 320, H/8, W/8) at width 1, rounded up
        x = self.act(self.bn2(self.conv2(x)))  # (B, 1280, H/8, W/8) at width 1
        # Global average pool; on CIFAR (4x4 maps) this is kuangliu's avg_pool2d(x, 4).
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)  # (B, 1280, h, w) -> (B, 1280)
        return self.linear(x)  # (B, num_classes)


# kuangliu/pytorch-cifar MobileNetV2: 2,296,922 parameters on (3, 32, 32) with 10 classes at the
# default Arch. The often quoted 2.24M is the paper's / torchvision's layout with 10 classes
# (2,236,682): kuangliu adds 4 projection shortcuts (59,152) and a 1x1 expansion conv + BN in
# the first block, whose expansion is 1 (1,088). Called as
# mobilenet_v2(input_shape, num_classes, generator, arch=Arch()).
mobilenet_v2 = base.Builder(MobileNetV2)
