"""Optuna search beside the grid (spec ``search:``): one TPE study per cell.

A cell is one (model, dataset, method, sparsity, seed) point of the grid with its lr (and any
searched ``training`` field) left open. Each search trial is that point at the values its
cell's study picked: the planner plans it as a one-point grid (``trial_plan``), so its trunk
(dense run and IMP levels) is content-keyed like a grid's and shared with every trial, cell or
grid point that picks the same values; its row is keyed by (point, search, trial number) and
carries ``search``, ``search_trial`` and ``search_params``.

The studies live in the tables: a run reads the committed search rows back (``history``) and
hands them to each cell's ``OptunaSearch`` as evaluated points, so re-running the spec runs
nothing new and raising ``trials`` continues each study where it stopped. One Tune experiment
runs every cell through ``CellSearcher``, which releases a cell's trials in turn (so a later
cell reuses the trunks of an earlier one's first, seed-determined picks) and routes each
result to the study that asked for it.

Source: Akiba et al. 2019 (Optuna, TPE sampler); Ray Tune ``OptunaSearch`` (RAY_FACTS.md §8,
§11 for custom Searchers).
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
from dataclasses import dataclass
from itertools import product
from typing import Any

from sweeps.keys import search_point_key
from sweeps.plan import Plan
from sweeps.plan import make_plan
from sweeps.spec import SweepSpec
from sweeps.spec_groups import SEARCH_INTS
from sweeps.spec_groups import data_hparams
from sweeps.store import Store
from trainer.jobs import Point


@dataclass(frozen=True)
class Cell:
    """One search cell: a grid point with its lr (and searched fields) left open."""

    model: str
    dataset: str
    method: str
    sparsity: float
    seed: int

    @property
    def label(self) -> str:
        """Readable and unique within a sweep, e.g. ``lth-lenet_300_100-digits-s0.5-seed0``."""
        slug = data_hparams(self.dataset).slug
        return f"{self.method}-{self.model}-{slug}-s{self.sparsity:g}-seed{self.seed}"


@dataclass(frozen=True)
class Tried:
    """A finished trial of a cell, read back from its committed ``runs`` row."""

    number: int
    params: dict[str, Any]
    value: float | None


def cells(spec: SweepSpec) -> list[Cell]:
    """Every cell of a search spec, cell-major in (model, dataset, seed, method, sparsity)
    order (``dense`` once per (model, dataset, seed), at sparsity 0).

    Raises:
        ValueError: the spec has no ``search``.
    """
    if spec.search is None:
        raise ValueError(f"sweep {spec.name!r} has no search")
    out = []
    targets = {data_hparams(t).label for t in spec.transfer.targets}
    for model, dataset, seed, method in product(spec.models, spec.datasets, spec.seeds,
                                                spec.methods):
        label = data_hparams(dataset).label
        if method == "transfer" and not targets - {label}:
            continue  # a transfer cell is its source: no target but itself, no point
        for s in [0.0] if method == "dense" else sorted(spec.sparsities):
            out.append(Cell(model, label, method, s, seed))
    return out


def point_spec(spec: SweepSpec, cell: Cell, params: dict[str, Any]) -> SweepSpec:
    """The one-point grid of ``cell`` at the searched ``params`` (``lr`` and training
    fields); its plan is what the trial runs."""
    training = {k: (int(v) if k in SEARCH_INTS else float(v))
                for k, v in params.items() if k != "lr"}
    return spec.model_copy(update={
        "model": cell.model, "dataset": cell.dataset, "methods": [cell.method],
        "sparsities": [] if cell.method == "dense" else [cell.sparsity], "seeds": [cell.seed],
        "lrs": [float(params["lr"])], "search": None,
        "training": spec.training.model_copy(update=training)})


def trial_plan(spec: SweepSpec, cell: Cell, params: dict[str, Any], number: int,
               code_version: str = "") -> Plan:
    """The plan of trial ``number`` of ``cell``: the one-point grid, its point tagged with the
    search (name, trial number, params) and keyed by ``keys.search_point_key``."""
    plan = make_plan(point_spec(spec, cell, params), code_version)
    name = spec.search.name
    text = json.dumps(params, sort_keys=True)

    def tag(point: Point) -> Point:
        return dataclasses.replace(
            point, config_hash=search_point_key(point.config_hash, name, number),
            search=name, search_trial=number, search_params=text)

    chains = tuple(dataclasses.replace(
        c, points=tuple(tag(p) for p in c.points),
        rewind=c.rewind and dataclasses.replace(
            c.rewind, points=tuple(tag(p) for p in c.rewind.points))) for c in plan.chains)
    branches = tuple(dataclasses.replace(b, point=tag(b.point)) for b in plan.branches)
    return Plan(spec=plan.spec, chains=chains, branches=branches)


def history(store: Store, spec: SweepSpec) -> dict[Cell, list[Tried]]:
    """The committed trials of ``spec``'s search in ``store``, by cell, in trial order."""
    from analysis.load import load_runs
    from analysis.stats import plain
    from analysis.stats import source_datasets

    out: dict[Cell, list[Tried]] = {c: [] for c in cells(spec)}
    if not store.list("runs"):
        return out
    runs = load_runs(store.uri)
    if "search" not in runs or runs.empty:
        return out
    runs = plain(runs[runs.search.astype("object") == spec.search.name])
    metric = spec.search.metric
    # a transfer row's cell is its source
    for row, dataset in zip(runs.itertuples(index=False), source_datasets(runs), strict=True):
        cell = Cell(row.model, str(dataset), row.method, float(row.target_sparsity),
                    int(row.seed))
        value = getattr(row, metric)
        value = None if value is None or not math.isfinite(value) else float(value)
        out.setdefault(cell, []).append(Tried(int(row.search_trial),
                                              json.loads(row.search_params), value))
    return {c: sorted(t, key=lambda x: x.number) for c, t in out.items()}


