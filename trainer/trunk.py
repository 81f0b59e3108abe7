"""Loading a trunk's shared pieces: data, θ0, the model builder, stored masks."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from trainer import checkpoint
from trainer import data as datasets
from trainer import masks
from trainer import metrics
from trainer import models
from trainer import seeding
from trainer.checkpoint import Blobs
from trainer.data.base import InMemoryData
from trainer.jobs import Trunk

State = dict[str, torch.Tensor]
RP_DENSE_PS = (0.1, 0.2, 0.3, 0.4, 0.5)


@dataclass
class TrunkContext:
    """Everything the chain and its branches share, loaded once per trial.

    Attributes:
        trunk: The trunk description.
        blobs: The trunk's artifact directory.
        data: The dataset on ``device``.
        device: Where training runs.
        model: A network of the trunk's architecture on ``device`` (weights are scratch).
        init: θ0 state_dict on CPU.
        names: Prunable parameter names.
        exclude: Names kept dense (``pruning.keep_dense`` resolved).
    """

    trunk: Trunk
    blobs: Blobs
    data: InMemoryData
    device: torch.device
    model: nn.Module
    init: State
    names: list[str]
    exclude: frozenset[str]

    def build(self, generator: torch.Generator) -> nn.Module:
        """A fresh CPU network of the trunk's architecture initialized from ``generator``."""
        return models.build(self.trunk.model, self.data.input_shape, self.data.num_classes,
                            generator)

    def prunable(self, state: State) -> State:
        """The prunable weights of ``state`` (CPU)."""
        return {n: state[n].detach().cpu() for n in self.names}

    def to_device(self, mask: State) -> State:
        return {n: m.to(self.device) for n, m in mask.items()}


def open_trunk(trunk: Trunk, artifacts: Blobs, device: torch.device) -> TrunkContext:
    """Load the data and θ0 (``init.pt``; built from the seed and stored on first use).

    Raises:
        ValueError: unknown model/dataset or a bad ``keep_dense`` entry.
        FileNotFoundError: the dataset is not on disk and downloading is off.
    """
    data = datasets.load(trunk.data, device)
    blobs = artifacts.child(trunk.artifact_dir)
    net = models.build(trunk.model, data.input_shape, data.num_classes,
                       seeding.generator(trunk.seed, "init"))
    # θ0 is a pure function of the seed, so a missing or corrupt init.pt is rebuilt, not fatal
    stored = checkpoint.load_or_none(blobs, "init.pt", ("state",))
    if stored is None:
        init = {k: v.detach().clone() for k, v in net.state_dict().items()}
        checkpoint.save(blobs, "init.pt", {"state": init})
    else:
        # the stored θ0 wins: every level and branch of a trunk starts from the same weights
        init = stored["state"]
        net.load_state_dict(init)
    names = masks.prunable_names(net)
    exclude = masks.resolve_keep_dense(net, trunk.prune.keep_dense)
    return TrunkContext(trunk=trunk, blobs=blobs, data=data, device=device,
                        model=net.to(device), init=init, names=names, exclude=exclude)


def dense_correlation(ctx: TrunkContext, dense_final: State) -> tuple[dict[float, float],
                                                                       dict[str, float]]:
    """R_p(θ0, θT) pooled for p in 0.1..0.5, and per layer at p = 0.2.

    Source: Liu et al. 2021 (arXiv 2102.11068), §4.2 Eq. 1 and Fig. 4.
    """
    a, b = ctx.prunable(ctx.init), ctx.prunable(dense_final)
    pooled = {p: metrics.weight_correlation(a, b, p) for p in RP_DENSE_PS}
    return pooled, metrics.layer_weight_correlation(a, b, 0.2)

