"""Fault injection in one sweep, with real processes and real files (issue #10).

One sweep directory goes through, in order: a second driver started while the first runs, a
SIGKILL of a trial's worker, five SIGKILLs of the driver at random (seeded) moments, a deleted
``layers`` part, a deleted ``curves`` part, a truncated ``runs`` part and a truncated
final.pt. After each fault ``lottery resume`` must end with exactly one row per grid point in
every table, equal (all columns but wall_time_s) to an uninterrupted run's, and a repair must
retrain only what was really lost. Last, an old ``spec.json`` lacking fields that now have
defaults resumes, and its grid grows.
"""

from __future__ import annotations

import json
import os
import random
import signal
import time
from pathlib import Path

import pytest
from conftest import assert_same_tables
from conftest import kill_driver
from conftest import kill_tree
from conftest import lottery
from conftest import reference_run
from conftest import start_driver
from conftest import wait_for
from conftest import write_spec

from analysis.load import load_runs
from sweeps import spec as spec_module
from sweeps.plan import make_plan
from trainer import stage

pytestmark = pytest.mark.ray

# Small batches make epochs slow enough (~0.1 s) to be interrupted mid-trial, and every epoch
# is checkpointed so a kill lands mid-stage. The faults hit single loose parts, so the sweep
# is left uncompacted (test_compact covers compacted files).
SPEC = {"name": "fi", "dataset": "digits", "methods": ["dense", "lth", "random_reinit", "pf"],
        "lrs": [0.05], "sparsities": [0.5, 0.8], "seeds": [0, 1],
        "training": {"epochs": 6, "batch_size": 16},
        "execution": {"max_retries": 2, "compact": False, "checkpoint_every_s": 0}}
PLAN = make_plan(spec_module.parse(SPEC))


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    return reference_run(SPEC, tmp_path_factory.mktemp("reference"))


class Sweep:
    """The sweep under test: its directory and the CLI calls on it."""

    def __init__(self, work: Path, env: dict) -> None:
        self.work, self.env = work, env
        self.storage = work / "results"
        self.dir = self.storage / "fi"
        self.spec_path = write_spec(work / "fi.yaml", SPEC)

    def start(self, command: str = "resume"):
        target = str(self.spec_path) if command == "run" else "fi"
        return start_driver([command, target, "--storage", str(self.storage)], self.env,
                            self.work)

    def resume(self):
        return lottery(["resume", "fi", "--storage", str(self.storage)], self.env, self.work)

    def status(self) -> str:
        return lottery(["status", "fi", "--storage", str(self.storage)], self.env,
                       self.work).stdout

    def trial(self, trial_id: str) -> dict:
        return json.loads((self.dir / "trials" / f"{trial_id}.json").read_text())

    def trained_since(self, since: float) -> dict[str, int]:
        """Epochs trained by each trial that finished after ``since``."""
        out = {}
        for path in (self.dir / "trials").glob("*.json"):
            state = json.loads(path.read_text())
            if state["state"] == "done" and state["updated"] >= since:
                out[state["trial_id"]] = state["epochs_trained"]
        return out

    def artifacts(self, job) -> Path:
        return self.dir / "artifacts" / job.trunk.artifact_dir


def _running_chain_mid_level(sweep: Sweep) -> dict | None:
    """A chain trial whose current level has a checkpoint but no final.pt yet."""
    for chain in PLAN.chains:
        path = sweep.dir / "trials" / f"{chain.trial_id}.json"
        state = json.loads(path.read_text()) if path.exists() else {}
        if state.get("state") != "running":
            continue
        for level in range(1, chain.levels + 1):
            blobs = sweep.artifacts(chain) / f"level_{level}"
            if any((blobs / s).exists() for s in stage.CHECKPOINT_SLOTS) and \
                    not (blobs / stage.FINAL).exists():
                return state
    return None


