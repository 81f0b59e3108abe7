"""LeNet-300-100: the fully connected network of the lottery ticket hypothesis paper."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from trainer.models import base


class LeNet(nn.Module):
    """Fully connected ReLU network on the flattened input.

    Layers are ``fc1`` (C*H*W -> hidden[0]), ``fc2`` (hidden[0] -> hidden[1]) and the classifier
    ``fc3`` (hidden[1] -> num_classes).

    Args:
        input_shape: (C, H, W) of one example.
        num_classes: Number of output logits.
        hidden: Widths of the two hidden layers.

    Source: Frankle & Carbin 2019 (arXiv 1803.03635), Fig. 2 and App. G; open_lth
        ``models/mnist_lenet.py`` (``mnist_lenet_300_100``).
    """

    first_layer: str = "fc1.weight"
    output_layer: str = "fc3.weight"

    def __init__(
        self,
        input_shape: tuple[int, int, int],
        num_classes: int,
        hidden: tuple[int, int] = (300, 100),
    ) -> None:
        super().__init__()
        c, h, w = input_shape
        self.fc1 = nn.Linear(c * h * w, hidden[0])
        self.fc2 = nn.Linear(hidden[0], hidden[1])
        self.fc3 = nn.Linear(hidden[1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map a batch to logits.

        Args:
            x: (B, C, H, W) float32.
        Returns:
            (B, num_classes) logits.
        """
        x = x.flatten(1)  # (B, C, H, W) -> (B, C*H*W)
        x = F.relu(self.fc1(x))  # (B, 300)
        x = F.relu(self.fc2(x))  # (B, 100)
        return self.fc3(x)  # (B, num_classes)


def lenet_300_100(
    input_shape: tuple[int, int, int], num_classes: int, generator: torch.Generator
) -> nn.Module:
    """Build LeNet-300-100 (266,610 parameters on (1, 28, 28) with 10 classes).

    Args:
        input_shape: (C, H, W) of one example.
        num_classes: Number of output logits.
        generator: CPU generator that fully determines the initial weights.
    Returns:
        An initialized :class:`LeNet`.
    Raises:
        ValueError: invalid ``input_shape``, ``num_classes`` or generator device.
        TypeError: ``generator`` is not a ``torch.Generator``.
    Source: Frankle & Carbin 2019, Fig. 2; open_lth ``mnist_lenet_300_100``.
    """
    return base.instantiate(LeNet, input_shape, num_classes, generator)
