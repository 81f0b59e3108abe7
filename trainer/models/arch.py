"""Architecture options that vary a registered model without changing its key (no torch)."""

from __future__ import annotations

import dataclasses
import math

from trainer.hparams import ACTIVATIONS


@dataclasses.dataclass(frozen=True, kw_only=True)
class Arch:
    """Architecture options that do not change the registry key.

    Attributes:
        width: Multiplier (finite, > 0, stored as float) of every hidden width: LeNet units,
            conv channels, Conv-n FCs, ResNet stages, VGG convs. A width n becomes
            ``max(1, round(n * width))``; input channels and ``num_classes`` never scale.
        activation: ``relu``, ``swish`` (SiLU), ``mish`` or ``pswish`` (x * sigmoid(beta * x)).
        beta: The fixed beta of ``pswish``, finite and > 0; ignored by other activations.
        skip_connections: ToST's two 1x1 "jump" convs + BN in every ResNet BasicBlock; only
            ResNets have them (building another model with it raises ValueError).

    Raises:
        ValueError: a field is out of range or of the wrong type.

    Source: ToST (Jaiswal et al., ICML 2022; VITA-Group/ToST ``soft_activation/`` and
        ``skip_connection/models/resnet_modified.py``); METHODS.md §2.5.
    """

    width: float = 1.0
    activation: str = "relu"
    beta: float = 2.0
    skip_connections: bool = False

    def __post_init__(self) -> None:
        for field in ("width", "beta"):
            value = getattr(self, field)
            real = isinstance(value, (int, float)) and not isinstance(value, bool)
            if not real or not math.isfinite(value) or value <= 0:
                raise ValueError(f"Arch.{field} must be a finite number > 0, got {value!r}")
            object.__setattr__(self, field, float(value))  # so width=1 equals width=1.0
        if not isinstance(self.activation, str) or self.activation not in ACTIVATIONS:
            raise ValueError(
                f"Arch.activation must be one of {list(ACTIVATIONS)}, got {self.activation!r}"
            )
        if not isinstance(self.skip_connections, bool):
            raise ValueError(
                f"Arch.skip_connections must be a bool, got {self.skip_connections!r}"
            )


DEFAULT_ARCH = Arch()
