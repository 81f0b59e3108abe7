"""``lottery status``: the driver holding the sweep, trial states, points done, corrupt files."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from sweeps import integrity
from sweeps import spec as spec_module
from sweeps.lease import Holder
from sweeps.lease import read_holder
from sweeps.plan import make_plan
from sweeps.store import Store

if TYPE_CHECKING:
    import pandas as pd

STATES = ("done", "running", "interrupted", "pending", "error", "failed")


def _state(recorded: dict, stored: bool, driver: Holder | None) -> str:
    """A trial's state from its record, whether all it writes is committed (``stored``) and
    the live driver (if any).

    ``done`` when all it writes is committed (a chain: also every level, ``ChainJob.stored``,
    the rule a run uses to skip it); a ``running`` (or retrying, ``error``) trial
    that no live driver started is ``interrupted``; one recorded ``done`` whose points are no
    longer all committed is ``pending`` (the next run repairs it).
    """
    state = recorded.get("state", "pending")
    if stored:
        return "done"
    if state == "done":
        return "pending"
    if state in ("running", "error") and (
            driver is None or recorded.get("updated", 0.0) < driver.started):
        return "interrupted"
    return state


def trial_table(store: Store, check: integrity.Integrity | None = None,
                driver: Holder | None = None) -> pd.DataFrame:
    """``trial_rows`` as a DataFrame (columns trial_id, phase, state, points_done, points,
    updated_s_ago, error)."""
    import pandas as pd

    return pd.DataFrame(trial_rows(store, check, driver))


def trial_rows(store: Store, check: integrity.Integrity | None = None,
               driver: Holder | None = None) -> list[dict]:
    """One row per planned trial: id, phase, state, points (committed / planned), error.

    Args:
        store: The sweep directory.
        check: An inspection of it (made here when None).
        driver: The live lease holder, if any.
    Raises:
        FileNotFoundError: no readable ``spec.json`` under ``store``.
    """
    raw = store.get_json("spec.json")
    if raw is None:
        raise FileNotFoundError(f"no sweep at {store.uri} (spec.json missing or unreadable)")
    spec = spec_module.parse(raw, store.join("spec.json"))
    if spec.search is not None:
        return _search_rows(store, spec, driver)
    plan = make_plan(spec)
    done = (check or integrity.inspect(store)).done
    now = time.time()
    rows = []
    jobs = [(c, "chain", c.all_points) for c in plan.chains] + \
        [(b, "branch", (b.point,)) for b in plan.branches]
    for job, phase, points in jobs:
        have = sum(p.config_hash in done for p in points)
        recorded = store.get_json(f"trials/{job.trial_id}.json") or {}
        stored = job.stored(done) if phase == "chain" else have == len(points)
        state = _state(recorded, stored, driver)
        age = round(now - recorded["updated"]) if "updated" in recorded else None
        rows.append({"trial_id": job.trial_id, "phase": phase, "state": state,
                     "points_done": have, "points": len(points), "updated_s_ago": age,
                     "error": recorded.get("error", "") if state != "done" else ""})
    return rows


def _search_rows(store: Store, spec: spec_module.SweepSpec,
                 driver: Holder | None) -> list[dict]:
    """``trial_rows`` of a search: trials 0..``trials``-1 of every cell, one point each."""
    from sweeps import search

    finished = search.history(store, spec)
    now = time.time()
    rows = []
    for cell in search.cells(spec):
        numbers = {t.number for t in finished.get(cell, [])}
        for n in range(max(spec.search.trials, max(numbers, default=-1) + 1)):
            trial_id = search.trial_name(spec.search.name, cell, n)
            recorded = store.get_json(f"trials/{trial_id}.json") or {}
            state = _state(recorded, n in numbers, driver)
            age = round(now - recorded["updated"]) if "updated" in recorded else None
            rows.append({"trial_id": trial_id, "phase": "search", "state": state,
                         "points_done": int(n in numbers), "points": 1,
                         "updated_s_ago": age,
                         "error": recorded.get("error", "") if state != "done" else ""})
    return rows


def format_status(store: Store) -> str:
    """Human summary: the driver, counts per state, points done, corrupt files, active trials."""
    holder = read_holder(store)
    driver = holder if holder is not None and holder.alive() else None
    check = integrity.inspect(store)
    rows = trial_rows(store, check, driver)
    counts = {s: sum(r["state"] == s for r in rows) for s in STATES}
    if driver is not None:
        who = f"in use by {driver.describe()}"
    elif holder is not None:
        who = f"not running (the last driver, {holder.describe()}, is gone)"
    else:
        who = "not running"
    lines = [f"sweep {store.uri}", f"driver: {who}",
             "trials: " + ", ".join(f"{counts[s]} {s}" for s in STATES),
             f"grid points done: {sum(r['points_done'] for r in rows)} of "
             f"{sum(r['points'] for r in rows)}"]
    if check.corrupt:
        lines += ["", f"corrupt files ({len(check.corrupt)}; `lottery resume` moves them to "
                      "quarantine/ and recomputes their points):"]
        lines += [f"  {path}: {reason}" for path, reason in sorted(check.corrupt.items())]
    active = [r for r in rows if r["state"] in ("running", "interrupted", "error", "failed")]
    if active:
        lines += ["", *_columns(active)]
    return "\n".join(lines)


def _columns(rows: list[dict], width: int = 120) -> list[str]:
    """``rows`` as right-aligned text columns under their keys (cells cut at ``width``)."""
    cells = [list(rows[0])] + [["" if v is None else str(v)[:width] for v in r.values()]
                               for r in rows]
    sizes = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    return [" ".join(c.rjust(n) for c, n in zip(row, sizes, strict=True)).rstrip()
            for row in cells]
