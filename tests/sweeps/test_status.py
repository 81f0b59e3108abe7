"""Tests for sweeps/status.py, sweeps/integrity.py and the resume rules of sweeps/run.py.

A tiny sweep (digits, 1 epoch) is run in-process once per module with ``run_job``; each test
damages a copy of it the way a crash, a disk or a user would.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from analysis.load import load_runs
from sweeps import integrity
from sweeps import lease
from sweeps import spec as spec_module
from sweeps.errors import SpecError
from sweeps.lease import Lease
from sweeps.plan import make_plan
from sweeps.run import check_compatible
from sweeps.run import pending_jobs
from sweeps.status import format_status
from sweeps.status import trial_table
from sweeps.store import Store
from sweeps.trial_run import run_job
from sweeps.trials import trial_state

SPEC = {"name": "st", "dataset": "digits", "methods": ["dense", "lth", "pf"], "lrs": [0.1],
        "sparsities": [0.36, 0.5], "seeds": [0], "training": {"epochs": 1}}


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.set_num_threads(1)
    spec = spec_module.parse(SPEC)
    store = Store(str(tmp_path_factory.mktemp("status"))).child("st")
    store.put_json("spec.json", spec.to_json())
    plan = make_plan(spec)
    for job in (*plan.chains, *plan.branches):
        run_job(job, store, torch.device("cpu"))
        trial_state(store, job.trial_id, "done")
    return Path(store.path)


@pytest.fixture
def sweep(finished: Path, tmp_path: Path) -> Store:
    shutil.copytree(finished, tmp_path / "st")
    return Store(str(tmp_path / "st"))


def _plan():
    return make_plan(spec_module.parse(SPEC))


def test_a_finished_sweep_has_every_point_and_level_done(sweep: Store) -> None:
    plan = _plan()
    done = integrity.inspect(sweep).done
    assert {p.config_hash for p in plan.points} <= done
    chains, branches, skipped = pending_jobs(plan, done)
    assert (chains, branches, skipped) == ([], [], len(plan.points))
    assert "grid points done: 5 of 5" in format_status(sweep)
    assert "driver: not running" in format_status(sweep)


def test_a_deleted_layers_part_makes_its_point_pending_and_its_chain_rerun_only_it(
        sweep: Store) -> None:
    plan = _plan()
    dense = next(p for p in plan.chains[0].points if p.method == "dense")
    sweep.delete(f"layers/part-{dense.config_hash}.parquet")
    done = integrity.inspect(sweep).done
    assert dense.config_hash not in done
    chains, branches, _ = pending_jobs(plan, done)
    assert branches == [] and [c.points for c in chains] == [(dense,)]
    table = trial_table(sweep)
    assert table.set_index("phase").loc["chain", "state"] == "pending"
    assert dense.config_hash not in set(load_runs(sweep.path).config_hash)


def test_a_deleted_chain_curves_part_makes_the_points_that_stand_on_it_pending(
        sweep: Store) -> None:
    plan = _plan()
    chain = plan.chains[0]
    sweep.delete(f"curves/part-{chain.trial_id}-L1.parquet")
    done = integrity.inspect(sweep).done
    behind = {p.config_hash for p in plan.points if f"{chain.trial_id}-L1" in p.curves}
    assert behind and not behind & done
    assert f"{chain.trial_id}-L1" not in done
    chains, branches, _ = pending_jobs(plan, done)
    assert len(chains) == 1 and {b.point.config_hash for b in branches} <= behind


def test_a_chain_is_done_only_when_every_level_is_stored_not_just_its_rows(
        sweep: Store) -> None:
    """A chain whose own rows are committed while it still trains deeper levels (here: the
    last level's curves part is gone) is not done in ``status``, by the rule a run uses."""
    chain = _plan().chains[0]
    deepest = chain.stage_parts[-1]
    sweep.delete(f"curves/part-{deepest}.parquet")
    done = integrity.inspect(sweep).done
    assert all(p.config_hash in done for p in chain.all_points) and deepest not in done
    assert not chain.stored(done) and pending_jobs(_plan(), done)[0]
    row = trial_table(sweep).set_index("trial_id").loc[chain.trial_id]
    assert row.state == "pending" and row.points_done == row.points  # recorded done
    with Lease(sweep, "st") as held:
        trial_state(sweep, chain.trial_id, "running")
        assert trial_table(sweep, driver=held.holder).set_index("trial_id").loc[
            chain.trial_id, "state"] == "running"


def test_corrupt_parts_are_listed_by_status_and_moved_aside_by_repair(sweep: Store) -> None:
    plan = _plan()
    point = plan.branches[0].point
    path = Path(sweep.join(f"runs/part-{point.config_hash}.parquet"))
    path.write_bytes(path.read_bytes()[:100])
    check = integrity.inspect(sweep)
    assert check.corrupt == {str(path): check.corrupt[str(path)]}
    assert point.config_hash not in check.done
    text = format_status(sweep)
    assert "corrupt files (1;" in text and f"{path}: not a valid Parquet file" in text
    lines = integrity.repair(sweep, check)
    assert len(lines) == 1 and "moved to" in lines[0] and not path.exists()
    assert list(Path(sweep.join("quarantine/runs")).iterdir())
    assert integrity.inspect(sweep).corrupt == {}


def test_running_trials_of_a_dead_driver_are_interrupted(sweep: Store) -> None:
    chain = _plan().chains[0]
    sweep.delete(f"runs/part-{chain.points[0].config_hash}.parquet")
    trial_state(sweep, chain.trial_id, "running")
    states = trial_table(sweep).set_index("trial_id")["state"]
    assert states[chain.trial_id] == "interrupted"  # no live driver
    with Lease(sweep, "st") as held:
        text = format_status(sweep)
        assert f"driver: in use by {held.holder.host}:{held.holder.pid}" in text
        assert trial_table(sweep, driver=held.holder).set_index("trial_id").loc[
            chain.trial_id, "state"] == "interrupted"  # started before this driver
        trial_state(sweep, chain.trial_id, "running")
        assert trial_table(sweep, driver=held.holder).set_index("trial_id").loc[
            chain.trial_id, "state"] == "running"


def test_trials_that_never_started_are_pending_with_no_update_time(sweep: Store) -> None:
    branch = _plan().branches[0]
    sweep.delete(f"trials/{branch.trial_id}.json")
    sweep.delete(f"commits/{branch.point.config_hash}.json")
    row = trial_table(sweep).set_index("trial_id").loc[branch.trial_id]
    assert row.state == "pending" and pd.isna(row.updated_s_ago)
    assert "1 pending" in format_status(sweep)


def test_status_names_a_gone_driver(sweep: Store) -> None:
    sweep.put_json(lease.LEASE, {"host": "elsewhere", "pid": 7, "pid_started": 0.0,
                                 "started": time.time() - 999, "heartbeat": time.time() - 900,
                                 "token": "t"})
    assert "not running (the last driver, elsewhere:7 since" in format_status(sweep)


# --- fixed settings are compared by meaning ---------------------------------------------------

def _old_spec_json(sweep: Store, drop: list[str]) -> None:
    raw = sweep.get_json("spec.json")
    for dotted in drop:
        group, key = dotted.split(".")
        del raw[group][key]
    sweep.put_json("spec.json", raw)


def test_an_old_spec_json_without_a_now_defaulted_field_is_compatible(sweep: Store) -> None:
    _old_spec_json(sweep, ["data.test_subset", "data.train_subset", "training.gamma",
                           "execution.max_concurrent_trials"])
    check_compatible(sweep, spec_module.parse(SPEC))
    check_compatible(sweep, spec_module.parse({**SPEC, "sparsities": [0.36, 0.5, 0.8]}))
    status = format_status(sweep)  # the old spec still plans
    assert "grid points done: 5 of 5" in status


def test_a_real_change_of_a_fixed_setting_is_refused_naming_the_field(sweep: Store) -> None:
    changed = {**SPEC, "training": {"epochs": 2}, "pruning": {"rate": 0.3}}
    with pytest.raises(SpecError) as info:
        check_compatible(sweep, spec_module.parse(changed))
    fields = [f for f, _ in info.value.problems]
    assert fields == ["training.epochs", "pruning.rate"]
    assert f"(1 -> 2) at {sweep.uri}" in info.value.problems[0][1]
    assert info.value.source == "st"  # the CLI then names the spec file it was given


def test_moving_the_data_is_not_a_change(sweep: Store) -> None:
    check_compatible(sweep, spec_module.parse({**SPEC, "data": {"root": "/elsewhere"}}))


def test_a_commit_record_lists_runs_layers_and_the_curves_behind_the_point(sweep: Store) -> None:
    plan = _plan()
    chain = plan.chains[0]
    pf = next(b for b in plan.branches if b.point.method == "pf" and
              b.point.target_sparsity == 0.5)
    record = json.loads(Path(sweep.join(f"commits/{pf.point.config_hash}.json")).read_text())
    # pf at 0.5: mask from level 3 (levels 0..3 behind it, incl. the dense θT), then its own
    assert record["parts"] == {
        "runs": [pf.point.config_hash], "layers": [pf.point.config_hash],
        "curves": [f"{chain.trial_id}-L{level}" for level in range(4)] + [pf.trial_id]}
    assert dataclasses.asdict(pf.point)["curves"] == tuple(record["parts"]["curves"])
