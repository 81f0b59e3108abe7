"""IMP level arithmetic: which level a sparsity belongs to (torch-free, so the planner and
the CLI can use it without importing torch).

Sparsities are fractions of the prunable weights removed; ``rate`` is the fraction of the
*remaining* weights removed per level (Frankle & Carbin 2019, App. B; METHODS.md §1).
"""

from __future__ import annotations

import math

_TOL = 1e-9  # slack for float sparsities such as 1 - 0.8**3 == 0.48799999999999993
# A requested sparsity whose density is within 1 % (relative) of an IMP level's density *is*
# that level: specs write 0.59 for 1 - 0.8**4 = 0.5904 (density 0.41 vs 0.4096), and snapping
# avoids one extra training run per such point. 0.99 vs 0.9908 (density off by 8 %) is not.
DENSITY_RTOL = 0.01


def level_sparsity(rate: float, level: int) -> float:
    """Sparsity ``1 - (1 - rate) ** level`` after ``level`` IMP levels (0 = dense).

    ``rate`` is the fraction of the *remaining* weights removed per level; for rate 0.2 the
    levels 1, 2, 3, 4 give 0.2, 0.36, 0.488, 0.5904.

    Raises:
        ValueError: rate outside [0, 1) or level < 0.
    Source: Frankle & Carbin 2019, §1 and App. B; METHODS.md §1.
    """
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"pruning rate must be in [0, 1), got {rate}")
    if level < 0:
        raise ValueError(f"level must be >= 0, got {level}")
    return 1.0 - (1.0 - rate) ** level


def level_for(target_sparsity: float, rate: float) -> int:
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
    if not 0.0 < rate < 1.0:
        raise ValueError(f"pruning rate must be in (0, 1), got {rate}")
    # closed form, then nudged by at most a step to absorb float error in the logs
    level = max(0, math.floor(math.log1p(-target_sparsity) / math.log1p(-rate)))
    floor = (1.0 - target_sparsity) * (1.0 - DENSITY_RTOL) - _TOL
    while 1.0 - level_sparsity(rate, level + 1) >= floor:
        level += 1
    while level > 0 and 1.0 - level_sparsity(rate, level) < floor:
        level -= 1
    return level


def is_level_sparsity(target_sparsity: float, rate: float) -> bool:
    """Whether an IMP level's density is within ``DENSITY_RTOL`` of the target's.

    True for 0.36 and 0.59 at rate 0.2 (levels 2 and 4), false for 0.5 and 0.99.

    Raises:
        ValueError: target outside [0, 1) or rate outside (0, 1).
    """
    level = level_for(target_sparsity, rate)
    density = 1.0 - target_sparsity
    gap = abs(density - (1.0 - level_sparsity(rate, level)))
    return gap <= DENSITY_RTOL * density + _TOL


def mask_level(target_sparsity: float, rate: float) -> int:
    """IMP pruning rounds behind the mask at ``target_sparsity``.

    ``level_for(target)`` when the target is an IMP level; one more when the mask comes from a
    shorter last round of that level's trained weights (see ``trainer.chain``).

    Raises:
        ValueError: target outside [0, 1) or rate outside (0, 1).
    """
    level = level_for(target_sparsity, rate)
    return level if is_level_sparsity(target_sparsity, rate) else level + 1
