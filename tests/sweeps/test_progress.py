"""The live progress line: counts and ETA from Tune callback events."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from sweeps.progress import Counts
from sweeps.progress import ProgressCallback


def _trial(trial_id: str, status: str = "PENDING") -> SimpleNamespace:
    return SimpleNamespace(config={"job": {"trial_id": trial_id}}, status=status)


def test_running_is_what_the_scheduler_runs_and_eta_uses_the_rate_per_slot():
    counts = Counts(total_trials=4, total_epochs=40)
    callback = ProgressCallback(counts, "chains", live=None, console=None)
    trials = [_trial("a", "RUNNING"), _trial("b", "RUNNING"), _trial("c"),
              SimpleNamespace(config={"trial_id": "search-x"}, status="RUNNING")]
    callback.on_step_begin(0, trials)  # before any report
    assert counts.running == {"a", "b", "search-x"} and counts.slots == 3
    counts.tick({"a", "b"}, now=counts._ticked + 10.0)  # 3 slots busy for 10 s
    counts.epochs_by_trial.update(a=5, b=5)  # 10 epochs in 30 slot-seconds
    # `now` is on the monotonic clock (seconds since boot), so `now - _ticked` is 10 s only
    # to within a rounding step of that clock value; CI once got 30.00000000000273.
    assert counts.busy_s == pytest.approx(30.0)
    assert counts.eta_s() == pytest.approx(30 * (30.0 / 10) / 3)  # 30 left, 3 s each, 3 slots


def test_counts_follow_trial_events():
    counts = Counts(total_trials=3, total_epochs=30)
    callback = ProgressCallback(counts, "chains", live=None, console=None)
    callback.on_trial_start(0, [], _trial("a"))
    callback.on_trial_result(0, [], _trial("b"), {"epochs_done": 4})
    assert counts.running == {"a", "b"} and counts.pending == 1
    callback.on_trial_result(0, [], _trial("a"), {"epochs_done": 10, "finished": 1})
    callback.on_trial_complete(0, [], _trial("a"))
    callback.on_trial_error(0, [], _trial("b"))
    assert (counts.done, counts.failed, counts.pending, counts.epochs_done) == (1, 1, 1, 14)
    line = counts.line("chains")
    assert "1 done, 0 running, 1 pending, 1 failed of 3" in line
    assert "epochs 14/30" in line and "ETA" in line


def test_on_a_narrow_terminal_the_line_is_shortened_not_wrapped():
    counts = Counts(total_trials=682, total_epochs=19200)
    counts.done, counts.failed = 480, 0
    full = counts.line("sweep")
    assert len(full) > 80 and counts.line("sweep", 200) == full
    short = counts.line("sweep", 80)
    assert len(short) <= 80 and short.startswith("480/682 done, 0 running") and "ETA" in short
    assert len(counts.line("sweep", 20)) == 20


def test_eta_is_unknown_before_the_first_epoch_and_zero_when_all_are_done():
    counts = Counts(total_trials=1, total_epochs=5)
    assert counts.eta_s() is None
    counts.epochs_by_trial["a"] = 5
    assert counts.eta_s() == 0.0


def test_callback_pickles_without_its_display():
    import pickle

    callback = ProgressCallback(Counts(1, 1), "chains", live=None, console=object())
    restored = pickle.loads(pickle.dumps(callback))
    assert restored.console is None and restored.counts.total_trials == 1


def _printing(counts: Counts) -> tuple[ProgressCallback, list[str]]:
    """A callback without a live line, its printed lines collected."""
    printed: list[str] = []
    console = SimpleNamespace(print=lambda text, **kw: printed.append(text))
    return ProgressCallback(counts, "sweep", live=None, console=console), printed


def _two_running(monkeypatch) -> tuple[list[float], ProgressCallback, list[str]]:
    """A clock the callback reads, and a 4-trial sweep with "a" and "b" running on 2 slots."""
    import sweeps.progress as progress

    clock = [100.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: clock[0])
    callback, printed = _printing(Counts(total_trials=4, total_epochs=40))
    callback.on_step_begin(0, [_trial("a", "RUNNING"), _trial("b", "RUNNING")])
    return clock, callback, printed


def test_a_printed_line_waits_for_the_freed_slot_to_run_again(monkeypatch):
    clock, callback, printed = _two_running(monkeypatch)
    callback.on_trial_complete(0, [], _trial("a"))
    assert printed == []  # one slot free between two trials: not the sweep's state
    clock[0] += 0.1
    callback.on_step_begin(1, [_trial("b", "RUNNING"), _trial("c")])
    assert printed == []
    clock[0] += 0.1
    callback.on_step_begin(2, [_trial("b", "RUNNING"), _trial("c", "RUNNING")])
    assert len(printed) == 1 and "1 done, 2 running, 1 pending, 0 failed of 4" in printed[0]


def test_a_slot_left_free_is_printed_after_the_wait(monkeypatch):
    import sweeps.progress as progress

    clock, callback, printed = _two_running(monkeypatch)
    callback.on_trial_error(0, [], _trial("a"))
    clock[0] += progress.REFILL_WAIT_S / 2
    callback.on_step_begin(1, [_trial("b", "RUNNING")])
    assert printed == []
    clock[0] += progress.REFILL_WAIT_S
    callback.on_step_begin(2, [_trial("b", "RUNNING")])  # nothing runnable: shown as it is
    assert len(printed) == 1 and "0 done, 1 running, 2 pending, 1 failed of 4" in printed[0]


def test_every_event_gets_its_line_and_the_last_is_printed_at_the_end():
    counts = Counts(total_trials=2, total_epochs=20)
    callback, printed = _printing(counts)
    callback.on_step_begin(0, [_trial("a", "RUNNING"), _trial("b", "RUNNING")])
    callback.on_trial_complete(0, [], _trial("a"))
    callback.on_trial_complete(0, [], _trial("b"))  # the first event's line, as it was
    assert len(printed) == 1 and "1 done, 1 running, 0 pending" in printed[0]
    callback.on_experiment_end([])
    assert len(printed) == 2 and "2 done, 0 running, 0 pending" in printed[1]
