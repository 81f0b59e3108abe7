"""Tests for ``lth_rewind``: the trunk's rewind walk (trainer/chain.py), θk (trainer/trunk.py)
and its branches, on one real digits sweep (LeNet-300-100, 2 epochs, rewind to step 30 of 23
steps per epoch, so θk sits inside epoch 2)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import InProcessSweep
from conftest import run_in_process
from typer.testing import CliRunner

from analysis import load
from sweeps.cli import app
from sweeps.keys import mask_blob
from sweeps.store import Store
from sweeps.trial_run import run_job
from trainer import checkpoint
from trainer import levels
from trainer import loop
from trainer import masks
from trainer import tickets
from trainer.loop import StageOptions
from trainer.stage import load_result
from trainer.trunk import open_trunk
from trainer.trunk import rewind_blob
from trainer.trunk import rewind_state

K = 30  # rewind step; digits has 1437 training examples: 23 steps of 64 per epoch
SPEC = {"name": "rw", "dataset": "digits", "methods": ["dense", "lth", "lth_rewind"],
        "lrs": [0.1], "sparsities": [0.36, 0.5], "seeds": [0], "training": {"epochs": 2},
        "pruning": {"rewind": {"iterations": K}}}
CPU = torch.device("cpu")
NAMES = ("fc1.weight", "fc2.weight", "fc3.weight")
State = dict[str, torch.Tensor]


class Sweep(InProcessSweep):
    @property
    def root(self) -> str:
        return self.plan.chains[0].rewind.root

    def walk_level(self, level: int) -> State:
        return load_result(self.trunk_blobs.child(self.root, f"level_{level}")).state


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Sweep:
    return Sweep(*run_in_process(SPEC, tmp_path_factory.mktemp("rewind")))


def _equal(a: State, b: State) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _ctx(sweep: Sweep):
    return open_trunk(sweep.plan.chains[0].trunk, sweep.store.child("artifacts"), CPU)


def test_the_dense_run_stores_theta_k_its_weights_after_step_k(sweep: Sweep) -> None:
    ctx = _ctx(sweep)
    stored = checkpoint.load(sweep.trunk_blobs.child("level_0"), rewind_blob(K))["state"]
    ctx.model.load_state_dict(ctx.init)
    seen: dict[int, State] = {}

    def keep(step: int, model: torch.nn.Module) -> None:
        if step == K:
            seen[K] = {n: v.detach().clone() for n, v in model.state_dict().items()}

    loop.train(ctx.model, ctx.data, ctx.trunk.train, {}, ctx.trunk.seed,
               options=StageOptions(on_step=keep))
    assert _equal(stored, seen[K])
    assert not _equal(stored, ctx.init)


def test_a_dense_run_stored_without_theta_k_is_retrained_for_k_steps_to_the_same_weights(
        sweep: Sweep) -> None:
    ctx = _ctx(sweep)
    level0 = sweep.trunk_blobs.child("level_0")
    stored = checkpoint.load(level0, rewind_blob(K))["state"]
    level0.delete(rewind_blob(K))
    again = rewind_state(ctx, K)
    assert _equal(again, stored)
    assert _equal(checkpoint.load(level0, rewind_blob(K))["state"], stored)  # stored again


def test_rewind_levels_train_theta_k_under_the_level_mask_from_step_k(sweep: Sweep) -> None:
    ctx = _ctx(sweep)
    theta_k = checkpoint.load(sweep.trunk_blobs.child("level_0"), rewind_blob(K))["state"]
    walk = sweep.plan.chains[0].rewind
    assert walk.levels == levels.level_for(0.5, 0.2) == 3
    previous = load_result(sweep.trunk_blobs.child("level_0")).state  # level 0 is the dense run
    mask = masks.full_mask(ctx.init, ctx.names)
    for level in range(1, walk.levels + 1):
        mask = masks.magnitude_prune({n: previous[n] for n in ctx.names}, mask,
                                     levels.level_sparsity(0.2, level), "layerwise",
                                     ctx.exclude)
        ctx.model.load_state_dict(theta_k)
        expected = loop.train(ctx.model, ctx.data, ctx.trunk.train, mask, ctx.trunk.seed,
                              options=StageOptions(start_step=K))
        stored = sweep.walk_level(level)
        assert _equal(stored, expected.state), level
        assert [r.epoch for r in expected.records] == [2]  # step 30 is in epoch 2
        ctx.model.load_state_dict(ctx.init)  # θ0 under the same mask is another network
        other = loop.train(ctx.model, ctx.data, ctx.trunk.train, mask, ctx.trunk.seed,
                           options=StageOptions(start_step=K))
        assert not torch.equal(other.state["fc1.weight"], stored["fc1.weight"])
        previous = stored


def test_the_rewind_walk_stores_its_own_masks_beside_the_theta0_chains(sweep: Sweep) -> None:
    for s in (0.36, 0.5):
        rewound = checkpoint.load(sweep.trunk_blobs, f"{sweep.root}/{mask_blob(s)}")["mask"]
        plain = checkpoint.load(sweep.trunk_blobs, mask_blob(s))["mask"]
        assert masks.sparsity({n: rewound[n] for n in NAMES[:2]}) == pytest.approx(s, abs=1e-3)
        assert not torch.equal(rewound["fc1.weight"], plain["fc1.weight"])  # other weights
    on_level = checkpoint.load(sweep.trunk_blobs, f"{sweep.root}/{mask_blob(0.36)}")["mask"]
    level2 = sweep.walk_level(2)
    assert all(torch.equal(on_level[n], level2[n] != 0) for n in NAMES[:2])


def test_rows_carry_k_the_rewound_epochs_and_the_walks_levels(sweep: Sweep) -> None:
    runs = load.load_runs(sweep.store.path, method="lth_rewind").set_index("target_sparsity")
    assert list(runs.index) == [0.36, 0.5]
    assert (runs.rewind_step == K).all()
    assert list(runs.level) == [2, 4]
    rewound = 2 - K / 23  # each rewind level trains epochs 2..2 from step 30
    assert runs.loc[0.36, "total_epochs"] == pytest.approx(-(-(2 + 2 * rewound) // 1))
    assert runs.loc[0.5, "total_epochs"] == pytest.approx(-(-(2 + 4 * rewound) // 1))
    assert (runs.epochs == 1).all()  # one (partial) epoch record
    assert load.load_runs(sweep.store.path, method="lth").rewind_step.isna().all()
    curves = load.load_curves(sweep.store.path, method="lth_rewind")
    assert set(curves.level) == {1, 2, 3, 4}  # the walk's levels and the branch's stage


def test_an_off_level_branch_trains_theta_k_under_the_walks_extra_round(sweep: Sweep) -> None:
    job = sweep.branch(method="lth_rewind")
    assert job.point.target_sparsity == 0.5
    assert job.stage_dir.startswith(f"{sweep.root}/level_4/")
    ctx = _ctx(sweep)
    mask = checkpoint.load(sweep.trunk_blobs, job.mask_blob)["mask"]
    ctx.model.load_state_dict(checkpoint.load(sweep.trunk_blobs.child("level_0"),
                                              rewind_blob(K))["state"])
    expected = loop.train(ctx.model, ctx.data, ctx.trunk.train, mask, ctx.trunk.seed,
                          options=StageOptions(start_step=K))
    assert _equal(load_result(sweep.trunk_blobs.child(job.stage_dir)).state, expected.state)


def test_an_exported_rewind_ticket_is_theta_k_under_the_walks_mask(
        sweep: Sweep, tmp_path) -> None:
    out = tmp_path / "t.pt"
    result = CliRunner().invoke(app, ["export", "rw", "--storage",
                                      str(Path(sweep.store.path).parent),
                                      "--method", "lth_rewind", "--sparsity", "0.36",
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    model, mask = tickets.load_ticket(out)
    stored = checkpoint.load(sweep.trunk_blobs, f"{sweep.root}/{mask_blob(0.36)}")["mask"]
    assert _equal(mask, stored)
    theta_k = checkpoint.load(sweep.trunk_blobs.child("level_0"), rewind_blob(K))["state"]
    state = model.state_dict()
    for name in NAMES:
        assert torch.equal(state[name], theta_k[name] * mask[name]), name


def test_a_lost_rewind_row_or_level_is_pending_and_repaired_without_training(
        sweep: Sweep, tmp_path) -> None:
    import shutil

    from sweeps import integrity
    from sweeps.run import pending_jobs

    copy = tmp_path / "rw"
    shutil.copytree(sweep.store.path, copy)
    store = Store(str(copy))
    chain = sweep.plan.chains[0]
    on_level = chain.rewind.points[0]
    store.delete(f"runs/part-{on_level.config_hash}.parquet")
    store.delete(f"curves/part-{chain.rewind.part}-L1.parquet")
    done = integrity.inspect(store).done
    assert on_level.config_hash not in done
    behind = {p.config_hash for p in sweep.plan.points if f"{chain.rewind.part}-L1" in p.curves}
    assert behind == {p.config_hash for p in sweep.plan.points if p.method == "lth_rewind"}
    chains, branches, _ = pending_jobs(sweep.plan, done)
    assert [c.rewind.points for c in chains] == [(on_level,)]
    assert [c.points for c in chains] == [()]  # the θ0 chain's rows are all committed
    assert [b.point.method for b in branches] == ["lth_rewind"]
    trained: list[int] = []
    for job in (*chains, *branches):
        run_job(job, store, CPU, lambda record: trained.append(record.epoch))
    assert trained == []  # every stage's final.pt was still there
    assert {p.config_hash for p in sweep.plan.points} <= integrity.inspect(store).done
    again = load.load_runs(store.path).drop(columns=["wall_time_s"])
    before = load.load_runs(sweep.store.path).drop(columns=["wall_time_s"])
    assert again.equals(before)


def test_a_sparsity_below_the_first_level_rewinds_from_the_dense_runs_mask(
        tmp_path: Path) -> None:
    """0.1 < the first level's 0.2: the mask prunes θT once on both walks. The rewind walk
    (which shares the dense run and starts at level 1) stores it and reports its level 0, the
    level a released ``lth_rewind`` branch waits for (``sweeps.release.need``)."""
    from sweeps import spec as spec_module
    from sweeps.plan import make_plan
    from sweeps.release import need
    from sweeps.store import Store
    from sweeps.trial_run import run_job

    torch.set_num_threads(1)
    plan = make_plan(spec_module.parse({**SPEC, "name": "rw0", "sparsities": [0.1]}))
    store = Store(str(tmp_path)).child("rw0")
    heard: list[tuple[str, int]] = []
    (chain,) = plan.chains
    run_job(chain, store, CPU, on_level=lambda walk, level: heard.append((walk, level)))
    for b in plan.branches:
        n = need(plan, b)
        assert (n.walk, n.level) in heard, (b.point.method, n)
        run_job(b, store, CPU)
    sweep = Sweep(plan, store)
    rewound = checkpoint.load(sweep.trunk_blobs, f"{sweep.root}/{mask_blob(0.1)}")["mask"]
    plain = checkpoint.load(sweep.trunk_blobs, mask_blob(0.1))["mask"]
    assert _equal(rewound, plain)
    runs = load.load_runs(store.path, method="lth_rewind")
    assert len(runs) == 1 and int(runs.level.iloc[0]) == 1
