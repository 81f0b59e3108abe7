"""``rst``: Random Sparse Network Transformation (Bai et al. 2022, Dual LTH; METHODS.md 2.4).

A uniformly random layer-wise mask m on θ0 (``masks.random_prune``: every pruned layer loses
``min(ceil(s * N_l), N_l - 1)`` weights, so each keeps at least one; ``keep_dense`` layers
none). Then the transformation: SGD at ``rst.lr`` on the training set with an L2 penalty
½ λ w² on the to-be-masked weights only (applied as ``grad += λ ⊙ w``), λ raised every
``reg_interval`` iterations (after u raises: u · ``reg_step`` for ``schedule: x``, (u · step)²
or (u · step)³ for ``x^2`` / ``x^3``; the first raise comes before the first step) until it
passes ``reg_ceiling``, then held for ``stabilize_iterations``; the masked weights are then
zeroed and the standard training runs: ``training.epochs`` epochs under m, from the
transformed weights. ``rst_iter`` repeats pick-grow-stabilize ``cycles`` times (see
``rst_iter``); ``rst`` is its one-cycle case. ``total_epochs`` counts the transformation
(its passes over the training set at ``rst.batch_size``, rounded up) plus the final training.

Source: Bai et al. 2022 (arXiv 2203.04248) and their code ``yueb17/DLTH``
(``pruner/reg_pruner.py``: ``_greg_1``, ``_apply_reg``; ``pruner/reg_pruner_iterative.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from dataclasses import replace
from typing import Any

from trainer.hparams import steps_per_epoch
from trainer.methods.base import Method
from trainer.methods.base import Phase
from trainer.methods.base import Sources
from trainer.methods.base import Start
from trainer.methods.base import never

SCHEDULES = ("x", "x^2", "x^3")
BUDGETS = ("paper", "match_lth")
RESULT = "final.pt"


@dataclass(frozen=True, kw_only=True)
class RSTHparams:
    """The transformation's constants (``rst:`` in the spec); defaults are DLTH's code's.

    Attributes:
        lr: SGD learning rate of the transformation (``lr_prune``), constant.
        batch_size: Examples per transformation step (``batch_size_prune``).
        momentum: SGD momentum.
        weight_decay: SGD weight decay of the transformation (DLTH's ``--wd``).
        reg_step: λ increment (``reg_granularity_prune``).
        reg_interval: Iterations between increments (``update_reg_interval``).
        reg_ceiling: Growth stops once λ exceeds it (``reg_upper_limit``).
        stabilize_iterations: Iterations λ is then held (``stabilize_reg_interval``).
        schedule: λ after u increments: ``x`` = u·step, ``x^2`` = (u·step)², ``x^3`` = (u·step)³.
        cycles: Pick-grow-stabilize cycles of ``rst_iter`` (``num_cycles``); ``rst`` uses 1.
        budget: ``paper`` (the iterations above) or ``match_lth`` (every iteration count
            scaled so the transformation lasts as many epochs as the IMP levels behind
            ``lth``'s row at this sparsity: the row's total epochs equal lth's).
    Raises:
        ValueError: an unknown ``schedule`` or ``budget``, ``reg_step`` <= 0, or
            ``reg_interval`` / ``cycles`` < 1.
    """

    lr: float = 0.001
    batch_size: int = 64
    momentum: float = 0.9
    weight_decay: float = 5e-4
    reg_step: float = 1e-4
    reg_interval: int = 5
    reg_ceiling: float = 1.0
    stabilize_iterations: int = 40000
    schedule: str = "x"
    cycles: int = 5
    budget: str = "paper"

    def __post_init__(self) -> None:
        for name in ("lr", "momentum", "weight_decay", "reg_step", "reg_ceiling"):
            object.__setattr__(self, name, float(getattr(self, name)))
        if self.schedule not in SCHEDULES or self.budget not in BUDGETS:
            raise ValueError(f"rst schedule must be one of {SCHEDULES} and budget one of "
                             f"{BUDGETS}, got {self.schedule!r}, {self.budget!r}")
        if self.reg_step <= 0 or self.reg_interval < 1 or self.cycles < 1:
            raise ValueError("rst reg_step must be > 0, reg_interval and cycles >= 1")


def _grown(u: int, hp: RSTHparams) -> float:
    """λ after ``u`` increments."""
    power = SCHEDULES.index(hp.schedule) + 1
    return (u * hp.reg_step) ** power if power > 1 else u * hp.reg_step


def increments(hp: RSTHparams) -> int:
    """U: the number of increments at which λ first exceeds ``reg_ceiling``."""
    power = SCHEDULES.index(hp.schedule) + 1
    u = max(1, math.floor(hp.reg_ceiling ** (1 / power) / hp.reg_step))
    while u > 1 and _grown(u - 1, hp) > hp.reg_ceiling:
        u -= 1
    while _grown(u, hp) <= hp.reg_ceiling:
        u += 1
    return u


@dataclass(frozen=True)
class Schedule:
    """λ as a pure function of the iteration within a cycle (so resuming needs no λ state).

    Attributes:
        hp: The constants.
        scale: Multiplies the growth's iteration counts (1 for ``budget: paper``).
        length: Iterations of one cycle when a budget fixes it (the stabilization takes what
            the growth leaves), else None: growth + ``stabilize_iterations``.
    """

    hp: RSTHparams
    scale: float = 1.0
    length: int | None = None

    @property
    def growth_end(self) -> int:
        """First iteration with λ > ceiling: the U-th increment, at (U - 1) x interval."""
        return math.ceil((increments(self.hp) - 1) * self.hp.reg_interval * self.scale - 1e-9)

    @property
    def iterations(self) -> int:
        """Iterations of one cycle: the growth, then the stabilization."""
        if self.length is not None:
            return max(self.length, self.growth_end)
        return self.growth_end + self.hp.stabilize_iterations

    def lam(self, i: int) -> float:
        """λ at iteration ``i`` (0-based): increment u = floor(i / interval) + 1 happens
        before iteration i's step, as in DLTH's ``_greg_1``; held from ``growth_end`` on."""
        u = math.floor(i / (self.hp.reg_interval * self.scale) + 1e-9) + 1
        return _grown(min(u, increments(self.hp)), self.hp)


def cycle_sparsity(target: float, cycle: int, cycles: int) -> float:
    """Cumulative sparsity after ``cycle`` of ``cycles``: 1 - (1 - p_c)^c with the per-cycle
    rate p_c = 1 - (1 - target)^(1/cycles) (DLTH ``reg_pruner_iterative``; METHODS.md 2.4.5)."""
    p_c = 1.0 - (1.0 - target) ** (1.0 / cycles)
    return 1.0 - (1.0 - p_c) ** cycle


def start(src: Sources) -> Start:
    """θ0 under the final random mask, before the transformation (what RST starts from)."""
    from trainer.methods import rst_transform  # torch: the trial's, not the registry's

    return rst_transform.start(src)


def prepare(src: Sources, phase: Phase) -> Start:
    """The transformation (``trainer.methods.rst_transform.prepare``; see the module
    docstring); skip-if-done through ``phase.blobs``.

    Returns:
        Start(θ_transformed ⊙ m, m, extra_epochs = the transformation's passes over the data).
    """
    from trainer.methods import rst_transform

    return rst_transform.prepare(src, phase)


def steps_per_pass(n: int, hp: RSTHparams) -> int:
    """Iterations in one pass over ``n`` training examples at ``rst.batch_size``."""
    return steps_per_epoch(n, hp.batch_size)


def schedule_for(phase: Phase, hp: RSTHparams) -> Schedule:
    """The schedule of ``phase`` (see ``schedule``)."""
    n = len(phase.data.train_y)
    per_epoch = steps_per_epoch(n, phase.train.batch_size)
    return schedule(hp, n, phase.imp_rounds * phase.train.run_epochs(per_epoch))


def schedule(hp: RSTHparams, n_train: int, lth_epochs: float) -> Schedule:
    """The paper's schedule, or (``match_lth``) one fitted into lth's epochs.

    ``match_lth``: the cycles share ``lth_epochs`` passes over the ``n_train`` examples (the
    IMP levels behind lth's row); the growth is scaled by the same factor as the whole, and the
    stabilization takes the rest of each cycle.

    Args:
        hp: The transformation's hparams.
        n_train: Training examples (after the validation split).
        lth_epochs: Epochs of the IMP levels behind lth's row, trunk epochs at
            ``training.batch_size`` (fractional for runs given in iterations); the returned
            schedule counts iterations at ``rst.batch_size``.
    """
    paper = Schedule(hp)
    if hp.budget == "paper":
        return paper
    per_cycle = int(lth_epochs * steps_per_pass(n_train, hp)) // hp.cycles
    return Schedule(hp, scale=per_cycle / paper.iterations, length=per_cycle)


def prepare_epochs(hp: RSTHparams, n_train: int, lth_epochs: float) -> int:
    """Passes over the ``n_train`` training examples (after the validation split) the
    transformation takes at ``rst.batch_size``, rounded up (``total_epochs``' share);
    ``lth_epochs`` as in ``schedule``."""
    return passes(hp.cycles * schedule(hp, n_train, lth_epochs).iterations, n_train, hp)


def passes(iterations: int, n_train: int, hp: RSTHparams) -> int:
    """Transformation iterations as passes over the training set, rounded up."""
    return math.ceil(iterations / steps_per_pass(n_train, hp))


# The ``rst:`` group's key holding what ``rst_iter`` uses instead (``trainer.methods.rst_iter``).
ITERATIVE = "iterative"


def from_group(group: dict[str, Any], iterative: bool) -> RSTHparams:
    """The ``rst:`` group as hparams: its own values, and for ``rst_iter`` (``iterative``) the
    values of ``rst.iterative`` that are set in their place."""
    own = {k: v for k, v in group.items() if k != ITERATIVE}
    if iterative:
        own.update({k: v for k, v in (group.get(ITERATIVE) or {}).items() if v is not None})
    return RSTHparams(**own)


def configure(group: dict[str, Any]) -> list[RSTHparams]:
    """The ``rst:`` group (but its ``iterative`` overrides); ``rst`` is its one-cycle
    transformation."""
    return [replace(from_group(group, iterative=False), cycles=1)]


def rounds(hp: RSTHparams) -> int:
    return hp.cycles


METHOD = Method(name="rst", start=start, needs_trained_mask=never, needs_dense=False,
                mask="random", hparams=RSTHparams, prepare=prepare, group="rst",
                configure=configure,
                rounds=rounds, prepare_epochs=prepare_epochs,
                source="Bai et al. 2022 (Dual LTH, arXiv 2203.04248); yueb17/DLTH "
                       "pruner/reg_pruner.py; METHODS.md 2.4")

