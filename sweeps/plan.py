"""Sweep spec -> trials: one chain trial per trunk replicate, one branch trial per other point.

Trials of the same (model, dataset, lr, seed) share one trunk: the chain trial trains the dense
network and walks the IMP levels (open_lth's levels), writing the ``dense`` row and the ``lth``
rows whose sparsity is an IMP level; every other grid point is a branch trial that reuses the
trunk's stored θ0, θT and mask. Nothing is trained twice.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from itertools import product
from typing import Any

import pandas as pd

from sweeps.spec import SweepSpec
from sweeps.store import content_key
from trainer import data as datasets
from trainer import levels
from trainer import methods
from trainer.jobs import BranchJob
from trainer.jobs import ChainJob
from trainer.jobs import Point
from trainer.jobs import Target
from trainer.jobs import Trunk
from trainer.jobs import curves_part


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
        """Training epochs the job runs (its compute budget), if nothing is stored yet.

        A branch of a method with a phase of its own (RST's transformation) counts that
        phase's passes over the training set too.
        """
        per_run = job.trunk.train.epochs
        if isinstance(job, ChainJob):
            return (job.levels + 1) * per_run
        method = methods.get(job.point.method)
        if method.prepare_epochs is None:
            return per_run
        data = job.trunk.data
        n_train = (data.train_subset or datasets.get(data.name).sizes[0]) - data.validation
        rounds = levels.mask_level(job.point.target_sparsity, job.trunk.prune.rate)
        hp = method.hparams(**job.method_hparams)
        return per_run + method.prepare_epochs(hp, n_train, rounds * per_run)

    @property
    def total_epochs(self) -> int:
        return sum(self.epochs(j) for j in (*self.chains, *self.branches))

    def chain_of(self, branch: BranchJob) -> ChainJob:
        return next(c for c in self.chains if c.trunk == branch.trunk)

    def tickets(self, method: str, target_sparsity: float, seed: int, lr: float | None = None,
                ) -> list[tuple[Trunk, Point, str, str]]:
        """(trunk, point, mask blob, stage dir) of every grid point matching, for ``lottery
        export``; the stage dir is "" for points a chain trains.

        Floats match within a relative 1e-9 (so 0.3 finds 0.1 + 0.2); ``lr`` None matches all.
        """
        jobs = [(c.trunk, p, mask_blob(p.target_sparsity), "") for c in self.chains
                for p in c.points] + \
            [(b.trunk, b.point, b.mask_blob, b.stage_dir) for b in self.branches]
        return [job for job in jobs
                if job[1].method == method and job[0].seed == seed
                and math.isclose(job[1].target_sparsity, target_sparsity, rel_tol=1e-9)
                and (lr is None or math.isclose(job[0].train.lr, lr, rel_tol=1e-9))]


def trunk_key(trunk: Trunk) -> str:
    """Content key of a trunk: model, data, training and pruning hparams (not the seed).

    ``data.root`` and ``data.download`` say where the files are, not what they are, so they
    are left out: moving a dataset does not relabel (or retrain) any result.
    """
    data = dataclasses.replace(trunk.data, root="", download=False)
    return content_key("imp_chain", {"model": trunk.model, "data": data,
                                     "train": trunk.train, "prune": trunk.prune})


def point_key(trunk: Trunk, method: str, target_sparsity: float, hparams: Any = None) -> str:
    """The ``config_hash`` of a grid point (its trunk, replicate, method and sparsity, and the
    method's own hparams when it has any: their non-default fields)."""
    payload = {"trunk": trunk_key(trunk), "seed": trunk.seed,
               "target_sparsity": float(target_sparsity)}
    if hparams is not None:
        payload["hparams"] = hparams
    return content_key(method, payload)


def mask_blob(target_sparsity: float, producer: str = "imp") -> str:
    """Blob of the stored mask at ``target_sparsity`` inside a trunk's artifact directory.

    Named by content key (0.9 and 0.9000001 never share a mask), with a readable prefix:
    ``masks/sparsity_<s>-<key>.pt`` for IMP masks, ``masks/one_shot-sparsity_<s>-<key>.pt``
    for one-shot masks of θT.
    """
    key = content_key(f"{producer}_mask", {"target_sparsity": float(target_sparsity)})
    prefix = "" if producer == "imp" else f"{producer}-"
    return f"masks/{prefix}sparsity_{target_sparsity:g}-{key}.pt"


def stage_dir(point: Point, mask_level: int) -> str:
    """Directory of a branch's training stage inside its trunk's artifact directory.

    ``level_<L>/...`` under the IMP level its mask stands on, ``one_shot/...`` for a one-shot
    mask, ``random/...`` for a mask the method draws; named by the point's content key.
    """
    producer = methods.get(point.method).mask
    parent = producer if producer != "imp" else f"level_{mask_level}"
    return f"{parent}/{point.method}-sparsity_{point.target_sparsity:g}-{point.config_hash}"


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


def _level_targets(targets: tuple[float, ...], rate: float, deepest: int) -> tuple[float, ...]:
    """The ``target_sparsity`` label of each chain level's curves rows (see ``ChainJob``)."""
    labels = []
    for level in range(deepest + 1):
        on_level = [s for s in targets if levels.is_level_sparsity(s, rate)
                    and levels.level_for(s, rate) == level]
        labels.append(on_level[0] if on_level and level else
                      round(levels.level_sparsity(rate, level), 12))
    return tuple(labels)


def _point(trunk: Trunk, method: str, s: float, own: str, chain_id: str,
           hparams: Any = None) -> Point:
    """A grid point whose own stage writes curves part ``own``; trunk parts named by chain."""
    m = methods.get(method)
    behind = methods.stages_behind(m, methods.mask_level(m, s, trunk.prune, hparams),
                                   trunk.prune)
    return Point(method=method, target_sparsity=s,
                 config_hash=point_key(trunk, method, s, hparams),
                 curves=(*(curves_part(chain_id, level) for level in behind), own))


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
    producers = sorted({methods.get(m).mask for m in sparse} - {"random"})  # chains store these
    rate = spec.pruning.rate
    chains, branches = [], []
    for trunk, key in _trunks(spec):
        chain_id = f"chain-{_label(trunk)}-{key[:8]}"
        points = [_point(trunk, "dense", 0.0, curves_part(chain_id, 0), chain_id)] \
            if "dense" in spec.methods else []
        for method, s in product(sparse, targets):
            m = methods.get(method)
            level = methods.mask_level(m, s, trunk.prune)
            if method == "lth" and levels.is_level_sparsity(s, rate):
                points.append(_point(trunk, method, s, curves_part(chain_id, level), chain_id))
                continue
            hp = spec.method_hparams(method)
            key = point_key(trunk, method, s, hp)
            trial_id = f"{method}-{_label(trunk)}-s{s:g}-{key[:8]}"
            point = _point(trunk, method, s, curves_part(trial_id), chain_id, hp)
            branches.append(BranchJob(
                sweep=spec.name, code_version=code_version, trunk=trunk, point=point,
                trial_id=trial_id, mask_blob=mask_blob(s, m.mask) if m.mask != "random" else "",
                stage_dir=stage_dir(point, level),
                method_hparams={} if hp is None else dataclasses.asdict(hp)))
        imp = targets if "imp" in producers else ()
        deepest = max((levels.level_for(s, rate) for s in imp), default=0)
        chains.append(ChainJob(sweep=spec.name, trial_id=chain_id, code_version=code_version,
                               trunk=trunk, levels=deepest,
                               targets=tuple(Target(sparsity=s, mask_blob=mask_blob(s, p),
                                                    producer=p)
                                             for p in producers for s in targets),
                               level_targets=_level_targets(imp, rate, deepest),
                               points=tuple(points)))
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
