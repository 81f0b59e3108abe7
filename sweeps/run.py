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

import contextlib
import dataclasses
import logging
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs

from sweeps import __version__
from sweeps import integrity
from sweeps import preflight
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
from sweeps.progress import open_display
from sweeps.spec import SweepSpec
from sweeps.store import Store
from sweeps.tail import TailCompaction
from sweeps.trials import trainable
from sweeps.trials import trial_name
from sweeps.trials import trial_state
from trainer import data as datasets
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
                                                  f"{spec.name!r} ({before} -> {after}); grid "
                                                  "axes may change between runs, this may not: "
                                                  "use a new name"))
    if changed:
        raise SpecError(store.path, changed)


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
        if todo or (walk and walk.points) or chain.trunk in needed or \
                not set(chain.stage_parts) <= done:
            chains.append(dataclasses.replace(chain, points=todo, rewind=walk))
    skipped = sum(1 for p in plan.points if p.config_hash in done)
    return chains, branches, skipped


def _init_ray(address: str | None, verbose: bool, preload: tuple[str, ...] = ()) -> bool:
    """Connect to ``address`` (or RAY_ADDRESS), else start a loopback-only local Ray.

    A local Ray starts one worker process per CPU at once and has each import ``preload``
    (Ray's ``preload_python_modules``) in the background, so the trial actors find torch, Tune
    and the trainer already imported while the driver finishes its own checks. Ray's default
    idle-worker limit counts free CPUs, so it would kill those workers once Tune's placement
    groups reserve the CPUs, just before the trial actors could take them; the limit is one
    worker per CPU instead (``num_workers_soft_limit``).

    Returns:
        True when this call started a local Ray that we must shut down.
    """
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    level = logging.INFO if verbose else logging.ERROR
    if address or os.environ.get("RAY_ADDRESS"):
        ray.init(address=address, logging_level=level, log_to_driver=verbose)
        return False
    ray.init(include_dashboard=False, _node_ip_address="127.0.0.1", logging_level=level,
             log_to_driver=verbose,
             _system_config={"preload_python_modules": list(preload),
                             "num_workers_soft_limit": os.cpu_count() or 1})
    return True


@contextlib.contextmanager
def _preloaded_actors() -> Iterator[None]:
    """Let Tune's trial actors take the workers Ray started before them (``_init_ray``).

    Tune gives every trainable a ``runtime_env`` with ``PL_DISABLE_FORK=1`` (a PyTorch
    Lightning setting, ``ray.tune.execution.class_cache.DEFAULT_ENV_VARS``); a task with its
    own runtime environment never runs in a worker started without one, so the trial actors
    would start fresh workers and import everything again. Without it, Tune's runtime
    environment is empty, as the workers' is. Restored on exit.
    """
    from ray.tune.execution import class_cache

    saved = dict(class_cache.DEFAULT_ENV_VARS)
    class_cache.DEFAULT_ENV_VARS.clear()
    try:
        yield
    finally:
        class_cache.DEFAULT_ENV_VARS.update(saved)


def _stop_monitor() -> None:
    """Kill the autoscaler monitor of the local Ray this process started, just before
    ``ray.shutdown``.

    ``ray.init`` starts Ray's autoscaler monitor (``autoscaler/_private/monitor.py``) although
    a local Ray never scales; at shutdown Ray 2.60 sends it SIGTERM and waits its full grace
    second before killing it (``Node._kill_process_impl``), a second of every local run.
    Killed first, Ray finds it gone. Nothing else of Ray's is touched.
    """
    import psutil

    tail = os.path.join("autoscaler", "_private", "monitor.py")
    for child in psutil.Process().children():
        with contextlib.suppress(psutil.Error):
            if any(arg.endswith(tail) for arg in child.cmdline()):
                child.kill()
                child.wait(timeout=5)


def _this_machine_only() -> bool:
    """Whether every live node of the Ray we are connected to is this machine (a local
    ``ray start --head``), so the driver's own file check holds for the trials."""
    import ray

    here = ray.util.get_node_ip_address()
    return all(node["NodeManagerAddress"] == here for node in ray.nodes() if node["Alive"])


# What constructing the first torch optimizer imports (torch 2.14: ``Optimizer.__init__`` is
# wrapped by ``torch._disable_dynamo``, which imports it).
OPTIMIZER_IMPORTS = "torch._dynamo"


