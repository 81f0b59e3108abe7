"""Trials as Ray Tune and the driver see them: the two Tune entry points, trial names and the
trial state records under ``trials/`` that ``lottery status`` reads.

Torch-free, so that the driver hands the entry points to Tune without importing torch and the
trainer (about 2 s of its start-up, ``docs/performance.md``): each entry point imports
``sweeps.trial_run`` in the worker when its trial starts (a worker preloads it,
``sweeps.ray_session.worker_preload``).
"""

from __future__ import annotations

import time
from typing import Any

from sweeps.store import Store


def trial_state(store: Store, trial_id: str, state: str, **extra: Any) -> None:
    """Record a trial's state (``running``, ``done``, ``error``, ``failed``) for ``status``."""
    store.put_json(f"trials/{trial_id}.json",
                   {"trial_id": trial_id, "state": state, "updated": time.time(), **extra})


def trial_name(trial_or_config: Any) -> str:
    """The trial id of a Tune trial (or its config): a search trial's ``trial_id``, else its
    job's."""
    config = getattr(trial_or_config, "config", trial_or_config)
    return config.get("trial_id") or config["job"]["trial_id"]


def trainable(config: dict[str, Any]) -> None:
    """Ray Tune entry point of a grid job (``sweeps.trial_run.grid_trial``). ``config`` =
    {job, storage, sweep, cpus, checkpoint_every_s} (see ``sweeps.run``)."""
    from sweeps import trial_run  # torch and the trainer: imported in the worker only

    trial_run.grid_trial(config)


def search_trainable(config: dict[str, Any]) -> None:
    """Ray Tune entry point of a search trial (``sweeps.trial_run.search_trial``); its final
    report carries the search metric."""
    from sweeps import trial_run

    trial_run.search_trial(config)
