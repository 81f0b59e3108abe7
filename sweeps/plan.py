"""Sweep spec -> trials: one chain trial per trunk replicate, one branch trial per other point.

Trials of the same (model, dataset, lr, seed) share one trunk: the chain trial trains the dense
network and walks the IMP levels (open_lth's levels), writing the ``dense`` row and the ``lth``
rows whose sparsity is an IMP level; every other grid point is a branch trial that reuses the
trunk's stored θ0, θT and mask. Nothing is trained twice.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from itertools import product

import pandas as pd

from sweeps.spec import SweepSpec
from sweeps.store import content_key
from trainer import masks
from trainer.jobs import BranchJob
from trainer.jobs import ChainJob
from trainer.jobs import Point
from trainer.jobs import Trunk


@dataclass(frozen=True)
class Plan:
    """All trials of a sweep, in two phases (chains first, then branches).

    Attributes:
        spec: The validated spec.
        chains: One job per trunk replicate.
        branches: One job per grid point not produced by a chain.
    """

    spec: SweepSpec
    chains: tuple[ChainJob, ...]
    branches: tuple[BranchJob, ...]

    @property
    def points(self) -> list[Point]:
        return [p for c in self.chains for p in c.points] + [b.point for b in self.branches]

    def epochs(self, job: ChainJob | BranchJob) -> int:
        """Training epochs the job runs (its compute budget), if nothing is stored yet."""
        per_run = job.trunk.train.epochs
        return (job.levels + 1) * per_run if isinstance(job, ChainJob) else per_run

    @property
    def total_epochs(self) -> int:
        return sum(self.epochs(j) for j in (*self.chains, *self.branches))

    def chain_of(self, branch: BranchJob) -> ChainJob:
        return next(c for c in self.chains if c.trunk == branch.trunk)


def trunk_key(trunk: Trunk) -> str:
    """Content key of a trunk: model, data, training and pruning hparams (not the seed).

    ``data.root`` and ``data.download`` say where the files are, not what they are, so they
    are left out: moving a dataset does not relabel (or retrain) any result.
    """
    data = dataclasses.replace(trunk.data, root="", download=False)
    return content_key("imp_chain", {"model": trunk.model, "data": data,
                                     "train": trunk.train, "prune": trunk.prune})


def point_key(trunk: Trunk, method: str, target_sparsity: float) -> str:
    """The ``config_hash`` of a grid point (its trunk, replicate, method and sparsity)."""
    return content_key(method, {"trunk": trunk_key(trunk), "seed": trunk.seed,
                                "target_sparsity": float(target_sparsity)})


def _trunks(spec: SweepSpec) -> list[tuple[Trunk, str]]:
    """Every trunk replicate of the grid with its content key."""
    out = []
    for model, dataset, lr, seed in product(spec.models, spec.datasets, spec.lrs, spec.seeds):
        trunk = Trunk(model=model, data=spec.data_hparams(dataset), train=spec.train_hparams(lr),
                      prune=spec.prune_hparams(), seed=seed, artifact_dir="")
        key = trunk_key(trunk)
        out.append((Trunk(model=model, data=trunk.data, train=trunk.train, prune=trunk.prune,
                          seed=seed, artifact_dir=f"{model}-{dataset}-{key}/replicate_{seed}"),
                    key))
    return out


def _label(trunk: Trunk) -> str:
    return f"{trunk.model}-{trunk.data.name}-lr{trunk.train.lr:g}-seed{trunk.seed}"


def make_plan(spec: SweepSpec, code_version: str = "") -> Plan:
    """Expand the grid into chain and branch jobs.

    Args:
        spec: A validated spec.
        code_version: Written into every row.
    Returns:
        The plan; its points cover the grid exactly once (``dense`` once per trunk at
        target sparsity 0).
    """
    sparse = [m for m in spec.methods if m != "dense"]
    targets = tuple(sorted(spec.sparsities)) if sparse else ()
    rate = spec.pruning.rate
    chains, branches = [], []
    for trunk, key in _trunks(spec):
        points = [Point(method="dense", target_sparsity=0.0,
                        config_hash=point_key(trunk, "dense", 0.0))] \
            if "dense" in spec.methods else []
        for method, s in product(sparse, targets):
            point = Point(method=method, target_sparsity=s,
                          config_hash=point_key(trunk, method, s))
            if method == "lth" and masks.is_level_sparsity(s, rate):
                points.append(point)
                continue
            branches.append(BranchJob(sweep=spec.name, code_version=code_version, trunk=trunk,
                                      point=point, trial_id=f"{method}-{_label(trunk)}-s{s:g}-"
                                                            f"{point.config_hash[:8]}"))
        levels = max((masks.level_for(s, rate) for s in targets), default=0)
        chains.append(ChainJob(sweep=spec.name, trial_id=f"chain-{_label(trunk)}-{key[:8]}",
                               code_version=code_version, trunk=trunk, levels=levels,
                               targets=targets, points=tuple(points)))
    return Plan(spec=spec, chains=tuple(chains), branches=tuple(branches))


def describe(plan: Plan) -> pd.DataFrame:
    """One row per trial: id, phase, methods, lr, seed, sparsities, levels and epochs."""
    rows = []
    for job in plan.chains:
        rows.append({"trial_id": job.trial_id, "phase": "chain",
                     "methods": ",".join(sorted({p.method for p in job.points})) or "-",
                     "lr": job.trunk.train.lr, "seed": job.trunk.seed,
                     "sparsities": ",".join(f"{p.target_sparsity:g}" for p in job.points
                                            if p.method != "dense") or "-",
                     "levels": job.levels, "epochs": plan.epochs(job)})
    for job in plan.branches:
        rows.append({"trial_id": job.trial_id, "phase": "branch", "methods": job.point.method,
                     "lr": job.trunk.train.lr, "seed": job.trunk.seed,
                     "sparsities": f"{job.point.target_sparsity:g}", "levels": "-",
                     "epochs": plan.epochs(job)})
    return pd.DataFrame(rows)