def worker_preload(spec: SweepSpec) -> tuple[str, ...]:
    """The modules a trial imports before it trains: Tune, the trainable (torch and the
    trainer), what its first optimizer imports (``OPTIMIZER_IMPORTS``: about a second of a
    worker's first trial) and the spec's dataset loaders (``trainer.data.loader_module``)."""
    loaders = (datasets.loader_module(hp.name) for hp in preflight.data_fields(spec).values())
    return ("ray.tune", "sweeps.trial_run", OPTIMIZER_IMPORTS,
            *dict.fromkeys(m for m in loaders if m))


def check_resources(spec: SweepSpec, local: bool) -> None:
    """Fail fast when no node could ever run a trial (Tune would wait forever, RAY_FACTS §2).

    Raises:
        SpecError: naming ``resources.gpu`` / ``resources.cpu``.
    """
    import ray

    have = ray.cluster_resources()
    want = {"cpu": ("CPU", spec.resources.cpu), "gpu": ("GPU", spec.resources.gpu)}
    problems = [(f"resources.{k}", f"each trial asks for {n:g} {key} but the Ray cluster has "
                                   f"{have.get(key, 0):g}")
                for k, (key, n) in want.items() if n > have.get(key, 0)]
    if problems and local:
        raise SpecError(spec.name, problems)
    for field, reason in problems:
        logging.getLogger(__name__).warning("%s: %s (waiting for the autoscaler)", field, reason)


def _failures(grid: Any, store: Store) -> set[str]:
    """Record every errored trial of a finished Tune experiment as failed; their ids."""
    failed = set()
    for result in grid:
        if result.error is not None:
            trial_id = trial_name(result.config)
            failed.add(trial_id)
            trial_state(store, trial_id, "failed", error=_error_text(result.error))
    return failed


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
    with _ray_session(spec, store, address, remote, verbose) as (live, console):
        failed = _fit_search(spec, store, todo, done, ProgressCallback(
            Counts(sum(n for _, n in todo), _search_epochs(spec, todo)), "search", live,
            console), verbose)
    return Outcome(store, sum(n for _, n in todo), tuple(sorted(failed)), finished, repaired)


def _search_epochs(spec: SweepSpec, todo: list) -> int:
    """The progress line's epoch budget of the trials to run (an upper bound)."""
    from sweeps import search

    table, _ = search.describe(spec)
    per_trial = dict(zip(table.cell, table.epochs_per_trial, strict=True))
    return sum(per_trial[cell.label] * n for cell, n in todo)


def _fit_search(spec: SweepSpec, store: Store, todo: list, done: dict,
                callback: ProgressCallback, verbose: bool) -> set[str]:
    """Run the search trials through ``CellSearcher`` in one Tune experiment; failed ids."""
    from sweeps.search_tune import CellSearcher
    from sweeps.trials import search_trainable

    base = {**_trial_base(spec), "spec": spec.to_json(), "code_version": code_version()}
    return _fit(search_trainable, CellSearcher(spec, todo, done, base),
                sum(n for _, n in todo), "search", spec, store, [callback], verbose)


