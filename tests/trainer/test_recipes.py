"""Tests for trainer/recipes.py end to end on a tiny real sweep (LeNet-300-100 on digits, one
epoch per run): each recipe changes exactly what it names (METHODS.md 2.5); ResNet-20's jump
convolutions. The losses and options by hand: ``test_recipe_losses``."""

from __future__ import annotations

import pytest
import torch
from conftest import InProcessSweep
from conftest import run_in_process

from analysis import load
from sweeps import preflight
from sweeps import spec as sweep_spec
from sweeps.errors import SpecError
from sweeps.plan import make_plan
from sweeps.store import Store
from sweeps.trial_run import run_job
from trainer import checkpoint
from trainer import data as datasets
from trainer import levels
from trainer import loop
from trainer import masks
from trainer import models
from trainer import recipes
from trainer import seeding
from trainer.data.base import InMemoryData
from trainer.hparams import RecipeHparams
from trainer.loop import StageOptions
from trainer.models import Arch
from trainer.stage import load_result

CPU = torch.device("cpu")
State = dict[str, torch.Tensor]


def _equal(a: State, b: State) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# --- end to end: each recipe changes exactly what it names -------------------------------------

TARGET = 0.5  # off-level at rate 0.2: a branch for every recipe, base included
PLAIN = Arch()
RECIPES = {"base": {}, "smooth": {"label_smoothing": 0.1}, "swish": {"activation": "swish"},
           "kd": {"distill": {"temperature": 2, "alpha": 0.5}}, "warm": {"warmup_epochs": 1}}


class Sweep(InProcessSweep):
    def final(self, recipe: str) -> loop.StageResult:
        result = load_result(self.trunk_blobs.child(self.branch(recipe=recipe).stage_dir))
        assert result is not None, f"branch {recipe} left no final.pt"
        return result

    def mask(self, recipe: str) -> State:
        return checkpoint.load(self.trunk_blobs, self.branch(recipe=recipe).mask_blob)["mask"]

    def init(self) -> State:
        return checkpoint.load(self.trunk_blobs, "init.pt")["state"]


def _spec(**kw: object) -> sweep_spec.SweepSpec:
    return sweep_spec.parse({"name": "recipes", "dataset": "digits", "lrs": [0.1],
                             "methods": ["lth"], "seeds": [0], "sparsities": [TARGET],
                             "training": {"epochs": 1}, "recipes": RECIPES, **kw})


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Sweep:
    return Sweep(*run_in_process(_spec(), tmp_path_factory.mktemp("recipes")))


@pytest.fixture(scope="module")
def digits() -> InMemoryData:
    return datasets.load(_spec().data_hparams("digits"))


def _retrain(sweep: Sweep, data: InMemoryData, arch: Arch = PLAIN,
             options: StageOptions | None = None) -> loop.StageResult:
    """θ0 under the stored mask, trained by the plain loop with ``arch`` and ``options``."""
    trunk = sweep.plan.chains[0].trunk
    net = models.build(trunk.model, data.input_shape, data.num_classes,
                       torch.Generator().manual_seed(123), arch)
    net.load_state_dict(sweep.init())
    return loop.train(net, data, trunk.train, sweep.mask("base"), trunk.seed, options=options)


def test_every_recipe_is_a_branch_on_the_same_stored_mask(sweep: Sweep) -> None:
    assert sorted(b.point.recipe for b in sweep.plan.branches) == sorted(RECIPES)
    assert len({b.mask_blob for b in sweep.plan.branches}) == 1
    assert len({b.stage_dir for b in sweep.plan.branches}) == len(RECIPES)
    hparams = sweep.plan.spec.recipe_hparams()
    for job in sweep.plan.branches:
        assert job.recipe == hparams[job.point.recipe]
    assert hparams["kd"] == RecipeHparams(distill_alpha=0.5, distill_temperature=2.0)


