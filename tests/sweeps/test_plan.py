"""Tests for sweeps/plan.py: grid -> chain and branch trials, each grid point exactly once."""

from __future__ import annotations

import dataclasses
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import sweeps
from sweeps.keys import point_key
from sweeps.keys import trunk_key
from sweeps.plan import Plan
from sweeps.plan import describe
from sweeps.plan import make_plan
from sweeps.spec import SweepSpec
from sweeps.spec import load
from sweeps.spec import parse
from trainer import jobs
from trainer import levels
from trainer.jobs import BranchJob
from trainer.jobs import ChainJob

QUICKSTART = Path(sweeps.__file__).parent / "configs" / "quickstart.yaml"


@pytest.fixture(scope="module")
def quickstart() -> SweepSpec:
    return load(QUICKSTART)


@pytest.fixture(scope="module")
def plan(quickstart: SweepSpec) -> Plan:
    return make_plan(quickstart)


def _spec(**overrides: Any) -> SweepSpec:
    return parse({"name": "t", "lrs": [0.1], "seeds": [0], **overrides})


def _jobs(p: Plan) -> list[ChainJob | BranchJob]:
    return [*p.chains, *p.branches]


def _trial_ids(p: Plan) -> list[str]:
    return [j.trial_id for j in _jobs(p)]


def _hashes(p: Plan) -> list[str]:
    return [pt.config_hash for pt in p.points]


def test_quickstart_point_count_is_dense_plus_sparse_grid(quickstart: SweepSpec,
                                                          plan: Plan) -> None:
    n_lrs, n_seeds, n_sparsities = len(quickstart.lrs), len(quickstart.seeds), \
        len(quickstart.sparsities)
    expected = n_lrs * n_seeds + 4 * n_lrs * n_sparsities * n_seeds
    assert len(plan.points) == expected == 52


def test_every_grid_point_appears_exactly_once(quickstart: SweepSpec, plan: Plan) -> None:
    hashes = _hashes(plan)
    assert len(set(hashes)) == len(hashes)
    by_trunk = Counter((j.trunk.train.lr, j.trunk.seed) for j in plan.branches)
    grid = Counter((c.trunk.train.lr, c.trunk.seed, p.method, p.target_sparsity)
                   for c in plan.chains for p in c.points)
    grid.update((b.trunk.train.lr, b.trunk.seed, b.point.method, b.point.target_sparsity)
                for b in plan.branches)
    expected = {(lr, seed, "dense", 0.0) for lr in quickstart.lrs for seed in quickstart.seeds}
    expected |= {(lr, seed, m, s) for lr in quickstart.lrs for seed in quickstart.seeds
                 for m in quickstart.methods if m != "dense" for s in quickstart.sparsities}
    assert set(grid) == expected
    assert set(grid.values()) == {1}
    assert set(by_trunk.values()) == {12}  # 4 sparse methods x 3 sparsities per trunk


def test_one_chain_per_lr_and_seed(quickstart: SweepSpec, plan: Plan) -> None:
    trunks = [(c.trunk.train.lr, c.trunk.seed) for c in plan.chains]
    assert sorted(trunks) == sorted((lr, s) for lr in quickstart.lrs for s in quickstart.seeds)
    assert all(plan.chain_of(b).trunk == b.trunk for b in plan.branches)


def test_quickstart_sparsities_are_off_level_so_chains_hold_only_dense(plan: Plan) -> None:
    assert all([p.method for p in c.points] == ["dense"] for c in plan.chains)
    assert len(plan.branches) == 48


def test_lth_on_imp_levels_comes_from_the_chain_and_off_level_from_a_branch() -> None:
    p = make_plan(_spec(methods=["dense", "lth"], sparsities=[0.36, 0.488, 0.5]))
    (chain,) = p.chains
    assert [(pt.method, pt.target_sparsity) for pt in chain.points] == \
        [("dense", 0.0), ("lth", 0.36), ("lth", 0.488)]
    assert [(b.point.method, b.point.target_sparsity) for b in p.branches] == [("lth", 0.5)]


