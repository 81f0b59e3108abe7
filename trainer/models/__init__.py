"""The model registry: key -> builder ``(input_shape, num_classes, generator, arch) -> Module``.

Every built model

- maps (B, C, H, W) float32 to (B, num_classes) logits, for any (C, H, W) the zoo supports
  (at least (1, 8, 8), (1, 28, 28) and (3, 32, 32));
- has ``first_layer`` and ``output_layer``: parameter names of the first conv/linear weight and
  of the classifier weight;
- holds only Conv2d, Linear and BatchNorm2d parameters; the prunable set (all Conv2d / Linear
  ``.weight``) is computed elsewhere;
- is initialized entirely from ``generator`` (see ``trainer.models.base.init_``), without
  touching the global torch RNG.

:class:`Arch` varies a model without changing its key: hidden width multiplier, activation
(relu / swish / mish / pswish) and, for ResNets only, ToST's 1x1 jump connections. The default
``Arch()`` builds exactly the models of before (same names, same generator draws).
:func:`count_weights` gives a model's Conv2d / Linear weight count without building it, e.g. to
size a small dense network that matches a sparse one.

Adding a model: one module with a factory ``(input_shape, num_classes, arch) -> Module`` wrapped
in ``base.Builder``, plus its import and one line in ``MODELS``.
"""

from __future__ import annotations

import torch
from torch import nn

from trainer.models import conv
from trainer.models import lenet
from trainer.models import resnet
from trainer.models import vgg
from trainer.models.base import DEFAULT_ARCH
from trainer.models.base import Arch
from trainer.models.base import Builder
from trainer.models.base import ModelBuilder
from trainer.models.base import construct

MODELS: dict[str, Builder] = {
    "lenet_300_100": lenet.lenet_300_100,
    "conv2": conv.conv2,
    "conv4": conv.conv4,
    "conv6": conv.conv6,
    "resnet20": resnet.resnet20,
    "vgg11": vgg.vgg11,
    "vgg16": vgg.vgg16,
}


def get(name: str) -> Builder:
    """Return the builder registered under ``name``.

    Args:
        name: Registry key, e.g. ``"resnet20"``.
    Returns:
        A :class:`ModelBuilder` ``(input_shape, num_classes, generator, arch=Arch()) -> Module``.
    Raises:
        ValueError: ``name`` is not a key of ``MODELS``.
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known: {sorted(MODELS)}")
    return MODELS[name]


def build(
    name: str,
    input_shape: tuple[int, int, int],
    num_classes: int,
    generator: torch.Generator,
    arch: Arch = DEFAULT_ARCH,
) -> nn.Module:
    """Build and initialize the model registered under ``name``.

    Args:
        name: Registry key, e.g. ``"lenet_300_100"``.
        input_shape: (C, H, W) of one example, e.g. (1, 28, 28).
        num_classes: Number of output logits (>= 1).
        generator: CPU ``torch.Generator``; the same seed gives the same state_dict.
        arch: Architecture options (width, activation, ResNet jumps); the default ``Arch()``
            is the model as published.
    Returns:
        The model on the CPU in training mode, mapping (B, C, H, W) to (B, num_classes).
    Raises:
        ValueError: unknown ``name``, invalid ``input_shape`` or ``num_classes``, a non-CPU
            generator, or ``arch.skip_connections`` for a model that is not a ResNet.
        TypeError: ``generator`` is not a ``torch.Generator`` or ``arch`` is not an ``Arch``.
    """
    return get(name)(input_shape, num_classes, generator, arch)


def count_weights(
    name: str,
    input_shape: tuple[int, int, int],
    num_classes: int,
    arch: Arch = DEFAULT_ARCH,
) -> int:
    """Number of elements of all Conv2d / Linear ``.weight`` tensors of a model.

    The model is constructed on the ``meta`` device: no memory, no initialization and no RNG
    use. Biases and BatchNorm parameters are not counted.

    Args:
        name: Registry key, e.g. ``"conv2"``.
        input_shape: (C, H, W) of one example.
        num_classes: Number of output logits (>= 1).
        arch: Architecture options, as for :func:`build`.
    Returns:
        The weight count, e.g. 4,300,992 for ``conv2`` on (3, 32, 32) with 10 classes.
    Raises:
        ValueError: as :func:`build` (without the generator checks).
        TypeError: ``arch`` is not an ``Arch``.
    """
    model = construct(get(name).factory, input_shape, num_classes, arch)
    return sum(
        module.weight.numel()
        for module in model.modules()
        if isinstance(module, (nn.Conv2d, nn.Linear))
    )


__all__ = ["MODELS", "Arch", "ModelBuilder", "build", "count_weights", "get"]
