"""Tests for the planner's axes beyond the plain grid (sweeps/plan.py): recipes, transfer arms
between class selections, sdt and ``Plan.tickets`` (lth_rewind's walk: ``test_plan_rewind``).

Nothing is trained: these check the jobs, keys and paths ``make_plan`` lays out.
"""

from __future__ import annotations

import re
from collections import Counter

import pytest
from plan_helpers import branches
from plan_helpers import only_chain
from plan_helpers import small_spec

from sweeps.errors import SpecError
from sweeps.keys import mask_blob
from sweeps.keys import point_key
from sweeps.keys import stage_dir
from sweeps.keys import trunk_key
from sweeps.plan import Plan
from sweeps.plan import make_plan
from trainer import levels
from trainer.hparams import RecipeHparams
from trainer.jobs import ChainJob
from trainer.jobs import curves_part

LS = ("ls", RecipeHparams(label_smoothing=0.1))


# --- stage_dir --------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("method", "level", "rewind", "expected"),
    [
        ("lth", 2, "", "level_2/lth-sparsity_0.36-k"),
        ("lth_rewind", 2, "rewind-epochs_1-r",
         "rewind-epochs_1-r/level_2/lth_rewind-sparsity_0.36-k"),
        ("omp_lth", 1, "", "one_shot/omp_lth-sparsity_0.36-k"),
        ("rst", 1, "", "random/rst-sparsity_0.36-k"),
        ("sdt", 0, "", "small_dense/sdt-sparsity_0.36-k"),
    ],
)
def test_stage_dir_sits_under_the_mask_producers_directory(method: str, level: int,
                                                           rewind: str, expected: str) -> None:
    assert stage_dir(method, 0.36, "k", level, rewind) == expected


# --- recipes ----------------------------------------------------------------------------------

RECIPE_METHODS = ["dense", "lth", "pf", "rst", "sdt"]
RECIPE_GRID = {"methods": RECIPE_METHODS, "sparsities": [0.36, 0.5]}


@pytest.fixture(scope="module")
def plain() -> Plan:
    return make_plan(small_spec(**RECIPE_GRID))


@pytest.fixture(scope="module")
def recipes() -> Plan:
    return make_plan(small_spec(**RECIPE_GRID,
                                recipes={"base": {}, "ls": {"label_smoothing": 0.1}}))


def test_every_method_sparsity_and_recipe_is_one_point(recipes: Plan) -> None:
    grid = Counter((p.method, p.target_sparsity, p.recipe) for p in recipes.points)
    expected = {("dense", 0.0, "base")} | {(m, s, r) for m in RECIPE_METHODS[1:]
                                           for s in (0.36, 0.5) for r in ("base", "ls")}
    assert set(grid) == expected
    assert set(grid.values()) == {1}
    hashes = [p.config_hash for p in recipes.points]
    assert len(set(hashes)) == len(hashes) == 17


def test_base_recipe_points_keep_the_keys_and_trial_ids_of_a_sweep_without_recipes(
        plain: Plan, recipes: Plan) -> None:
    base = {p.config_hash for p in recipes.points if p.recipe == "base"}
    assert base == {p.config_hash for p in plain.points}
    assert {b.trial_id for b in recipes.branches if b.point.recipe == "base"} == \
        {b.trial_id for b in plain.branches}
    assert [c.trial_id for c in recipes.chains] == [c.trial_id for c in plain.chains]
    trunk = only_chain(recipes).trunk
    for b in recipes.branches:
        if b.point.recipe == "base":
            hp = recipes.spec.method_hparams(b.point.method)
            assert b.point.config_hash == point_key(trunk, b.point.method,
                                                    b.point.target_sparsity, hp)


def test_other_recipes_enter_the_point_key(recipes: Plan) -> None:
    trunk = only_chain(recipes).trunk
    others = [b for b in recipes.branches if b.point.recipe == "ls"]
    assert len(others) == 8
    for b in others:
        hp = recipes.spec.method_hparams(b.point.method)
        assert b.point.config_hash == point_key(trunk, b.point.method,
                                                b.point.target_sparsity, hp, LS)
        assert b.point.config_hash != point_key(trunk, b.point.method,
                                                b.point.target_sparsity, hp)
        assert b.recipe == LS[1]


def test_plain_lth_on_an_imp_level_is_a_chain_point_only_for_base(recipes: Plan) -> None:
    chain = only_chain(recipes)
    assert [(p.method, p.target_sparsity, p.recipe) for p in chain.points] == \
        [("dense", 0.0, "base"), ("lth", 0.36, "base")]
    (on_level,) = branches(recipes, "lth", 0.36)
    assert on_level.point.recipe == "ls"
    assert on_level.mask_blob == mask_blob(0.36)
    assert on_level.stage_dir.startswith("level_2/lth-sparsity_0.36-")


