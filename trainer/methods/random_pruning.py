"""``random_pruning``: a random mask with the IMP mask's per-layer sparsity, on θ0."""

from __future__ import annotations

from trainer import seeding
from trainer.hparams import PruneHparams
from trainer.methods.base import Method
from trainer.methods.base import Sources
from trainer.methods.base import Start


def start(src: Sources) -> Start:
    """Per-layer shuffle of m_s (open_lth ``randomly_prune``, strategy 'layerwise').

    The mask is drawn with the generator (seed, "random_mask", target sparsity), so every
    target sparsity gets its own independent draw.
    """
    from trainer import masks  # torch: imported by the trial, not by the registry

    gen = seeding.generator(src.seed, "random_mask", f"{float(src.target_sparsity):.6f}")
    return Start(state=src.init, mask=masks.random_mask_like(src.mask, gen))


def _needs_trained_mask(prune: PruneHparams) -> bool:
    # Layer-wise masks have fixed per-layer counts; global ones inherit the IMP distribution.
    return prune.scope == "global"


METHOD = Method(name="random_pruning", start=start, needs_trained_mask=_needs_trained_mask,
                needs_dense=False,
                source="Frankle & Carbin 2019, App. E (random sparsity); open_lth "
                       "lottery/branch/randomly_prune.py; METHODS.md 2.1")
