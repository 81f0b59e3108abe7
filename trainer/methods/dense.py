"""``dense``: the unpruned network trained from θ0 (level 0 of the trunk)."""

from __future__ import annotations

from trainer.methods.base import Method

METHOD = Method(name="dense", start=None, needs_trained_mask=lambda _: False,
                needs_dense=True,
                source="Frankle & Carbin 2019, §2 (the original network); METHODS.md 2.1")
