"""Helpers of the planner tests (``test_plan_axes``, ``test_plan_rewind``): a small spec on
digits and the jobs of a plan."""

from __future__ import annotations

from typing import Any

from sweeps.plan import Plan
from sweeps.spec import SweepSpec
from sweeps.spec import parse
from trainer.jobs import BranchJob
from trainer.jobs import ChainJob


def small_spec(**overrides: Any) -> SweepSpec:
    """One lr (0.1), one seed, 3 epochs, on digits; ``overrides`` replace top-level keys."""
    return parse({"name": "t", "lrs": [0.1], "seeds": [0], "training": {"epochs": 3},
                  **overrides})


def only_chain(plan: Plan) -> ChainJob:
    (chain,) = plan.chains
    return chain


def branches(plan: Plan, method: str, s: float | None = None) -> list[BranchJob]:
    """The plan's branches of ``method`` (at target sparsity ``s`` when given)."""
    return [b for b in plan.branches if b.point.method == method
            and (s is None or b.point.target_sparsity == s)]
