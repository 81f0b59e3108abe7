"""``omp_random_reinit``: RR-OMP, m_O on a fresh init θ0' (θ0' ⊙ m_O, as ``random_reinit``).

m_O prunes the trained dense weights θT (level 0 of the trunk) straight to the target sparsity
in one step, with the trunk's ``pruning.scope`` and ``keep_dense`` (the chain stores it); the
start weights are those of ``random_reinit``. One training run of ``training.epochs`` after
the mask; ``total_epochs`` = the dense run + this run. ``level`` is 1 (one pruning round).
"""

from __future__ import annotations

from trainer.methods import random_reinit
from trainer.methods.base import Method
from trainer.methods.base import always

METHOD = Method(name="omp_random_reinit", start=random_reinit.start, needs_trained_mask=always,
                needs_dense=False, mask="one_shot",
                source="Ma et al. 2021 (arXiv 2107.00166) §2.1, Table 1 (RR-OMP); "
                       "METHODS.md 2.3")
