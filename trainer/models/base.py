"""Shared plumbing for the model zoo: input checks, seeded initialization, spatial bookkeeping.

Every builder in ``trainer.models`` goes through :func:`instantiate`, which

1. checks ``input_shape``, ``num_classes`` and ``generator`` once, at the boundary;
2. constructs the module on the ``meta`` device, so PyTorch's default ``reset_parameters`` never
   draws from (or advances) the global torch RNG;
3. materializes it on the CPU and initializes *every* parameter and buffer from ``generator``.

So a model is a pure function of (name, input_shape, num_classes, generator state).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

# (C, H, W) of one example, number of classes, CPU generator -> initialized model.
ModelBuilder = Callable[[tuple[int, int, int], int, torch.Generator], nn.Module]

# (C, H, W) and number of classes -> uninitialized model (constructed on the meta device).
ModelFactory = Callable[[tuple[int, int, int], int], nn.Module]


def instantiate(
    factory: ModelFactory,
    input_shape: tuple[int, int, int],
    num_classes: int,
    generator: torch.Generator,
) -> nn.Module:
    """Validate the inputs, construct ``factory``'s model and initialize it from ``generator``.

    Args:
        factory: Constructs the architecture; its own parameter values are discarded.
        input_shape: (C, H, W) of one example, all positive ints.
        num_classes: Number of output logits (>= 1).
        generator: CPU ``torch.Generator``; the only source of randomness.
    Returns:
        The model on the CPU in training mode, with ``first_layer`` and ``output_layer`` set.
    Raises:
        ValueError: ``input_shape`` is not three positive ints, ``num_classes`` < 1, the
            generator is not on the CPU, or the model lacks valid ``first_layer`` /
            ``output_layer`` names.
        TypeError: ``generator`` is not a ``torch.Generator``, or the model holds a module type
            this initializer does not know.
    Source: open_lth ``models/registry.py`` (``kaiming_normal`` + ``batchnorm_init='uniform'``),
        with the draws seeded instead of taken from the global RNG.
    """
    shape = check_input_shape(input_shape)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be an int >= 1, got {num_classes!r}")
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    if generator.device.type != "cpu":
        raise ValueError(f"generator must be a CPU torch.Generator, got device {generator.device}")
    # Built on meta: no memory, no default init, and the global RNG is left alone.
    with torch.device("meta"):
        model = factory(shape, num_classes)
    model = model.to_empty(device="cpu")
    init_(model, generator)
    _check_layer_names(model)
    return model.train()


def init_(model: nn.Module, generator: torch.Generator) -> None:
    """Initialize every parameter and buffer of ``model`` in place, in module order.

    Conv2d / Linear weights get ``kaiming_normal_`` (fan_in, ReLU gain sqrt(2)) and their biases
    zero; BatchNorm2d weights get U(0, 1), biases zero and fresh running statistics.

    Args:
        model: Built from Conv2d, Linear, BatchNorm2d and parameter-free modules only.
        generator: CPU generator; consumed in ``model.modules()`` order.
    Raises:
        TypeError: a module of another type owns parameters or buffers (it would be left
            uninitialized).
    Source: open_lth ``models/initializers.py::kaiming_normal`` and
        ``models/bn_initializers.py::uniform``. open_lth keeps PyTorch's default (uniform) bias
        init; biases are zeroed here so every value is explicit.
    """
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(module.weight, generator=generator)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.uniform_(module.weight, 0.0, 1.0, generator=generator)
                nn.init.zeros_(module.bias)
                module.reset_running_stats()
            elif any(True for _ in module.parameters(recurse=False)) or any(
                True for _ in module.buffers(recurse=False)
            ):
                raise TypeError(
                    f"cannot initialize {type(module).__name__}: only Conv2d, Linear and "
                    "BatchNorm2d may hold parameters or buffers in a zoo model"
                )


def check_input_shape(input_shape: tuple[int, int, int]) -> tuple[int, int, int]:
    """Return ``input_shape`` as a tuple of three ints, or raise.

    Args:
        input_shape: (C, H, W) of one example.
    Returns:
        The same shape as ``(int, int, int)``.
    Raises:
        ValueError: not three positive ints.
    """
    values = tuple(input_shape)
    if len(values) != 3 or not all(
        isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values
    ):
        raise ValueError(f"input_shape must be (C, H, W) of positive ints, got {input_shape!r}")
    c, h, w = values
    return (c, h, w)


def can_pool(height: int, width: int) -> bool:
    """Whether a 2x2 / stride-2 max-pool still fits, i.e. both sides are at least 2.

    Pools are skipped once a side reaches 1, so one plan serves 8x8, 28x28 and 32x32 inputs.
    """
    return height >= 2 and width >= 2


def _check_layer_names(model: nn.Module) -> None:
    params = dict(model.named_parameters())
    for attr in ("first_layer", "output_layer"):
        name = getattr(model, attr, None)
        if not isinstance(name, str) or name not in params:
            raise ValueError(
                f"{type(model).__name__}.{attr} must name a parameter, got {name!r}"
            )
