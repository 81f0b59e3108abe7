"""One Tune experiment per grid run: chains first, every branch released as soon as its inputs
exist.

A branch needs its trunk's dense run (level 0) and its mask: an IMP mask is stored when the
chain has trained level ``level_for(s)`` of its θ0 walk (of its rewind walk for
``lth_rewind``); one-shot, random and small-dense branches need level 0 only. A chain trial
reports every finished level (``trainer.chain.run_chain``'s ``on_level``), and
``ReleaseSearcher`` (a Tune ``Searcher``, RAY_FACTS.md §11) hands out a branch in the
controller step after its level arrives, so no slot idles while work is runnable. Runnable
branches go in blocks: (model, dataset, lr, sparsity) cell by cell, every arm and seed of a cell
together, so a half-done sweep already has comparable slices. A chain that fails blocks its
branches; the driver records them as failed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ray.tune.search import Searcher

from sweeps.plan import Plan
from trainer import levels
from trainer import methods
from trainer.jobs import REWIND
from trainer.jobs import THETA0
from trainer.jobs import BranchJob
from trainer.jobs import ChainJob
from trainer.jobs import to_dict
from trainer.levels import level_schedule


@dataclass(frozen=True)
class Need:
    """What a branch waits for: level ``level`` of walk ``walk`` of chain trial ``chain``."""

    chain: str
    walk: str
    level: int


def need(plan: Plan, branch: BranchJob) -> Need:
    """The chain level whose stored mask (and dense run) ``branch`` trains from."""
    chain = plan.chain_of(branch).trial_id
    method = methods.get(branch.point.method)
    s = branch.point.target_sparsity
    if method.mask in ("imp", "rewind") and s > 0:
        level = levels.level_for(s, level_schedule(branch.trunk))
        return Need(chain, REWIND if method.mask == "rewind" else THETA0, level)
    return Need(chain, THETA0, 0)


def block_key(branch: BranchJob) -> tuple:
    """Release order among runnable branches: cell (model, dataset, lr, sparsity), then arm
    and seed."""
    t = branch.trunk
    return (t.model, t.data.label, t.train.lr, branch.point.target_sparsity,
            branch.point.method, branch.point.recipe, t.seed, branch.trial_id)


class TableSearcher(Searcher):
    """A Tune ``Searcher`` whose state lives in the sweep's tables: its config comes from the
    spec (no Tune search space, metric or mode) and it saves nothing, since a re-run plans
    again from the committed rows."""

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict,
                              **spec: Any) -> bool:
        return True

    def save(self, checkpoint_path: str) -> None:
        pass

    def restore(self, checkpoint_path: str) -> None:
        pass


class ReleaseSearcher(TableSearcher):
    """Releases the pending chains, then each branch once its ``Need`` is met.

    Args:
        chains: Chain jobs to run, in plan order (released first).
        branches: Branch jobs to run.
        needs: Branch trial id -> its ``Need``.
        finished: Chain trial ids whose levels are all stored already (not pending).
        base: Config entries every trial gets (storage, sweep, cpus).
    Attributes:
        blocked: Branches never released because their chain failed.
    """

    def __init__(self, chains: list[ChainJob], branches: list[BranchJob],
                 needs: dict[str, Need], finished: set[str], base: dict[str, Any]) -> None:
        super().__init__()
        self._chains = list(chains)
        self._waiting = sorted(branches, key=block_key)
        self._needs, self._base = needs, base
        self._finished = set(finished)
        self._failed: set[str] = set()
        self._reached: dict[tuple[str, str], int] = {}
        self._jobs: dict[str, str] = {}  # Tune trial id -> job trial id
        self.blocked: list[BranchJob] = []

    def ready(self, branch: BranchJob) -> bool:
        """Whether the chain level ``branch`` needs is stored."""
        n = self._needs[branch.trial_id]
        return n.chain in self._finished or self._reached.get((n.chain, n.walk), -1) >= n.level

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        if self._chains:
            job: ChainJob | BranchJob = self._chains.pop(0)
        else:
            blocked = [b for b in self._waiting if self._needs[b.trial_id].chain in self._failed]
            self.blocked += blocked
            self._waiting = [b for b in self._waiting if b not in blocked]
            ready = next((b for b in self._waiting if self.ready(b)), None)
            if ready is None:
                return Searcher.FINISHED if not self._waiting else None
            self._waiting.remove(ready)
            job = ready
        self._jobs[trial_id] = job.trial_id
        return {**self._base, "job": to_dict(job)}

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if "level" in result:
            key = (self._jobs.get(trial_id, ""), str(result["walk"]))
            self._reached[key] = max(self._reached.get(key, -1), int(result["level"]))

    def on_trial_complete(self, trial_id: str, result: dict | None = None,
                          error: bool = False) -> None:
        job = self._jobs.get(trial_id, "")
        (self._failed if error else self._finished).add(job)
