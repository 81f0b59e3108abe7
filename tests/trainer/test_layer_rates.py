"""Per-layer IMP rates (``pruning.rates``, Frankle & Carbin 2019 App. B): the level schedule,
per-layer magnitude targets, the spec's checks and a chain walked with them on digits."""

from __future__ import annotations

import math

import pytest
import torch

from sweeps import spec as sweep_spec
from sweeps.errors import SpecError
from sweeps.keys import mask_blob
from sweeps.plan import make_plan
from sweeps.preflight_models import model_problems
from sweeps.store import Store
from sweeps.trial_run import run_job
from trainer import checkpoint
from trainer import levels
from trainer import masks
from trainer import models
from trainer.hparams import PruneHparams
from trainer.levels import level_schedule

FC, OUT = ("fc1.weight", "fc2.weight"), "fc3.weight"


def _spec(**pruning: object) -> dict:
    return {"name": "rates", "dataset": "digits", "model": "lenet_300_100",
            "methods": ["dense", "lth", "random_reinit"], "lrs": [0.05], "seeds": [0],
            "sparsities": [0.5, 0.8], "training": {"epochs": 1},
            "pruning": {"rate": 0.2, "keep_dense": [], "rates": {"output": 0.1}, **pruning}}


# --- the schedule -----------------------------------------------------------------------------

def test_a_uniform_schedule_is_the_closed_form() -> None:
    s = levels.Schedule.uniform(0.2)
    for level in range(20):
        assert levels.level_sparsity(s, level) == pytest.approx(1 - 0.8 ** level)
    for target in (0.2, 0.5, 0.59, 0.9, 0.95):
        assert levels.level_for(target, s) == levels.level_for(target, 0.2)
        assert levels.mask_level(target, s) == levels.mask_level(target, 0.2)


def test_per_layer_density_pools_the_layers_by_size() -> None:
    s = levels.Schedule(((300, 0.2), (100, 0.1)))
    assert s.density(2) == pytest.approx((300 * 0.8 ** 2 + 100 * 0.9 ** 2) / 400)
    # the output layer at half the rate: pooled sparsity below the uniform rate's
    assert levels.level_sparsity(s, 5) < levels.level_sparsity(0.2, 5)
    assert levels.level_sparsity(s, 5) > levels.level_sparsity(0.1, 5)


def test_level_for_and_the_last_round_with_per_layer_rates() -> None:
    s = levels.Schedule(((300, 0.2), (100, 0.1)))
    for target in (0.3, 0.5, 0.8, 0.95):
        level = levels.level_for(target, s)
        assert levels.level_sparsity(s, level) <= target + 1e-9 or \
            levels.is_level_sparsity(target, s)
        assert levels.level_sparsity(s, level + 1) > target * (1 + 1e-12) - 0.01 * (1 - target)
        f = s.last_round(target, level)
        assert 0.0 <= f <= 1.0
        if not levels.is_level_sparsity(target, s):  # the shorter round hits the target
            assert 1 - s.density(level, f) == pytest.approx(target)


def test_schedule_rejects_bad_layers() -> None:
    with pytest.raises(ValueError, match="at least one"):
        levels.Schedule(())
    with pytest.raises(ValueError, match="rate in"):
        levels.Schedule(((10, 1.0),))


# --- masks ------------------------------------------------------------------------------------

def test_layer_groups_and_rates_of_conv2() -> None:
    net = models.skeleton("conv2", (3, 32, 32), 10)
    prune = PruneHparams(keep_dense=(), rates=(("conv", 0.1), ("output", 0.1)))
    groups = masks.layer_groups(net, frozenset())
    assert groups == {"convs.0.weight": "conv", "convs.1.weight": "conv",
                      "fc1.weight": "fc", "fc2.weight": "fc", "fc3.weight": "output"}
    assert masks.layer_rates(net, prune, frozenset()) == {
        "convs.0.weight": 0.1, "convs.1.weight": 0.1, "fc1.weight": 0.2, "fc2.weight": 0.2,
        "fc3.weight": 0.1}
    assert "fc3.weight" not in masks.layer_rates(net, prune, frozenset({"fc3.weight"}))


def test_magnitude_prune_takes_one_target_per_layer() -> None:
    g = torch.Generator().manual_seed(0)
    weights = {"a": torch.randn(10, 10, generator=g), "b": torch.randn(20, 5, generator=g)}
    full = masks.full_mask(weights, weights)
    new = masks.magnitude_prune(weights, full, {"a": 0.5, "b": 0.1}, "layerwise", frozenset())
    assert int(new["a"].sum()) == 50 and int(new["b"].sum()) == 90
    kept_a = weights["a"].abs()[new["a"]]
    assert kept_a.min() >= weights["a"].abs()[~new["a"]].max()  # largest |w| kept
    with pytest.raises(ValueError, match="per-layer targets"):
        masks.magnitude_prune(weights, full, {"a": 0.5}, "layerwise", frozenset())
    with pytest.raises(ValueError, match="per-layer targets"):
        masks.magnitude_prune(weights, full, {"a": 0.5, "b": 0.1}, "global", frozenset())


