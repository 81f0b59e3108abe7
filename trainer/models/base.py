"""Shared plumbing for the model zoo: architecture options, input checks, seeded initialization.

Every builder in ``trainer.models`` is a :class:`Builder`, which calls :func:`instantiate`:

1. check ``input_shape``, ``num_classes``, ``arch`` and ``generator`` once, at the boundary;
2. construct the module on the ``meta`` device, so PyTorch's default ``reset_parameters`` never
   draws from (or advances) the global torch RNG;
3. materialize it on the CPU and initialize *every* parameter and buffer from ``generator``;
4. call the model's ``post_init()``, if it has one, for values that are not random.

So a model is a pure function of (name, input_shape, num_classes, arch, generator state). At
the default :class:`Arch` every model is exactly the one built before ``Arch`` existed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch
from torch import nn

from trainer.models.arch import DEFAULT_ARCH
from trainer.models.arch import Arch


class PSwish(nn.Module):
    """Parametric swish with a fixed beta: x * sigmoid(beta * x), elementwise, any shape.

    ``beta`` is a plain float, not a parameter or buffer: neither trained nor saved.

    Args:
        beta: Slope inside the sigmoid (> 0); 1 gives swish (SiLU).

    Source: ToST ``activations.py::SwishParameteric`` (beta = 2 there).
    """

    def __init__(self, beta: float) -> None:
        super().__init__()
        self.beta = float(beta)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply x * sigmoid(beta * x) to a tensor of any shape."""
        return x * torch.sigmoid(self.beta * x)

    def extra_repr(self) -> str:
        """Show beta in the module's repr."""
        return f"beta={self.beta}"


def activation_module(arch: Arch) -> nn.Module:
    """Return a fresh, parameter-free module applying ``arch.activation`` elementwise.

    Args:
        arch: Architecture options; ``activation`` (and ``beta`` for ``pswish``) are used.
    Returns:
        ``nn.ReLU()``, ``nn.SiLU()``, ``nn.Mish()`` or ``PSwish(arch.beta)``.
    Source: ToST ``soft_activation/`` (``--activation swish | mish | pswish``).
    """
    if arch.activation == "swish":
        return nn.SiLU()
    if arch.activation == "mish":
        return nn.Mish()
    if arch.activation == "pswish":
        return PSwish(arch.beta)
    return nn.ReLU()


def scale_width(n: int, arch: Arch) -> int:
    """Scale a hidden width: ``max(1, round(n * arch.width))`` (Python's round, half to even)."""
    return max(1, round(n * arch.width))


def reject_skip_connections(model: nn.Module, arch: Arch) -> None:
    """Raise ValueError if ``arch.skip_connections`` is set for a model that is not a ResNet."""
    if arch.skip_connections:
        raise ValueError(
            f"{type(model).__name__} cannot be built with Arch(skip_connections=True): "
            "only ResNets support skip connections"
        )


# (C, H, W), number of classes and architecture options -> uninitialized model.
ModelFactory = Callable[[tuple[int, int, int], int, Arch], nn.Module]


@dataclasses.dataclass(frozen=True)
class Builder:
    """A registered model builder (``trainer.models.MODELS``): calling it runs
    :func:`instantiate` with its factory.

    Args:
        factory: Constructs the architecture from ``(input_shape, num_classes, arch)``.
    """

    factory: ModelFactory

    def __call__(
        self,
        input_shape: tuple[int, int, int],
        num_classes: int,
        generator: torch.Generator,
        arch: Arch = DEFAULT_ARCH,
    ) -> nn.Module:
        """Build and initialize the model; see :func:`instantiate` for Args/Returns/Raises."""
        return instantiate(self.factory, input_shape, num_classes, generator, arch)


# The type of a registry entry: ``(input_shape, num_classes, generator[, arch]) -> model``.
ModelBuilder = Builder


def construct(
    factory: ModelFactory,
    input_shape: tuple[int, int, int],
    num_classes: int,
    arch: Arch = DEFAULT_ARCH,
) -> nn.Module:
    """Validate the inputs; return ``factory``'s uninitialized model on the ``meta`` device.

    No memory, values or RNG use. Args/Raises as in :func:`instantiate`, less the generator's.
    """
    shape = _check_inputs(input_shape, num_classes, arch)
    with torch.device("meta"):
        return factory(shape, num_classes, arch)


def instantiate(
    factory: ModelFactory,
    input_shape: tuple[int, int, int],
    num_classes: int,
    generator: torch.Generator,
    arch: Arch = DEFAULT_ARCH,
) -> nn.Module:
    """Validate the inputs, construct ``factory``'s model and initialize it from ``generator``.

    Args:
        factory: Constructs the architecture; its own parameter values are discarded.
        input_shape: (C, H, W) of one example, all positive ints.
        num_classes: Number of output logits (>= 1).
        generator: CPU ``torch.Generator``; the only source of randomness.
        arch: Architecture options (width, activation, ResNet jumps).
    Returns:
        The model on the CPU in training mode, with ``first_layer`` and ``output_layer`` set.
    Raises:
        ValueError: ``input_shape`` is not three positive ints, ``num_classes`` < 1, the
            generator is not on the CPU, the model does not support ``arch``, or the model
            lacks valid ``first_layer`` / ``output_layer`` names.
        TypeError: ``generator`` is not a ``torch.Generator``, ``arch`` is not an
            :class:`Arch`, or the model holds a module type this initializer does not know.
    Source: open_lth ``models/registry.py`` (``kaiming_normal`` + ``batchnorm_init='uniform'``),
        with the draws seeded instead of taken from the global RNG.
    """
    _check_inputs(input_shape, num_classes, arch)
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    if generator.device.type != "cpu":
        raise ValueError(f"generator must be a CPU torch.Generator, got device {generator.device}")
    model = _allocate(construct(factory, input_shape, num_classes, arch))
    init_(model, generator)
    post_init = getattr(model, "post_init", None)
    if callable(post_init):
        with torch.no_grad():
            post_init()
    _check_layer_names(model)
    return model.train()


def _allocate(model: nn.Module) -> nn.Module:
    """``model.to_empty(device="cpu")`` without its first call's cost: ``to_empty`` allocates
    through ``torch.empty_like`` of meta tensors, whose Python decomposition imports sympy
    (0.25-0.6 s in each new process, e.g. every trial worker); ``torch.empty`` of each
    parameter's and buffer's shape and dtype does not. Zoo models share no parameters."""
    for module in model.modules():
        for name, param in list(module.named_parameters(recurse=False)):
            setattr(module, name, nn.Parameter(torch.empty(param.shape, dtype=param.dtype),
                                               requires_grad=param.requires_grad))
        for name, buffer in list(module.named_buffers(recurse=False)):
            setattr(module, name, torch.empty(buffer.shape, dtype=buffer.dtype))
    return model


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


def _check_inputs(input_shape: tuple, num_classes: int, arch: Arch) -> tuple[int, int, int]:
    shape = check_input_shape(input_shape)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be an int >= 1, got {num_classes!r}")
    if not isinstance(arch, Arch):
        raise TypeError(f"arch must be a trainer.models.Arch, got {type(arch).__name__}")
    return shape


def _check_layer_names(model: nn.Module) -> None:
    params = dict(model.named_parameters())
    for attr in ("first_layer", "output_layer"):
        name = getattr(model, attr, None)
        if not isinstance(name, str) or name not in params:
            raise ValueError(f"{type(model).__name__}.{attr} must name a parameter, got {name!r}")
