"""Contract suite for ``trainer.methods``: every registered method gets every test here.

A tiny real trunk (LeNet-300-100 on digits, one epoch per level, IMP to sparsity 0.5) is built
once per module through the planner and ``run_job``, exactly as a sweep would run it.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch
from conftest import InProcessSweep
from conftest import run_in_process

from analysis import load
from analysis import schema
from sweeps import spec as sweep_spec
from sweeps.keys import mask_blob
from trainer import branch
from trainer import checkpoint
from trainer import data as datasets
from trainer import levels
from trainer import loop
from trainer import masks
from trainer import methods
from trainer import metrics
from trainer import models
from trainer import seeding
from trainer.hparams import PruneHparams
from trainer.stage import load_result
from trainer.trunk import TrunkContext
from trainer.trunk import open_trunk

TARGET = 0.5
EPOCHS = 1
TRANSFER_TARGET = "digits[5-9]"  # 5 classes: the transfer branch gets a new head
CPU = torch.device("cpu")
STARTED = sorted(name for name, m in methods.METHODS.items() if m.start is not None)
PRUNED = ("fc1.weight", "fc2.weight")  # LeNet's fc3.weight is the output layer, kept dense
State = dict[str, torch.Tensor]


class Sweep(InProcessSweep):
    def sources(self, seed: int | None = None, producer: str = "imp") -> methods.Sources:
        """Sources loaded back from the store, as ``trainer.branch`` builds them."""
        trunk = self.plan.chains[0].trunk
        blobs = self.trunk_blobs
        init = checkpoint.load(blobs, "init.pt")["state"]
        dense = load_result(blobs.child("level_0"))
        mask = checkpoint.load(blobs, mask_blob(TARGET, producer))["mask"]

        def build(gen: torch.Generator) -> torch.nn.Module:
            return models.build(trunk.model, (1, 8, 8), 10, gen)

        return methods.Sources(init=init, dense_final=dense.state, mask=mask, build_model=build,
                               seed=trunk.seed if seed is None else seed,
                               target_sparsity=TARGET)


def _ctx(sweep: Sweep, name: str) -> TrunkContext:
    """The trunk context the branch of ``name`` opens (a transfer branch: its target data)."""
    job, method = sweep.branch(method=name), methods.get(name)
    hp = method.hparams(**job.method_hparams) if method.hparams else None
    data = method.retarget(hp, job.trunk.data) if method.retarget else None
    return open_trunk(job.trunk, sweep.store.child("artifacts"), CPU, data)


def _src(sweep: Sweep, name: str, seed: int | None = None) -> methods.Sources:
    """The sources of method ``name`` exactly as ``trainer.branch`` builds them."""
    job, method = sweep.branch(method=name), methods.get(name)
    hp = method.hparams(**job.method_hparams) if method.hparams else None
    src = branch.sources(_ctx(sweep, name), job, method, hp)
    return src if seed is None else replace(src, seed=seed)


def _trained_from(sweep: Sweep, name: str) -> methods.Start:
    """What the branch trained from: ``start``, or the stored result of ``prepare``."""
    method, src = methods.get(name), _src(sweep, name)
    if method.prepare is None:
        return method.start(src)
    job = sweep.branch(method=name)
    phase = methods.Phase(model=None, data=None, train=job.trunk.train,
                          exclude=src.exclude, hparams=src.hparams, imp_rounds=0,
                          blobs=sweep.trunk_blobs.child(job.prepare_dir))
    return method.prepare(src, replace(phase, data=datasets.load(job.trunk.data)))


def _run_sweep(root: str) -> Sweep:
    spec = sweep_spec.parse({"name": "contract", "dataset": "digits", "lrs": [0.1],
                             "methods": sorted(methods.METHODS),
                             "rst": {"reg_step": 0.1, "stabilize_iterations": 20, "cycles": 2},
                             "transfer": {"targets": [TRANSFER_TARGET], "inits": ["init"],
                                          "regimes": ["finetune"]},
                             "pruning": {"rewind": {"iterations": 5}},
                             "seeds": [0], "sparsities": [TARGET],
                             "training": {"epochs": EPOCHS}})
    return Sweep(*run_in_process(spec, Path(root)))


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Sweep:
    return _run_sweep(str(tmp_path_factory.mktemp("sweep_a")))


@pytest.fixture(scope="module")
def sweep_again(tmp_path_factory: pytest.TempPathFactory) -> Sweep:
    return _run_sweep(str(tmp_path_factory.mktemp("sweep_b")))


def _kept(mask: State) -> dict[str, int]:
    return {name: int(m.sum()) for name, m in mask.items()}


def _equal(a: State, b: State) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _branch_final(sweep: Sweep, method: str) -> State:
    job = sweep.branch(method=method)
    mask_level = levels.level_for(TARGET, 0.2) + 1  # 0.5 is between levels 3 and 4
    producer = methods.get(method).mask
    parent = {"imp": f"level_{mask_level}",
              "rewind": f"{sweep.plan.chains[0].rewind.root}/level_{mask_level}"}.get(
        producer, producer)
    assert job.stage_dir.startswith(f"{parent}/{method}-")
    result = load_result(sweep.trunk_blobs.child(job.stage_dir))
    assert result is not None, f"branch {method} left no final.pt"
    return result.state


# --- registry -------------------------------------------------------------------------------

def test_methods_with_a_start_are_discovered() -> None:
    assert {"lth", "random_reinit", "random_pruning", "pf"} <= set(STARTED)


@pytest.mark.parametrize("name", sorted(methods.METHODS))
def test_registry_key_is_the_method_name_and_it_cites_a_source(name: str) -> None:
    method = methods.get(name)
    assert method is methods.METHODS[name]
    assert method.name == name
    assert method.source.strip()


def test_get_unknown_method_raises_value_error_listing_known_methods() -> None:
    with pytest.raises(ValueError, match="unknown method 'nope'") as info:
        methods.get("nope")
    assert str(sorted(methods.METHODS)) in str(info.value)


# --- the contract, for every method with a start --------------------------------------------

@pytest.mark.parametrize("name", STARTED)
def test_start_is_seeded_deterministic(sweep: Sweep, name: str) -> None:
    start = methods.get(name).start
    a, b = start(_src(sweep, name)), start(_src(sweep, name))
    assert _equal(a.state, b.state)
    assert _equal(a.mask, b.mask)


@pytest.mark.parametrize("name", STARTED)
def test_start_mask_has_the_target_per_layer_structure(sweep: Sweep, name: str) -> None:
    src = _src(sweep, name)
    start = methods.get(name).start(src)
    mask = start.mask
    if methods.get(name).mask == "small_dense":  # no mask: the sparsity is in the widths
        assert mask == {} and start.width < 1.0 and start.sparsity == pytest.approx(TARGET,
                                                                                    abs=0.02)
        return
    assert set(src.mask) == {*PRUNED, "fc3.weight"}
    assert set(PRUNED) <= set(mask) <= set(src.mask)
    for layer, m in mask.items():
        assert m.dtype == torch.bool
        assert m.shape == start.state[layer].shape
    if "fc3.weight" in mask:
        assert bool(mask["fc3.weight"].all())  # pruning.keep_dense = [output]
    else:
        assert name == "transfer"  # a new head (5 target classes) is dense, unmasked
    for layer in PRUNED:
        assert int(mask[layer].sum()) == round((1 - TARGET) * mask[layer].numel())


@pytest.mark.parametrize("name", STARTED)
def test_branch_training_keeps_masked_weights_at_zero(sweep: Sweep, name: str) -> None:
    mask = _trained_from(sweep, name).mask
    final = _branch_final(sweep, name)
    if not mask:  # sdt: nothing masked, every weight trains
        assert all(bool((final[layer] != 0).all()) for layer in PRUNED)
        return
    for layer in PRUNED:
        assert torch.count_nonzero(final[layer][~mask[layer]]) == 0
        assert torch.count_nonzero(final[layer][mask[layer]]) == int(mask[layer].sum())


@pytest.mark.parametrize("name", STARTED)
def test_branch_trains_exactly_its_start_under_its_mask(sweep: Sweep, name: str) -> None:
    trunk = sweep.plan.chains[0].trunk
    start, ctx = _trained_from(sweep, name), _ctx(sweep, name)
    model = ctx.build(torch.Generator().manual_seed(99), models.Arch(width=start.width))
    model.load_state_dict(start.state)
    options = loop.StageOptions(frozen=start.frozen, start_step=start.start_step)
    expected = loop.train(model, ctx.data, trunk.train, start.mask, trunk.seed,
                          options=options)
    assert _equal(_branch_final(sweep, name), expected.state)


@pytest.mark.parametrize("name", STARTED)
def test_branch_is_bit_identical_across_two_fresh_sweeps(
    sweep: Sweep, sweep_again: Sweep, name: str
) -> None:
    assert _equal(_branch_final(sweep, name), _branch_final(sweep_again, name))
    a = load.load_runs(sweep.store.path, method=name).drop(columns=["wall_time_s"])
    b = load.load_runs(sweep_again.store.path, method=name).drop(columns=["wall_time_s"])
    assert len(a) == 1
    assert a.equals(b)


@pytest.mark.parametrize("name", STARTED)
def test_branch_emits_schema_valid_rows(sweep: Sweep, name: str) -> None:
    job = sweep.branch(method=name)
    runs = load.load_runs(sweep.store.path, config_hash=job.point.config_hash)
    assert len(runs) == 1
    assert list(runs.columns) == schema.RUNS.names
    row = runs.iloc[0]
    hparams = sweep.plan.spec.method_hparams(name)
    mask_level = methods.mask_level(methods.get(name), TARGET,
                                    levels.Schedule.uniform(job.trunk.prune.rate), hparams)
    expected = {"omp_lth": 1, "omp_random_reinit": 1, "omp_pf": 1, "rst": 1, "rst_iter": 2,
                "sdt": 0}
    assert mask_level == expected.get(name, levels.level_for(TARGET, 0.2) + 1)
    assert (row.method, row.target_sparsity, row.level) == (name, TARGET, mask_level)
    assert row.epochs == EPOCHS
    start = _trained_from(sweep, name)
    rewound = start.start_step / loop.steps_per_epoch(len(_ctx(sweep, name).data.train_y),
                                                      job.trunk.train.batch_size)
    assert row.total_epochs == methods.total_epochs(methods.get(name), mask_level, EPOCHS,
                                                    job.trunk.prune, rewound) + \
        start.extra_epochs  # RST's transformation
    assert 0.0 <= row.test_acc <= 1.0
    mask = start.mask
    measured = masks.sparsity(mask) if start.sparsity is None else start.sparsity
    assert row.sparsity == pytest.approx(measured)
    dense = load.load_runs(sweep.store.path, method="dense").iloc[0]
    for pct in (10, 20, 30, 40, 50):  # the branch describes the trunk's own dense run
        assert row[f"rp_dense_p{pct}"] == dense[f"rp_dense_p{pct}"]
    assert row.recipe == "base" and row.source_dataset == "digits"
    assert row.target_dataset == row.dataset == (TRANSFER_TARGET if name == "transfer"
                                                 else "digits")

    layers = load.load_layers(sweep.store.path, config_hash=job.point.config_hash)
    assert sorted(layers.layer) == sorted({*PRUNED, "fc3.weight"})
    kept = dict(zip(layers.layer, layers.n_kept, strict=True))
    assert kept == {layer: int(mask[layer].sum()) if layer in mask else
                    start.state[layer].numel() for layer in kept}

    curves = load.load_curves(sweep.store.path, trial_id=job.trial_id)
    assert list(curves.epoch) == list(range(1, EPOCHS + 1))
    assert set(curves.method) == {name}


# --- initialization rules, one per method ----------------------------------------------------

def test_lth_starts_from_theta0_with_the_imp_mask(sweep: Sweep) -> None:
    src = sweep.sources()
    start = methods.get("lth").start(src)
    assert _equal(start.state, src.init)
    theta0 = src.build_model(seeding.generator(src.seed, "init")).state_dict()
    assert _equal(src.init, dict(theta0))  # init.pt is θ0 drawn from (seed, "init")
    assert _equal(start.mask, src.mask)


def test_random_reinit_draws_fresh_weights_but_keeps_the_imp_mask(sweep: Sweep) -> None:
    src = sweep.sources()
    start = methods.get("random_reinit").start(src)
    assert _equal(start.mask, src.mask)
    weights = [k for k in src.init if k.endswith(".weight")]
    assert weights
    for key in weights:
        assert not torch.equal(start.state[key], src.init[key]), key
    assert _equal(methods.get("random_reinit").start(sweep.sources()).state, start.state)
    other = methods.get("random_reinit").start(sweep.sources(seed=1)).state
    assert not torch.equal(other["fc1.weight"], start.state["fc1.weight"])


def test_random_reinit_uses_the_reinit_generator_not_the_init_one(sweep: Sweep) -> None:
    src = sweep.sources()
    expected = src.build_model(seeding.generator(src.seed, "reinit")).state_dict()
    assert _equal(methods.get("random_reinit").start(src).state, dict(expected))


def test_random_pruning_keeps_per_layer_counts_but_moves_the_mask(sweep: Sweep) -> None:
    src = sweep.sources()
    start = methods.get("random_pruning").start(src)
    assert _equal(start.state, src.init)
    for layer, m in src.mask.items():
        assert int(start.mask[layer].sum()) == int(m.sum()), layer
    for layer in PRUNED:
        assert not torch.equal(start.mask[layer], src.mask[layer]), layer
    assert torch.equal(start.mask["fc3.weight"], src.mask["fc3.weight"])


def test_random_pruning_draws_per_seed_and_per_target_sparsity(sweep: Sweep) -> None:
    src = sweep.sources()
    start = methods.get("random_pruning").start
    base = start(src).mask["fc1.weight"]
    assert torch.equal(start(sweep.sources()).mask["fc1.weight"], base)
    assert not torch.equal(start(sweep.sources(seed=1)).mask["fc1.weight"], base)
    # same IMP mask, another target: the draw must be independent, not a reused shuffle
    other = start(replace(src, target_sparsity=0.36)).mask["fc1.weight"]
    assert not torch.equal(other, base)


def test_pf_starts_from_dense_trained_weights_with_the_imp_mask(sweep: Sweep) -> None:
    src = sweep.sources()
    start = methods.get("pf").start(src)
    assert _equal(start.state, src.dense_final)
    assert not _equal(start.state, src.init)
    assert _equal(start.mask, src.mask)


def test_omp_masks_come_from_the_dense_weights_in_one_step(sweep: Sweep) -> None:
    src = sweep.sources(producer="one_shot")
    prunable = {n: src.dense_final[n] for n in src.mask}
    expected = masks.magnitude_prune(prunable, masks.full_mask(prunable, prunable), TARGET,
                                     "layerwise", frozenset({"fc3.weight"}))
    assert _equal(src.mask, expected)
    imp = sweep.sources().mask  # IMP's mask at the same sparsity took 4 rounds: another mask
    assert not torch.equal(src.mask["fc1.weight"], imp["fc1.weight"])
    assert _kept(src.mask) == _kept(imp)


def test_omp_arms_start_from_theta0_a_fresh_init_and_theta_t_under_the_one_shot_mask(
        sweep: Sweep) -> None:
    src = sweep.sources(producer="one_shot")
    lt, rr, pf = (methods.get(n).start(src) for n in ("omp_lth", "omp_random_reinit", "omp_pf"))
    assert all(_equal(s.mask, src.mask) for s in (lt, rr, pf))
    assert _equal(lt.state, src.init) and _equal(pf.state, src.dense_final)
    assert not torch.equal(rr.state["fc1.weight"], src.init["fc1.weight"])  # θ0' is not θ0
    assert _equal(rr.state, methods.get("random_reinit").start(src).state)


# --- total_epochs arithmetic ------------------------------------------------------------------

@pytest.mark.parametrize("name,mask_level,scope,expected", [
    ("lth", 3, "layerwise", 40),
    ("random_reinit", 3, "layerwise", 40),
    ("random_pruning", 3, "layerwise", 10),
    ("random_pruning", 3, "global", 40),
    ("pf", 0, "layerwise", 20),
    ("pf", 3, "layerwise", 40),
    ("dense", 0, "layerwise", 10),
    ("omp_lth", 1, "layerwise", 20),
    ("omp_random_reinit", 1, "global", 20),
    ("omp_pf", 1, "layerwise", 20),
])
def test_total_epochs_counts_trunk_levels_behind_the_row(
    name: str, mask_level: int, scope: str, expected: int
) -> None:
    prune = replace(PruneHparams(), scope=scope)
    assert methods.total_epochs(methods.get(name), mask_level, 10, prune) == expected


# --- Liu et al.'s mechanism pairs --------------------------------------------------------------

def test_pf_rows_carry_the_four_correlation_pairs_recomputed_from_stored_tensors(
        sweep: Sweep) -> None:
    runs = load.load_runs(sweep.store.path).set_index("method")
    src = sweep.sources()
    final = _branch_final(sweep, "pf")
    names = list(src.mask)
    mask = src.mask
    reinit = methods.get("random_reinit").start(src).state
    out = {n: final[n] for n in names}

    def masked(state: State) -> State:
        return {n: state[n] * mask[n] for n in names}

    row = runs.loc["pf"]
    assert row.rp_init_vs_pf_p20 == metrics.weight_correlation(masked(src.init), out, 0.2,
                                                               mask)
    assert row.rp_reinit_vs_pf_p20 == metrics.weight_correlation(masked(reinit), out, 0.2,
                                                                 mask)
    assert row.rp_pf_vs_init_p20 == metrics.weight_correlation(
        out, {n: src.init[n] for n in names}, 0.2)
    assert row.rp_pf_vs_dense_p20 == metrics.weight_correlation(
        out, {n: src.dense_final[n] for n in names}, 0.2)
    assert row.rp_pf_vs_dense_p20 > row.rp_pf_vs_init_p20  # P&F stays near θT (App. F)
    assert not runs.loc["omp_pf", ["rp_init_vs_pf_p20"]].isna().any()
    for other in ("lth", "random_reinit", "dense", "rst"):
        assert runs.loc[other, ["rp_init_vs_pf_p20", "rp_pf_vs_dense_p20"]].isna().all()
