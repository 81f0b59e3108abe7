"""Tests for trainer/chain.py (and the chain/branch hand-off in trainer/branch.py).

One real chain (LeNet-300-100 on digits, 2 epochs per level, rate 0.2, layerwise, output layer
kept dense) walks IMP to level 10 for the targets 0.36 (level 2), 0.5 (between 3 and 4) and
0.9 (between 10 and 11); it is built once per module through the planner and ``run_job``.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass

import pandas as pd
import pytest
import torch

from analysis import load
from sweeps import spec as sweep_spec
from sweeps.keys import mask_blob
from sweeps.plan import Plan
from sweeps.plan import make_plan
from sweeps.store import Store
from sweeps.trial_run import run_job
from trainer import checkpoint
from trainer import data as datasets
from trainer import levels
from trainer import loop
from trainer import masks
from trainer import methods
from trainer import metrics
from trainer import models
from trainer import stage
from trainer.jobs import ChainJob
from trainer.loop import EpochRecord
from trainer.stage import load_result

TARGETS = (0.36, 0.5, 0.9)
RATE = 0.2
EPOCHS = 2
CPU = torch.device("cpu")
PRUNED = ("fc1.weight", "fc2.weight")
OUTPUT = "fc3.weight"
State = dict[str, torch.Tensor]


class Counter:
    def __init__(self) -> None:
        self.records: list[EpochRecord] = []

    def __call__(self, record: EpochRecord) -> None:
        self.records.append(record)


@dataclass(frozen=True)
class Sweep:
    plan: Plan
    store: Store
    trained: Counter

    @property
    def chain(self) -> ChainJob:
        return self.plan.chains[0]

    @property
    def blobs(self) -> Store:
        return self.store.child("artifacts", self.chain.trunk.artifact_dir)

    def mask(self, target: float) -> State:
        return checkpoint.load(self.blobs, mask_blob(target))["mask"]

    def level_state(self, level: int) -> State:
        return load_result(self.blobs.child(f"level_{level}")).state


def _plan(sparsities: list[float], scope: str = "layerwise") -> Plan:
    spec = sweep_spec.parse({"name": "chain", "dataset": "digits", "lrs": [0.1], "seeds": [0],
                             "sparsities": sparsities, "training": {"epochs": EPOCHS},
                             "pruning": {"rate": RATE, "scope": scope}})
    return make_plan(spec)


def _run_chain(root: str, sparsities: list[float], scope: str = "layerwise") -> Sweep:
    torch.set_num_threads(1)
    plan = _plan(sparsities, scope)
    store, counter = Store(root).child("chain"), Counter()
    run_job(plan.chains[0], store, CPU, counter)
    return Sweep(plan=plan, store=store, trained=counter)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Sweep:
    return _run_chain(str(tmp_path_factory.mktemp("layerwise")), list(TARGETS))


def _kept(mask: State) -> dict[str, int]:
    return {name: int(m.sum()) for name, m in mask.items()}


def _pruned_sparsity(mask: State) -> float:
    return masks.sparsity({name: mask[name] for name in PRUNED})


def _chain_rows(sweep: Sweep) -> dict[str, pd.DataFrame]:
    hashes = [p.config_hash for p in sweep.chain.points]
    return {"runs": load.load_runs(sweep.store.path, config_hash=hashes),
            "layers": load.load_layers(sweep.store.path, config_hash=hashes),
            "curves": load.load_curves(sweep.store.path, trial_id=sweep.chain.trial_id)}


# --- levels and masks -------------------------------------------------------------------------

def test_chain_trains_every_level_up_to_that_of_the_deepest_target(sweep: Sweep) -> None:
    assert sweep.chain.levels == levels.level_for(0.9, RATE) == 10
    for level in range(sweep.chain.levels + 1):
        assert sweep.blobs.child(f"level_{level}").get("final.pt") is not None, level
    assert sweep.blobs.child("level_11").get("final.pt") is None
    assert len(sweep.trained.records) == (sweep.chain.levels + 1) * EPOCHS


def test_level_l_keeps_round_0p8_pow_l_of_each_pruned_layer(sweep: Sweep) -> None:
    previous = None
    for level in range(sweep.chain.levels + 1):
        state = sweep.level_state(level)
        alive = {name: state[name] != 0 for name in (*PRUNED, OUTPUT)}
        for name in PRUNED:
            assert int(alive[name].sum()) == round(0.8 ** level * alive[name].numel()), level
        assert bool(alive[OUTPUT].all())  # keep_dense [output]
        if previous is not None:
            assert all(bool((alive[n] <= previous[n]).all()) for n in PRUNED)  # nested
        previous = alive


def test_every_target_mask_is_stored_at_its_sparsity_over_pruned_layers(sweep: Sweep) -> None:
    for target in TARGETS:
        mask = sweep.mask(target)
        assert set(mask) == {*PRUNED, OUTPUT}
        for name in PRUNED:
            assert int(mask[name].sum()) == round((1 - target) * mask[name].numel())
        assert _pruned_sparsity(mask) == pytest.approx(target, abs=1e-4)
        assert bool(mask[OUTPUT].all())
        assert masks.sparsity(mask) < target  # the dense output layer dilutes the sparsity


def test_target_masks_are_nested(sweep: Sweep) -> None:
    m36, m50, m90 = (sweep.mask(t) for t in TARGETS)
    for name in PRUNED:
        assert bool((m90[name] <= m50[name]).all())
        assert bool((m50[name] <= m36[name]).all())
        assert not torch.equal(m90[name], m50[name])


def test_on_level_target_mask_is_the_level_mask(sweep: Sweep) -> None:
    trained = sweep.level_state(levels.level_for(0.36, RATE))
    mask = sweep.mask(0.36)
    for name in PRUNED:
        assert torch.equal(mask[name], trained[name] != 0)


def test_off_level_target_prunes_the_level_weights_one_more_step(sweep: Sweep) -> None:
    level = levels.level_for(0.5, RATE)
    trained = sweep.level_state(level)
    level_mask = {n: trained[n] != 0 for n in PRUNED}
    level_mask[OUTPUT] = torch.ones_like(trained[OUTPUT], dtype=torch.bool)
    expected = masks.magnitude_prune({n: trained[n] for n in level_mask}, level_mask, 0.5,
                                     "layerwise", frozenset({OUTPUT}))
    stored = sweep.mask(0.5)
    assert all(torch.equal(stored[n], expected[n]) for n in expected)


# --- rows ---------------------------------------------------------------------------------------

def test_chain_writes_dense_and_on_level_lth_rows(sweep: Sweep) -> None:
    runs = _chain_rows(sweep)["runs"].set_index("method")
    assert sorted(runs.index) == ["dense", "lth"]
    dense, lth = runs.loc["dense"], runs.loc["lth"]
    assert (dense.level, dense.epochs, dense.total_epochs) == (0, EPOCHS, EPOCHS)
    assert (dense.target_sparsity, dense.sparsity) == (0.0, 0.0)
    level = levels.level_for(0.36, RATE)
    assert (lth.level, lth.epochs, lth.total_epochs) == (level, EPOCHS, (level + 1) * EPOCHS)
    assert lth.target_sparsity == 0.36
    assert lth.sparsity == pytest.approx(masks.sparsity(sweep.mask(0.36)))
    assert lth.test_acc == load_result(sweep.blobs.child(f"level_{level}")).final.test_acc
    assert dense.test_acc == load_result(sweep.blobs.child("level_0")).final.test_acc
    for pct in (10, 20, 30, 40, 50):
        col = f"rp_dense_p{pct}"
        assert 0.0 <= dense[col] <= 1.0
        assert dense[col] == lth[col]  # both describe the same dense run


def test_level_l_trains_exactly_theta0_under_its_mask_not_level_l_minus_1_weights(
        sweep: Sweep) -> None:
    theta0 = checkpoint.load(sweep.blobs, "init.pt")["state"]
    trunk = sweep.chain.trunk
    for level in (1, 3):
        stored = sweep.level_state(level)
        mask = {n: stored[n] != 0 for n in (*PRUNED, OUTPUT)}
        model = models.build(trunk.model, (1, 8, 8), 10, torch.Generator().manual_seed(7))
        model.load_state_dict(theta0)
        again = loop.train(model, datasets.load(trunk.data), trunk.train, mask, trunk.seed)
        assert all(torch.equal(again.state[k], stored[k]) for k in stored), level
        previous = sweep.level_state(level - 1)
        model.load_state_dict(previous)  # the same mask from level L-1's weights differs
        other = loop.train(model, datasets.load(trunk.data), trunk.train, mask, trunk.seed)
        assert not torch.equal(other.state["fc1.weight"], stored["fc1.weight"])


def test_r_p_in_the_rows_equals_metrics_recomputed_on_the_stored_tensors(sweep: Sweep) -> None:
    rows = _chain_rows(sweep)
    theta0 = checkpoint.load(sweep.blobs, "init.pt")["state"]
    dense = sweep.level_state(0)
    names = (*PRUNED, OUTPUT)
    a, b = ({n: s[n] for n in names} for s in (theta0, dense))
    runs = rows["runs"].set_index("method")
    for pct in (10, 20, 30, 40, 50):
        assert runs.loc["dense", f"rp_dense_p{pct}"] == metrics.weight_correlation(a, b,
                                                                                  pct / 100)
    level = levels.level_for(0.36, RATE)
    mask, final = sweep.mask(0.36), sweep.level_state(level)
    start = {n: theta0[n] * mask[n] for n in names}
    assert runs.loc["lth", "rp_run_p20"] == metrics.weight_correlation(
        start, {n: final[n] for n in names}, 0.2, mask)
    layers = rows["layers"]
    per_layer = metrics.layer_weight_correlation(a, b, 0.2)
    for _, row in layers.iterrows():
        assert row.rp_dense_p20 == per_layer[row.layer]


def test_chain_layers_rows_count_kept_weights_of_the_mask(sweep: Sweep) -> None:
    layers = _chain_rows(sweep)["layers"]
    lth = layers[layers.method == "lth"].set_index("layer")
    assert dict(lth.n_kept) == _kept(sweep.mask(0.36))
    dense = layers[layers.method == "dense"].set_index("layer")
    assert dict(dense.n_kept) == dict(dense.n_weights)


def test_curves_hold_one_row_per_level_and_epoch(sweep: Sweep) -> None:
    curves = _chain_rows(sweep)["curves"]
    assert len(curves) == (sweep.chain.levels + 1) * EPOCHS
    for level, group in curves.groupby("level"):
        assert list(group.epoch) == list(range(1, EPOCHS + 1))
        assert set(group.method) == {"dense" if level == 0 else "lth"}
        assert group.target_sparsity.iloc[0] == pytest.approx(levels.level_sparsity(RATE, level))
    assert sorted(curves.level.unique()) == list(range(sweep.chain.levels + 1))


def test_curves_carry_the_target_sparsity_of_their_runs_rows_exactly(sweep: Sweep) -> None:
    rows = _chain_rows(sweep)
    curves, lth = rows["curves"], rows["runs"][rows["runs"].method == "lth"]
    assert list(lth.target_sparsity) == [0.36]  # the one on-level target: level 2
    assert set(curves[curves.level == 2].target_sparsity) == {0.36}
    assert set(curves[curves.level == 0].target_sparsity) == {0.0}
    # a level no target asked for gets its own sparsity, without float noise (not 0.19999...)
    assert set(curves[curves.level == 1].target_sparsity) == {0.2}


# --- rerun, ordering, branches -------------------------------------------------------------------

def test_rerunning_the_chain_trains_nothing_and_rewrites_identical_rows(
    sweep: Sweep, tmp_path
) -> None:
    before = _chain_rows(sweep)
    shutil.copytree(sweep.store.child("artifacts").path, tmp_path / "chain" / "artifacts")
    copy = Sweep(plan=sweep.plan, store=Store(str(tmp_path)).child("chain"), trained=Counter())
    run_job(copy.chain, copy.store, CPU, copy.trained)
    assert copy.trained.records == []
    after = _chain_rows(copy)
    for table, frame in before.items():
        drop = ["wall_time_s"] if "wall_time_s" in frame else []
        assert len(frame) > 0
        pd.testing.assert_frame_equal(frame.drop(columns=drop), after[table].drop(columns=drop))


def test_chain_interrupted_mid_level_resumes_to_the_same_levels_masks_and_rows(
    sweep: Sweep, tmp_path
) -> None:
    calls = Counter()

    def crash_in_level_3(record: EpochRecord) -> None:
        calls(record)
        if len(calls.records) == 3 * EPOCHS + 1:  # first epoch of level 3 is checkpointed
            raise KeyboardInterrupt

    store = Store(str(tmp_path)).child("chain")
    with stage.checkpoint_every(0), pytest.raises(KeyboardInterrupt):
        run_job(sweep.chain, store, CPU, crash_in_level_3)
    resumed = Sweep(plan=sweep.plan, store=store, trained=Counter())
    run_job(resumed.chain, store, CPU, resumed.trained)
    assert len(resumed.trained.records) == (sweep.chain.levels + 1) * EPOCHS - len(calls.records)
    for level in range(sweep.chain.levels + 1):
        a, b = sweep.level_state(level), resumed.level_state(level)
        assert all(torch.equal(a[k], b[k]) for k in a), level
    for target in TARGETS:
        assert _kept(sweep.mask(target)) == _kept(resumed.mask(target))
        assert all(torch.equal(sweep.mask(target)[n], resumed.mask(target)[n]) for n in PRUNED)
    want, got = _chain_rows(sweep), _chain_rows(resumed)
    for table in ("layers", "curves"):
        pd.testing.assert_frame_equal(want[table], got[table])
    drop = ["wall_time_s"]
    pd.testing.assert_frame_equal(want["runs"].drop(columns=drop), got["runs"].drop(columns=drop))


def test_branch_before_its_chain_raises_runtime_error_naming_the_chain(tmp_path) -> None:
    plan = _plan([0.5])
    store = Store(str(tmp_path)).child("chain")
    with pytest.raises(RuntimeError, match="chain"):
        run_job(plan.branches[0], store, CPU)
    assert store.list("runs") == []


def test_off_level_lth_branch_counts_one_extra_level(sweep: Sweep) -> None:
    job = next(b for b in sweep.plan.branches
               if b.point.method == "lth" and b.point.target_sparsity == 0.5)
    counter = Counter()
    run_job(job, sweep.store, CPU, counter)
    assert len(counter.records) == EPOCHS
    row = load.load_runs(sweep.store.path, config_hash=job.point.config_hash).iloc[0]
    level = levels.level_for(0.5, RATE) + 1
    assert row.level == level
    assert row.total_epochs == level * EPOCHS + EPOCHS
    assert row.total_epochs == methods.total_epochs(methods.get("lth"), level, EPOCHS,
                                                    job.trunk.prune)
    assert row.sparsity == pytest.approx(masks.sparsity(sweep.mask(0.5)))


def test_global_scope_redistributes_layers_at_the_same_pooled_sparsity(
    sweep: Sweep, tmp_path
) -> None:
    other = _run_chain(str(tmp_path), [0.36], scope="global")
    assert other.chain.trunk.artifact_dir != sweep.chain.trunk.artifact_dir
    layerwise, pooled = sweep.mask(0.36), other.mask(0.36)
    assert _pruned_sparsity(pooled) == pytest.approx(_pruned_sparsity(layerwise), abs=1e-9)
    assert _kept(pooled) != _kept(layerwise)
    assert bool(pooled[OUTPUT].all())
    runs = load.load_runs(other.store.path, method="lth")
    assert list(runs.prune_scope) == ["global"]
