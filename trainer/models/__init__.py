"""The model registry: key -> builder ``(input_shape, num_classes, generator, arch) -> Module``.

Keys and sources (parameter counts on (3, 32, 32) with 10 classes; see each module):

- ``lenet_300_100``: F&C 2019 Fig. 2; open_lth ``mnist_lenet_300_100`` (266,610 on MNIST).
- ``conv2`` / ``conv4`` / ``conv6``: F&C Fig. 2 (4.3M / 2.4M / 2.26M weights);
  ``conv2_dropout`` / ``conv4_dropout`` / ``conv6_dropout``: the same with dropout 0.5 before
  each FC layer (F&C §3, App. H.5; placement inferred).
- ``resnet20`` / ``resnet32`` / ``resnet56``: open_lth ``cifar_resnet_N`` (projection
  shortcuts; 272,474 / 466,906 / 855,770); ``resnet20_a`` / ``resnet32_a`` / ``resnet56_a``:
  He et al.'s option-A shortcuts, as DLTH's ResNet-56 (269,722 / 464,154 / 853,018).
- ``resnet18``: the CIFAR ResNet-18 of kuangliu, ToST and KD-ticket (11,173,962);
  ``resnet18_imagenet``: torchvision's ``resnet18`` layout (11,689,512 with 1000 classes).
- ``vgg11`` / ``vgg16`` / ``vgg19``: open_lth ``cifar_vgg_N`` (9.23M / 14.7M / 20.0M).
- ``mobilenet_v2``: kuangliu's CIFAR MobileNetV2 (2,296,922).

Every built model

- maps (B, C, H, W) float32 to (B, num_classes) logits, for any (C, H, W) the zoo supports
  (at least (1, 8, 8), (1, 28, 28) and (3, 32, 32));
- has ``first_layer`` and ``output_layer``: parameter names of the first conv/linear weight and
  of the classifier weight;
- holds only Conv2d, Linear and BatchNorm2d parameters; the prunable set (all Conv2d / Linear
  ``.weight``, depthwise convs included) is computed elsewhere;
- is initialized entirely from ``generator`` (see ``trainer.models.base.init_``), without
  touching the global torch RNG. The ``*_dropout`` models draw their training-mode dropout
  masks from generators seeded by the input batch and their weights, not from the global RNG,
  so a forward pass is a pure function of (weights, input, mode) for every model.

:class:`Arch` varies a model without changing its key: hidden width multiplier, activation
(relu / swish / mish / pswish) and, for ResNets only, ToST's 1x1 jump connections. The default
``Arch()`` builds exactly the models of before (same names, same generator draws).
:func:`count_weights` gives a model's Conv2d / Linear weight count without building it, e.g. to
size a small dense network that matches a sparse one.

Adding a model: one module with a factory ``(input_shape, num_classes, arch) -> Module`` wrapped
in ``base.Builder``, plus one line in ``MODELS`` naming it. The registry itself imports no
torch: a model module is imported when a model of it is first built, so a spec can be checked
and planned without torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from trainer.models.arch import DEFAULT_ARCH
from trainer.models.arch import Arch

if TYPE_CHECKING:
    import torch
    from torch import nn

    from trainer.models.base import Builder

# Registry key -> (module of this package, builder in it).
MODELS: dict[str, tuple[str, str]] = {
    "lenet_300_100": ("lenet", "lenet_300_100"),
    "conv2": ("conv", "conv2"),
    "conv4": ("conv", "conv4"),
    "conv6": ("conv", "conv6"),
    "conv2_dropout": ("conv", "conv2_dropout"),
    "conv4_dropout": ("conv", "conv4_dropout"),
    "conv6_dropout": ("conv", "conv6_dropout"),
    "resnet20": ("resnet", "resnet20"),
    "resnet32": ("resnet", "resnet32"),
    "resnet56": ("resnet", "resnet56"),
    "resnet20_a": ("resnet", "resnet20_a"),
    "resnet32_a": ("resnet", "resnet32_a"),
    "resnet56_a": ("resnet", "resnet56_a"),
    "resnet18": ("resnet", "resnet18"),
    "resnet18_imagenet": ("resnet_imagenet", "resnet18_imagenet"),
    "vgg11": ("vgg", "vgg11"),
    "vgg16": ("vgg", "vgg16"),
    "vgg19": ("vgg", "vgg19"),
    "mobilenet_v2": ("mobilenet", "mobilenet_v2"),
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
    module, builder = MODELS[name]
    return getattr(importlib.import_module(f"{__name__}.{module}"), builder)


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


def skeleton(
    name: str,
    input_shape: tuple[int, int, int],
    num_classes: int,
    arch: Arch = DEFAULT_ARCH,
) -> nn.Module:
    """The model registered under ``name`` on the ``meta`` device: shapes and layer names
    (``first_layer``, ``output_layer``) without memory, initialization or RNG use.

    Raises:
        ValueError: as :func:`build` (without the generator checks).
    """
    from trainer.models.base import construct

    return construct(get(name).factory, input_shape, num_classes, arch)


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
    from torch import nn

    model = skeleton(name, input_shape, num_classes, arch)
    return sum(
        module.weight.numel()
        for module in model.modules()
        if isinstance(module, (nn.Conv2d, nn.Linear))
    )


__all__ = ["MODELS", "Arch", "build", "count_weights", "get", "skeleton"]
