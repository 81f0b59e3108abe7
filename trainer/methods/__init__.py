"""The method registry: the ``methods`` axis of a sweep (METHODS.md §1-2)."""

from __future__ import annotations

from trainer.hparams import PruneHparams
from trainer.methods import dense
from trainer.methods import lth
from trainer.methods import pf
from trainer.methods import random_pruning
from trainer.methods import random_reinit
from trainer.methods.base import Method
from trainer.methods.base import Sources
from trainer.methods.base import Start

METHODS: dict[str, Method] = {
    "dense": dense.METHOD,
    "lth": lth.METHOD,
    "random_reinit": random_reinit.METHOD,
    "random_pruning": random_pruning.METHOD,
    "pf": pf.METHOD,
}

__all__ = ["METHODS", "Method", "Sources", "Start", "get", "total_epochs"]


def get(name: str) -> Method:
    """The registered method ``name``.

    Raises:
        ValueError: unknown name.
    """
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; known: {sorted(METHODS)}")
    return METHODS[name]


def total_epochs(method: Method, mask_level: int, epochs: int, prune: PruneHparams) -> int:
    """All training epochs behind one row of ``method`` (the ``total_epochs`` column).

    Args:
        method: The method.
        mask_level: IMP pruning rounds behind the row's mask (0 for dense); a mask made
            from level L's trained weights has ``mask_level = L + 1``.
        epochs: Epochs of one training run.
        prune: The trunk's pruning hparams (the scope decides whether a random mask
            inherits trained weights' layer distribution).
    Returns:
        Epochs: the trunk levels that produced the mask (each ``epochs`` long, counting the
        dense level) plus the row's own training.
    """
    if method.start is None:
        return epochs
    behind = mask_level * epochs if method.needs_trained_mask(prune) else 0
    if method.needs_dense:
        behind = max(behind, epochs)
    return behind + epochs
