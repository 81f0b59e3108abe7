"""What a trial runs in its Ray worker: the job in the trainer, progress reports to Tune and
the trial's state records.

The Tune entry points (``sweeps.trials``) import this module when a trial starts, so the
driver never imports torch; ``run_job`` also runs a job as a plain call (no Ray) in tests and
notebooks.
"""

from __future__ import annotations

import os
import socket
import time
import traceback
from typing import Any

import torch

from sweeps.store import Store
from sweeps.trials import trial_state
from trainer import jobs
from trainer import stage
from trainer.branch import run_branch
from trainer.chain import run_chain
from trainer.hparams import CHECKPOINT_EVERY_S
from trainer.loop import EpochRecord

# A trial's epoch reports: at most one per second, the first a second after it starts. Each
# report waits for the driver to take it (Ray Tune's function trainables), so a trial shorter
# than that reports once, at its end.
REPORT_EVERY_S = 1.0


def run_job(job: jobs.ChainJob | jobs.BranchJob, sweep: Store, device: torch.device,
            on_epoch: Any = None, on_level: Any = None) -> None:
    """Run one chain or branch job against the sweep directory ``sweep`` (no Ray needed);
    ``on_level(walk, level)`` hears a chain's finished levels."""
    if isinstance(job, jobs.ChainJob):
        run_chain(job, sweep.child("artifacts"), sweep, device, on_epoch, on_level)
    else:
        run_branch(job, sweep.child("artifacts"), sweep, device, on_epoch)


def pick_device() -> torch.device:
    """CUDA when Ray gave this trial a GPU (or, outside Ray, when one exists), else CPU."""
    import ray

    if not torch.cuda.is_available():
        return torch.device("cpu")
    if ray.is_initialized() and not ray.get_gpu_ids():
        return torch.device("cpu")
    return torch.device("cuda")


def grid_trial(config: dict[str, Any]) -> None:
    """Run a grid job's trial (``sweeps.trials.trainable``). ``config`` = {job, storage, sweep,
    cpus, checkpoint_every_s} (see ``sweeps.run``)."""
    job = jobs.from_dict(config["job"])

    def body(sweep: Store, device: torch.device, on_epoch: Any, report: Any) -> None:
        def on_level(walk: str, level: int) -> None:  # its branches may start now
            report({"walk": walk, "level": level})

        run_job(job, sweep, device, on_epoch, on_level)

    _tracked(config, job.trial_id, body)


def search_trial(config: dict[str, Any]) -> None:
    """Run a search trial (``sweeps.trials.search_trainable``; ``sweeps.search_tune.
    CellSearcher``'s config: storage, sweep, cpus, spec, code_version, cell, params, number,
    trial_id); its final report carries the search metric."""
    from sweeps import search
    from sweeps.spec import parse

    spec = parse(config["spec"])
    cell = search.Cell(**config["cell"])

    def body(sweep: Store, device: torch.device, on_epoch: Any, report: Any) -> dict[str, Any]:
        value = search.run_trial(spec, cell, config["params"], config["number"], sweep, device,
                                 on_epoch, config.get("code_version", ""))
        return {spec.search.metric: value}

    _tracked(config, config["trial_id"], body)


def _tracked(config: dict[str, Any], trial_id: str, body: Any) -> None:
    """Run ``body(sweep, device, on_epoch, report)`` as trial ``trial_id``: thread count,
    device, trial-state records and progress reports (``report(extra)`` sends one at once;
    the last one adds ``body``'s dict)."""
    from ray import tune

    sweep = Store(config["storage"]).child(config["sweep"])
    torch.set_num_threads(max(1, int(config["cpus"])))
    device = pick_device()
    progress = {"epochs": 0, "last": time.monotonic()}
    previous = sweep.get_json(f"trials/{trial_id}.json") or {}
    attempt = int(previous.get("attempt", 0)) + 1
    where = {"device": device.type, "host": socket.gethostname(), "pid": os.getpid(),
             "attempt": attempt, "started": time.time()}

    def on_epoch(record: EpochRecord) -> None:
        progress["epochs"] += 1
        now = time.monotonic()
        if now - progress["last"] >= REPORT_EVERY_S:
            progress["last"] = now
            tune.report({"epochs_done": progress["epochs"], "test_acc": record.test_acc})

    def report(extra: dict[str, Any]) -> None:
        tune.report({"epochs_done": progress["epochs"], **extra})

    trial_state(sweep, trial_id, "running", **where)
    try:
        with stage.checkpoint_every(config.get("checkpoint_every_s", CHECKPOINT_EVERY_S)):
            extra = body(sweep, device, on_epoch, report) or {}
    except Exception as err:
        trial_state(sweep, trial_id, "error", error=f"{type(err).__name__}: {err}",
                    traceback=traceback.format_exc(limit=8), **where)
        raise
    # epochs_trained counts this attempt only: a resumed trial trains just what was missing.
    trial_state(sweep, trial_id, "done", epochs_trained=progress["epochs"], **where)
    tune.report({"epochs_done": progress["epochs"], "finished": 1, **extra})
