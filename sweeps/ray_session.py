"""Ray for one sweep run: connect to a cluster or start a loopback-only local Ray whose
workers preload what the trials import, the checks that need Ray (dataset files where the
trials run, resources), the progress display, and a local Ray's quick shutdown.

Used by ``sweeps.run``; the science and the plan know nothing of it.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator

from sweeps import loopback
from sweeps import preflight
from sweeps.errors import SpecError
from sweeps.progress import open_display
from sweeps.spec import SweepSpec
from sweeps.store import Store
from trainer import data as datasets


def _init_ray(address: str | None, verbose: bool, preload: tuple[str, ...] = ()) -> bool:
    """Connect to ``address`` (or RAY_ADDRESS), else start a loopback-only local Ray.

    A local Ray starts one worker process per CPU at once and has each import ``preload``
    (Ray's ``preload_python_modules``) in the background, so the trial actors find torch, Tune
    and the trainer already imported while the driver finishes its own checks. Ray's default
    idle-worker limit counts free CPUs, so it would kill those workers once Tune's placement
    groups reserve the CPUs, just before the trial actors could take them; the limit is one
    worker per CPU instead (``num_workers_soft_limit``). It listens on loopback only when this
    process imported Ray after ``sweeps.loopback.use()`` (as ``lottery run`` does); else a
    warning names the address it took.

    Returns:
        True when this call started a local Ray that we must shut down.
    """
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    level = logging.INFO if verbose else logging.ERROR
    if not loopback.own_ray(address):
        ray.init(address=address, logging_level=level, log_to_driver=verbose)
        return False
    ray.init(include_dashboard=False, _node_ip_address="127.0.0.1", logging_level=level,
             log_to_driver=verbose,
             _system_config={"preload_python_modules": list(preload),
                             "num_workers_soft_limit": os.cpu_count() or 1})
    host = ray.util.get_node_ip_address()
    if not loopback.is_loopback(host):
        logging.getLogger(__name__).warning(
            "the local Ray listens on %s, not only on loopback: set %s=0 before Ray is "
            "imported (`lottery run` does)", host, loopback.ENV)
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


def _trials_run_here(spec: SweepSpec) -> bool:
    """Whether the trials of the Ray we are connected to can only run on this machine: every
    live node is this machine (a local ``ray start --head``) and it can hold a trial, so the
    driver's own file check holds for the trials. An autoscaled cluster's head alone (no CPU
    for trials, workers still to come) is not: its trials run on nodes yet to start."""
    import ray

    here = ray.util.get_node_ip_address()
    if not all(node["NodeManagerAddress"] == here for node in ray.nodes() if node["Alive"]):
        return False
    have = ray.cluster_resources()
    return have.get("CPU", 0) >= spec.resources.cpu and have.get("GPU", 0) >= spec.resources.gpu


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


@contextlib.contextmanager
def ray_session(spec: SweepSpec, store: Store, address: str | None, remote: bool,
                 verbose: bool) -> Iterator[tuple]:
    """Ray up (connected or local), the checks that need it, ``spec.json`` written, and the
    progress display (live, console); everything closed again on exit.

    The dataset files are checked where the trials run: on a cluster with nodes other than
    this machine, or whose only node cannot hold a trial (an autoscaled cluster's head), by a
    worker (``preflight.check_on_cluster``, which also checks a local storage path).

    Raises:
        SpecError: dataset files missing where the trials run, or resources no node of a
            local Ray can give (``check_resources``).
    """
    if not verbose:
        os.environ["RAY_AIR_NEW_OUTPUT"] = "0"  # legacy engine: verbose=0 is silent (§7)
        logging.getLogger("ray.tune").setLevel(logging.ERROR)
    import ray

    started = _init_ray(address, verbose, worker_preload(spec))
    live = None
    try:
        here = started or _trials_run_here(spec)  # a local Ray's trials run here
        if not here:
            preflight.check_on_cluster(spec, store)
        elif remote:  # every worker is on this machine: what the driver sees, the trials see
            missing = preflight.missing_files(spec)
            if missing:
                raise SpecError(spec.name, missing)
        check_resources(spec, local=started)
        live, console = open_display(not verbose)
        store.put_json("spec.json", spec.to_json())  # only once the sweep can start
        with _preloaded_actors(), _pending_trials(pending_trials(spec, here)):
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


# Trials kept pending on a cluster that may grow: Tune's own default for a grid
# (``BasicVariantGenerator``) keeps at least 16, and the autoscaler sizes its demand by them.
GROWING_PENDING = 16


def pending_trials(spec: SweepSpec, here: bool) -> int:
    """How many trials Tune keeps pending (``TUNE_MAX_PENDING_TRIALS_PG``): one per slot where
    every trial runs on this machine's Ray; on a cluster at least ``GROWING_PENDING``, since
    its autoscaler adds nodes only for pending trials (a cluster of a CPU-less head has one
    slot by ``slots``, and would grow one node at a time)."""
    return slots(spec) if here else max(slots(spec), GROWING_PENDING)


@contextlib.contextmanager
def _pending_trials(n: int) -> Iterator[None]:
    """Tune keeps one trial pending for a custom Searcher: with short trials the next one is
    then created only after a slot frees (RAY_FACTS §11). Keep ``n`` waiting instead, unless
    the user set ``TUNE_MAX_PENDING_TRIALS_PG``; restored on exit."""
    key = "TUNE_MAX_PENDING_TRIALS_PG"
    if key in os.environ:
        yield
        return
    os.environ[key] = str(n)
    try:
        yield
    finally:
        os.environ.pop(key, None)


def slots(spec: SweepSpec) -> int:
    """Trials the cluster can run at once (at least 1)."""
    import ray

    have = ray.cluster_resources()
    fits = [have.get("CPU", 1) / spec.resources.cpu if spec.resources.cpu else float("inf"),
            have.get("GPU", 0) / spec.resources.gpu if spec.resources.gpu else float("inf")]
    slots = min(fits)
    return max(1, int(slots)) if slots != float("inf") else 1
