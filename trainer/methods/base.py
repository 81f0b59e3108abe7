"""The method contract: how a branch builds its start weights and mask from its trunk."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from trainer.hparams import PruneHparams

State = dict[str, torch.Tensor]


@dataclass(frozen=True)
class Sources:
    """What a trunk provides to a branch at one target sparsity (all tensors on CPU).

    Attributes:
        init: θ0, the trunk's initial state_dict.
        dense_final: θT, the dense network after ``epochs`` of training (level 0).
        mask: m_s, the method's mask at the target sparsity (the IMP mask, or the one-shot
            mask of θT, as ``Method.mask`` says): bool tensors for every prunable layer,
            shaped like the layer's weight (layers kept dense are all True).
        build_model: Builds a freshly initialized network from a CPU generator.
        seed: Replicate seed.
        target_sparsity: The requested sparsity (fraction).
    """

    init: State
    dense_final: State
    mask: State
    build_model: Callable[[torch.Generator], nn.Module]
    seed: int
    target_sparsity: float


@dataclass(frozen=True)
class Start:
    """Initial weights and the mask held fixed during the branch's training."""

    state: State
    mask: State


@dataclass(frozen=True)
class Method:
    """One entry of ``trainer.methods.METHODS``.

    Attributes:
        name: Public key (YAML, rows, reports).
        start: Builds the branch start from its trunk; None for ``dense``, whose row is the
            trunk's level 0.
        needs_trained_mask: Whether the mask depends on trained trunk weights (then its
            row's ``total_epochs`` includes the trunk epochs that produced the mask).
        needs_dense: Whether the start uses θT (then at least one dense training is behind).
        source: Paper and section defining the method.
        mask: Which mask producer gives ``Sources.mask``: ``imp`` (the chain's IMP mask at
            the target) or ``one_shot`` (θT magnitude-pruned straight to the target).
    """

    name: str
    start: Callable[[Sources], Start] | None
    needs_trained_mask: Callable[[PruneHparams], bool]
    needs_dense: bool
    source: str
    mask: str = "imp"


def always(_: PruneHparams) -> bool:
    return True