def test_other_methods_on_imp_levels_are_still_branches() -> None:
    p = make_plan(_spec(methods=["pf", "random_reinit"], sparsities=[0.36]))
    assert p.chains[0].points == ()
    assert sorted(b.point.method for b in p.branches) == ["pf", "random_reinit"]


def test_chain_levels_reach_the_deepest_target(quickstart: SweepSpec, plan: Plan) -> None:
    rate = quickstart.pruning.rate
    expected = max(levels.level_for(s, rate) for s in quickstart.sparsities)
    assert expected == 10  # 0.9 lies between level 10 (0.893) and level 11 (0.914)
    assert all(c.levels == expected for c in plan.chains)
    assert all([t.sparsity for t in c.targets] == [0.5, 0.8, 0.9] for c in plan.chains)


def test_chain_levels_for_unsorted_sparsities() -> None:
    p = make_plan(_spec(methods=["lth"], sparsities=[0.5, 0.2]))
    assert p.chains[0].levels == levels.level_for(0.5, 0.2) == 3
    assert [t.sparsity for t in p.chains[0].targets] == [0.2, 0.5]


def test_total_epochs_counts_chain_levels_and_branch_runs(plan: Plan) -> None:
    # 4 chains x (10 levels + dense) x 10 epochs + 48 branches x 10 epochs
    assert [plan.epochs(c) for c in plan.chains] == [110] * 4
    assert {plan.epochs(b) for b in plan.branches} == {10}
    assert plan.total_epochs == 4 * 110 + 48 * 10 == 920


def test_a_chains_stored_levels_leave_its_epoch_budget(plan: Plan) -> None:
    """A re-run loads a level whose curves part is committed: the progress budget of a
    relaunched chain counts only the levels it still trains."""
    chain = plan.chains[0]
    assert plan.epochs(chain, set(chain.stage_parts[:4])) == 110 - 4 * 10
    assert plan.epochs(chain, {"another-trial-L0"}) == 110
    assert plan.epochs(chain, set(chain.stage_parts)) == 0


def test_total_epochs_of_a_small_grid() -> None:
    p = make_plan(_spec(methods=["dense", "lth", "pf"], sparsities=[0.36, 0.488, 0.5],
                        training={"epochs": 3}))
    assert p.chains[0].levels == 3
    assert len(p.branches) == 4  # lth@0.5, pf@0.36, pf@0.488, pf@0.5
    assert p.total_epochs == (3 + 1) * 3 + 4 * 3


def test_dense_only_plan_trains_one_level_and_has_no_branches() -> None:
    p = make_plan(_spec(methods=["dense"], sparsities=[], lrs=[0.1, 0.2], seeds=[0, 1]))
    assert p.branches == ()
    assert [c.levels for c in p.chains] == [0] * 4
    assert [len(c.points) for c in p.chains] == [1] * 4
    assert p.total_epochs == 4 * 10


def test_methods_without_dense_give_chains_without_a_dense_point() -> None:
    p = make_plan(_spec(methods=["lth", "pf"], sparsities=[0.5, 0.8]))
    assert all(pt.method != "dense" for pt in p.points)
    assert all(c.points == () for c in p.chains)
    assert len(p.points) == 4


def test_trial_ids_are_deterministic_and_unique(quickstart: SweepSpec) -> None:
    first, second = make_plan(quickstart), make_plan(load(QUICKSTART))
    ids = _trial_ids(first)
    assert ids == _trial_ids(second)
    assert _hashes(first) == _hashes(second)
    assert len(set(ids)) == len(ids) == 52


def test_trial_ids_are_readable_and_path_safe(plan: Plan) -> None:
    assert plan.chains[0].trial_id == "chain-lenet_300_100-digits-lr0.01-seed0-53e91874"
    assert all(re.fullmatch(r"[A-Za-z0-9_.-]+", tid) for tid in _trial_ids(plan))
    assert all(b.trial_id.startswith(f"{b.point.method}-") for b in plan.branches)
    assert all(b.trial_id.endswith(b.point.config_hash[:8]) for b in plan.branches)