def test_base_recipe_branches_carry_the_plain_recipe(recipes: Plan) -> None:
    base = [b for b in recipes.branches if b.point.recipe == "base"]
    assert len(base) == 7  # lth@0.5, pf, rst and sdt at both sparsities
    assert {b.recipe for b in base} == {RecipeHparams()}


def test_trial_ids_of_other_recipes_name_the_recipe(recipes: Plan) -> None:
    for b in recipes.branches:
        named = "-ls-" in b.trial_id
        assert named == (b.point.recipe == "ls"), b.trial_id
        assert b.trial_id.endswith(b.point.config_hash[:8])
    assert len({b.trial_id for b in recipes.branches}) == len(recipes.branches)


def test_rst_shares_its_prepare_dir_across_recipes_but_not_its_stage_dir(recipes: Plan) -> None:
    for s in (0.36, 0.5):
        base, ls = sorted(branches(recipes, "rst", s), key=lambda b: b.point.recipe)
        assert (base.point.recipe, ls.point.recipe) == ("base", "ls")
        assert base.prepare_dir == ls.prepare_dir != ""
        assert base.prepare_dir == f"{base.stage_dir}/prepare"  # named by the base point
        assert base.stage_dir != ls.stage_dir
        assert ls.stage_dir.startswith(f"random/rst-sparsity_{s:g}-")
    assert len({b.prepare_dir for b in branches(recipes, "rst")}) == 2


def test_methods_without_a_phase_of_their_own_have_no_prepare_dir(recipes: Plan) -> None:
    assert {b.prepare_dir for b in recipes.branches if b.point.method != "rst"} == {""}


def test_recipe_branches_stand_on_the_same_trunk_levels_as_base(recipes: Plan) -> None:
    for method in ("lth", "pf"):
        base, ls = sorted(branches(recipes, method, 0.5), key=lambda b: b.point.recipe)
        assert base.point.curves[:-1] == ls.point.curves[:-1]
        assert ls.point.curves[-1] == ls.trial_id
        assert base.mask_blob == ls.mask_blob == mask_blob(0.5)


# --- sdt --------------------------------------------------------------------------------------

def test_sdt_is_a_branch_under_small_dense_without_a_mask() -> None:
    plan = make_plan(small_spec(methods=["dense", "sdt"], sparsities=[0.36, 0.5]))
    chain = only_chain(plan)
    assert chain.levels == 0 and chain.targets == ()
    sdt = branches(plan, "sdt")
    assert [b.point.target_sparsity for b in sdt] == [0.36, 0.5]
    for b in sdt:
        assert b.mask_blob == ""
        assert b.stage_dir.startswith(f"small_dense/sdt-sparsity_{b.point.target_sparsity:g}-")
        assert b.stage_dir.endswith(b.point.config_hash)
        assert b.point.curves == (b.trial_id,)  # it uses nothing the trunk trained
        assert plan.epochs(b) == 3


# --- transfer ---------------------------------------------------------------------------------

TRANSFER = {"dataset": ["digits[0-4]", "digits[5-9]"], "methods": ["dense", "lth", "transfer"],
            "sparsities": [0.36, 0.5], "transfer": {"targets": ["digits[5-9]"]}}


@pytest.fixture(scope="module")
def transfer() -> Plan:
    return make_plan(small_spec(**TRANSFER))


def _chain_for(plan: Plan, label: str) -> ChainJob:
    (chain,) = [c for c in plan.chains if c.trunk.data.label == label]
    return chain


def test_transfer_points_come_only_from_sources_other_than_the_target(transfer: Plan) -> None:
    arms = branches(transfer, "transfer")
    assert {b.trunk.data.label for b in arms} == {"digits[0-4]"}
    assert {b.method_hparams["target"] for b in arms} == {"digits[5-9]"}
    assert len(arms) == 2 * 3 * 2  # sparsities x inits x regimes
    for s in (0.36, 0.5):
        pairs = [(b.method_hparams["init"], b.method_hparams["regime"])
                 for b in branches(transfer, "transfer", s)]
        assert pairs == [(i, r) for i in ("late_reset", "init", "reinit")
                         for r in ("finetune", "freeze")]


def test_a_transfer_onto_the_only_dataset_is_refused_naming_the_target() -> None:
    with pytest.raises(SpecError) as info:
        small_spec(**{**TRANSFER, "dataset": "digits[5-9]"})
    assert [field for field, _ in info.value.problems] == ["transfer.targets[0]"]


