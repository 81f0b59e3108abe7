"""``rst_iter``: RST_Iter, the pick-grow-stabilize cycle of ``rst`` repeated ``rst.cycles`` times.

Cycle c (1-based) adds uniformly random picks among the kept weights until each pruned layer
is at the cumulative sparsity 1 - (1 - p_c)^c, p_c = 1 - (1 - s)^(1/cycles), resets λ (to its
first raise, as at the start) and the optimizer, and grows and stabilizes λ again on all
weights masked so far; only after the last cycle are they zeroed and the standard training
(``training.epochs`` under m) runs.
``level`` is the number of cycles; ``total_epochs`` counts every cycle's iterations.

Source: Bai et al. 2022 (Dual LTH); yueb17/DLTH ``pruner/reg_pruner_iterative.py``
(``--num_cycles``, ``iter_rand``); METHODS.md 2.4 item 5.
"""

from __future__ import annotations

from typing import Any

from trainer.methods import rst
from trainer.methods.base import Method
from trainer.methods.base import never


def configure(group: dict[str, Any]) -> list[rst.RSTHparams]:
    """``rst:`` as given, ``cycles`` cycles (5 by default, DLTH's README), with the values of
    ``rst.iterative`` that are set in place of the group's (DLTH's README runs RST_Iter with
    ``reg_interval`` 1 and ``stabilize_iterations`` 10,000)."""
    return [rst.from_group(group, iterative=True)]


METHOD = Method(name="rst_iter", start=rst.start, needs_trained_mask=never,
                needs_dense=False, mask="random", hparams=rst.RSTHparams, prepare=rst.prepare,
                group="rst",
                configure=configure, rounds=rst.rounds, prepare_epochs=rst.prepare_epochs,
                source="Bai et al. 2022 (Dual LTH); yueb17/DLTH "
                       "pruner/reg_pruner_iterative.py; METHODS.md 2.4")
