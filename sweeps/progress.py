"""Live sweep progress (done / running / pending / failed, epochs, ETA) from Tune callbacks.

Replaces Ray's console output (RAY_FACTS.md §7: with the legacy output engine and
``verbose=0`` Tune prints nothing, while ``tune.Callback`` hooks still fire in the driver).
On a terminal the line is redrawn in place with rich; elsewhere (``ray job logs``, CI) a line
is printed for every trial that finishes or fails, once Tune has refilled the slot it freed
(or ``REFILL_WAIT_S`` later), so that the line counts the trials running, not the moment
between two trials on one slot.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from dataclasses import field
from typing import Any

from ray import tune
from rich.console import Console
from rich.live import Live
from rich.text import Text

# How long a printed line (no terminal) waits for Tune to start a trial in a slot that a
# finished trial freed, in seconds; a slot that stays free (nothing runnable) is then shown so.
REFILL_WAIT_S = 1.0


@dataclass
class Counts:
    """Trial and epoch counters of one sweep run (both phases)."""

    total_trials: int
    total_epochs: int
    done: int = 0
    failed: int = 0
    running: set[str] = field(default_factory=set)
    epochs_by_trial: dict[str, int] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    busy_s: float = 0.0  # slot-seconds with a trial running
    slots: int = 0  # most trials seen running at once
    _ticked: float | None = None

    def tick(self, running: set[str], now: float | None = None) -> None:
        """Take the trials Tune's scheduler runs now; account the slot time since the last
        tick to the trials that were running."""
        now = time.monotonic() if now is None else now
        if self._ticked is not None:
            self.busy_s += (now - self._ticked) * len(self.running)
        self._ticked = now
        self.running = set(running)
        self.slots = max(self.slots, len(self.running))

    @property
    def epochs_done(self) -> int:
        return sum(self.epochs_by_trial.values())

    @property
    def pending(self) -> int:
        return max(0, self.total_trials - self.done - self.failed - len(self.running))

    def eta_s(self) -> float | None:
        """Seconds left: the epochs left at the measured epoch rate per busy slot times the
        slots (None before the first epoch); before any slot time was measured, the overall
        rate since the start."""
        if self.epochs_done == 0:
            return None
        left = max(0.0, self.total_epochs - self.epochs_done)
        if self.busy_s > 0 and self.slots:
            return left * (self.busy_s / self.epochs_done) / self.slots
        return left * (time.monotonic() - self.started) / self.epochs_done

    def line(self, phase: str, width: int | None = None) -> str:
        """The progress line; wider than ``width`` (a terminal's columns), a shorter one
        without the phase and the epochs, so that it never wraps."""
        eta = self.eta_s()
        eta_text = "?" if eta is None else time.strftime("%H:%M:%S", time.gmtime(eta))
        full = (f"[{phase}] trials: {self.done} done, {len(self.running)} running, "
                f"{self.pending} pending, {self.failed} failed of {self.total_trials} | "
                f"epochs {self.epochs_done}/{self.total_epochs} | ETA {eta_text}")
        if width is None or len(full) <= width:
            return full
        return (f"{self.done}/{self.total_trials} done, {len(self.running)} running, "
                f"{self.pending} pending, {self.failed} failed | ETA {eta_text}")[:width]


class ProgressCallback(tune.Callback):
    """Tune callback feeding ``Counts`` and redrawing the progress line."""

    def __init__(self, counts: Counts, phase: str, live: Live | None,
                 console: Console) -> None:
        self.counts, self.phase, self.live, self.console = counts, phase, live, console
        self._owed: float | None = None  # when the event whose line is not printed yet came

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its callbacks into tuner.pkl; the display holds locks and a terminal.
        return {**self.__dict__, "live": None, "console": None}

    def _id(self, trial: Any) -> str:
        return trial.config.get("trial_id") or trial.config["job"]["trial_id"]

    def _draw(self, event: bool) -> None:
        """Redraw the live line; without one, owe a printed line for an event."""
        if self.live is not None:
            width = self.live.console.width
            self.live.update(Text(self.counts.line(self.phase, width), no_wrap=True))
        elif event:
            self._owed = time.monotonic()

    def _flush(self) -> None:
        """Print an owed line now (before the next event changes the counts)."""
        if self._owed is not None:
            self._print()

    def _print(self) -> None:
        self._owed = None
        if self.console is not None:
            self.console.print(self.counts.line(self.phase), highlight=False, soft_wrap=True)

    def _settle(self, now: float) -> None:
        """Print the owed line once the freed slot runs a trial again (as many trials run as
        the most seen at once, or as are left), or ``REFILL_WAIT_S`` after the event."""
        if self._owed is None:
            return
        counts = self.counts
        left = counts.total_trials - counts.done - counts.failed
        if len(counts.running) >= min(counts.slots, left) or now - self._owed >= REFILL_WAIT_S:
            self._print()

    def on_step_begin(self, iteration: int, trials: list, **info: Any) -> None:
        """Every controller step: the running trials as Tune's scheduler sees them."""
        now = time.monotonic()
        self.counts.tick({self._id(t) for t in trials if getattr(t, "status", "") == "RUNNING"},
                         now)
        self._draw(event=False)
        self._settle(now)

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.counts.running.add(self._id(trial))
        self._draw(event=False)
        self._settle(time.monotonic())

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict,
                        **info: Any) -> None:
        trial_id = self._id(trial)
        self.counts.epochs_by_trial[trial_id] = int(result.get("epochs_done", 0))
        if not result.get("finished"):
            self.counts.running.add(trial_id)  # with actor reuse the start hook can lag
        self._draw(event=False)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._flush()
        self.counts.running.discard(self._id(trial))
        self.counts.done += 1
        self._draw(event=True)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._flush()
        self.counts.running.discard(self._id(trial))
        self.counts.failed += 1
        self._draw(event=True)

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self._flush()


def open_display(enabled: bool) -> tuple[Live | None, Console]:
    """A rich Live line on a terminal (stderr), else None and a plain console."""
    console = Console(file=sys.stderr, highlight=False)
    if enabled and console.is_terminal:
        live = Live(Text(""), console=console, refresh_per_second=4, transient=False)
        live.start()
        return live, console
    return None, console
