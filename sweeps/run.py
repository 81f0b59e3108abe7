"""Run a sweep through Ray Tune: skip finished points; chains first, each branch released as
soon as its chain stored its mask, in one Tune experiment (``sweeps.release``).

Resuming is re-running: every grid point's rows are content-keyed Parquet parts committed by a
record written last (``analysis.commits``), and every training stage keeps checkpoints (at
most every ``execution.checkpoint_every_s``, ``trainer.stage``), so a re-run (``lottery
resume`` or ``lottery run`` on the same spec) launches only trials with uncommitted points,
and those continue from their last checkpoint (a stage whose result is stored is loaded, not
retrained). Corrupt parts and records are moved to
``quarantine/`` first, so their points count as missing. Tune's ``FailureConfig`` retries a
crashed trial, which resumes the same way. One driver at a time holds the sweep's lease
(``sweeps.lease``).
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs

from sweeps import __version__
from sweeps import integrity
from sweeps import loopback
from sweeps import preflight
from sweeps import ray_address
from sweeps import spec as spec_module
from sweeps.compact import compact
from sweeps.compact import compaction_id
from sweeps.errors import SpecError
from sweeps.lease import LOCK
from sweeps.lease import Lease
from sweeps.plan import Plan
from sweeps.plan import make_plan
from sweeps.preflight_child import ModelCheck
from sweeps.progress import Counts
from sweeps.progress import ProgressCallback
from sweeps.ray_session import ray_session
from sweeps.spec import SweepSpec
from sweeps.store import Store
from sweeps.tail import TailCompaction
from sweeps.trials import trainable
from sweeps.trials import trial_name
from sweeps.trials import trial_state
from trainer.jobs import BranchJob
from trainer.jobs import ChainJob

# Settings that define what the rows mean; a sweep name keeps them for life.
FIXED_KEYS = ("training", "pruning", "data", "rst")
# Fields of those groups that may change: where the data is, and lth_rewind's θk (its rows,
# masks and stages are keyed by it, so another θk is new points beside the old ones).
MUTABLE_KEYS = {"data": ("root", "download"), "pruning": ("rewind",)}


@dataclass(frozen=True)
class Outcome:
    """What a ``run_sweep`` call did."""

    sweep_dir: Store
    launched: int
    failed: tuple[str, ...]
    skipped_points: int
    repaired: tuple[str, ...] = ()
    compacted: int = 0
    unfinished: int = 0  # launched trials that neither finished nor failed (an interrupt)


def code_version() -> str:
    """Package version plus the git commit of the source tree when there is one."""
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=5, cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha = ""
    return f"{__version__}+{sha}" if sha else __version__


def sweep_store(spec: SweepSpec, storage: str | None) -> Store:
    return Store(storage or spec.storage).child(spec.name)


def check_compatible(store: Store, spec: SweepSpec) -> None:
    """Refuse to mix rows of different training/pruning/data settings under one name.

    Compared by meaning: the stored ``spec.json`` is parsed again, so a field added (with its
    default) after the sweep was made has that default on both sides, just as content keys
    omit defaults. The data's location (``data.root``, ``data.download``) may change.

    Raises:
        SpecError: naming each fixed field whose value differs (``training.epochs: 8 -> 10``),
            or the stored spec if it is no longer a valid spec.
    """
    raw = store.get_json("spec.json")
    if raw is None:
        return
    old = spec_module.parse(raw, store.join("spec.json")).to_json()
    new = spec.to_json()
    changed = []
    for group in FIXED_KEYS:
        for key in sorted(set(old[group]) | set(new[group])):
            if key in MUTABLE_KEYS.get(group, ()):
                continue
            before, after = old[group].get(key), new[group].get(key)
            if before != after:
                changed.append((f"{group}.{key}", f"differs from the existing sweep "
                                                  f"{spec.name!r} ({before} -> {after}) at "
                                                  f"{store.uri}; grid axes may change between "
                                                  "runs, this may not: use a new name"))
    if changed:  # named by the spec (the CLI shows its file); the reason says where the sweep is
        raise SpecError(spec.name, changed)


def pending_jobs(plan: Plan, done: set[str]) -> tuple[list[ChainJob], list[BranchJob], int]:
    """Jobs with an uncommitted point or level; chains also when a pending branch needs them.

    A chain job keeps only its uncommitted points, so committed rows are never rewritten.
    """
    branches = [b for b in plan.branches if b.point.config_hash not in done]
    needed = {b.trunk for b in branches}
    chains = []
    for chain in plan.chains:
        todo = tuple(p for p in chain.points if p.config_hash not in done)
        walk = chain.rewind and dataclasses.replace(
            chain.rewind, points=tuple(p for p in chain.rewind.points
                                       if p.config_hash not in done))
        if not chain.stored(done) or chain.trunk in needed:
            chains.append(dataclasses.replace(chain, points=todo, rewind=walk))
    skipped = sum(1 for p in plan.points if p.config_hash in done)
    return chains, branches, skipped


@dataclass(frozen=True)
class Fitted:
    """What one Tune experiment did: the failed trial ids, and how many trials it finished
    (done or failed). Fewer than it was given means it was stopped: on SIGINT (Ctrl-C) Tune's
    ``fit()`` returns normally with the rest still pending (RAY_FACTS §2, §4)."""

    failed: set[str]
    finished: int


def _settle(grid: Any, store: Store) -> Fitted:
    """Record every errored trial of a Tune experiment as failed; what it did.

    A trial finished when its function returned (Tune's ``done`` on its last result): a trial
    stopped by an interrupt is TERMINATED too, without it; one never started has no result.
    """
    failed, finished = set(), 0
    for result in grid:
        if result.error is not None:
            trial_id = trial_name(result.config)
            failed.add(trial_id)
            trial_state(store, trial_id, "failed", error=_error_text(result.error))
        finished += result.error is not None or bool((result.metrics or {}).get("done"))
    return Fitted(failed, finished)


def _run_search(spec: SweepSpec, store: Store, address: str | None, remote: bool,
                verbose: bool, repaired: tuple[str, ...]) -> Outcome:
    """``_run_leased`` for a search spec: the cells' missing trials, in one Tune experiment."""
    from sweeps import search

    done = search.history(store, spec)
    todo = search.todo(spec, done)
    finished = sum(len(t) for t in done.values())
    if not todo:
        store.put_json("spec.json", spec.to_json())
        return Outcome(store, 0, (), finished, repaired)
    launched = sum(n for _, n in todo)
    with ray_session(spec, store, address, remote, verbose) as (live, console):
        fitted = _fit_search(spec, store, todo, done, ProgressCallback(
            Counts(launched, _search_epochs(spec, todo)), "search", live, console), verbose)
    return Outcome(store, launched, tuple(sorted(fitted.failed)), finished, repaired,
                   unfinished=launched - fitted.finished)


def _search_epochs(spec: SweepSpec, todo: list) -> int:
    """The progress line's epoch budget of the trials to run (an upper bound)."""
    from sweeps import search

    table, _ = search.describe(spec)
    per_trial = dict(zip(table.cell, table.epochs_per_trial, strict=True))
    return sum(per_trial[cell.label] * n for cell, n in todo)


def _fit_search(spec: SweepSpec, store: Store, todo: list, done: dict,
                callback: ProgressCallback, verbose: bool) -> Fitted:
    """Run the search trials through ``CellSearcher`` in one Tune experiment."""
    from sweeps.search_tune import CellSearcher
    from sweeps.trials import search_trainable

    base = {**_trial_base(spec), "spec": spec.to_json(), "code_version": code_version()}
    return _fit(search_trainable, CellSearcher(spec, todo, done, base),
                sum(n for _, n in todo), "search", spec, store, [callback], verbose)


def _fit(trainable_fn: Any, searcher: Any, trials: int, phase: str, spec: SweepSpec,
         store: Store, callbacks: list[Any], verbose: bool) -> Fitted:
    """Run ``trials`` trials of ``trainable_fn`` that ``searcher`` hands out, as one Tune
    experiment with the spec's resources, retries and concurrency."""
    from ray import tune

    # The rows are the results: Tune's per-trial CSV/JSON/TensorBoard loggers would only add
    # five files per trial to storage and work to the driver (set it to 0 to have them).
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    resources = {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu}
    tuner = tune.Tuner(
        tune.with_resources(trainable_fn, resources),
        tune_config=tune.TuneConfig(search_alg=searcher, num_samples=trials, reuse_actors=True,
                                    trial_name_creator=trial_name,
                                    trial_dirname_creator=trial_name,
                                    max_concurrent_trials=spec.execution.max_concurrent_trials
                                    or None),
        run_config=_run_config(phase, spec, store, callbacks, verbose))
    return _settle(tuner.fit(), store)


def _run_config(phase: str, spec: SweepSpec, store: Store, callbacks: list[Any],
                verbose: bool) -> Any:
    """The Tune ``RunConfig`` of one experiment: under the sweep's ``tune/``, retries,
    silent unless ``verbose``, our callbacks (progress first)."""
    from ray import tune

    return tune.RunConfig(
        name=f"{phase}-{time.strftime('%Y%m%d-%H%M%S')}",
        storage_path=store.child("tune").path, storage_filesystem=store.fs,
        failure_config=tune.FailureConfig(max_failures=spec.execution.max_retries),
        verbose=1 if verbose else 0, callbacks=callbacks)


def _error_text(error: BaseException) -> str:
    cause = getattr(error, "cause", None) or error
    return f"{type(cause).__name__}: {cause}".strip()[:2000]


def run_sweep(spec: SweepSpec, storage: str | None = None, address: str | None = None,
              verbose: bool = False, models: ModelCheck | None = None) -> Outcome:
    """Run (or resume) ``spec`` through Ray Tune and return what happened.

    Order: preflight (nothing written), the Ray address (``sweeps.ray_address``), the lease,
    the fixed-settings check, repair of corrupt files, then Ray; a refusal after the lease
    leaves nothing behind in a new sweep directory.
    At the end (failed trials or not) the loose parts are compacted (``execution.compact``;
    most of them already in the sweep's tail, ``sweeps.tail``).

    Args:
        spec: A validated spec.
        storage: Storage location overriding ``spec.storage`` (path or URI).
        address: Ray cluster address; None uses RAY_ADDRESS or starts a local Ray.
        verbose: Bring back Ray's own console output.
        models: The model check, started by the caller (``lottery run`` starts it before
            it reads the spec, so that a child process builds the models meanwhile,
            ``sweeps.preflight_child``); None checks the models in this process.
    Raises:
        SpecError: the preflight fails, the existing sweep has other fixed settings, or
            resources cannot be met.
        SweepInUse: another live driver holds the sweep.
        ClusterUnreachable: no Ray answers at ``address`` (or RAY_ADDRESS), checked before
            anything is written.
    """
    if storage:
        spec = spec.model_copy(update={"storage": storage})
    remote = not loopback.own_ray(address)
    preflight.check(spec, files=not remote, models=models or True)
    if remote:
        ray_address.check(address)  # seconds, where ray.init would wait minutes
    store = sweep_store(spec, None)
    existed = store.fs.get_file_info(store.path).type != pafs.FileType.NotFound
    lease = Lease(store, spec.name)
    lease.acquire()
    refused = False
    try:
        since = compaction_id()
        outcome = _run_leased(spec, store, address, remote, verbose)
        if spec.execution.compact:  # under the lease: no trial of ours writes meanwhile
            # the tail's files (``sweeps.tail``) are folded in unless big: one new file per table
            merged = compact(store, fold_since=since)
            outcome = dataclasses.replace(outcome,
                                          compacted=outcome.compacted + sum(merged.values()))
        return outcome
    except SpecError:
        refused = True
        raise
    finally:
        lease.release()
        if refused and not existed:
            _remove_if_only_lock(store)


def _remove_if_only_lock(store: Store) -> None:
    """Delete a sweep directory this run created when it holds nothing but the lease lock."""
    infos = store.fs.get_file_info(pafs.FileSelector(store.path, recursive=True))
    if all(i.base_name == LOCK for i in infos):
        store.fs.delete_dir(store.path)


def _run_leased(spec: SweepSpec, store: Store, address: str | None, remote: bool,
                verbose: bool) -> Outcome:
    """``run_sweep``'s body, under the sweep's lease."""
    check_compatible(store, spec)
    check = integrity.inspect(store)
    repaired = tuple(integrity.repair(store, check))  # their points are not in check.done
    if spec.search is not None:
        return _run_search(spec, store, address, remote, verbose, repaired)
    plan = make_plan(spec, code_version())
    chains, branches, skipped = pending_jobs(plan, check.done)
    if not chains and not branches:
        store.put_json("spec.json", spec.to_json())
        return Outcome(store, 0, (), skipped, repaired)
    with ray_session(spec, store, address, remote, verbose) as display:
        failed, unfinished, compacted = _run_phases(plan, chains, branches, check.done, store,
                                                    display, verbose)
    return Outcome(store, len(chains) + len(branches), tuple(sorted(failed)), skipped,
                   repaired, compacted, unfinished)


def _trial_base(spec: SweepSpec) -> dict[str, Any]:
    """What every trial's config carries besides its job (``sweeps.trial_run._tracked``)."""
    return {"storage": Store(spec.storage).uri, "sweep": spec.name, "cpus": spec.resources.cpu,
            "checkpoint_every_s": spec.execution.checkpoint_every_s}


def _run_phases(plan: Plan, chains: list[ChainJob], branches: list[BranchJob],
                stored: set[str], store: Store, display: tuple,
                verbose: bool) -> tuple[set[str], int, int]:
    """Every pending job in one Tune experiment (``sweeps.release``): chains first, each branch
    as soon as its chain stored its mask (``stored``: the committed keys, for the progress
    line's budget); return the failed trial ids (with the branches of
    failed chains), how many jobs neither finished nor failed (the run was stopped) and the
    loose parts compacted in the sweep's tail (``sweeps.tail``)."""
    from sweeps.release import ReleaseSearcher
    from sweeps.release import need

    live, console = display
    spec = plan.spec
    counts = Counts(len(chains) + len(branches),
                    sum(plan.epochs(j, stored) for j in (*chains, *branches)))
    pending = {c.trial_id for c in chains}
    searcher = ReleaseSearcher(chains, branches, {b.trial_id: need(plan, b) for b in branches},
                               {c.trial_id for c in plan.chains} - pending,
                               _trial_base(spec))
    progress = ProgressCallback(counts, "sweep", live, console)
    tail = TailCompaction(store, counts) if spec.execution.compact else None
    try:
        fitted = _fit(trainable, searcher, len(chains) + len(branches), "sweep", spec, store,
                      [progress, *([tail] if tail else [])], verbose)
    finally:
        tail_merged = tail.join() if tail else 0  # before Ray shuts down
    for b in searcher.blocked:
        trial_state(store, b.trial_id, "failed",
                    error=f"its chain trial {plan.chain_of(b).trial_id} failed")
    blocked = {b.trial_id for b in searcher.blocked}
    unfinished = len(chains) + len(branches) - fitted.finished - len(blocked)
    return fitted.failed | blocked, unfinished, tail_merged
