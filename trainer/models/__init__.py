"""The model registry: registry key -> builder ``(input_shape, num_classes, generator) -> Module``.

Every built model

- maps (B, C, H, W) float32 to (B, num_classes) logits, for any (C, H, W) the zoo supports
  (at least (1, 8, 8), (1, 28, 28) and (3, 32, 32));
- has ``first_layer`` and ``output_layer``: parameter names of the first conv/linear weight and
  of the classifier weight;
- holds only Conv2d, Linear and BatchNorm2d parameters; the prunable set (all Conv2d / Linear
  ``.weight``) is computed elsewhere;
- is initialized entirely from ``generator`` (see ``trainer.models.base.init_``), without
  touching the global torch RNG.

Adding a model: one module with a builder, plus its import and one line in ``MODELS``.
"""

from __future__ import annotations

import torch
from torch import nn

from trainer.models import conv
from trainer.models import lenet
from trainer.models import resnet
from trainer.models import vgg
from trainer.models.base import ModelBuilder

MODELS: dict[str, ModelBuilder] = {
    "lenet_300_100": lenet.lenet_300_100,
    "conv2": conv.conv2,
    "conv4": conv.conv4,
    "conv6": conv.conv6,
    "resnet20": resnet.resnet20,
    "vgg11": vgg.vgg11,
    "vgg16": vgg.vgg16,
}


def get(name: str) -> ModelBuilder:
    """Return the builder registered under ``name``.

    Args:
        name: Registry key, e.g. ``"resnet20"``.
    Returns:
        A builder ``(input_shape, num_classes, generator) -> nn.Module``.
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
) -> nn.Module:
    """Build and initialize the model registered under ``name``.

    Args:
        name: Registry key, e.g. ``"lenet_300_100"``.
        input_shape: (C, H, W) of one example, e.g. (1, 28, 28).
        num_classes: Number of output logits (>= 1).
        generator: CPU ``torch.Generator``; the same seed gives the same state_dict.
    Returns:
        The model on the CPU in training mode, mapping (B, C, H, W) to (B, num_classes).
    Raises:
        ValueError: unknown ``name``, invalid ``input_shape`` or ``num_classes``, or a
            non-CPU generator.
        TypeError: ``generator`` is not a ``torch.Generator``.
    """
    return get(name)(input_shape, num_classes, generator)


__all__ = ["MODELS", "ModelBuilder", "build", "get"]