def _fit(trainable_fn: Any, searcher: Any, trials: int, phase: str, spec: SweepSpec,
         store: Store, callbacks: list[Any], verbose: bool) -> set[str]:
    """Run ``trials`` trials of ``trainable_fn`` that ``searcher`` hands out, as one Tune
    experiment with the spec's resources, retries and concurrency; the failed trial ids."""
    from ray import tune

    # Tune keeps one trial pending for a custom Searcher: with short trials the next one is
    # then created only after a slot frees. Keep one per slot waiting instead (RAY_FACTS §11).
    os.environ.setdefault("TUNE_MAX_PENDING_TRIALS_PG", str(_slots(spec)))
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
    return _failures(tuner.fit(), store)


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

    Order: preflight (nothing written), the lease, the fixed-settings check, repair of corrupt
    files, then Ray; a refusal after the lease leaves nothing behind in a new sweep directory.
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
    """
    if storage:
        spec = spec.model_copy(update={"storage": storage})
    remote = bool(address or os.environ.get("RAY_ADDRESS"))
    preflight.check(spec, files=not remote, models=models or True)
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
    with _ray_session(spec, store, address, remote, verbose) as display:
        failed, compacted = _run_phases(plan, chains, branches, store, display, verbose)
    return Outcome(store, len(chains) + len(branches), tuple(sorted(failed)), skipped,
                   repaired, compacted)


@contextlib.contextmanager
def _ray_session(spec: SweepSpec, store: Store, address: str | None, remote: bool,
                 verbose: bool) -> Iterator[tuple]:
    """Ray up (connected or local), the checks that need it, ``spec.json`` written, and the
    progress display (live, console); everything closed again on exit.

    The dataset files are checked where the trials run: on a cluster with nodes other than
    this machine, by a worker (``preflight.check_on_cluster``).
    """
    if not verbose:
        os.environ["RAY_AIR_NEW_OUTPUT"] = "0"  # legacy engine: verbose=0 is silent (§7)
        logging.getLogger("ray.tune").setLevel(logging.ERROR)
    import ray

    started = _init_ray(address, verbose, worker_preload(spec))
    live = None
    try:
        if remote and not _this_machine_only():
            preflight.check_on_cluster(spec, store)
        elif remote:  # every worker is on this machine: what the driver sees, the trials see
            missing = preflight.missing_files(spec)
            if missing:
                raise SpecError(spec.name, missing)
        check_resources(spec, local=started)
        live, console = open_display(not verbose)
        store.put_json("spec.json", spec.to_json())  # only once the sweep can start
        with _preloaded_actors():
            yield live, console
    finally:
        if live is not None:
            live.stop()
        if started:
            # In this thread: shutting Ray down beside other work (a compaction) once let the
            # garbage collector release a Tune object into the stopped core worker, which
            # ends the process.
            _stop_monitor()
            ray.shutdown()
        elif not verbose:
            # Disconnect now: Ray's own disconnect at interpreter exit first sleeps half a
            # second so that the workers' last log lines reach the console, and this
            # connection does not print them (``log_to_driver`` is off unless verbose).
            ray.shutdown()


def _trial_base(spec: SweepSpec) -> dict[str, Any]:
    """What every trial's config carries besides its job (``sweeps.trial_run._tracked``)."""
    return {"storage": Store(spec.storage).uri, "sweep": spec.name, "cpus": spec.resources.cpu,
            "checkpoint_every_s": spec.execution.checkpoint_every_s}


def _slots(spec: SweepSpec) -> int:
    """Trials the cluster can run at once (at least 1)."""
    import ray

    have = ray.cluster_resources()
    fits = [have.get("CPU", 1) / spec.resources.cpu if spec.resources.cpu else float("inf"),
            have.get("GPU", 0) / spec.resources.gpu if spec.resources.gpu else float("inf")]
    slots = min(fits)
    return max(1, int(slots)) if slots != float("inf") else 1


def _run_phases(plan: Plan, chains: list[ChainJob], branches: list[BranchJob], store: Store,
                display: tuple, verbose: bool) -> tuple[set[str], int]:
    """Every pending job in one Tune experiment (``sweeps.release``): chains first, each branch
    as soon as its chain stored its mask; return the failed trial ids (with the branches of
    failed chains) and the loose parts compacted in the sweep's tail (``sweeps.tail``)."""
    from sweeps.release import ReleaseSearcher
    from sweeps.release import need

    live, console = display
    spec = plan.spec
    counts = Counts(len(chains) + len(branches),
                    sum(plan.epochs(j) for j in (*chains, *branches)))
    pending = {c.trial_id for c in chains}
    searcher = ReleaseSearcher(chains, branches, {b.trial_id: need(plan, b) for b in branches},
                               {c.trial_id for c in plan.chains} - pending,
                               _trial_base(spec))
    progress = ProgressCallback(counts, "sweep", live, console)
    tail = TailCompaction(store, counts) if spec.execution.compact else None
    try:
        failed = _fit(trainable, searcher, len(chains) + len(branches), "sweep", spec, store,
                      [progress, *([tail] if tail else [])], verbose)
    finally:
        tail_merged = tail.join() if tail else 0  # before Ray shuts down
    for b in searcher.blocked:
        trial_state(store, b.trial_id, "failed",
                    error=f"its chain trial {plan.chain_of(b).trial_id} failed")
    return failed | {b.trial_id for b in searcher.blocked}, tail_merged
