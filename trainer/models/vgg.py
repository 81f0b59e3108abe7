"""VGG-11 / VGG-16 / VGG-19 for CIFAR, as open_lth's ``cifar_vgg_{11,16,19}``."""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

from trainer.models import base

# Conv widths at Arch.width 1, "M" = 2x2 max-pool. As in open_lth ``cifar_vgg.py``, there is
# no pool after the last conv group; the final 2x2 map (on CIFAR) is average-pooled into the
# classifier.
VGG11_PLAN: tuple[int | str, ...] = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512)
VGG16_PLAN: tuple[int | str, ...] = (
    64, 64, "M",
    128, 128, "M",
    256, 256, 256, "M",
    512, 512, 512, "M",
    512, 512, 512,
)  # fmt: skip
VGG19_PLAN: tuple[int | str, ...] = (
    64, 64, "M",
    128, 128, "M",
    256, 256, 256, 256, "M",
    512, 512, 512, 512, "M",
    512, 512, 512, 512,
)  # fmt: skip


class ConvBN(nn.Module):
    """3x3 conv (padding 1, with bias) + BatchNorm + activation (ReLU by default).

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        arch: Architecture options; ``activation`` applies (as the parameter-free ``act``).

    Source: open_lth ``models/cifar_vgg.py`` (``Model.ConvModule``).
    """

    def __init__(
        self, in_channels: int, out_channels: int, arch: base.Arch = base.DEFAULT_ARCH
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)
        self.bn = nn.BatchNorm2d(out_channels)
        self.act = base.activation_module(arch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply conv, BN and activation: (B, in, H, W) -> (B, out, H, W)."""
        return self.act(self.bn(self.conv(x)))


class CifarVGG(nn.Module):
    """VGG with BatchNorm, global average pooling and one linear classifier.

    Parameter names: ``convs.<i>.conv`` / ``convs.<i>.bn`` (i counts convs only, so names do not
    depend on the input size) and the classifier ``fc``. A pool is skipped once a spatial side
    is 1, so 8x8 and 28x28 inputs work; on 32x32 (default ``arch``) the network is open_lth's
    exactly. Conv widths scale with ``arch.width``.

    Args:
        plan: Conv widths at Arch.width 1 and "M" (2x2 max-pool) markers.
        input_shape: (C, H, W) of one example.
        num_classes: Number of output logits.
        arch: Architecture options; ``width`` and ``activation`` apply.
    Raises:
        ValueError: a malformed ``plan``, or ``arch.skip_connections`` is set (only ResNets
            support it).

    Source: Simonyan & Zisserman 2015 (arXiv 1409.1556); open_lth ``models/cifar_vgg.py``;
        VGG-19 as Frankle & Carbin 2019 §4 / Fig. 2 (after Liu et al. 2019).
    """

    first_layer: str = "convs.0.conv.weight"
    output_layer: str = "fc.weight"

    def __init__(
        self,
        plan: tuple[int | str, ...],
        input_shape: tuple[int, int, int],
        num_classes: int,
        arch: base.Arch = base.DEFAULT_ARCH,
    ) -> None:
        super().__init__()
        base.reject_skip_connections(self, arch)
        channels, height, width = input_shape
        convs: list[ConvBN] = []
        pool_after: list[bool] = []
        for spec in plan:
            if spec == "M":
                if not convs or pool_after[-1]:
                    raise ValueError(f"each 'M' in a VGG plan must follow a conv, got {plan!r}")
                if base.can_pool(height, width):
                    height, width = height // 2, width // 2
                    pool_after[-1] = True
            elif isinstance(spec, int):
                out_channels = base.scale_width(spec, arch)
                convs.append(ConvBN(channels, out_channels, arch))
                pool_after.append(False)
                channels = out_channels
            else:
                raise ValueError(f"VGG plan entries must be ints or 'M', got {spec!r}")
        self.convs = nn.ModuleList(convs)
        self.pool_after: tuple[bool, ...] = tuple(pool_after)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map a batch to logits.

        Args:
            x: (B, C, H, W) float32.
        Returns:
            (B, num_classes) logits.
        """
        for conv, pool in zip(self.convs, self.pool_after, strict=True):
            x = conv(x)
            if pool:
                x = F.max_pool2d(x, kernel_size=2, stride=2)  # (B, C', H, W) -> (B, C', H/2, W/2)
        # Global average pool; on CIFAR (2x2 maps) this is open_lth's AvgPool2d(2).
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)  # (B, 512, h, w) -> (B, 512) at width 1
        return self.fc(x)  # (B, num_classes)


def _builder(plan: tuple[int | str, ...]) -> base.Builder:
    """A :class:`base.Builder` for a CifarVGG with ``plan`` (see ``trainer.models.build``)."""
    return base.Builder(functools.partial(CifarVGG, plan))


# Parameter counts on (3, 32, 32) with 10 classes at the default Arch.
vgg11 = _builder(VGG11_PLAN)  # open_lth cifar_vgg_11: 8 convs + BN + 1 FC; 9,231,114 parameters
vgg16 = _builder(VGG16_PLAN)  # open_lth cifar_vgg_16: 13 convs + BN + 1 FC; 14,728,266 (14.7M)
# open_lth cifar_vgg_19 (F&C's VGG-19, §4 and Fig. 2: 20M): 16 convs + BN + 1 FC; 20,040,522
vgg19 = _builder(VGG19_PLAN)
