"""IMP level arithmetic: which level a sparsity belongs to (torch-free, so the planner and
the CLI can use it without importing torch).

Sparsities are fractions of the pruned weights removed; a rate is the fraction of a layer's
*remaining* weights removed per level (Frankle & Carbin 2019, App. B; METHODS.md §1). One rate
for every layer gives sparsity ``1 - (1 - rate) ** L`` after L levels; per-layer rates
(F&C's Conv-2/4/6: 10 % of the convs, 20 % of the FC layers, 10 % of the output layer per
level) give a ``Schedule`` whose pooled sparsity depends on the layer sizes.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from trainer import data as datasets

if TYPE_CHECKING:
    from trainer.jobs import Trunk

_TOL = 1e-9  # slack for float sparsities such as 1 - 0.8**3 == 0.48799999999999993
# A requested sparsity whose density is within 1 % (relative) of an IMP level's density *is*
# that level: specs write 0.59 for 1 - 0.8**4 = 0.5904 (density 0.41 vs 0.4096), and snapping
# avoids one extra training run per such point. 0.99 vs 0.9908 (density off by 8 %) is not.
DENSITY_RTOL = 0.01
_MAX_LEVELS = 100_000


@dataclass(frozen=True)
class Schedule:
    """The density of the pruned weights after each IMP level.

    Attributes:
        layers: (weights N_l, rate r_l) of every pruned layer: layer l keeps
            ``(1 - r_l) ** L`` of its weights after L levels, so the pooled density is
            ``sum N_l (1 - r_l) ** L / sum N_l``. One entry ``(1, rate)`` is the uniform rate.
    Raises:
        ValueError: no layers, a rate outside (0, 1) or a size < 1.
    Source: Frankle & Carbin 2019, App. B and Fig. 2 (per-layer rates of Conv-2/4/6).
    """

    layers: tuple[tuple[int, float], ...]

    def __post_init__(self) -> None:
        if not self.layers:
            raise ValueError("a pruning schedule needs at least one pruned layer")
        for n, rate in self.layers:
            if n < 1 or not 0.0 < rate < 1.0:
                raise ValueError(f"pruned layer needs size >= 1 and rate in (0, 1), got "
                                 f"({n}, {rate})")

    @staticmethod
    def uniform(rate: float) -> Schedule:
        """Every layer at ``rate`` per level (the sizes then do not matter)."""
        return Schedule(((1, float(rate)),))

    @property
    def is_uniform(self) -> bool:
        return len({rate for _, rate in self.layers}) == 1

    def density(self, level: int, fraction: float = 0.0) -> float:
        """Pooled density after ``level`` levels and ``fraction`` of one more (each layer
        then keeps ``(1 - r_l) ** level * (1 - fraction * r_l)``)."""
        total = sum(n for n, _ in self.layers)
        return sum(n * (1.0 - r) ** level * (1.0 - fraction * r) for n, r in self.layers) / total

    def last_round(self, target_sparsity: float, level: int) -> float:
        """The fraction f in [0, 1] of level ``level + 1``'s per-layer rates that brings the
        pooled sparsity from level ``level``'s to ``target_sparsity`` (density is linear in
        f, so this is exact): the shorter last round of an off-level target."""
        here, step = self.density(level), self.density(level) - self.density(level, 1.0)
        return min(1.0, max(0.0, (here - (1.0 - target_sparsity)) / step))


def layer_sparsity(rate: float, level: int, fraction: float = 0.0) -> float:
    """Sparsity of one layer pruned at ``rate`` per level after ``level`` levels and
    ``fraction`` of one more (``Schedule.last_round``)."""
    return 1.0 - (1.0 - rate) ** level * (1.0 - fraction * rate)


def _schedule(rate: float | Schedule) -> Schedule:
    if isinstance(rate, Schedule):
        return rate
    if not 0.0 < rate < 1.0:
        raise ValueError(f"pruning rate must be in (0, 1), got {rate}")
    return Schedule.uniform(rate)


def level_sparsity(rate: float | Schedule, level: int) -> float:
    """Sparsity ``1 - (1 - rate) ** level`` after ``level`` IMP levels (0 = dense).

    ``rate`` is the fraction of the *remaining* weights removed per level; for rate 0.2 the
    levels 1, 2, 3, 4 give 0.2, 0.36, 0.488, 0.5904. A ``Schedule`` gives the pooled sparsity
    of its layers.

    Raises:
        ValueError: rate outside [0, 1) or level < 0.
    Source: Frankle & Carbin 2019, §1 and App. B; METHODS.md §1.
    """
    if level < 0:
        raise ValueError(f"level must be >= 0, got {level}")
    if not isinstance(rate, Schedule):
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"pruning rate must be in [0, 1), got {rate}")
        return 1.0 - (1.0 - rate) ** level
    return 1.0 - rate.density(level)


@functools.lru_cache(maxsize=65536)  # a plan asks it for every (point, level) pair
def level_for(target_sparsity: float, rate: float | Schedule) -> int:
    """Largest IMP level L >= 0 whose density is at least the target's, up to ``DENSITY_RTOL``.

    That is ``1 - level_sparsity(rate, L) >= (1 - target) * (1 - DENSITY_RTOL)``. E.g.
    ``level_for(0.5, 0.2) == 3`` (sparsity 0.488), ``level_for(0.36, 0.2) == 2`` and
    ``level_for(0.59, 0.2) == 4`` (0.5904: density 0.4096 vs 0.41).

    Raises:
        ValueError: target outside [0, 1) or rate outside (0, 1).
    Source: Frankle & Carbin 2019, App. B; METHODS.md §1.
    """
    if not 0.0 <= target_sparsity < 1.0:
        raise ValueError(f"target sparsity must be in [0, 1), got {target_sparsity}")
    schedule = _schedule(rate)
    floor = (1.0 - target_sparsity) * (1.0 - DENSITY_RTOL) - _TOL
    if not schedule.is_uniform:  # pooled density is monotone in the level: walk it
        level = 0
        while level < _MAX_LEVELS and schedule.density(level + 1) >= floor:
            level += 1
        return level
    rate = schedule.layers[0][1]
    # closed form, then nudged by at most a step to absorb float error in the logs
    level = max(0, math.floor(math.log1p(-target_sparsity) / math.log1p(-rate)))
    while 1.0 - level_sparsity(rate, level + 1) >= floor:
        level += 1
    while level > 0 and 1.0 - level_sparsity(rate, level) < floor:
        level -= 1
    return level


def is_level_sparsity(target_sparsity: float, rate: float | Schedule) -> bool:
    """Whether an IMP level's density is within ``DENSITY_RTOL`` of the target's.

    True for 0.36 and 0.59 at rate 0.2 (levels 2 and 4), false for 0.5 and 0.99.

    Raises:
        ValueError: target outside [0, 1) or rate outside (0, 1).
    """
    level = level_for(target_sparsity, rate)
    density = 1.0 - target_sparsity
    gap = abs(density - (1.0 - level_sparsity(rate, level)))
    return gap <= DENSITY_RTOL * density + _TOL


def mask_level(target_sparsity: float, rate: float | Schedule) -> int:
    """IMP pruning rounds behind the mask at ``target_sparsity``.

    ``level_for(target)`` when the target is an IMP level; one more when the mask comes from a
    shorter last round of that level's trained weights (see ``trainer.chain``).

    Raises:
        ValueError: target outside [0, 1) or rate outside (0, 1).
    """
    level = level_for(target_sparsity, rate)
    return level if is_level_sparsity(target_sparsity, rate) else level + 1


def level_schedule(trunk: Trunk) -> Schedule:
    """The IMP level schedule of ``trunk``: its one ``pruning.rate``, or with
    ``pruning.rates`` the (size, rate) of every pruned layer of its model on its data
    (``trainer.masks.layer_schedule``, which needs torch; one rate needs none).

    Raises:
        ValueError: unknown model or dataset, or every layer kept dense.
    Source: Frankle & Carbin 2019, App. B; METHODS.md §1.
    """
    if not trunk.prune.rates:
        return Schedule.uniform(trunk.prune.rate)
    from trainer import masks

    return masks.layer_schedule(trunk.model, datasets.input_shape(trunk.data),
                                datasets.num_classes(trunk.data), trunk.prune)
