"""``omp_lth``: LT-OMP, the one-shot magnitude mask m_O of the dense θT on θ0 (θ0 ⊙ m_O).

m_O prunes the trained dense weights θT (level 0 of the trunk) straight to the target sparsity
in one step, with the trunk's ``pruning.scope`` and ``keep_dense`` (the chain stores it); the
start weights are those of ``lth``. One training run of ``training.epochs`` after the mask;
``total_epochs`` = the dense run + this run. ``level`` is 1 (one pruning round).
"""

from __future__ import annotations

from trainer.methods import lth
from trainer.methods.base import Method
from trainer.methods.base import always

METHOD = Method(name="omp_lth", start=lth.start, needs_trained_mask=always,
                needs_dense=False, mask="one_shot",
                source="Ma et al. 2021 (arXiv 2107.00166) §2.1, Table 1 (LT-OMP); "
                       "METHODS.md 2.3")