def test_one_sweep_survives_every_fault(tmp_path, ray_env, reference):
    sweep = Sweep(tmp_path, ray_env)
    rng = random.Random(10)

    # 1. A second driver of the same sweep is refused within seconds, naming the holder.
    first = sweep.start("run")
    wait_for(lambda: (sweep.dir / "lease.json").exists(), first)
    t0 = time.monotonic()
    second = lottery(["run", str(sweep.spec_path), "--storage", str(sweep.storage)], ray_env,
                     tmp_path, check=False)
    assert second.returncode == 2, second.stderr[-3000:]
    assert "sweep fi is in use by" in second.stderr and f":{first.pid} since" in second.stderr
    assert "last heartbeat" in second.stderr and "Traceback" not in second.stderr
    assert time.monotonic() - t0 < 60  # python + torch import; no Ray was started

    # 2. SIGKILL a trial's worker mid-level: Tune retries it from its checkpoint.
    victim: dict = {}
    wait_for(lambda: victim.update(_running_chain_mid_level(sweep) or {}) or bool(victim),
             first)
    os.kill(victim["pid"], signal.SIGKILL)

    # 3. Five SIGKILLs of the driver at random moments (the first one's included).
    time.sleep(rng.uniform(1, 4))
    kill_driver(first, ray_env)
    for _ in range(4):
        driver = sweep.start()
        time.sleep(rng.uniform(4, 14))
        kill_driver(driver, ray_env)
        assert load_runs(sweep.dir).config_hash.is_unique
    status = sweep.status()  # no trial of a dead driver is shown as running
    assert "driver: not running" in status and ", 0 running," in status
    done = sweep.resume()
    assert "0 failed" in done.stderr
    assert_same_tables(sweep.dir, reference)

    # 4. A deleted layers part: the point is repaired from final.pt, nothing retrained.
    lth = next(b for b in PLAN.branches if b.point.method == "lth")
    (sweep.dir / "layers" / f"part-{lth.point.config_hash}.parquet").unlink()
    assert "grid points done: 13 of 14" in sweep.status()
    since = time.time()
    sweep.resume()
    trained = sweep.trained_since(since)  # the branch, and its chain for θT and the mask
    assert trained == {lth.trial_id: 0, PLAN.chain_of(lth).trial_id: 0}
    assert_same_tables(sweep.dir, reference)

    # 5. A deleted curves part of a chain level: its chain and the branches on it, untrained.
    chain = PLAN.chains[0]
    (sweep.dir / "curves" / f"part-{chain.trial_id}-L2.parquet").unlink()
    since = time.time()
    sweep.resume()
    trained = sweep.trained_since(since)
    assert chain.trial_id in trained and set(trained.values()) == {0}
    assert_same_tables(sweep.dir, reference)

    # 6. A truncated runs part: named by the loaders and status, quarantined and recomputed.
    pf = next(b for b in PLAN.branches if b.point.method == "pf")
    part = sweep.dir / "runs" / f"part-{pf.point.config_hash}.parquet"
    part.write_bytes(part.read_bytes()[:200])
    report = lottery(["report", "fi", "--storage", str(sweep.storage)], ray_env, tmp_path,
                     check=False)
    assert report.returncode == 1 and str(part) in report.stderr
    assert "Traceback" not in report.stderr
    assert f"{part}: not a valid Parquet file" in sweep.status()
    since = time.time()
    resumed = sweep.resume()
    assert f"repaired: {part}" in resumed.stderr
    assert list((sweep.dir / "quarantine" / "runs").iterdir())
    assert sweep.trained_since(since) == {pf.trial_id: 0, PLAN.chain_of(pf).trial_id: 0}
    assert_same_tables(sweep.dir, reference)

    # 7. A truncated final.pt of a stage whose rows are lost: its checkpoints were deleted
    #    once it finished, so the stage trains again from its start, and never fails forever.
    rr = next(b for b in PLAN.branches if b.point.method == "random_reinit")
    blobs = sweep.artifacts(rr) / rr.stage_dir
    assert not any((blobs / s).exists() for s in stage.CHECKPOINT_SLOTS)
    final = blobs / stage.FINAL
    final.write_bytes(final.read_bytes()[:300])
    (sweep.dir / "runs" / f"part-{rr.point.config_hash}.parquet").unlink()
    since = time.time()
    sweep.resume()
    assert sweep.trained_since(since) == {rr.trial_id: 6, PLAN.chain_of(rr).trial_id: 0}
    assert_same_tables(sweep.dir, reference)
    assert "grid points done: 14 of 14" in sweep.status()

    # 8. An old spec.json (fields that now have defaults missing) resumes and extends its grid.
    raw = json.loads((sweep.dir / "spec.json").read_text())
    del raw["data"]["test_subset"], raw["data"]["train_subset"], raw["execution"]
    (sweep.dir / "spec.json").write_text(json.dumps(raw))
    # Without an execution group the default compact=True holds: this resume compacts.
    assert "0 trials launched, 14 grid points already done" in sweep.resume().stderr
    bigger = write_spec(tmp_path / "bigger.yaml", {**SPEC, "sparsities": [0.5, 0.8, 0.9]})
    before = {p.name: p.read_bytes() for p in (sweep.dir / "runs").iterdir()}
    grown = lottery(["run", str(bigger), "--storage", str(sweep.storage)], ray_env, tmp_path)
    assert "14 grid points already done" in grown.stderr
    after = {p.name: p.read_bytes() for p in (sweep.dir / "runs").iterdir()}
    assert len(after) == len(before) + 6 and {k: after[k] for k in before} == before
    assert len(load_runs(sweep.dir)) == 14 + 6
    kill_tree(ray_env["RAY_TMPDIR"])