def inside(spec: SweepSpec, tried: list[Tried]) -> list[Tried]:
    """The finished trials that lie inside the current search space (the same fields, every
    value within its range): the ones a study learns from and a budget counts."""
    ranges = spec.search.space()
    return [t for t in tried if set(t.params) == set(ranges) and
            all(ranges[k].low <= v <= ranges[k].high for k, v in t.params.items())]


def todo(spec: SweepSpec, done: dict[Cell, list[Tried]]) -> list[tuple[Cell, int]]:
    """(cell, trials still to run) for every cell below its budget, in ``cells`` order; the
    budget counts the finished trials inside the current space (``inside``)."""
    have = {c: len(inside(spec, done.get(c, []))) for c in cells(spec)}
    return [(c, spec.search.trials - n) for c, n in have.items() if n < spec.search.trials]


def distributions(spec: SweepSpec) -> dict[str, Any]:
    """The Optuna distributions of the searched fields (int fields as integers)."""
    import optuna

    out = {}
    for name, r in spec.search.space().items():
        if name in SEARCH_INTS:
            out[name] = optuna.distributions.IntDistribution(int(r.low), int(r.high), log=r.log)
        else:
            out[name] = optuna.distributions.FloatDistribution(r.low, r.high, log=r.log)
    return out


def study(spec: SweepSpec, cell: Cell, tried: list[Tried]) -> Any:
    """The cell's ``OptunaSearch``: TPE, warm-started with its finished trials inside the
    current search space (``inside``; a trial without a finite metric as pruned, as Tune
    reports it live, so TPE still counts it as bad).

    The sampler is seeded by the replicate seed and the number of finished trials: a fresh
    study draws the same first picks in every cell of a seed (equal picks share their trunks),
    and a resumed or extended one draws new picks rather than repeating the trials it has
    (after an interruption its picks differ from an uninterrupted run's). TPE's random
    start-up takes a third of the trials (at most Optuna's default of 10), so a small budget
    is still partly model-based.
    """
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    known = inside(spec, tried)
    seed = cell.seed if not known else hash((cell.seed, len(known))) % 2**31
    sampler = optuna.samplers.TPESampler(
        seed=seed, n_startup_trials=min(10, max(1, spec.search.trials // 3)))
    searcher = OptunaSearch(space=distributions(spec), metric=spec.search.metric,
                            mode=spec.search.mode, sampler=sampler)
    for t in known:
        searcher.add_evaluated_point(t.params, t.value, pruned=t.value is None)
    return searcher


def point_value(store: Store, config_hash: str, metric: str) -> float | None:
    """``metric`` of the committed ``runs`` row ``config_hash`` (None if null or missing)."""
    import pyarrow.parquet as pq

    from analysis import commits

    data = store.get(f"runs/{commits.part_file(config_hash)}")
    if data is None:
        return None
    rows = pq.read_table(io.BytesIO(data), columns=[metric]).to_pylist()
    value = rows[0][metric] if rows else None
    return None if value is None or not math.isfinite(value) else float(value)


def run_trial(spec: SweepSpec, cell: Cell, params: dict[str, Any], number: int, sweep: Store,
              device: Any, on_epoch: Any = None, code_version: str = "") -> float | None:
    """Run trial ``number`` of ``cell`` at ``params`` (its chain, then its branch, each
    skipping stages already stored) in the sweep directory ``sweep``; return its metric.

    Raises:
        ValueError, FileNotFoundError, RuntimeError: as the trainer's chain and branch runs.
    """
    from sweeps.trial_run import run_job

    plan = trial_plan(spec, cell, params, number, code_version)
    for job in (*plan.chains, *plan.branches):
        run_job(job, sweep, device, on_epoch)
    return point_value(sweep, plan.points[0].config_hash, spec.search.metric)


def describe(spec: SweepSpec) -> tuple[Any, int]:
    """One row per cell (label, trials, epochs one trial trains at most: each searched field
    at its ``high``, nothing stored yet) and the search's epoch budget (an upper bound: equal
    picks share their trunks)."""
    import pandas as pd

    probe = {k: int(r.high) if k in SEARCH_INTS else r.high
             for k, r in spec.search.space().items()}
    rows = []
    for cell in cells(spec):
        plan = trial_plan(spec, cell, probe, 0)
        per_trial = sum(plan.epochs(j) for j in (*plan.chains, *plan.branches))
        rows.append({"cell": cell.label, "method": cell.method, "seed": cell.seed,
                     "sparsity": f"{cell.sparsity:g}" if cell.method != "dense" else "-",
                     "trials": spec.search.trials, "epochs_per_trial": per_trial})
    table = pd.DataFrame(rows)
    return table, int((table.trials * table.epochs_per_trial).sum())


def space_text(spec: SweepSpec) -> str:
    """The search space as one line, e.g. ``lr in [0.001, 0.3] (log)``."""
    return ", ".join(f"{k} in [{r.low:g}, {r.high:g}]{' (log)' if r.log else ''}"
                     for k, r in spec.search.space().items())


def trial_name(name: str, cell: Cell, number: int) -> str:
    """The Tune trial name (and ``trials/`` record) of trial ``number`` of ``cell`` in the
    search ``name`` (``search.name``: two searches of one sweep never share a record)."""
    return f"search-{name}-{cell.label}-t{number}"
