"""``lth_rewind``: IMP with rewinding, θk ⊙ m trained from step k with m fixed.

Its masks come from a chain of their own (the trunk's *rewind walk*, ``trainer.chain``): level
L trains θk ⊙ m_L from step k to the end of the schedule (open_lth's ``train_start_step``: the
LR schedule and the data order continue from step k), and m_L prunes level L-1's trained
weights (level 0 is the trunk's dense run, shared with the θ0 chain). θk is the dense run's
weights after k steps: ``pruning.rewind`` as ``{epochs: e}`` (k = e x steps per epoch) or
``{iterations: k}``. The dense run stores θk (``level_0/rewind-step_<k>.pt``); a dense run
stored without it (an older sweep) is re-run for its first k steps, which gives the same
weights on the CPU (same seed, order and thread count). A rewind walk's level is a training
of ``training.epochs`` minus the rewound part; ``total_epochs`` counts the dense run and every
rewind level behind the row, rounded up to whole epochs.

Source: Frankle et al. 2020 (linear mode connectivity, rewinding); open_lth
``lottery/runner.py`` (``--rewinding_steps``); Liu et al. 2021 App. G; METHODS.md 2.1, 2.2
and §6 E4.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from trainer.methods.base import Method
from trainer.methods.base import Sources
from trainer.methods.base import Start
from trainer.methods.base import always


@dataclass(frozen=True, kw_only=True)
class RewindHparams:
    """The rewind point (``pruning.rewind``): exactly one of ``epochs`` or ``iterations``.

    ``epochs`` defaults to 1 (the spec's default, which content keys omit), so a rewind in
    steps is ``RewindHparams(epochs=None, iterations=k)``.

    Attributes:
        epochs: Rewind to the dense run's weights after this many epochs (None: use
            ``iterations``).
        iterations: Rewind to the weights after this many optimizer steps.
    Raises:
        ValueError: both or neither of ``epochs`` and ``iterations`` set, or one negative.
    """

    epochs: int | None = 1
    iterations: int | None = None

    def __post_init__(self) -> None:
        if (self.epochs is None) == (self.iterations is None):
            raise ValueError("rewind takes exactly one of epochs or iterations, got "
                             f"epochs={self.epochs}, iterations={self.iterations}")
        if (self.epochs or 0) < 0 or (self.iterations or 0) < 0:
            raise ValueError("rewind epochs and iterations must be >= 0")

    def steps(self, steps_per_epoch: int) -> int:
        """k in optimizer steps."""
        return self.iterations if self.epochs is None else self.epochs * steps_per_epoch

    @property
    def label(self) -> str:
        """``epochs_1`` / ``iterations_500``: the readable part of the walk's directory."""
        return f"epochs_{self.epochs}" if self.epochs is not None else \
            f"iterations_{self.iterations}"


def configure(group: dict[str, Any]) -> list[RewindHparams]:
    """The ``pruning:`` group's ``rewind``."""
    return [RewindHparams(**group["rewind"])]


def start(src: Sources) -> Start:
    """Survivors reset to θk, training from step k (Frankle et al. 2020).

    Raises:
        ValueError: ``src.rewound`` (θk) is missing.
    """
    if src.rewound is None:
        raise ValueError("lth_rewind needs θk (Sources.rewound)")
    return Start(state=src.rewound, mask=src.mask, start_step=src.rewind_step)


METHOD = Method(name="lth_rewind", start=start, needs_trained_mask=always, needs_dense=True,
                mask="rewind", hparams=RewindHparams, group="pruning", configure=configure,
                source="Frankle et al. 2020 (rewinding); open_lth lottery/runner.py; Liu et al. "
                       "2021 App. G; METHODS.md 2.1, 2.2, 6 (E4)")
