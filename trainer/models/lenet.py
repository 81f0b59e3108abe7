"""LeNet-300-100: the fully connected network of the lottery ticket hypothesis paper."""

from __future__ import annotations

import torch
from torch import nn

from trainer.models import base


class LeNet(nn.Module):
    """Fully connected network (ReLU by default) on the flattened input.

    Layers are ``fc1`` (C*H*W -> h0), ``fc2`` (h0 -> h1) and the classifier ``fc3``
    (h1 -> num_classes), where (h0, h1) is ``hidden`` scaled by ``arch.width``; the activation
    ``act`` holds no parameters.

    Args:
        input_shape: (C, H, W) of one example.
        num_classes: Number of output logits.
        arch: Architecture options; ``width`` and ``activation`` apply.
        hidden: Widths of the two hidden layers at ``arch.width`` 1.
    Raises:
        ValueError: ``arch.skip_connections`` is set (only ResNets support it).

    Source: Frankle & Carbin 2019 (arXiv 1803.03635), Fig. 2 and App. G; open_lth
        ``models/mnist_lenet.py`` (``mnist_lenet_300_100``).
    """

    first_layer: str = "fc1.weight"
    output_layer: str = "fc3.weight"

    def __init__(
        self,
        input_shape: tuple[int, int, int],
        num_classes: int,
        arch: base.Arch = base.DEFAULT_ARCH,
        hidden: tuple[int, int] = (300, 100),
    ) -> None:
        super().__init__()
        base.reject_skip_connections(self, arch)
        c, h, w = input_shape
        h0, h1 = (base.scale_width(n, arch) for n in hidden)
        self.fc1 = nn.Linear(c * h * w, h0)
        self.fc2 = nn.Linear(h0, h1)
        self.fc3 = nn.Linear(h1, num_classes)
        self.act = base.activation_module(arch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map a batch to logits.

        Args:
            x: (B, C, H, W) float32.
        Returns:
            (B, num_classes) logits.
        """
        x = x.flatten(1)  # (B, C, H, W) -> (B, C*H*W)
        x = self.act(self.fc1(x))  # (B, 300) at width 1
        x = self.act(self.fc2(x))  # (B, 100) at width 1
        return self.fc3(x)  # (B, num_classes)


# Frankle & Carbin 2019, Fig. 2; open_lth mnist_lenet_300_100. 266,610 parameters on
# (1, 28, 28) with 10 classes at the default Arch. Called as
# lenet_300_100(input_shape, num_classes, generator, arch=Arch()); see base.instantiate.
lenet_300_100 = base.Builder(LeNet)
