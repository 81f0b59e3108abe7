"""Integration: a small digits grid through a real local Ray Tune, checked row by row."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import lottery
from conftest import write_spec

from analysis.load import load_curves
from analysis.load import load_layers
from analysis.load import load_runs
from sweeps import spec as spec_module
from sweeps.plan import make_plan
from sweeps.run import code_version
from sweeps.store import Store
from sweeps.trial_run import run_job
from trainer import levels

pytestmark = pytest.mark.ray

SPEC = {"name": "itest", "dataset": "digits", "model": "lenet_300_100",
        "methods": ["dense", "lth", "random_reinit", "random_pruning", "pf"],
        "lrs": [0.05], "sparsities": [0.36, 0.5], "seeds": [0, 1],
        "training": {"epochs": 2, "batch_size": 128},
        "pruning": {"rate": 0.2, "scope": "layerwise", "keep_dense": ["output"]}}
VOLATILE = ["wall_time_s"]


def _parts_digest(sweep_dir: Path) -> dict[str, str]:
    """Every file of the runs table, loose or compacted, by its digest."""
    return {str(p.relative_to(sweep_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(sweep_dir.glob("runs/*.parquet"))}


def _expected_total_epochs(row: pd.Series, epochs: int) -> int:
    if row.method == "dense":
        return epochs
    if row.method == "random_pruning":  # layer-wise: the random mask needs no training
        return epochs
    if row.method == "pf":
        return max(row.level * epochs, epochs) + epochs
    return row.level * epochs + epochs


@pytest.fixture(scope="module")
def swept(tmp_path_factory, ray_env):
    """Run the grid once through the CLI (real Ray); share the result across tests."""
    env = ray_env
    work = tmp_path_factory.mktemp("itest")
    spec_path = write_spec(work / "itest.yaml", SPEC)
    proc = lottery(["run", str(spec_path), "--storage", str(work / "results")], env, work)
    return {"work": work, "env": env, "proc": proc, "spec_path": spec_path,
            "sweep_dir": work / "results" / "itest"}


def test_run_prints_the_report_and_launches_every_trial(swept):
    plan = make_plan(spec_module.parse(SPEC))
    assert "Final test accuracy" in swept["proc"].stdout
    n_trials = len(plan.chains) + len(plan.branches)
    assert f"{n_trials} trials launched" in swept["proc"].stderr
    assert "0 failed" in swept["proc"].stderr
    assert "parts compacted" in swept["proc"].stderr


def test_runs_table_has_exactly_one_row_per_grid_point(swept):
    plan = make_plan(spec_module.parse(SPEC))
    runs = load_runs(swept["sweep_dir"])
    assert len(runs) == 2 + 4 * 2 * 2 == len(plan.points)
    assert sorted(runs.config_hash) == sorted(p.config_hash for p in plan.points)
    grid = set(zip(runs.method, runs.lr, runs.target_sparsity, runs.seed, strict=True))
    assert len(grid) == len(runs)
    assert set(pd.read_parquet(swept["sweep_dir"] / "runs").config_hash) == set(runs.config_hash)
    # the run compacted (in its tail, then at its end, folding the tail's file): one file per
    # table, no loose part left
    for table in ("runs", "layers", "curves"):
        assert not list((swept["sweep_dir"] / table).glob("part-*.parquet"))
        assert len(list((swept["sweep_dir"] / table).glob("compact-*.parquet"))) == 1


def test_each_row_is_consistent_with_its_method(swept):
    runs = load_runs(swept["sweep_dir"])
    trial_ids = {p.config_hash: j.trial_id for j in make_plan(spec_module.parse(SPEC)).chains
                 for p in j.points}
    trial_ids |= {b.point.config_hash: b.trial_id
                  for b in make_plan(spec_module.parse(SPEC)).branches}
    for _, row in runs.iterrows():
        assert row.sweep == "itest" and row.model == "lenet_300_100" and row.dataset == "digits"
        assert row.trial_id == trial_ids[row.config_hash]
        assert row.epochs == 2
        assert row.total_epochs == _expected_total_epochs(row, 2), row.method
        assert 0.5 < row.test_acc <= 1.0 and row.best_test_acc >= row.test_acc
        assert 1 <= row.best_epoch <= 2
        for p in (10, 20, 30, 40, 50):
            assert 0.0 <= row[f"rp_dense_p{p}"] <= 1.0
        assert 0.0 <= row.rp_run_p20 <= 1.0
        assert row.code_version and row.device == "cpu" and row.wall_time_s > 0
        if row.method == "dense":
            assert row.target_sparsity == 0 and row.sparsity == 0 and row.level == 0
            assert row.rp_run_p20 == pytest.approx(row.rp_dense_p20)
        else:
            # the output layer (1,000 of 26,500 prunable weights) stays dense
            assert 0.9 * row.target_sparsity < row.sparsity < row.target_sparsity + 1e-3
            expected_level = levels.level_for(row.target_sparsity, 0.2) + (
                0 if levels.is_level_sparsity(row.target_sparsity, 0.2) else 1)
            assert row.level == expected_level
    # R_p(θ0, θT) is one number per (lr, seed): every row of a replicate carries the same one
    assert (runs.groupby("seed").rp_dense_p20.nunique() == 1).all()


def test_curves_and_layers_tables_cover_every_trial(swept):
    plan = make_plan(spec_module.parse(SPEC))
    curves = load_curves(swept["sweep_dir"])
    per_trial = curves.groupby("trial_id").size().to_dict()
    for chain in plan.chains:
        assert per_trial[chain.trial_id] == (chain.levels + 1) * 2
        assert sorted(curves[curves.trial_id == chain.trial_id].level.unique()) == list(
            range(chain.levels + 1))
    for branch in plan.branches:
        assert per_trial[branch.trial_id] == 2
    layers = load_layers(swept["sweep_dir"])
    runs = load_runs(swept["sweep_dir"]).set_index("config_hash")
    assert len(layers) == 3 * len(runs)
    for key, group in layers.groupby("config_hash"):
        assert 1 - group.n_kept.sum() / group.n_weights.sum() == pytest.approx(
            runs.loc[key, "sparsity"])
        assert (group[group.layer == "fc3.weight"].n_kept == 1000).all()


def test_ray_run_equals_a_plain_in_process_run(swept, tmp_path):
    """The Ray path adds nothing to the numbers: same spec, same rows on CPU."""
    plan = make_plan(spec_module.parse(SPEC), code_version())
    direct = Store(str(tmp_path)).child("itest")
    for job in (*plan.chains, *plan.branches):
        run_job(job, direct, torch.device("cpu"))
    via_ray = load_runs(swept["sweep_dir"]).drop(columns=VOLATILE)
    plain = load_runs(tmp_path / "itest").drop(columns=VOLATILE)
    pd.testing.assert_frame_equal(via_ray, plain)


def test_rerun_launches_nothing_and_rewrites_nothing(swept):
    before = _parts_digest(swept["sweep_dir"])
    proc = lottery(["run", str(swept["spec_path"]), "--storage",
                    str(swept["work"] / "results")], swept["env"], swept["work"])
    assert "0 trials launched" in proc.stderr
    assert _parts_digest(swept["sweep_dir"]) == before
    status = lottery(["status", "itest", "--storage", str(swept["work"] / "results")],
                     swept["env"], swept["work"])
    assert "grid points done: 18 of 18" in status.stdout
    assert "0 pending" in status.stdout and "0 failed" in status.stdout


def test_growing_the_grid_runs_only_the_new_points(swept):
    before = _parts_digest(swept["sweep_dir"])
    bigger = {**SPEC, "sparsities": [0.36, 0.5, 0.8]}
    spec_path = write_spec(swept["work"] / "bigger.yaml", bigger)
    proc = lottery(["run", str(spec_path), "--storage", str(swept["work"] / "results")],
                   swept["env"], swept["work"])
    # 0.8 is not an IMP level: lth, random_reinit, random_pruning, pf branches x 2 seeds,
    # plus the 2 chain trials, which train only the new levels.
    assert "10 trials launched" in proc.stderr
    assert "18 grid points already done" in proc.stderr
    after = _parts_digest(swept["sweep_dir"])
    assert len(after) == len(before) + 1  # the new points' rows, compacted into one file
    assert {k: after[k] for k in before} == before
    assert len(load_runs(swept["sweep_dir"])) == 26


def test_gpu_request_on_a_machine_without_gpus_fails_before_writing(tmp_path, ray_env):
    """Tune would leave such trials PENDING forever (RAY_FACTS §2); we refuse up front."""
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    spec_path = write_spec(tmp_path / "g.yaml", {**SPEC, "name": "gpu",
                                                 "resources": {"cpu": 1, "gpu": 0.25}})
    proc = lottery(["run", str(spec_path), "--storage", str(tmp_path / "results")], ray_env,
                   tmp_path, check=False)
    assert proc.returncode == 2
    assert "resources.gpu" in proc.stderr and "0.25 GPU" in proc.stderr
    assert not (tmp_path / "results" / "gpu" / "spec.json").exists()


def test_branches_start_while_their_chain_still_walks(tmp_path, ray_env):
    """One trunk on 2 slots: the second slot takes branches as the chain stores their masks,
    in one Tune experiment, instead of idling until the chain ends."""
    spec = {"name": "overlap", "dataset": "digits", "model": "lenet_300_100",
            "methods": ["dense", "lth", "random_reinit", "pf"], "lrs": [0.05],
            "sparsities": [0.2, 0.36, 0.59, 0.8], "seeds": [0],
            "training": {"epochs": 20, "batch_size": 16}}
    spec_path = write_spec(tmp_path / "overlap.yaml", spec)
    lottery(["run", str(spec_path), "--storage", str(tmp_path / "results")], ray_env, tmp_path)
    store = Store(str(tmp_path / "results")).child("overlap")
    states = {name[:-5]: store.get_json(f"trials/{name}") for name in store.list("trials")}
    chain = next(s for name, s in states.items() if name.startswith("chain-"))
    branches = [s for name, s in states.items() if not name.startswith("chain-")]
    assert chain["state"] == "done" and all(b["state"] == "done" for b in branches)
    early = [b for b in branches if b["started"] < chain["updated"]]
    assert early, "no branch ran beside its chain"
    assert len(load_runs(tmp_path / "results" / "overlap")) == 1 + 3 * 4
