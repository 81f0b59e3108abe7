"""Tests for lth_rewind in the planner (sweeps/plan.py): the chain's rewind walk, its points
and branches, its tickets and its epochs (``Plan.epochs``).

Nothing is trained: these check the jobs, keys and paths ``make_plan`` lays out.
"""

from __future__ import annotations

import math
import re

import pytest
from plan_helpers import branches
from plan_helpers import only_chain
from plan_helpers import small_spec

from sweeps.keys import mask_blob
from sweeps.keys import rewind_root
from sweeps.keys import trunk_key
from sweeps.plan import Plan
from sweeps.plan import make_plan
from trainer import levels
from trainer.jobs import curves_part
from trainer.methods.lth_rewind import RewindHparams

DIGITS_TRAIN = 1437
BATCH = 64


# --- lth_rewind -------------------------------------------------------------------------------

REWIND = {"methods": ["dense", "lth", "lth_rewind"], "sparsities": [0.36, 0.5]}


@pytest.fixture(scope="module")
def rewind() -> Plan:
    return make_plan(small_spec(**REWIND))


@pytest.fixture(scope="module")
def rewind_iters() -> Plan:
    return make_plan(small_spec(**REWIND, pruning={"rewind": {"iterations": 5}}))


@pytest.mark.parametrize(
    ("fixture", "hp", "prefix"),
    [("rewind", RewindHparams(epochs=1), "rewind-epochs_1-"),
     ("rewind_iters", RewindHparams(epochs=None, iterations=5), "rewind-iterations_5-")],
)
def test_the_chain_gets_a_rewind_walk_rooted_by_its_rewind_point(
        request: pytest.FixtureRequest, fixture: str, hp: RewindHparams, prefix: str) -> None:
    chain = only_chain(request.getfixturevalue(fixture))
    walk = chain.rewind
    assert walk is not None
    assert walk.root == rewind_root(hp)
    assert re.fullmatch(re.escape(prefix) + r"[0-9a-f]{16}", walk.root)
    assert walk.hparams == {"epochs": hp.epochs, "iterations": hp.iterations}
    assert walk.part == f"{chain.trial_id}-rw{walk.root.rsplit('-', 1)[1][:8]}"
    assert walk.levels == chain.levels == levels.level_for(0.5, 0.2)
    assert [(t.sparsity, t.producer) for t in walk.targets] == [(0.36, "rewind"),
                                                                (0.5, "rewind")]
    assert all(t.mask_blob == f"{walk.root}/{mask_blob(t.sparsity)}" for t in walk.targets)


def test_without_lth_rewind_there_is_no_rewind_walk() -> None:
    plan = make_plan(small_spec(methods=["dense", "lth", "pf"], sparsities=[0.5]))
    assert only_chain(plan).rewind is None


def test_on_level_plain_lth_rewind_is_a_rewind_walk_point(rewind: Plan) -> None:
    chain = only_chain(rewind)
    assert [(p.method, p.target_sparsity) for p in chain.rewind.points] == \
        [("lth_rewind", 0.36)]
    assert all(p.method != "lth_rewind" for p in chain.points)
    assert branches(rewind, "lth_rewind", 0.36) == []
    (point,) = chain.rewind.points
    assert point in chain.all_points
    walk = chain.rewind.part
    assert point.curves == (curves_part(chain.trial_id, 0), curves_part(walk, 1),
                            curves_part(walk, 2))


def test_off_level_lth_rewind_is_a_branch_under_the_rewind_root(rewind: Plan) -> None:
    chain = only_chain(rewind)
    root, walk = chain.rewind.root, chain.rewind.part
    (branch,) = branches(rewind, "lth_rewind", 0.5)
    level = levels.mask_level(0.5, 0.2)
    assert level == 4
    assert branch.mask_blob == f"{root}/{mask_blob(0.5)}"
    assert branch.stage_dir == f"{root}/level_{level}/lth_rewind-sparsity_0.5-" \
                               f"{branch.point.config_hash}"
    assert branch.method_hparams == chain.rewind.hparams
    assert branch.point.curves == (curves_part(chain.trial_id, 0),
                                   *(curves_part(walk, lv) for lv in (1, 2, 3)),
                                   branch.trial_id)


def test_plain_lth_still_stands_on_the_theta0_chain(rewind: Plan) -> None:
    chain = only_chain(rewind)
    (lth_point,) = [p for p in chain.points if p.method == "lth"]
    assert lth_point.curves == tuple(curves_part(chain.trial_id, lv) for lv in (0, 1, 2))
    (lth_branch,) = branches(rewind, "lth", 0.5)
    assert lth_branch.mask_blob == mask_blob(0.5)
    assert not lth_branch.stage_dir.startswith("rewind-")


def test_stage_parts_list_both_walks_levels(rewind: Plan) -> None:
    chain = only_chain(rewind)
    walk = chain.rewind.part
    assert chain.stage_parts == (
        *(curves_part(chain.trial_id, lv) for lv in range(chain.levels + 1)),
        *(curves_part(walk, lv) for lv in range(1, chain.rewind.levels + 1)))
    assert len(set(chain.stage_parts)) == len(chain.stage_parts) == 4 + 3


