"""``lth``: the lottery ticket, θ0 ⊙ m trained with m fixed (IMP with reset to θ0)."""

from __future__ import annotations

from trainer.methods.base import Method
from trainer.methods.base import Sources
from trainer.methods.base import Start
from trainer.methods.base import always


def start(src: Sources) -> Start:
    """Survivors reset to their initial values θ0 (Frankle & Carbin 2019, §1 step 4)."""
    return Start(state=src.init, mask=src.mask)


METHOD = Method(name="lth", start=start, needs_trained_mask=always, needs_dense=False,
                source="Frankle & Carbin 2019, §1 and App. B strategy 1; METHODS.md 2.1")