@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_each_recipes_branch_trained_under_the_stored_mask(sweep: Sweep, recipe: str) -> None:
    mask, final = sweep.mask(recipe), sweep.final(recipe).state
    assert set(mask) == {"fc1.weight", "fc2.weight", "fc3.weight"}
    assert masks.sparsity({n: mask[n] for n in ("fc1.weight", "fc2.weight")}) == \
        pytest.approx(TARGET, abs=0.01)
    for name, m in mask.items():
        assert torch.equal(final[name] != 0, m), name  # zeros exactly where the mask is off


def test_rows_carry_the_recipe_names(sweep: Sweep) -> None:
    runs = load.load_runs(sweep.store.path, method="lth")
    assert sorted(runs.recipe) == sorted(RECIPES)
    assert runs.config_hash.is_unique
    assert set(runs.target_sparsity) == {TARGET}
    assert set(runs.level) == {levels.mask_level(TARGET, 0.2)}
    curves = load.load_curves(sweep.store.path, method="lth")
    assert sorted(set(curves.recipe)) == sorted(RECIPES)


def test_the_base_branch_is_theta0_under_the_mask_trained_by_the_plain_loop(
    sweep: Sweep, digits: InMemoryData
) -> None:
    expected = _retrain(sweep, digits)
    got = sweep.final("base")
    assert _equal(got.state, expected.state)
    assert [r.train_loss for r in got.records] == [r.train_loss for r in expected.records]


def test_the_smooth_branch_changes_only_the_loss(sweep: Sweep, digits: InMemoryData) -> None:
    base, smooth = sweep.final("base"), sweep.final("smooth")
    assert smooth.records[0].train_loss != base.records[0].train_loss
    assert not torch.equal(smooth.state["fc1.weight"], base.state["fc1.weight"])
    recipe = sweep.plan.spec.recipe_hparams()["smooth"]
    expected = _retrain(sweep, digits, options=StageOptions(loss=recipes.loss(recipe)))
    assert _equal(smooth.state, expected.state)
    assert smooth.records[0].train_loss == expected.records[0].train_loss


def test_the_swish_branch_changes_only_the_activation(
    sweep: Sweep, digits: InMemoryData
) -> None:
    swish = sweep.final("swish")
    assert not torch.equal(swish.state["fc1.weight"], sweep.final("base").state["fc1.weight"])
    expected = _retrain(sweep, digits, arch=Arch(activation="swish"))
    assert _equal(swish.state, expected.state)


def test_the_warm_branch_changes_only_the_warmup(sweep: Sweep, digits: InMemoryData) -> None:
    warm = sweep.final("warm")
    assert not torch.equal(warm.state["fc1.weight"], sweep.final("base").state["fc1.weight"])
    trunk = sweep.plan.chains[0].trunk
    spe = loop.steps_per_epoch(len(digits.train_y), trunk.train.batch_size)
    expected = _retrain(sweep, digits, options=StageOptions(warmup_steps=spe))
    assert _equal(warm.state, expected.state)


def test_the_kd_branch_distills_from_the_dense_theta_t(sweep: Sweep, digits: InMemoryData) -> None:
    kd = sweep.final("kd")
    assert not torch.equal(kd.state["fc1.weight"], sweep.final("base").state["fc1.weight"])
    trunk = sweep.plan.chains[0].trunk
    dense = load_result(sweep.trunk_blobs.child("level_0"))
    assert dense is not None
    teacher = models.build(trunk.model, digits.input_shape, digits.num_classes,
                           seeding.generator(trunk.seed, "teacher"))
    teacher.load_state_dict(dense.state)
    teacher.eval()
    recipe = sweep.plan.spec.recipe_hparams()["kd"]
    expected = _retrain(sweep, digits, options=StageOptions(loss=recipes.loss(recipe, teacher)))
    assert _equal(kd.state, expected.state)
    # a teacher other than θT (here θ0) gives other weights: the teacher is θT
    teacher.load_state_dict(sweep.init())
    other = _retrain(sweep, digits, options=StageOptions(loss=recipes.loss(recipe, teacher)))
    assert not torch.equal(other.state["fc1.weight"], kd.state["fc1.weight"])


