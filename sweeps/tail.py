"""Compaction in a sweep's tail: once every trial has started and a slot idles, a driver
thread merges the parts committed so far (``sweeps.compact``), so that the compaction at the
sweep's end (``execution.compact``) has only the last trials' parts left (it folds the tail's
file into its own unless it is big, ``sweeps.compact.FOLD_PARTS``: a run adds one file per
table, two for a large sweep).

Compaction is safe beside running trials (uncommitted parts are left alone; see
``sweeps.compact``), so the tail's run only moves work from after the last trial into a slot
that would idle: the quick start's end compaction of 196 parts is 0.7 s on 2 cores
(``docs/performance.md``).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from ray import tune

from sweeps.compact import compact
from sweeps.progress import Counts
from sweeps.store import Store

log = logging.getLogger(__name__)


class TailCompaction(tune.Callback):
    """Starts one compaction on a thread when the sweep enters its tail (no trial left to
    start, fewer running than the most seen at once, one still running). Put it after the
    ``ProgressCallback`` that keeps ``counts``; call ``join()`` before Ray shuts down."""

    def __init__(self, store: Store, counts: Counts) -> None:
        self.store, self.counts = store, counts
        self.merged = 0
        self._thread: threading.Thread | None = None

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its callbacks into tuner.pkl; a thread does not pickle.
        return {**self.__dict__, "_thread": None}

    def in_tail(self) -> bool:
        """No trial left to start and a slot idle while a trial still runs."""
        running = len(self.counts.running)
        return self.counts.pending == 0 and 0 < running < self.counts.slots

    def _maybe_start(self) -> None:
        if self._thread is None and self.in_tail():
            self._thread = threading.Thread(target=self._compact, name="tail-compaction",
                                            daemon=True)
            self._thread.start()

    def _compact(self) -> None:
        try:
            self.merged = sum(compact(self.store).values())
        except Exception as err:  # opportunistic: the end's compaction tries again and raises
            log.warning("compaction in the sweep's tail failed (%s: %s); the end's compaction "
                        "tries again", type(err).__name__, err)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._maybe_start()

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._maybe_start()

    def join(self) -> int:
        """Wait for the tail's compaction (if one started); the loose parts it merged."""
        if self._thread is not None:
            self._thread.join()
        return self.merged
