"""Tests for trainer/methods/rst.py, rst_transform.py and rst_iter.py (METHODS.md 2.4)."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from analysis.load import load_runs
from sweeps import spec as spec_module
from sweeps.plan import make_plan
from sweeps.store import Store
from sweeps.trial_run import run_job
from trainer import checkpoint
from trainer import data as datasets
from trainer import masks
from trainer import methods
from trainer import models
from trainer import seeding
from trainer import stage
from trainer.hparams import DataHparams
from trainer.methods import rst
from trainer.methods import rst_transform
from trainer.methods.rst import RSTHparams
from trainer.methods.rst import Schedule

SMALL = {"reg_step": 0.05, "reg_interval": 2, "stabilize_iterations": 30, "cycles": 3,
         "lr": 0.05}
SPEC = {"name": "rst", "dataset": "digits", "methods": ["dense", "lth", "rst", "rst_iter"],
        "lrs": [0.1], "sparsities": [0.8], "seeds": [0], "training": {"epochs": 2},
        "rst": SMALL}
PRUNED = ("fc1.weight", "fc2.weight")


def test_lambda_passes_the_ceiling_at_the_iteration_the_schedule_says() -> None:
    paper = Schedule(RSTHparams())  # DLTH: +1e-4 every 5 iterations until > 1, then 40k
    assert rst.increments(paper.hp) == 10001
    assert (paper.growth_end, paper.iterations) == (50000, 90000)
    assert paper.lam(0) == pytest.approx(1e-4) and paper.lam(4) == paper.lam(0)
    assert paper.lam(49999) <= 1.0 < paper.lam(50000) == paper.lam(89999)
    for hp in (RSTHparams(**SMALL), RSTHparams(**SMALL, schedule="x^2"),
               RSTHparams(reg_step=0.3, reg_interval=3, schedule="x^3")):
        sched = Schedule(hp)
        lams = [sched.lam(i) for i in range(sched.iterations)]
        first = next(i for i, lam in enumerate(lams) if lam > hp.reg_ceiling)
        assert first == sched.growth_end == (rst.increments(hp) - 1) * hp.reg_interval
        assert lams == sorted(lams) and len(set(lams[first:])) == 1  # grows, then held


def test_one_step_adds_lambda_w_to_the_gradient_of_masked_weights_only() -> None:
    torch.set_num_threads(1)
    data = datasets.load(DataHparams(name="digits", train_subset=64))
    net = models.build("lenet_300_100", (1, 8, 8), 10, seeding.generator(0, "init"))
    start = {k: v.clone() for k, v in net.state_dict().items()}
    mask = masks.random_prune(masks.full_mask(start, masks.prunable_names(net)), 0.5,
                              frozenset(), torch.Generator())
    hp = RSTHparams(reg_step=0.25, reg_interval=100, momentum=0.0, weight_decay=0.0, lr=0.1)
    results = []
    for lam_on in (False, True):
        net.load_state_dict(start)
        sched = Schedule(hp) if lam_on else Schedule(replace(hp, reg_step=1e-12))
        rst_transform._one_pass(net, data, rst_transform._optimizer(net, hp), mask, sched, 0,
                      (torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)))
        results.append({k: v.clone() for k, v in net.state_dict().items()})
    plain, penalized = results  # one step of plain SGD: w' = w - lr (g + λ w m̄)
    for name in PRUNED:
        gone = ~mask[name]
        expected = plain[name] - hp.lr * 0.25 * start[name] * gone
        assert torch.allclose(penalized[name], expected, atol=1e-7)
        assert torch.equal(penalized[name][mask[name]], plain[name][mask[name]])


def test_rst_iter_cumulative_sparsity_after_each_cycle_is_one_minus_one_minus_pc_to_the_c(
) -> None:
    weights = {"a": torch.zeros(40, 25), "b": torch.zeros(10, 10)}
    src = methods.Sources(init=weights, dense_final=weights,
                          mask=masks.full_mask(weights, weights), build_model=None, seed=0,
                          target_sparsity=0.9, exclude=frozenset({"b"}))
    hp = RSTHparams(cycles=4)
    p_c = 1 - (1 - 0.9) ** (1 / 4)
    previous = src.mask
    for c in range(1, 5):
        mask = rst_transform.cycle_mask(src, src.exclude, hp, c)
        expected = 1 - (1 - p_c) ** c
        assert rst.cycle_sparsity(0.9, c, 4) == pytest.approx(expected)
        assert int((~mask["a"]).sum()) == math.ceil(expected * 1000 - 1e-9)
        assert bool(mask["b"].all())
        assert bool((mask["a"] <= previous["a"]).all())  # nested: earlier picks stay pruned
        previous = mask
    assert masks.sparsity({"a": previous["a"]}) == pytest.approx(0.9)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Store:
    torch.set_num_threads(1)
    plan = make_plan(spec_module.parse(SPEC))
    store = Store(str(tmp_path_factory.mktemp("rst"))).child("rst")
    for job in (*plan.chains, *plan.branches):
        run_job(job, store, torch.device("cpu"))
    return store


def _branch(name: str, spec: dict = SPEC):
    return next(b for b in make_plan(spec_module.parse(spec)).branches if b.point.method == name)


def test_masked_weights_end_at_exactly_zero_and_the_row_counts_the_transformation(
        sweep: Store) -> None:
    runs = load_runs(sweep.path).set_index("method")
    for name, cycles in (("rst", 1), ("rst_iter", 3)):
        job = _branch(name)
        blobs = sweep.child("artifacts", job.trunk.artifact_dir, job.stage_dir)
        final = stage.load_result(blobs).state
        transformed = checkpoint.load(blobs.child("prepare"), rst.RESULT)
        mask = transformed["mask"]
        for layer in PRUNED:
            assert torch.count_nonzero(final[layer][~mask[layer]]) == 0
            # before zeroing, the penalty had already pushed them far below the kept ones
            kept = transformed["state"][layer][mask[layer]].abs().mean()
            assert transformed["state"][layer][~mask[layer]].abs().mean() < 0.5 * kept
        iterations = cycles * Schedule(RSTHparams(**SMALL)).iterations
        assert transformed["iterations"] == iterations
        row = runs.loc[name]
        assert row.level == cycles
        assert row.total_epochs == math.ceil(iterations / math.ceil(1437 / 64)) + 2
        assert row.sparsity == pytest.approx(masks.sparsity(mask))
        plan = make_plan(spec_module.parse(SPEC))  # the budget `lottery plan` shows
        assert plan.epochs(job) == row.total_epochs  # (no trunk level is behind RST)


def test_an_interrupted_transformation_resumes_to_the_same_weights(
        sweep: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    job = _branch("rst_iter")
    src_blobs = sweep.child("artifacts", job.trunk.artifact_dir, job.stage_dir, "prepare")
    done = checkpoint.load(src_blobs, rst.RESULT)
    assert not any(src_blobs.get(slot) for slot in stage.CHECKPOINT_SLOTS)  # deleted once done
    plan = make_plan(spec_module.parse(SPEC))
    data = datasets.load(job.trunk.data)
    init = checkpoint.load(sweep.child("artifacts", job.trunk.artifact_dir), "init.pt")["state"]
    hp = RSTHparams(**SMALL)
    src = methods.Sources(init=init, dense_final=init, mask=masks.full_mask(init, [
        "fc1.weight", "fc2.weight", "fc3.weight"]), build_model=None, seed=0,
        target_sparsity=0.8, exclude=frozenset({"fc3.weight"}), hparams=hp)
    copy = Store(str(tmp_path)).child("prepare")

    def phase() -> methods.Phase:
        net = models.build("lenet_300_100", (1, 8, 8), 10, seeding.generator(0, "x"))
        return methods.Phase(model=net, data=data, train=plan.chains[0].trunk.train,
                             exclude=src.exclude, blobs=copy, hparams=hp, imp_rounds=8)

    real_save = checkpoint.save

    def crash_at_the_result(blobs, name, obj):  # every pass is checkpointed, then it dies
        if name == rst.RESULT:
            raise KeyboardInterrupt
        real_save(blobs, name, obj)

    with stage.checkpoint_every(0), monkeypatch.context() as patch:
        patch.setattr(checkpoint, "save", crash_at_the_result)
        with pytest.raises(KeyboardInterrupt):
            rst.prepare(src, phase())
    newest = max(stage.CHECKPOINT_SLOTS,
                 key=lambda s: len(checkpoint.load(copy, s)["records"]))
    copy.put(newest, b"truncated")  # resume from the pass before the last one
    again = rst.prepare(src, phase())
    for k, v in done["state"].items():
        expected = v * done["mask"][k] if k in done["mask"] else v
        assert torch.equal(again.state[k], expected), k
    assert not any(copy.get(slot) for slot in stage.CHECKPOINT_SLOTS)


def test_match_lth_fits_the_transformation_into_lth_s_epochs(tmp_path: Path) -> None:
    spec = {**SPEC, "name": "mlth", "methods": ["dense", "lth", "rst_iter"],
            "rst": {**SMALL, "budget": "match_lth"}}
    plan = make_plan(spec_module.parse(spec))
    store = Store(str(tmp_path)).child("mlth")
    torch.set_num_threads(1)
    for job in (*plan.chains, *plan.branches):
        run_job(job, store, torch.device("cpu"))
    runs = load_runs(store.path).set_index("method")
    assert runs.loc["rst_iter", "total_epochs"] == runs.loc["lth", "total_epochs"]


def test_rst_settings_enter_only_the_rst_keys() -> None:
    base, other = make_plan(spec_module.parse(SPEC)), make_plan(spec_module.parse(
        {**SPEC, "rst": {**SMALL, "reg_step": 0.1}}))
    keys = {p.method: p.config_hash for p in base.points}
    changed = {p.method: p.config_hash for p in other.points}
    assert keys["lth"] == changed["lth"] and keys["dense"] == changed["dense"]
    assert keys["rst"] != changed["rst"] and keys["rst_iter"] != changed["rst_iter"]
    # rst is the one-cycle case: the cycles setting does not touch its key
    cycles = make_plan(spec_module.parse({**SPEC, "rst": {**SMALL, "cycles": 7}}))
    assert {p.method: p.config_hash for p in cycles.points}["rst"] == keys["rst"]


def test_rst_iterative_overrides_only_rst_iter_and_an_unset_one_changes_no_key() -> None:
    """``rst.iterative`` (DLTH's README RST_Iter: reg_interval 1, stabilize 10,000) reaches
    rst_iter's hparams only; left unset (or set to None) no key moves."""
    base = make_plan(spec_module.parse(SPEC))
    keys = {p.method: p.config_hash for p in base.points}
    unset = make_plan(spec_module.parse({**SPEC, "rst": {**SMALL, "iterative": {}}}))
    assert {p.method: p.config_hash for p in unset.points} == keys
    spec = spec_module.parse({**SPEC, "rst": {**SMALL, "iterative": {
        "reg_interval": 1, "stabilize_iterations": 7}}})
    iterative = spec.method_hparams("rst_iter")
    assert (iterative.reg_interval, iterative.stabilize_iterations) == (1, 7)
    one_shot = spec.method_hparams("rst")
    assert (one_shot.reg_interval, one_shot.stabilize_iterations) == \
        (SMALL.get("reg_interval", 5), SMALL.get("stabilize_iterations", 40000))
    changed = {p.method: p.config_hash for p in make_plan(spec).points}
    assert changed["rst"] == keys["rst"] and changed["rst_iter"] != keys["rst_iter"]
    assert changed["lth"] == keys["lth"]
