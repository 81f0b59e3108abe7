"""The method contract: how a branch builds its start weights and mask from its trunk."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING
from typing import Any

from trainer.hparams import DataHparams
from trainer.hparams import PruneHparams
from trainer.hparams import TrainHparams

if TYPE_CHECKING:  # the registry is read without torch (planning); trials import it
    import torch
    from torch import nn

    from trainer.checkpoint import Blobs
    from trainer.data.base import InMemoryData

State = dict[str, "torch.Tensor"]


@dataclass(frozen=True)
class Sources:
    """What a trunk provides to a branch at one target sparsity (all tensors on CPU).

    Attributes:
        init: θ0, the trunk's initial state_dict.
        dense_final: θT, the dense network after ``epochs`` of training (level 0).
        mask: m_s, the method's mask at the target sparsity (the IMP mask, the rewind
            walk's IMP mask or the one-shot mask of θT, as ``Method.mask`` says; all True
            for ``random`` producers, which draw their own): bool tensors for every prunable
            layer, shaped like the layer's weight (layers kept dense are all True).
        build_model: ``(generator, arch=Arch()) -> network``: a freshly initialized CPU
            network of the trunk's architecture for the data the branch trains on (its class
            count: the target's, for transfer).
        seed: Replicate seed.
        target_sparsity: The requested sparsity (fraction).
        exclude: Layers kept dense (``pruning.keep_dense`` resolved), for methods that draw
            their own mask.
        hparams: The method's own hparams (``Method.configure``), or None.
        scope: The trunk's ``pruning.scope`` (how its masks count kept weights).
        count_weights: ``arch -> prunable weights`` of the branch's network with those
            options, without building it (``trainer.models.count_weights``).
        rewound: θk, the dense run's weights after ``rewind_step`` steps (``lth_rewind``
            only; else None).
        rewind_step: k, in steps (0 when not rewinding).
    """

    init: State
    dense_final: State
    mask: State
    build_model: Callable[..., nn.Module]
    seed: int
    target_sparsity: float
    exclude: frozenset[str] = frozenset()
    hparams: Any = None
    scope: str = "layerwise"
    count_weights: Callable[[Any], int] | None = None
    rewound: State | None = None
    rewind_step: int = 0


@dataclass(frozen=True)
class Start:
    """Initial weights and the mask held fixed during the branch's training.

    Attributes:
        state: The start state_dict (masked entries are zeroed before training).
        mask: Bool masks by layer.
        extra_epochs: Epochs (passes over the training set) the method trained before the
            branch's own stage, e.g. RST's transformation; added to ``total_epochs``.
        width: Width multiplier of the network trained (``trainer.models.Arch``; sdt's).
        sparsity: The row's ``sparsity`` when no mask measures it (sdt: 1 - its weights /
            the full network's); None = measured from ``mask``.
        frozen: Parameter names not trained (transfer's frozen feature layers).
        start_step: First step of the schedule to train (rewinding to θk trains from k).
    """

    state: State
    mask: State
    extra_epochs: int = 0
    width: float = 1.0
    sparsity: float | None = None
    frozen: frozenset[str] = frozenset()
    start_step: int = 0


@dataclass(frozen=True)
class Phase:
    """What a method that trains before the branch's stage (``Method.prepare``) is given.

    Attributes:
        model: A network of the trunk's architecture on ``data``'s device (scratch weights).
        data: The trial's dataset.
        train: The trunk's training hparams (the stage that follows uses them).
        exclude: Layers kept dense (``pruning.keep_dense`` resolved).
        blobs: A directory of its own for checkpoints and its result (skip-if-done).
        hparams: The method's hparams (``Method.configure``'s output).
        imp_rounds: IMP rounds behind ``lth``'s mask at this sparsity (for budgets that
            match lth's epochs).
    """

    model: nn.Module
    data: InMemoryData
    train: TrainHparams
    exclude: frozenset[str]
    blobs: Blobs
    hparams: Any
    imp_rounds: int


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
        mask: Which mask producer gives ``Sources.mask`` (``trainer.methods.PRODUCERS``):
            ``imp`` (the chain's IMP mask at the target), ``one_shot`` (θT magnitude-pruned
            straight to the target), ``rewind`` (the IMP mask of the chain's rewind walk,
            for ``lth_rewind``), ``small_dense`` (no mask: ``sdt``'s narrower network) or
            ``random`` (the method draws its own mask; nothing is stored by the chain).
        prepare: For methods that train before their stage (RST): ``(sources, phase) ->
            Start``, resumable through ``phase.blobs``; None for the others, whose start is
            ``start(sources)``.
        hparams: The frozen dataclass of its own hparams (jobs carry them as a dict), or None.
        group: The spec group its hparams come from (``rst``, ``transfer``, ``pruning``).
        configure: For methods with hparams of their own: maps the spec group (its values as
            a dict) to the list of this method's hparams variants, each a grid point of its
            own; the variant enters the point's content key.
        rounds: Pruning rounds behind its mask (the ``level`` column) for ``random`` masks,
            from its hparams.
        prepare_epochs: ``(hparams, training examples, lth's IMP epochs) -> passes over the
            data`` that ``prepare`` will train (the budget ``lottery plan`` shows).
        pf_pairs: Whether its rows carry Liu et al.'s P&F mechanism pairs (it trains θT ⊙ m).
        retarget: ``(hparams, trunk data) -> data the branch trains on`` (transfer's target);
            None = the trunk's data.
        columns: ``hparams -> {column: value}`` of method-specific ``runs`` columns (e.g.
            ``transfer_init``); None = none.
    """

    name: str
    start: Callable[[Sources], Start] | None
    needs_trained_mask: Callable[[PruneHparams], bool]
    needs_dense: bool
    source: str
    mask: str = "imp"
    prepare: Callable[[Sources, Phase], Start] | None = None
    hparams: type | None = None
    group: str = ""
    configure: Callable[[dict[str, Any]], list[Any]] | None = None
    rounds: Callable[[Any], int] | None = None
    prepare_epochs: Callable[[Any, int, int], int] | None = None
    pf_pairs: bool = False
    retarget: Callable[[Any, DataHparams], DataHparams] | None = None
    columns: Callable[[Any], dict[str, Any]] | None = None


def always(_: PruneHparams) -> bool:
    return True


def never(_: PruneHparams) -> bool:
    return False
