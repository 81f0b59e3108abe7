"""Dropout whose masks are a pure function of the batch and the weights, not of a global RNG.

``nn.Dropout`` draws its masks from the global torch RNG of the device, which the trainer never
seeds (``trainer/loop.py`` seeds only its own generators, from (replicate seed, role, epoch)),
so a run with it would be neither reproducible nor resumable bit for bit. Here each training
forward pass seeds a fresh generator from the bits of the model input and of a weight tensor.
The masks are then as random as a hash of those bits (they change with every batch and every
optimizer step), yet two equal models on equal inputs drop the same units, and a run restored
from a checkpoint draws exactly the masks of an uninterrupted one.
"""

from __future__ import annotations

import torch
from torch import nn

# Odd 64-bit constant (2^64 / golden ratio) mixing the keys' bit sums into one seed.
_MIX: int = 0x9E3779B97F4A7C15


def keyed_generator(*keys: torch.Tensor) -> torch.Generator:
    """A generator on ``keys[0]``'s device, seeded by the bits of ``keys``.

    Args:
        keys: Float tensors of any shape (e.g. the input batch and a weight); at least one.
    Returns:
        A ``torch.Generator`` seeded with a 63-bit hash of the keys' float32 bit patterns
        (sum of each key's bits as int32, mixed in order). One host sync per key.
    """
    seed = 0
    for key in keys:
        bits = key.detach().float().contiguous().view(torch.int32).sum(dtype=torch.int64)
        seed = (seed * _MIX + int(bits)) % 2**63
    return torch.Generator(device=keys[0].device).manual_seed(seed)


class KeyedDropout(nn.Module):
    """Inverted dropout (as ``nn.Dropout``) drawing its mask from a given generator.

    In training mode each element is zeroed with probability ``p`` and the rest are scaled by
    1 / (1 - p); in eval mode it is the identity. Parameter- and buffer-free.

    Args:
        p: Drop probability in (0, 1).
    Raises:
        ValueError: ``p`` is outside (0, 1).

    Source: Srivastava et al. 2014 (JMLR 15), §10 (inverted scaling as ``torch.nn.Dropout``).
    """

    def __init__(self, p: float) -> None:
        super().__init__()
        if not 0.0 < p < 1.0:
            raise ValueError(f"dropout p must be in (0, 1), got {p!r}")
        self.p = float(p)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Drop and rescale ``x`` (any shape) in training mode; identity in eval mode.

        Args:
            x: Activations of any shape.
            generator: Source of the mask, on ``x``'s device (see :func:`keyed_generator`);
                may be None in eval mode only.
        Returns:
            A tensor of ``x``'s shape.
        Raises:
            ValueError: ``generator`` is None in training mode.
        """
        if not self.training:
            return x
        if generator is None:
            raise ValueError("KeyedDropout needs a generator in training mode")
        keep = torch.empty_like(x).bernoulli_(1.0 - self.p, generator=generator)
        return x * keep / (1.0 - self.p)

    def extra_repr(self) -> str:
        """Show the drop probability in the module's repr."""
        return f"p={self.p}"
