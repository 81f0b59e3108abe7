"""The in-memory dataset contract every loader returns."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

# (B, C, H, W) batch and a CPU generator -> augmented (B, C, H, W) batch, on the batch's device.
Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


@dataclass(frozen=True)
class InMemoryData:
    """A dataset held as tensors on the trial's device.

    Attributes:
        train_x: (N, C, H, W) float32, normalized.
        train_y: (N,) int64 class labels in [0, num_classes).
        test_x: (M, C, H, W) float32, normalized the same way.
        test_y: (M,) int64.
        num_classes: Number of classes.
        augment: Training-time augmentation applied per batch on the device (None = none).
            It takes a CPU ``torch.Generator`` so the same seed gives the same batch on any
            device.
        val_x: (V, C, H, W) float32 held out of the training set, or None (no split).
        val_y: (V,) int64, or None.
    """

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    augment: Augment | None = None
    val_x: torch.Tensor | None = None
    val_y: torch.Tensor | None = None

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one example."""
        c, h, w = self.train_x.shape[1:]
        return (int(c), int(h), int(w))