# --- the spec ---------------------------------------------------------------------------------

def test_rates_need_layerwise_scope() -> None:
    with pytest.raises(SpecError, match=r"pruning.*layerwise"):
        sweep_spec.parse(_spec(scope="global"))


def test_an_output_rate_with_the_output_kept_dense_is_an_error() -> None:
    with pytest.raises(SpecError, match=r"rates.output.*keep_dense"):
        sweep_spec.parse(_spec(keep_dense=["output"]))


def test_unknown_groups_and_bad_rates_are_errors() -> None:
    with pytest.raises(SpecError, match="rates"):
        sweep_spec.parse(_spec(rates={"attention": 0.1}))
    with pytest.raises(SpecError, match="rates"):
        sweep_spec.parse(_spec(rates={"fc": 1.5}))


def test_a_rate_for_a_group_the_model_lacks_fails_the_preflight() -> None:
    spec = sweep_spec.parse(_spec(rates={"conv": 0.1}))
    problems = model_problems(spec)
    assert any(field == "pruning.rates.conv" and "no pruned conv layer" in reason
               for field, reason in problems), problems


def test_rates_enter_the_trunk_key_and_leave_uniform_keys_alone() -> None:
    uniform = {"name": "rates", "dataset": "digits", "lrs": [0.05], "seeds": [0],
               "sparsities": [0.5], "training": {"epochs": 1}}
    before = make_plan(sweep_spec.parse(uniform)).chains[0]
    assert before.trial_id.endswith(make_plan(sweep_spec.parse(
        {**uniform, "pruning": {"rate": 0.2}})).chains[0].trial_id[-8:])
    with_rates = make_plan(sweep_spec.parse(_spec())).chains[0]
    assert with_rates.trial_id[-8:] != before.trial_id[-8:]


# --- a chain with the output at half the rate -------------------------------------------------

@pytest.fixture(scope="module")
def walked(tmp_path_factory: pytest.TempPathFactory):
    torch.set_num_threads(1)
    plan = make_plan(sweep_spec.parse(_spec()))
    store = Store(str(tmp_path_factory.mktemp("rates"))).child("rates")
    run_job(plan.chains[0], store, torch.device("cpu"))
    return plan, store.child("artifacts", plan.chains[0].trunk.artifact_dir)


def test_the_schedule_of_a_trunk_comes_from_its_layer_sizes(walked) -> None:
    plan, _ = walked
    s = level_schedule(plan.chains[0].trunk)
    assert s.layers == ((64 * 300, 0.2), (300 * 100, 0.2), (100 * 10, 0.1))
    assert plan.chains[0].levels == levels.level_for(0.8, s)


def test_each_level_prunes_each_layer_at_its_own_rate(walked) -> None:
    plan, blobs = walked
    for level in range(1, plan.chains[0].levels + 1):
        state = checkpoint.load(blobs.child(f"level_{level}"), "final.pt")["state"]
        for name, rate in ((FC[0], 0.2), (FC[1], 0.2), (OUT, 0.1)):
            n = state[name].numel()
            assert int((state[name] != 0).sum()) == round((1 - rate) ** level * n), (name, level)


def test_off_level_targets_hit_the_pooled_sparsity(walked) -> None:
    plan, blobs = walked
    s = level_schedule(plan.chains[0].trunk)
    for target in (0.5, 0.8):
        mask = checkpoint.load(blobs, mask_blob(target))["mask"]
        assert masks.sparsity(mask) == pytest.approx(target, abs=2e-4)
        level = levels.level_for(target, s)
        f = s.last_round(target, level)
        n = mask[OUT].numel()  # the output layer's shorter round is at its own rate
        assert int(mask[OUT].sum()) == round(0.9 ** level * (1 - 0.1 * f) * n)
        assert math.isclose(masks.sparsity({k: mask[k] for k in FC}),
                            levels.layer_sparsity(0.2, level, f), abs_tol=1e-4)


def test_one_shot_masks_prune_each_layer_as_the_imp_mask_does(tmp_path) -> None:
    """OMP (θT straight to the target) and IMP masks of one sparsity keep the same number of
    weights in every layer under per-layer rates; only which weights differs."""
    torch.set_num_threads(1)
    spec = _spec()
    spec["methods"] = ["dense", "lth", "omp_lth"]
    plan = make_plan(sweep_spec.parse(spec))
    store = Store(str(tmp_path)).child("rates")
    run_job(plan.chains[0], store, torch.device("cpu"))
    blobs = store.child("artifacts", plan.chains[0].trunk.artifact_dir)
    for target in (0.5, 0.8):
        imp = checkpoint.load(blobs, mask_blob(target))["mask"]
        one_shot = checkpoint.load(blobs, mask_blob(target, "one_shot"))["mask"]
        assert {k: int(v.sum()) for k, v in one_shot.items()} == \
            {k: int(v.sum()) for k, v in imp.items()}
        assert not all(torch.equal(one_shot[k], imp[k]) for k in imp)
