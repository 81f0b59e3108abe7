"""The method registry: the ``methods`` axis of a sweep (METHODS.md §1-2)."""

from __future__ import annotations

import math
from typing import Any

from trainer import levels
from trainer.hparams import PruneHparams
from trainer.methods import dense
from trainer.methods import lth
from trainer.methods import lth_rewind
from trainer.methods import omp_lth
from trainer.methods import omp_pf
from trainer.methods import omp_random_reinit
from trainer.methods import pf
from trainer.methods import random_pruning
from trainer.methods import random_reinit
from trainer.methods import rst
from trainer.methods import rst_iter
from trainer.methods import sdt
from trainer.methods import transfer
from trainer.methods.base import Method
from trainer.methods.base import Phase
from trainer.methods.base import Sources
from trainer.methods.base import Start

METHODS: dict[str, Method] = {
    "dense": dense.METHOD,
    "lth": lth.METHOD,
    "random_reinit": random_reinit.METHOD,
    "random_pruning": random_pruning.METHOD,
    "pf": pf.METHOD,
    "omp_lth": omp_lth.METHOD,
    "omp_random_reinit": omp_random_reinit.METHOD,
    "omp_pf": omp_pf.METHOD,
    "rst": rst.METHOD,
    "rst_iter": rst_iter.METHOD,
    "sdt": sdt.METHOD,
    "transfer": transfer.METHOD,
    "lth_rewind": lth_rewind.METHOD,
}

# Mask producers (STYLE.md 2.7): the chain's IMP masks, θT pruned in one step, a random mask
# the method draws itself, no mask (a narrower dense network), or the IMP masks of the
# trunk's rewind walk (levels reset to θk).
PRODUCERS = ("imp", "one_shot", "random", "small_dense", "rewind")

__all__ = ["METHODS", "PRODUCERS", "Method", "Phase", "Sources", "Start", "get", "mask_level",
           "stages_behind", "total_epochs"]


def get(name: str) -> Method:
    """The registered method ``name``.

    Raises:
        ValueError: unknown name.
    """
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; known: {sorted(METHODS)}")
    return METHODS[name]


def mask_level(method: Method, target_sparsity: float, schedule: levels.Schedule,
               hparams: Any = None) -> int:
    """Pruning rounds behind a row's mask (the ``level`` column): the one rule for every method.

    Args:
        method: The method.
        target_sparsity: Requested sparsity, fraction in [0, 1).
        schedule: The trunk's IMP level schedule (``trainer.levels.level_schedule``).
        hparams: The method's own hparams, if it has any (``Method.configure``).
    Returns:
        0 for ``dense``, for sparsity 0 and for unmasked small-dense networks; 1 for one-shot
        masks; ``method.rounds(hparams)`` for random masks (RST's cycles; 1 for a random
        mask without ``rounds`` or hparams, e.g. a one-draw mask); for IMP masks
        (of the θ0 chain or a rewind walk) ``levels.mask_level`` (the IMP level, or one more
        for a shorter last round).
    """
    if method.start is None or target_sparsity == 0.0 or method.mask == "small_dense":
        return 0
    if method.mask == "one_shot":
        return 1
    if method.mask == "random":
        return method.rounds(hparams) if method.rounds and hparams is not None else 1
    return levels.mask_level(target_sparsity, schedule)


def stages_behind(method: Method, mask_level: int, prune: PruneHparams) -> tuple[int, ...]:
    """Trunk levels whose training a row of ``method`` stands on (not counting its own stage).

    Args:
        method: The method.
        mask_level: IMP pruning rounds behind the row's mask (0 for dense); a mask made
            from level L's trained weights has ``mask_level = L + 1``.
        prune: The trunk's pruning hparams (the scope decides whether a random mask
            inherits trained weights' layer distribution).
    Returns:
        Sorted levels: 0..``mask_level`` - 1 when the mask depends on trained weights, plus
        level 0 (the dense θT) when the start uses it; () for ``dense`` (its row *is* level 0).
    """
    if method.start is None:
        return ()
    behind = set(range(mask_level)) if method.needs_trained_mask(prune) else set()
    if method.needs_dense:
        behind.add(0)
    return tuple(sorted(behind))


def total_epochs(method: Method, mask_level: int, epochs: float, prune: PruneHparams,
                 rewound: float = 0.0) -> int:
    """All training epochs behind one row of ``method`` (the ``total_epochs`` column).

    Args:
        method: The method.
        mask_level: IMP pruning rounds behind the row's mask (see ``stages_behind``).
        epochs: Epochs of one training run (``TrainHparams.run_epochs``: fractional when the
            run is given in iterations).
        prune: The trunk's pruning hparams.
        rewound: For rewind-walk masks (``lth_rewind``): epochs before θk (k / steps per
            epoch), which its levels and its own stage skip.
    Returns:
        Epochs, rounded up: the trunk levels behind the row (``stages_behind``: the dense run
        ``epochs`` long, rewind-walk levels ``epochs - rewound``, θ0 levels ``epochs``) plus
        the row's own training.
    """
    short = epochs - rewound if method.mask == "rewind" else epochs
    behind = stages_behind(method, mask_level, prune)
    total = sum(epochs if level == 0 else short for level in behind) + short
    return math.ceil(total - 1e-9)
