"""ResNet-18 with torchvision's ImageNet stem (7x7 stride-2 conv + 3x3 stride-2 max-pool)."""

from __future__ import annotations

import functools

from trainer.models import base
from trainer.models.resnet import RESNET18_PLAN
from trainer.models.resnet import CifarResNet


class ImageNetResNet(CifarResNet):
    """torchvision's ResNet layout with this zoo's names and init.

    A 7x7 stride-2 conv (padding 3, no bias) + BN + activation + 3x3 stride-2 max-pool
    (padding 1), then the stages of :class:`~trainer.models.resnet.CifarResNet` (BasicBlocks,
    first stage stride 1, 1x1-conv + BN downsampling shortcuts), global average pool and FC.
    Names are CifarResNet's (``conv``, ``bn``, ``blocks.<i>...``, ``fc``), not torchvision's
    (``conv1``, ``layer<k>.<j>...``); init is ``base.init_``'s (kaiming normal fan_in, BN
    gamma U(0, 1)) as open_lth's ``imagenet_resnet_*`` rather than torchvision's. The max-pool
    is skipped once a spatial side is 1, so 8x8 inputs work (8 -> 4 -> 2 -> 2 -> 1 -> 1 -> 1).

    Args:
        plan: (width at Arch.width 1, number of blocks) per stage.
        input_shape: (C, H, W) of one example.
        num_classes: Number of output logits.
        arch: Architecture options; all fields apply (``skip_connections`` adds ToST's jumps).
        shortcut: As for CifarResNet.

    Source: He et al. 2016 (arXiv 1512.03385), Table 1 (18-layer); torchvision
        ``models/resnet.py`` (``resnet18``); open_lth ``models/imagenet_resnet.py``.
    """

    STEM_KERNEL: int = 7
    STEM_STRIDE: int = 2
    STEM_POOL: bool = True


# torchvision resnet18 layout: 11,689,512 parameters with 1000 classes (any input size; 11.69M
# in torchvision's model table), 11,181,642 with 10 classes. Called as
# resnet18_imagenet(input_shape, num_classes, generator, arch=Arch()).
resnet18_imagenet = base.Builder(functools.partial(ImageNetResNet, RESNET18_PLAN))
