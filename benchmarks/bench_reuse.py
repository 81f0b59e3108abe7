"""Epochs a sweep trains vs a naive run of each grid point on its own.

A sweep shares every trunk (dense run and IMP levels) between the grid points that stand on it;
the naive baseline runs each point alone: each ``lth`` / ``lth_rewind`` / ``random_reinit`` /
``random_pruning`` / ``pf`` point walks its own IMP chain up to its level, each one-shot point
its own dense pretraining, each ``dense`` point its dense run. Both counts come from the plan
(``Plan.epochs`` per job), so this needs no training.

Usage, from the repository root:
``python -m benchmarks.bench_reuse [SPEC ...]`` (default: every spec under sweeps/configs/).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from sweeps.plan import make_plan
from sweeps.spec import load
from trainer import methods

CONFIGS = Path(__file__).resolve().parents[1] / "sweeps" / "configs"


def naive_epochs(plan) -> int:
    """Epochs of running every grid point alone (its own trunk walk, no sharing)."""
    total = 0
    for chain in plan.chains:
        per_run = plan.epochs(chain) / (chain.levels + 1) if not chain.rewind else \
            plan.epochs(chain) / (chain.levels + 1 + chain.rewind.levels)
        for point in chain.all_points:
            level = _level_of(point.target_sparsity, chain.trunk)
            total += math.ceil(per_run * (level + 1))
    for branch in plan.branches:
        method = methods.get(branch.point.method)
        behind = methods.stages_behind(method, max(0, _level(plan, branch)),
                                       branch.trunk.prune)
        per_run = plan.epochs(plan.chain_of(branch)) / (plan.chain_of(branch).levels + 1)
        total += plan.epochs(branch) + math.ceil(per_run * len(behind))
    return total


def _level(plan, branch) -> int:
    return _level_of(branch.point.target_sparsity, branch.trunk)


def _level_of(sparsity: float, trunk) -> int:
    """IMP rounds behind a mask at ``sparsity`` (0 for the dense point)."""
    from trainer import levels
    from trainer.levels import level_schedule

    return levels.mask_level(sparsity, level_schedule(trunk)) if sparsity > 0 else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("specs", nargs="*", type=Path)
    args = parser.parse_args()
    specs = args.specs or sorted(p for p in CONFIGS.glob("*.yaml"))
    print(f"{'spec':45s} {'points':>7s} {'sweep epochs':>13s} {'naive epochs':>13s} "
          f"{'saved':>6s}")
    for path in specs:
        spec = load(path)
        if spec.search is not None:
            continue
        plan = make_plan(spec)
        shared = plan.total_epochs
        naive = naive_epochs(plan)
        print(f"{path.stem:45s} {len(plan.points):7d} {shared:13d} {naive:13d} "
              f"{1 - shared / naive:6.0%}")


if __name__ == "__main__":
    main()
