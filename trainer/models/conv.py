"""Conv-2 / Conv-4 / Conv-6: the VGG-like CIFAR networks of the lottery ticket hypothesis paper.

open_lth has no such models (METHODS.md §0, note 4); they follow Frankle & Carbin's Fig. 2 and
App. H only. ``conv<n>_dropout`` are the dropout variants of §3 / App. H.5 (dropout 0.5). Where
the dropout goes is not stated in the text available here (METHODS.md §4 and §5.1 give only the
rate), so this is inferred: before each of the three fully connected layers (on the flattened
conv features and on both hidden FC activations), none on the convs.

The dropout masks do not come from the global torch RNG (which the trainer does not seed): each
training forward pass seeds them from the input batch and ``fc3.weight``
(:mod:`trainer.models.dropout`), so runs with dropout stay reproducible and resumable. Eval mode
is deterministic and equals the plain model with the same weights.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

from trainer.models import base
from trainer.models.dropout import KeyedDropout
from trainer.models.dropout import keyed_generator

# Channels of each 3x3 conv at Arch.width 1; a 2x2 max-pool follows every second conv (F&C Fig. 2).
CONV2_PLAN: tuple[int, ...] = (64, 64)
CONV4_PLAN: tuple[int, ...] = (64, 64, 128, 128)
CONV6_PLAN: tuple[int, ...] = (64, 64, 128, 128, 256, 256)

# Widths of the two hidden fully connected layers at Arch.width 1.
FC_WIDTHS: tuple[int, int] = (256, 256)

# Dropout rate of the dropout variants (F&C §3, App. H.5).
DROPOUT_P: float = 0.5


class ConvNet(nn.Module):
    """Pairs of 3x3 convs (padding 1), each pair followed by a 2x2 max-pool, then 3 FCs.

    With ``dropout`` > 0, a parameter-free :class:`KeyedDropout` (module ``drop``) acts on the
    input of each FC layer in training mode, its masks seeded by the input batch and
    ``fc3.weight`` (placement inferred, see the module docstring); names, shapes and the seeded
    init are the same as without it.

    Parameter names: ``convs.<i>.weight`` for the convs, then ``fc1``, ``fc2`` and the
    classifier ``fc3``. A pool is skipped once a spatial side is 1, so 8x8 inputs work; the
    input size of ``fc1`` is derived from ``input_shape``. Conv channels and the hidden FC
    widths (:data:`FC_WIDTHS`) scale with ``arch.width``; the activation is the parameter-free
    module ``act`` made from ``arch`` (ReLU by default).

    Args:
        plan: Output channels of each conv at width 1, an even number of entries.
        input_shape: (C, H, W) of one example.
        num_classes: Number of output logits.
        arch: Architecture options; ``width`` and ``activation`` apply.
        dropout: Dropout probability in [0, 1) before each FC layer; 0 (default) adds none.
    Raises:
        ValueError: ``plan`` is empty or odd, ``dropout`` is outside [0, 1), or
            ``arch.skip_connections`` is set (only ResNets support it).

    Source: Frankle & Carbin 2019 (arXiv 1803.03635), Fig. 2 and App. H (Conv-2: 4.3M weights,
        Conv-4: 2.4M, Conv-6: 1.7M on CIFAR-10); dropout: §3 and App. H.5.
    """

    first_layer: str = "convs.0.weight"
    output_layer: str = "fc3.weight"

    def __init__(
        self,
        plan: tuple[int, ...],
        input_shape: tuple[int, int, int],
        num_classes: int,
        arch: base.Arch = base.DEFAULT_ARCH,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if not plan or len(plan) % 2:
            raise ValueError(f"conv plan must have an even, non-zero length, got {plan!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        base.reject_skip_connections(self, arch)
        channels, height, width = input_shape
        convs = []
        pool_after = []
        for i, planned in enumerate(plan):
            out_channels = base.scale_width(planned, arch)
            convs.append(nn.Conv2d(channels, out_channels, kernel_size=3, padding=1))
            channels = out_channels
            pool = i % 2 == 1 and base.can_pool(height, width)
            if pool:
                height, width = height // 2, width // 2
            pool_after.append(pool)
        self.convs = nn.ModuleList(convs)
        self.pool_after: tuple[bool, ...] = tuple(pool_after)
        h0, h1 = (base.scale_width(n, arch) for n in FC_WIDTHS)
        self.fc1 = nn.Linear(channels * height * width, h0)
        self.fc2 = nn.Linear(h0, h1)
        self.fc3 = nn.Linear(h1, num_classes)
        self.act = base.activation_module(arch)
        # No module at all for the plain models (their repr and state are as before).
        self.drop = KeyedDropout(dropout) if dropout > 0 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map a batch to logits.

        Args:
            x: (B, C, H, W) float32.
        Returns:
            (B, num_classes) logits.
        """
        gen = None
        if self.drop is not None and self.training:
            gen = keyed_generator(x, self.fc3.weight)  # the masks' only source of randomness
        for conv, pool in zip(self.convs, self.pool_after, strict=True):
            x = self.act(conv(x))
            if pool:
                x = F.max_pool2d(x, kernel_size=2, stride=2)  # (B, C', H, W) -> (B, C', H/2, W/2)
        x = x.flatten(1)  # (B, C', H', W') -> (B, C'*H'*W')
        x = self.act(self.fc1(self._dropped(x, gen)))  # (B, 256) at width 1
        x = self.act(self.fc2(self._dropped(x, gen)))  # (B, 256) at width 1
        return self.fc3(self._dropped(x, gen))  # (B, num_classes)

    def _dropped(self, x: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
        """Apply ``drop`` to (B, F) features if the model has dropout, else return them."""
        return x if self.drop is None else self.drop(x, gen)


def _builder(plan: tuple[int, ...], dropout: float = 0.0) -> base.Builder:
    """A :class:`base.Builder` for a ConvNet with conv ``plan`` (see ``trainer.models.build``)."""
    if dropout == 0.0:  # the plain models' partial, exactly as before
        return base.Builder(functools.partial(ConvNet, plan))
    return base.Builder(functools.partial(ConvNet, plan, dropout=dropout))


# Frankle & Carbin 2019, Fig. 2. Conv-2: [conv 64, conv 64, pool], FC 256, 256, classes.
conv2 = _builder(CONV2_PLAN)
# Conv-4: Conv-2's convs plus [conv 128, conv 128, pool], then the same FCs.
conv4 = _builder(CONV4_PLAN)
# Conv-6: Conv-4's convs plus [conv 256, conv 256, pool], then the same FCs.
conv6 = _builder(CONV6_PLAN)
# Dropout variants (F&C §3, App. H.5): the same layers and parameters (4,300,992 / 2,425,024 /
# 2,261,184 weights on CIFAR-10), dropout 0.5 before fc1, fc2 and fc3 in training mode.
conv2_dropout = _builder(CONV2_PLAN, DROPOUT_P)
conv4_dropout = _builder(CONV4_PLAN, DROPOUT_P)
conv6_dropout = _builder(CONV6_PLAN, DROPOUT_P)
