"""Killing things for real: the driver, a trial's worker, and a trial that always fails.

In each case the final tables must equal those of an uninterrupted run of the same spec (same
rows, same numbers on CPU). The uninterrupted reference is the plain in-process run, which
``test_run_ray.py`` shows equal to an uninterrupted Ray run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest
from conftest import assert_same_tables
from conftest import kill_tree
from conftest import lottery
from conftest import reference_run
from conftest import start_driver
from conftest import wait_for
from conftest import write_spec

from analysis.load import load_runs
from sweeps import spec as spec_module
from sweeps.plan import make_plan

pytestmark = pytest.mark.ray

# Small batches make epochs slow enough (~0.1 s) to be interrupted mid-trial, and every epoch
# is checkpointed so a kill lands mid-stage.
SPEC = {"name": "kt", "dataset": "digits", "methods": ["dense", "lth", "random_reinit", "pf"],
        "lrs": [0.05], "sparsities": [0.5, 0.8], "seeds": [0, 1],
        "training": {"epochs": 6, "batch_size": 16},
        "execution": {"max_retries": 2, "checkpoint_every_s": 0}}


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The uninterrupted run of SPEC, in-process."""
    return reference_run(SPEC, tmp_path_factory.mktemp("reference"))


def start_sweep(spec_path: Path, storage: Path, env: dict) -> subprocess.Popen:
    return start_driver(["run", str(spec_path), "--storage", str(storage)], env,
                        spec_path.parent)


def n_rows(sweep_dir: Path) -> int:
    """Committed runs rows, loose or compacted (the run compacts when it ends)."""
    return len(load_runs(sweep_dir)) if (sweep_dir / "runs").exists() else 0


def test_sigkill_of_the_driver_then_resume_loses_and_duplicates_nothing(
        tmp_path, ray_env, reference):
    spec_path = write_spec(tmp_path / "kt.yaml", SPEC)
    sweep_dir = tmp_path / "results" / "kt"
    total = len(make_plan(spec_module.parse(SPEC)).points)
    proc = start_sweep(spec_path, tmp_path / "results", ray_env)
    wait_for(lambda: n_rows(sweep_dir) >= 4, proc)  # chains done, some branches written
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    kill_tree(ray_env["RAY_TMPDIR"])  # the local Ray it started dies with it
    interrupted = n_rows(sweep_dir)
    assert 4 <= interrupted < total

    resumed = lottery(["resume", "kt", "--storage", str(tmp_path / "results")], ray_env,
                      tmp_path)
    assert f"{interrupted} grid points already done" in resumed.stderr
    assert n_rows(sweep_dir) == total
    assert_same_tables(sweep_dir, reference)


def test_ctrl_c_exits_130_naming_the_resume_and_the_resume_finishes_exactly_once(
        tmp_path, ray_env, reference):
    """SIGINT to the driver's process group (what Ctrl-C in a terminal sends): Tune stops
    its trials and returns as if done; the command must say so and exit 130, not 0."""
    spec_path = write_spec(tmp_path / "kt.yaml", SPEC)
    sweep_dir = tmp_path / "results" / "kt"
    total = len(make_plan(spec_module.parse(SPEC)).points)
    proc = start_sweep(spec_path, tmp_path / "results", ray_env)
    wait_for(lambda: n_rows(sweep_dir) >= 4, proc)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    kill_tree(ray_env["RAY_TMPDIR"])
    assert proc.returncode == 130, err[-3000:]
    assert "unfinished" in err and \
        f"`lottery resume kt --storage {tmp_path / 'results'}` continues the sweep" in err
    assert n_rows(sweep_dir) < total

    lottery(["resume", "kt", "--storage", str(tmp_path / "results")], ray_env, tmp_path)
    assert n_rows(sweep_dir) == total
    assert_same_tables(sweep_dir, reference)


def _running_chain(sweep_dir: Path) -> dict | None:
    """A chain trial that is mid-level: a checkpoint exists but the level has not finished."""
    for state_file in sweep_dir.glob("trials/chain-*.json"):
        state = json.loads(state_file.read_text())
        if state.get("state") != "running":
            continue
        for ckpt in sweep_dir.glob("artifacts/*/replicate_*/level_*/checkpoint-*.pt"):
            level_1_done = (ckpt.parent.parent / "level_1" / "final.pt").exists()
            if level_1_done and not (ckpt.parent / "final.pt").exists():
                return state
    return None


def test_killed_worker_is_retried_from_its_checkpoint(tmp_path, ray_env, reference):
    spec_path = write_spec(tmp_path / "kt.yaml", SPEC)
    sweep_dir = tmp_path / "results" / "kt"
    proc = start_sweep(spec_path, tmp_path / "results", ray_env)
    victim: dict = {}
    wait_for(lambda: victim.update(_running_chain(sweep_dir) or {}) or bool(victim), proc)
    os.kill(victim["pid"], signal.SIGKILL)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-4000:]

    final = json.loads((sweep_dir / "trials" / f"{victim['trial_id']}.json").read_text())
    chain = next(c for c in make_plan(spec_module.parse(SPEC)).chains
                 if c.trial_id == victim["trial_id"])
    assert final["state"] == "done" and final["attempt"] >= 2
    # resumed after its finished levels and epochs, not from scratch
    assert 0 < final["epochs_trained"] < (chain.levels + 1) * 6
    assert_same_tables(sweep_dir, reference)


def test_a_trial_that_keeps_failing_is_marked_failed_and_the_rest_finishes(tmp_path, ray_env):
    spec = {**SPEC, "name": "kf", "execution": {"max_retries": 1}}
    plan = make_plan(spec_module.parse(spec))
    broken = next(b for b in plan.branches if b.point.method == "pf")
    # A file where the trial's stage directory must go: every attempt fails to write there
    # (a corrupt checkpoint no longer does that: it is recomputed).
    stage = tmp_path / "results" / "kf" / "artifacts" / broken.trunk.artifact_dir / \
        broken.stage_dir
    stage.parent.mkdir(parents=True)
    stage.write_bytes(b"not a directory")

    proc = lottery(["run", str(write_spec(tmp_path / "kf.yaml", spec)), "--storage",
                    str(tmp_path / "results")], ray_env, tmp_path, check=False)
    assert proc.returncode == 1
    assert broken.trial_id in proc.stderr
    assert n_rows(tmp_path / "results" / "kf") == len(plan.points) - 1
    status = lottery(["status", "kf", "--storage", str(tmp_path / "results")], ray_env,
                     tmp_path)
    assert "1 failed" in status.stdout and broken.trial_id in status.stdout
    state = json.loads((tmp_path / "results" / "kf" / "trials" /
                        f"{broken.trial_id}.json").read_text())
    assert state["state"] == "failed" and "Error" in state["error"]
