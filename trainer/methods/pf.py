"""``pf``: pruning & fine-tuning, θT ⊙ m trained again with the LR schedule restarted."""

from __future__ import annotations

from trainer.methods.base import Method
from trainer.methods.base import Sources
from trainer.methods.base import Start
from trainer.methods.base import always


def start(src: Sources) -> Start:
    """Mask applied to the *dense* trained weights θT (Liu et al. 2021, §3 and §5).

    The branch trains for the same number of epochs as a ticket, with a fresh optimizer and
    the full LR schedule ("LR rewinding"), so P&F and the ticket cost the same epochs.
    """
    return Start(state=src.dense_final, mask=src.mask)


METHOD = Method(name="pf", start=start, needs_trained_mask=always, needs_dense=True,
                source="Liu et al. 2021 (arXiv 2102.11068), §3 and §5; METHODS.md 2.2",
                pf_pairs=True)
