"""``omp_pf``: one-shot P&F, m_O on the dense θT (θT ⊙ m_O), the LR schedule restarted.

m_O prunes the trained dense weights θT (level 0 of the trunk) straight to the target sparsity
in one step, with the trunk's ``pruning.scope`` and ``keep_dense`` (the chain stores it); the
start weights are those of ``pf``. One training run of ``training.epochs`` after the mask;
``total_epochs`` = the dense run + this run. ``level`` is 1 (one pruning round).
"""

from __future__ import annotations

from trainer.methods import pf
from trainer.methods.base import Method
from trainer.methods.base import always

METHOD = Method(name="omp_pf", start=pf.start, needs_trained_mask=always,
                needs_dense=True, mask="one_shot",
                source="Liu et al. 2021 (arXiv 2102.11068) §5 (one-shot masks); "
                       "Ma et al. 2021 (arXiv 2107.00166) §2.1 (OMP masks); METHODS.md 2.2, 2.3",
                pf_pairs=True)
