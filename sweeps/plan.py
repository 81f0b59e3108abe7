"""Sweep spec -> trials: one chain trial per trunk replicate, one branch trial per other point.

Trials of the same (model, dataset, lr, seed) share one trunk: the chain trial trains the dense
network and walks the IMP levels (open_lth's levels), writing the ``dense`` row and the ``lth``
rows whose sparsity is an IMP level, then (with ``lth_rewind``) the rewind walk; every other
grid point (other methods, recipes, transfer arms) is a branch trial that reuses the trunk's
stored θ0, θT, θk and masks. Nothing is trained twice. Every key and artifact name comes from
``sweeps.keys``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Collection
from dataclasses import dataclass
from itertools import product
from typing import TYPE_CHECKING
from typing import Any

from sweeps.keys import mask_blob
from sweeps.keys import point_key
from sweeps.keys import rewind_root
from sweeps.keys import stage_dir
from sweeps.keys import trunk_key
from sweeps.spec import BASE_RECIPE
from sweeps.spec import SweepSpec
from trainer import data as datasets
from trainer import levels
from trainer import methods
from trainer.hparams import RecipeHparams
from trainer.hparams import steps_per_epoch
from trainer.jobs import BranchJob
from trainer.jobs import ChainJob
from trainer.jobs import Point
from trainer.jobs import RewindWalk
from trainer.jobs import Target
from trainer.jobs import Trunk
from trainer.jobs import curves_part
from trainer.levels import level_schedule

if TYPE_CHECKING:
    import pandas as pd


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
        return [p for c in self.chains for p in c.all_points] + \
            [b.point for b in self.branches]

    def epochs(self, job: ChainJob | BranchJob, stored: Collection[str] = frozenset()) -> int:
        """Training epochs the job runs (its compute budget).

        A branch of a method with a phase of its own (RST's transformation) counts that
        phase's passes over the training set too. A chain's levels whose curves part is in
        ``stored`` (committed keys, ``sweeps.integrity``) are loaded on a re-run, not trained,
        and not counted.
        """
        train, data = job.trunk.train, job.trunk.data
        method = None if isinstance(job, ChainJob) else methods.get(job.point.method)
        if method is not None and method.retarget is not None:  # trains on another dataset
            data = method.retarget(method.hparams(**job.method_hparams), data)
        n_train = (data.train_subset or datasets.sizes(data)[0]) - data.validation
        per_run = train.run_epochs(steps_per_epoch(n_train, train.batch_size))
        if method is None:
            own = sum(part not in stored for part in job.stage_parts[:job.levels + 1])
            walk = job.rewind
            walked = sum(part not in stored for part in job.stage_parts[job.levels + 1:])
            rewound = 0 if walk is None else walked * (per_run - _rewound(
                walk.hparams, n_train, train.batch_size))
            return math.ceil(own * per_run + rewound - 1e-9)
        if method.mask == "rewind":
            return math.ceil(per_run - _rewound(job.method_hparams, n_train,
                                                train.batch_size) - 1e-9)
        if method.prepare_epochs is None:
            return math.ceil(per_run - 1e-9)
        rounds = levels.mask_level(job.point.target_sparsity, level_schedule(job.trunk))
        hp = method.hparams(**job.method_hparams)
        return math.ceil(per_run - 1e-9) + method.prepare_epochs(hp, n_train, rounds * per_run)

    @property
    def total_epochs(self) -> int:
        """The plan's budget in epochs: ``epochs`` summed over every job (each rounded up,
        RST's transformation passes included; shared stages once, unlike the rows'
        ``total_epochs``, which count every stage behind each row)."""
        return sum(self.epochs(j) for j in (*self.chains, *self.branches))

    def chain_of(self, branch: BranchJob) -> ChainJob:
        return next(c for c in self.chains if c.trunk == branch.trunk)

    def tickets(self, method: str, target_sparsity: float, seed: int, lr: float | None = None,
                where: dict[str, str] | None = None, **hparams: Any) -> list[BranchJob]:
        """One job per distinct ticket matching, for ``lottery export``: branches as planned,
        and jobs standing for the points a chain trains (with their chain's mask blob).

        Points that differ only by recipe share their ticket (a recipe changes retraining,
        not the mask or the start), so each ticket is listed once. Floats match within a
        relative 1e-9 (so 0.3 finds 0.1 + 0.2); ``lr`` None matches all; ``where`` keeps the
        trunks of a ``model`` and a ``dataset`` (as the spec writes it); ``hparams`` keep the
        variants whose method hparams have those values (e.g. ``init="late_reset"``).
        """
        where = where or {}
        jobs = [BranchJob(sweep=c.sweep, trial_id=c.trial_id, code_version=c.code_version,
                          trunk=c.trunk, point=p, mask_blob=blob, stage_dir="",
                          method_hparams=hp)
                for c in self.chains
                for p, blob, hp in [(p, mask_blob(p.target_sparsity), {}) for p in c.points] +
                [(p, f"{c.rewind.root}/{mask_blob(p.target_sparsity)}", c.rewind.hparams)
                 for p in (c.rewind.points if c.rewind else ())]] + list(self.branches)
        found: dict[tuple, BranchJob] = {}
        for job in jobs:
            trunk, point = job.trunk, job.point
            if point.method == method and trunk.seed == seed \
                    and math.isclose(point.target_sparsity, target_sparsity, rel_tol=1e-9) \
                    and (lr is None or math.isclose(trunk.train.lr, lr, rel_tol=1e-9)) \
                    and all(job.method_hparams.get(k) == v for k, v in hparams.items()) \
                    and where.get("model", trunk.model) == trunk.model \
                    and where.get("dataset", trunk.data.label) == trunk.data.label:
                key = (trunk, point.target_sparsity, job.mask_blob, job.prepare_dir,
                       tuple(sorted(job.method_hparams.items())))
                found.setdefault(key, job)
        return list(found.values())

def _rewound(hparams: dict, n_train: int, batch_size: int) -> float:
    """Epochs before θk of a rewind point given as a dict (``RewindHparams``)."""
    hp = methods.get("lth_rewind").hparams(**hparams)
    per_epoch = steps_per_epoch(n_train, batch_size)
    return hp.steps(per_epoch) / per_epoch


def _trunks(spec: SweepSpec) -> list[tuple[Trunk, str]]:
    """Every trunk replicate of the grid with its content key."""
    out = []
    for model, dataset, lr, seed in product(spec.models, spec.datasets, spec.lrs, spec.seeds):
        trunk = Trunk(model=model, data=spec.data_hparams(dataset), train=spec.train_hparams(lr),
                      prune=spec.prune_hparams(), seed=seed, artifact_dir="")
        key = trunk_key(trunk)
        out.append((dataclasses.replace(
            trunk, artifact_dir=f"{model}-{trunk.data.slug}-{key}/replicate_{seed}"), key))
    return out


def _label(trunk: Trunk) -> str:
    return f"{trunk.model}-{trunk.data.slug}-lr{trunk.train.lr:g}-seed{trunk.seed}"


def _level_targets(targets: tuple[float, ...], rate: levels.Schedule,
                   deepest: int) -> tuple[float, ...]:
    """The ``target_sparsity`` label of each chain level's curves rows (see ``ChainJob``)."""
    labels = []
    for level in range(deepest + 1):
        on_level = [s for s in targets if levels.is_level_sparsity(s, rate)
                    and levels.level_for(s, rate) == level]
        labels.append(on_level[0] if on_level and level else
                      round(levels.level_sparsity(rate, level), 12))
    return tuple(labels)


def _point(trunk: Trunk, method: str, s: float, own: str, parts: tuple[str, str],
           hparams: Any = None,
           recipe: tuple[str, RecipeHparams] = (BASE_RECIPE, RecipeHparams())) -> Point:
    """A grid point whose own stage writes curves part ``own``; ``parts`` names the curves
    parts of trunk levels: (the θ0 chain's, the rewind walk's), by level."""
    m = methods.get(method)
    behind = methods.stages_behind(m, methods.mask_level(m, s, level_schedule(trunk), hparams),
                                   trunk.prune)
    walk = parts[1] if m.mask == "rewind" else parts[0]
    return Point(method=method, target_sparsity=s,
                 config_hash=point_key(trunk, method, s, hparams, recipe),
                 curves=(*(curves_part(parts[0] if level == 0 else walk, level)
                           for level in behind), own),
                 recipe=recipe[0])


@dataclass(frozen=True)
class _Trunk:
    """Names of one trunk's chain trial and its rewind walk while planning."""

    trunk: Trunk
    chain_id: str
    rewind_root: str = ""
    rewind_part: str = ""

    @property
    def parts(self) -> tuple[str, str]:
        return self.chain_id, self.rewind_part


def _mask_blob(t: _Trunk, s: float, producer: str) -> str:
    """Where a branch finds its mask: the chain's blob, or the rewind walk's."""
    if producer in ("random", "small_dense"):
        return ""
    if producer == "rewind":
        return f"{t.rewind_root}/{mask_blob(s)}"
    return mask_blob(s, producer)


def _branches(spec: SweepSpec, t: _Trunk, method: str, s: float, code_version: str
              ) -> tuple[list[Point], list[BranchJob]]:
    """The points of ``method`` at sparsity ``s`` on trunk ``t``: one per hparams variant and
    recipe. Points a chain trains (plain ``lth`` / ``lth_rewind`` on an IMP level) come back
    as points, the others as branch jobs."""
    m, trunk = methods.get(method), t.trunk
    chain_points, jobs = [], []
    for hp in spec.method_variants(method):
        if m.retarget is not None and m.retarget(hp, trunk.data).label == trunk.data.label:
            continue  # a transfer "to" the trunk's own dataset is not a transfer
        level = methods.mask_level(m, s, level_schedule(trunk), hp)
        root = t.rewind_root if m.mask == "rewind" else ""
        ticket = stage_dir(method, s, point_key(trunk, method, s, hp), level, root)
        for recipe in spec.recipe_hparams().items():
            if method in ("lth", "lth_rewind") and recipe[0] == BASE_RECIPE and \
                    levels.is_level_sparsity(s, level_schedule(trunk)):
                part = t.rewind_part if method == "lth_rewind" else t.chain_id
                chain_points.append(_point(trunk, method, s, curves_part(part, level),
                                           t.parts, hp))
                continue
            key = point_key(trunk, method, s, hp, recipe)
            named = "" if recipe[0] == BASE_RECIPE else f"-{recipe[0]}"
            trial_id = f"{method}-{_label(trunk)}-s{s:g}{named}-{key[:8]}"
            point = _point(trunk, method, s, curves_part(trial_id), t.parts, hp, recipe)
            jobs.append(BranchJob(
                sweep=spec.name, code_version=code_version, trunk=trunk, point=point,
                trial_id=trial_id, mask_blob=_mask_blob(t, s, m.mask),
                stage_dir=stage_dir(method, s, key, level, root),
                method_hparams={} if hp is None else dataclasses.asdict(hp),
                recipe=recipe[1], prepare_dir=f"{ticket}/prepare" if m.prepare else ""))
    return chain_points, jobs


def _rewind_walk(spec: SweepSpec, t: _Trunk, targets: tuple[float, ...],
                 points: list[Point]) -> RewindWalk | None:
    """The trunk's rewind walk when ``lth_rewind`` is in the grid: its points and masks."""
    if "lth_rewind" not in spec.methods:
        return None
    rate = level_schedule(t.trunk)
    deepest = max(levels.level_for(s, rate) for s in targets)
    hp = spec.method_hparams("lth_rewind")
    return RewindWalk(hparams=dataclasses.asdict(hp), root=t.rewind_root, part=t.rewind_part,
                      levels=deepest,
                      targets=tuple(Target(sparsity=s, mask_blob=_mask_blob(t, s, "rewind"),
                                           producer="rewind") for s in targets),
                      level_targets=_level_targets(targets, rate, deepest),
                      points=tuple(p for p in points if p.method == "lth_rewind"))


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
    # the θ0 chain stores these masks (random / none are drawn, rewind's has its own walk)
    producers = sorted({methods.get(m).mask for m in sparse} & {"imp", "one_shot"})
    chains, branches = [], []
    for trunk, key in _trunks(spec):
        rate = level_schedule(trunk)
        chain_id = f"chain-{_label(trunk)}-{key[:8]}"
        t = _Trunk(trunk, chain_id)
        if "lth_rewind" in spec.methods:
            root = rewind_root(spec.method_hparams("lth_rewind"))
            t = _Trunk(trunk, chain_id, root, f"{chain_id}-rw{root.rsplit('-', 1)[1][:8]}")
        points = [_point(trunk, "dense", 0.0, curves_part(chain_id, 0), t.parts)] \
            if "dense" in spec.methods else []
        for method, s in product(sparse, targets):
            on_chain, jobs = _branches(spec, t, method, s, code_version)
            points += on_chain
            branches += jobs
        imp = targets if "imp" in producers else ()
        deepest = max((levels.level_for(s, rate) for s in imp), default=0)
        chains.append(ChainJob(sweep=spec.name, trial_id=chain_id, code_version=code_version,
                               trunk=trunk, levels=deepest,
                               targets=tuple(Target(sparsity=s, mask_blob=mask_blob(s, p),
                                                    producer=p)
                                             for p in producers for s in targets),
                               level_targets=_level_targets(imp, rate, deepest),
                               points=tuple(p for p in points if p.method != "lth_rewind"),
                               rewind=_rewind_walk(spec, t, targets, points)))
    return Plan(spec=spec, chains=tuple(chains), branches=tuple(branches))


def _arm(job: BranchJob) -> str:
    """A branch's method with its recipe and transfer variant, as ``analysis.stats`` names
    arms: ``lth+smooth``, ``transfer[late_reset,freeze]``."""
    hp = job.method_hparams
    variant = f"[{hp['init']},{hp['regime']}]" if {"init", "regime"} <= set(hp) else ""
    recipe = "" if job.point.recipe == BASE_RECIPE else f"+{job.point.recipe}"
    return f"{job.point.method}{variant}{recipe}"


def describe(plan: Plan) -> pd.DataFrame:
    """One row per trial: id, phase, methods (arms), lr, seed, sparsities, levels, epochs."""
    import pandas as pd

    rows = []
    for job in plan.chains:
        rows.append({"trial_id": job.trial_id, "phase": "chain",
                     "methods": ",".join(sorted({p.method for p in job.all_points})) or "-",
                     "lr": job.trunk.train.lr, "seed": job.trunk.seed,
                     "sparsities": ",".join(f"{p.target_sparsity:g}" for p in job.all_points
                                            if p.method != "dense") or "-",
                     "levels": job.levels if job.rewind is None else
                     f"{job.levels}+{job.rewind.levels}", "epochs": plan.epochs(job)})
    for job in plan.branches:
        rows.append({"trial_id": job.trial_id, "phase": "branch", "methods": _arm(job),
                     "lr": job.trunk.train.lr, "seed": job.trunk.seed,
                     "sparsities": f"{job.point.target_sparsity:g}", "levels": "-",
                     "epochs": plan.epochs(job)})
    return pd.DataFrame(rows)
