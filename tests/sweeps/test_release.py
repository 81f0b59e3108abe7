"""Releasing branches as their masks land (sweeps.release), without Ray: what each branch
waits for, the order of runnable work, and a failed chain's branches."""

from __future__ import annotations

from ray.tune.search import Searcher

from sweeps import spec as spec_module
from sweeps.plan import make_plan
from sweeps.release import ReleaseSearcher
from sweeps.release import block_key
from sweeps.release import need
from trainer import levels
from trainer.jobs import REWIND
from trainer.jobs import THETA0

SPEC = {"name": "rel", "dataset": "digits",
        "methods": ["dense", "lth", "random_reinit", "random_pruning", "pf", "omp_lth",
                    "lth_rewind"],
        "lrs": [0.01, 0.1], "sparsities": [0.5, 0.8], "seeds": [0, 1],
        "training": {"epochs": 2}}


def _searcher(plan, finished=frozenset()):
    return ReleaseSearcher(list(plan.chains), list(plan.branches),
                           {b.trial_id: need(plan, b) for b in plan.branches}, set(finished),
                           {"sweep": "rel"})


def test_each_branch_waits_for_the_level_that_stores_its_mask() -> None:
    plan = make_plan(spec_module.parse(SPEC))
    for b in plan.branches:
        n = need(plan, b)
        assert n.chain == plan.chain_of(b).trial_id
        if b.point.method in ("lth", "random_reinit", "pf", "random_pruning"):  # IMP masks
            assert (n.walk, n.level) == (THETA0, levels.level_for(b.point.target_sparsity, 0.2))
        elif b.point.method == "lth_rewind":
            assert n.walk == REWIND and n.level == levels.level_for(b.point.target_sparsity, 0.2)
        else:  # one-shot masks need the dense run only
            assert (n.walk, n.level) == (THETA0, 0)


def test_chains_go_first_then_branches_as_levels_are_reported_in_cell_blocks() -> None:
    plan = make_plan(spec_module.parse(SPEC))
    s = _searcher(plan)
    chains = [s.suggest(f"c{i}")["job"]["trial_id"] for i in range(len(plan.chains))]
    assert chains == [c.trial_id for c in plan.chains]
    assert s.suggest("x") is None  # nothing has a stored mask yet
    first = plan.chains[0]
    s.on_trial_result("c0", {"walk": THETA0, "level": 0, "epochs_done": 2})
    released = []
    while (config := s.suggest(f"b{len(released)}")) is not None:
        released.append(config["job"]["trial_id"])
    by_id = {b.trial_id: b for b in plan.branches}
    assert released and all(by_id[t].trunk == first.trunk for t in released)
    assert all(need(plan, by_id[t]).level == 0 for t in released)
    assert [block_key(by_id[t]) for t in released] == sorted(block_key(by_id[t])
                                                              for t in released)
    s.on_trial_result("c0", {"walk": THETA0, "level": 3, "epochs_done": 8})  # 0.5 is level 3
    more = s.suggest("m")["job"]
    assert more["point"]["target_sparsity"] == 0.5 and more["trunk"]["seed"] == first.trunk.seed


def test_a_finished_chain_releases_everything_and_a_failed_one_blocks_its_branches() -> None:
    plan = make_plan(spec_module.parse(SPEC))
    ok, bad = plan.chains[0], plan.chains[1]
    s = _searcher(plan, finished={c.trial_id for c in plan.chains[2:]})
    for i in range(len(plan.chains)):
        s.suggest(f"c{i}")
    s.on_trial_complete("c0")
    s.on_trial_complete("c1", error=True)
    released = []
    while (config := s.suggest(f"b{len(released)}")) not in (None, Searcher.FINISHED):
        released.append(config["job"]["trial_id"])
    assert s.suggest("end") == Searcher.FINISHED
    blocked = {b.trial_id for b in s.blocked}
    assert blocked == {b.trial_id for b in plan.branches if b.trunk == bad.trunk}
    assert set(released) == {b.trial_id for b in plan.branches} - blocked
    assert any(plan.chain_of(b).trial_id == ok.trial_id for b in plan.branches
               if b.trial_id in released)
