"""``lottery status``: trials done / running / pending / failed and rows written."""

from __future__ import annotations

import time

import pandas as pd

from sweeps import spec as spec_module
from sweeps.plan import make_plan
from sweeps.store import Store


def trial_table(store: Store) -> pd.DataFrame:
    """One row per planned trial: id, phase, state, rows written/expected, error.

    A trial is ``done`` when all its rows exist; otherwise its recorded state (``running``,
    ``failed``, or ``error`` while a retry may follow) or ``pending`` if it never started.

    Raises:
        FileNotFoundError: no ``spec.json`` under ``store``.
    """
    raw = store.get_json("spec.json")
    if raw is None:
        raise FileNotFoundError(f"no sweep at {store.uri} (spec.json missing)")
    plan = make_plan(spec_module.parse(raw, store.join("spec.json")))
    written = store.parts("runs")
    now = time.time()
    rows = []
    jobs = [(c, "chain", c.points) for c in plan.chains] + \
        [(b, "branch", (b.point,)) for b in plan.branches]
    for job, phase, points in jobs:
        have = sum(p.config_hash in written for p in points)
        recorded = store.get_json(f"trials/{job.trial_id}.json") or {}
        state = recorded.get("state", "pending")
        if points and have == len(points):
            state = "done"
        elif points and state == "done":
            state = "running"  # a chain whose rows are not all there yet
        age = now - recorded["updated"] if "updated" in recorded else float("nan")
        rows.append({"trial_id": job.trial_id, "phase": phase, "state": state,
                     "rows": f"{have}/{len(points)}", "updated_s_ago": round(age),
                     "error": recorded.get("error", "") if state != "done" else ""})
    return pd.DataFrame(rows)


def format_status(store: Store) -> str:
    """Human summary: counts per state, rows written, then failed and active trials."""
    table = trial_table(store)
    counts = table["state"].value_counts()
    n_rows = len(store.parts("runs"))
    lines = [f"sweep {store.uri}",
             "trials: " + ", ".join(f"{counts.get(s, 0)} {s}" for s in
                                    ("done", "running", "pending", "error", "failed")),
             f"rows written (runs): {n_rows}"]
    active = table[table["state"].isin(["running", "error", "failed"])]
    if len(active):
        with pd.option_context("display.max_colwidth", 120, "display.width", 250):
            lines += ["", active.to_string(index=False)]
    return "\n".join(lines)