def test_adding_grid_values_keeps_every_existing_hash_and_trial_id(
        quickstart: SweepSpec, plan: Plan) -> None:
    bigger = make_plan(quickstart.model_copy(update={
        "sparsities": [*quickstart.sparsities, 0.95], "seeds": [*quickstart.seeds, 7],
        "lrs": [*quickstart.lrs, 0.05]}))
    assert set(_hashes(plan)) < set(_hashes(bigger))
    assert set(_trial_ids(plan)) < set(_trial_ids(bigger))
    assert len(bigger.points) == 3 * 3 * (1 + 4 * 4)


def test_adding_a_sparsity_adds_only_its_points(quickstart: SweepSpec, plan: Plan) -> None:
    bigger = make_plan(quickstart.model_copy(update={"sparsities": [0.5, 0.8, 0.9, 0.95]}))
    new = set(_hashes(bigger)) - set(_hashes(plan))
    assert len(new) == 4 * len(quickstart.lrs) * len(quickstart.seeds)
    assert {pt.target_sparsity for pt in bigger.points if pt.config_hash in new} == {0.95}


def test_changing_epochs_changes_the_trunk_key_and_every_point() -> None:
    short, long = make_plan(_spec()), make_plan(_spec(training={"epochs": 20}))
    assert trunk_key(short.chains[0].trunk) != trunk_key(long.chains[0].trunk)
    assert not set(_hashes(short)) & set(_hashes(long))
    assert short.chains[0].trunk.artifact_dir != long.chains[0].trunk.artifact_dir


def test_seed_is_outside_the_trunk_key(plan: Plan) -> None:
    seed0, seed1 = plan.chains[0].trunk, plan.chains[1].trunk
    assert (seed0.train.lr, seed0.seed, seed1.seed) == (seed1.train.lr, 0, 1)
    assert trunk_key(seed0) == trunk_key(seed1)
    assert point_key(seed0, "dense", 0.0) != point_key(seed1, "dense", 0.0)


def test_non_result_settings_do_not_change_keys() -> None:
    base = make_plan(_spec())
    other = make_plan(_spec(resources={"cpu": 4, "gpu": 0.5}, storage="/elsewhere",
                            execution={"max_retries": 0, "max_concurrent_trials": 3}))
    assert _hashes(base) == _hashes(other)
    assert _trial_ids(base) == _trial_ids(other)


def test_data_location_does_not_change_keys() -> None:
    base = make_plan(_spec())
    moved = make_plan(_spec(data={"root": "/mnt/datasets", "download": True}))
    assert _hashes(base) == _hashes(moved)


def test_keys_are_pinned(plan: Plan) -> None:
    # Regression values like tests/sweeps/test_store.py: a changed key is a bug, not an update.
    trunk = plan.chains[0].trunk
    assert trunk_key(trunk) == "53e918749c7e3ac9"
    assert point_key(trunk, "dense", 0.0) == "d8c5332edaf7a572"
    assert trunk.artifact_dir == "lenet_300_100-digits-53e918749c7e3ac9/replicate_0"


def test_artifact_dir_is_model_dataset_key_and_replicate(plan: Plan) -> None:
    for job in _jobs(plan):
        t = job.trunk
        assert t.artifact_dir == f"{t.model}-{t.data.name}-{trunk_key(t)}/replicate_{t.seed}"
        assert re.fullmatch(r"lenet_300_100-digits-[0-9a-f]{16}/replicate_[01]", t.artifact_dir)


def test_point_key_normalizes_integer_sparsity(plan: Plan) -> None:
    trunk = plan.chains[0].trunk
    assert point_key(trunk, "dense", 0) == point_key(trunk, "dense", 0.0)


def test_describe_has_one_row_per_trial(plan: Plan) -> None:
    table = describe(plan)
    assert list(table["trial_id"]) == _trial_ids(plan)
    assert table["phase"].value_counts().to_dict() == {"branch": 48, "chain": 4}
    assert table["epochs"].sum() == plan.total_epochs
    chain_row = table.iloc[0]
    assert (chain_row["methods"], chain_row["sparsities"], chain_row["levels"]) == \
        ("dense", "-", 10)