def test_an_on_level_base_lth_point_is_trained_by_the_chain_other_recipes_branch() -> None:
    plan = make_plan(_spec(sparsities=[0.36, TARGET],
                           recipes={"base": {}, "smooth": {"label_smoothing": 0.1}}))
    on_chain = [(p.method, p.target_sparsity, p.recipe) for p in plan.chains[0].points]
    assert on_chain == [("lth", 0.36, "base")]
    branched = sorted((b.point.target_sparsity, b.point.recipe) for b in plan.branches)
    assert branched == [(0.36, "smooth"), (TARGET, "base"), (TARGET, "smooth")]
    smooth = next(b for b in plan.branches if b.point.target_sparsity == 0.36)
    assert smooth.stage_dir.startswith("level_2/lth-sparsity_0.36-")


# --- ResNet-20 with ToST's jump convolutions ---------------------------------------------------

JUMP = {"jump": {"skip_connections": True}}


def _jump_spec(model: str = "resnet20") -> sweep_spec.SweepSpec:
    return sweep_spec.parse({"name": "jump", "dataset": "digits", "model": model,
                             "lrs": [0.1], "methods": ["lth"], "seeds": [0],
                             "sparsities": [0.2], "training": {"epochs": 1},
                             "data": {"train_subset": 128, "test_subset": 64},
                             "recipes": JUMP})


def test_a_resnet20_jump_branch_trains_the_jump_convs_and_masks_only_the_trunks_weights(
    tmp_path
) -> None:
    spec = _jump_spec()
    assert preflight.check(spec, files=False) == []
    plan = make_plan(spec)
    assert [b.point.recipe for b in plan.branches] == ["jump"]
    store = Store(str(tmp_path)).child(spec.name)
    for job in (*plan.chains, *plan.branches):
        run_job(job, store, CPU)
    job, trunk = plan.branches[0], plan.chains[0].trunk
    blobs = store.child("artifacts", trunk.artifact_dir)
    result = load_result(blobs.child(job.stage_dir))
    assert result is not None
    final = result.state
    jumps = [k for k in final if "conv_jump1" in k]
    assert jumps and any("conv_jump2" in k for k in final)

    data = datasets.load(trunk.data)
    plain = models.build(trunk.model, data.input_shape, data.num_classes,
                         seeding.generator(0, "x"))
    mask = checkpoint.load(blobs, job.mask_blob)["mask"]
    assert set(mask) == set(masks.prunable_names(plain))
    assert not any("jump" in name for name in mask)
    for name, m in mask.items():
        assert torch.equal(final[name] != 0, m), name
    for name in jumps:
        if name.endswith(".weight") and final[name].dim() == 4:
            assert torch.count_nonzero(final[name]) == final[name].numel(), name  # dense

    # the same stage by hand: the jump network (its own init) with θ0 loaded over it
    net = models.build(trunk.model, data.input_shape, data.num_classes,
                       seeding.generator(trunk.seed, "recipe"), Arch(skip_connections=True))
    init = checkpoint.load(blobs, "init.pt")["state"]
    assert set(init) < set(net.state_dict())
    net.load_state_dict({**net.state_dict(), **init})
    expected = loop.train(net, data, trunk.train, mask, trunk.seed)
    assert _equal(final, expected.state)
    runs = load.load_runs(store.path, method="lth")
    assert list(runs.recipe) == ["jump"]


def test_preflight_rejects_skip_connections_on_a_network_without_residual_blocks() -> None:
    with pytest.raises(SpecError) as info:
        preflight.check(_jump_spec("lenet_300_100"), files=False)
    fields = [field for field, _ in info.value.problems]
    assert fields == ["recipes.jump.skip_connections"]
    assert "recipes.jump.skip_connections" in str(info.value)
    assert "lenet_300_100" in str(info.value)