def test_changing_the_rewind_point_changes_only_the_rewind_walk(rewind: Plan,
                                                                rewind_iters: Plan) -> None:
    a, b = only_chain(rewind), only_chain(rewind_iters)
    assert a.rewind.root != b.rewind.root and a.rewind.part != b.rewind.part
    assert a.trunk == b.trunk and a.trial_id == b.trial_id
    assert trunk_key(a.trunk) == trunk_key(b.trunk)
    assert a.points == b.points
    others = {(p.method, p.target_sparsity): p.config_hash for p in rewind.points
              if p.method != "lth_rewind"}
    assert others == {(p.method, p.target_sparsity): p.config_hash for p in rewind_iters.points
                      if p.method != "lth_rewind"}
    assert {bj.trial_id for bj in rewind.branches if bj.point.method != "lth_rewind"} == \
        {bj.trial_id for bj in rewind_iters.branches if bj.point.method != "lth_rewind"}
    rewound = {p.config_hash for p in rewind.points if p.method == "lth_rewind"}
    assert len(rewound) == 2
    assert not rewound & {p.config_hash for p in rewind_iters.points}


def test_lth_rewind_with_another_recipe_is_a_branch_on_the_rewind_walk() -> None:
    plan = make_plan(small_spec(**REWIND, recipes={"base": {}, "ls": {"label_smoothing": 0.1}}))
    chain = only_chain(plan)
    assert [p.recipe for p in chain.rewind.points] == ["base"]
    (branch,) = [b for b in branches(plan, "lth_rewind", 0.36) if b.point.recipe == "ls"]
    assert branch.mask_blob == f"{chain.rewind.root}/{mask_blob(0.36)}"
    assert branch.stage_dir.startswith(f"{chain.rewind.root}/level_2/lth_rewind-")


def test_rewind_tickets_point_at_the_rewind_walks_masks(rewind: Plan) -> None:
    chain = only_chain(rewind)
    for s in (0.36, 0.5):
        (ticket,) = rewind.tickets("lth_rewind", s, seed=0)
        assert ticket.mask_blob == f"{chain.rewind.root}/{mask_blob(s)}"
        assert ticket.method_hparams == chain.rewind.hparams


# --- Plan.epochs with a rewind walk -----------------------------------------------------------

def _rewind_chain_epochs(plan: Plan) -> int:
    return plan.epochs(only_chain(plan))


def test_chain_epochs_count_dense_theta0_levels_and_shorter_rewind_levels(
        rewind_iters: Plan) -> None:
    chain = only_chain(rewind_iters)
    assert (chain.levels, chain.rewind.levels) == (3, 3)
    per_epoch = math.ceil(DIGITS_TRAIN / BATCH)  # 23 steps
    rewound = 3 - 5 / per_epoch
    assert rewind_iters.epochs(chain) == math.ceil((3 + 1) * 3 + 3 * rewound) == 21
    walk_level_1 = chain.stage_parts[chain.levels + 1]  # stored: loaded on a re-run
    assert rewind_iters.epochs(chain, {walk_level_1}) == math.ceil(4 * 3 + 2 * rewound)


def test_chain_epochs_with_a_whole_epoch_rewind_need_no_rounding(rewind: Plan) -> None:
    assert _rewind_chain_epochs(rewind) == (3 + 1) * 3 + 3 * (3 - 1) == 18


def test_rewind_only_chain_trains_the_dense_run_and_the_rewind_levels() -> None:
    plan = make_plan(small_spec(methods=["lth_rewind"], sparsities=[0.36],
                           pruning={"rewind": {"iterations": 5}}))
    chain = only_chain(plan)
    assert (chain.levels, chain.rewind.levels) == (0, 2)
    assert plan.epochs(chain) == math.ceil(3 + 2 * (3 - 5 / 23)) == 9


def test_chain_epochs_use_the_selection_and_subset_sizes() -> None:
    selected = make_plan(small_spec(dataset="digits[0-4]", methods=["lth_rewind"],
                               sparsities=[0.36], pruning={"rewind": {"iterations": 6}}))
    per_epoch = math.ceil((142 + 146 + 142 + 146 + 145) / BATCH)  # 721 examples: 12 steps
    assert per_epoch == 12
    assert _rewind_chain_epochs(selected) == 3 + 2 * (3 - 0.5) == 8
    subset = make_plan(small_spec(methods=["lth_rewind"], sparsities=[0.36],
                             data={"train_subset": 700, "validation": 60},
                             pruning={"rewind": {"iterations": 5}}))
    assert _rewind_chain_epochs(subset) == math.ceil(3 + 2 * (3 - 5 / 10)) == 8


def test_off_level_rewind_branch_trains_the_rest_of_one_run(rewind: Plan,
                                                            rewind_iters: Plan) -> None:
    (branch,) = branches(rewind_iters, "lth_rewind", 0.5)
    assert rewind_iters.epochs(branch) == math.ceil(3 - 5 / 23) == 3
    (branch,) = branches(rewind, "lth_rewind", 0.5)
    assert rewind.epochs(branch) == 3 - 1
