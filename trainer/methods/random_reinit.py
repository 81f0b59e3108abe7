"""``random_reinit``: the IMP mask on a fresh initialization θ0' (Frankle & Carbin 2019, §2)."""

from __future__ import annotations

from trainer import seeding
from trainer.methods.base import Method
from trainer.methods.base import Sources
from trainer.methods.base import Start
from trainer.methods.base import always


def start(src: Sources) -> Start:
    """θ0' ~ Dθ drawn with the generator (seed, "reinit"), independent of θ0's (seed, "init")."""
    fresh = src.build_model(seeding.generator(src.seed, "reinit"))
    state = {k: v.detach().clone() for k, v in fresh.state_dict().items()}
    return Start(state=state, mask=src.mask)


METHOD = Method(name="random_reinit", start=start, needs_trained_mask=always,
                needs_dense=False,
                source="Frankle & Carbin 2019, §2 (random reinitialization); METHODS.md 2.1")