def test_multi_model_multi_dataset_spec_crosses_the_axes() -> None:
    p = make_plan(_spec(model=["lenet_300_100", "conv2"], dataset=["digits", "mnist"],
                        methods=["dense", "lth"], sparsities=[0.5], seeds=[0, 1]))
    combos = Counter((c.trunk.model, c.trunk.data.name) for c in p.chains)
    assert combos == {(m, d): 2 for m in ("lenet_300_100", "conv2")
                      for d in ("digits", "mnist")}
    assert len({trunk_key(c.trunk) for c in p.chains}) == 4
    assert len(p.points) == 8 * 2
    assert len(set(_trial_ids(p))) == 8 + 8
    assert all(c.trunk.artifact_dir.startswith(f"{c.trunk.model}-{c.trunk.data.name}-")
               for c in p.chains)


def test_jobs_round_trip_through_dict_and_json(plan: Plan) -> None:
    plan_with_lists = make_plan(_spec(training={"milestones": [5, 8]},
                                      pruning={"keep_dense": ["first", "output"]}))
    every_axis = make_plan(_spec(  # recipes, class selections, transfer arms, a rewind walk
        dataset=["digits[0-4]", "digits[5-9]"], sparsities=[0.5],
        methods=["dense", "lth", "lth_rewind", "sdt", "transfer", "rst"],
        pruning={"rewind": {"iterations": 10}},
        recipes={"base": {}, "smooth": {"label_smoothing": 0.1},
                 "swish": {"activation": "swish", "warmup_epochs": 0.5}},
        transfer={"targets": ["digits[5,6,7,8,9]"]}))
    assert any(c.rewind for c in every_axis.chains)
    for job in _jobs(plan) + _jobs(plan_with_lists) + _jobs(every_axis):
        encoded = jobs.to_dict(job)
        assert jobs.from_dict(encoded) == job
        assert jobs.from_dict(json.loads(json.dumps(encoded))) == job


def test_from_dict_rejects_an_unknown_type() -> None:
    with pytest.raises(ValueError, match="unknown job type 'Evil'"):
        jobs.from_dict({"__type__": "Evil", "x": 1})


def test_code_version_travels_in_every_job(quickstart: SweepSpec) -> None:
    p = make_plan(quickstart, code_version="0.1.0+abc")
    assert {j.code_version for j in _jobs(p)} == {"0.1.0+abc"}
    assert _trial_ids(p) == _trial_ids(make_plan(quickstart))
    assert dataclasses.replace(p.chains[0], code_version="") == make_plan(quickstart).chains[0]


def test_one_shot_methods_need_only_the_dense_level_and_their_own_masks() -> None:
    p = make_plan(_spec(methods=["dense", "omp_lth", "omp_pf"], sparsities=[0.9]))
    chain = p.chains[0]
    assert chain.levels == 0 and chain.level_targets == (0.0,)
    assert [(t.producer, t.sparsity) for t in chain.targets] == [("one_shot", 0.9)]
    for branch in p.branches:
        assert branch.stage_dir.startswith(f"one_shot/{branch.point.method}-sparsity_0.9-")
        assert branch.mask_blob == chain.targets[0].mask_blob
        assert branch.point.curves == (jobs.curves_part(chain.trial_id, 0), branch.trial_id)


def test_imp_and_one_shot_masks_at_one_sparsity_are_different_blobs() -> None:
    p = make_plan(_spec(methods=["lth", "omp_lth"], sparsities=[0.5]))
    names = {t.producer: t.mask_blob for t in p.chains[0].targets}
    assert set(names) == {"imp", "one_shot"} and names["imp"] != names["one_shot"]
    assert names["one_shot"].startswith("masks/one_shot-sparsity_0.5-")
    assert p.chains[0].levels == levels.level_for(0.5, 0.2)


def test_masks_and_stages_of_nearly_equal_sparsities_never_share_a_name() -> None:
    p = make_plan(_spec(methods=["lth", "pf"], sparsities=[0.9, 0.9000001]))
    blobs = {t.mask_blob for t in p.chains[0].targets}
    stages = {b.stage_dir for b in p.branches}
    assert len(blobs) == 2 and len(stages) == len(p.branches) == 4