def test_transfer_arms_train_the_source_chains_imp_mask(transfer: Plan) -> None:
    source = _chain_for(transfer, "digits[0-4]")
    blobs = {t.sparsity: t.mask_blob for t in source.targets if t.producer == "imp"}
    for b in branches(transfer, "transfer"):
        assert b.trunk == source.trunk
        assert b.mask_blob == blobs[b.point.target_sparsity]
        level = levels.mask_level(b.point.target_sparsity, 0.2)
        assert b.stage_dir.startswith(f"level_{level}/transfer-sparsity_")
        behind = tuple(curves_part(source.trial_id, lv) for lv in range(level))
        assert b.point.curves == (*behind, b.trial_id)


def test_transfer_arms_have_distinct_keys_per_init_and_regime(transfer: Plan) -> None:
    arms = branches(transfer, "transfer", 0.36)
    assert len({b.point.config_hash for b in arms}) == len({b.stage_dir for b in arms}) == 6
    trunk = arms[0].trunk
    hp = transfer.spec.method_variants("transfer")[3]
    assert arms[3].point.config_hash == point_key(trunk, "transfer", 0.36, hp)


def test_artifact_dirs_and_trial_ids_use_the_selection_slug(transfer: Plan) -> None:
    for label, slug in (("digits[0-4]", "digits_c0-4"), ("digits[5-9]", "digits_c5-9")):
        chain = _chain_for(transfer, label)
        key = trunk_key(chain.trunk)
        assert chain.trunk.artifact_dir == f"lenet_300_100-{slug}-{key}/replicate_0"
        assert chain.trial_id == f"chain-lenet_300_100-{slug}-lr0.1-seed0-{key[:8]}"
    for b in transfer.branches:
        assert b.trial_id.startswith(f"{b.point.method}-lenet_300_100-{b.trunk.data.slug}-")
        assert re.fullmatch(r"[A-Za-z0-9_.-]+", b.trial_id)


def test_class_selections_are_separate_trunks(transfer: Plan) -> None:
    keys = {trunk_key(c.trunk) for c in transfer.chains}
    assert len(keys) == 2
    whole = make_plan(small_spec(methods=["dense"], sparsities=[]))
    assert trunk_key(only_chain(whole).trunk) not in keys


# --- Plan.tickets -----------------------------------------------------------------------------

def test_tickets_list_each_ticket_once_across_recipes(recipes: Plan) -> None:
    for method in ("lth", "pf", "rst", "sdt"):
        for s in (0.36, 0.5):
            tickets = recipes.tickets(method, s, seed=0)
            assert len(tickets) == 1, (method, s, tickets)
            assert tickets[0].point.method == method and tickets[0].point.target_sparsity == s


def test_the_ticket_of_an_on_level_lth_is_the_chains_mask(recipes: Plan) -> None:
    (ticket,) = recipes.tickets("lth", 0.36, seed=0)
    assert ticket.mask_blob == mask_blob(0.36)
    assert ticket.trial_id == only_chain(recipes).trial_id


def test_the_ticket_of_rst_points_at_the_shared_prepare_dir(recipes: Plan) -> None:
    (ticket,) = recipes.tickets("rst", 0.5, seed=0)
    assert ticket.prepare_dir == branches(recipes, "rst", 0.5)[0].prepare_dir != ""


def test_tickets_filter_transfer_arms_by_their_hparams(transfer: Plan) -> None:
    assert len(transfer.tickets("transfer", 0.36, seed=0)) == 6
    late = transfer.tickets("transfer", 0.36, seed=0, init="late_reset")
    assert sorted(t.method_hparams["regime"] for t in late) == ["finetune", "freeze"]
    assert {t.method_hparams["init"] for t in late} == {"late_reset"}
    (one,) = transfer.tickets("transfer", 0.36, seed=0, init="reinit", regime="freeze")
    assert (one.method_hparams["init"], one.method_hparams["regime"]) == ("reinit", "freeze")
    assert transfer.tickets("transfer", 0.36, seed=0, init="nope") == []
    assert transfer.tickets("transfer", 0.36, seed=1) == []


def test_a_class_selection_is_one_grid_point_however_it_is_written() -> None:
    with pytest.raises(SpecError) as info:
        small_spec(dataset=["digits[0-4]", "digits[0,1,2,3,4]"], methods=["dense"], sparsities=[])
    assert [field for field, _ in info.value.problems] == ["dataset"]
    spelled = make_plan(small_spec(**{**TRANSFER, "transfer": {"targets": ["digits[5,6,7,8,9]"]}}))
    written = make_plan(small_spec(**TRANSFER))
    keys = {b.point.config_hash for b in branches(written, "transfer")}
    assert keys == {b.point.config_hash for b in branches(spelled, "transfer")}
    assert {b.method_hparams["target"] for b in branches(spelled, "transfer")} == \
        {"digits[5-9]"}
