"""Tests for ``transfer`` (trainer/methods/transfer.py): a source ticket trained on a target.

One real sweep: LeNet-300-100 on digits classes 0-4 (the source trunk) and 5-9, IMP to 0.5,
transfer to digits[5-9] (5 classes, the source head fits) and digits[6-9] (4 classes, a new
head), every init and regime, one epoch each.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import InProcessSweep
from conftest import run_in_process
from typer.testing import CliRunner

from analysis import load
from sweeps import spec as spec_module
from sweeps.cli import app
from sweeps.keys import mask_blob
from sweeps.store import Store
from trainer import checkpoint
from trainer import data as datasets
from trainer import loop
from trainer import seeding
from trainer import tickets
from trainer.hparams import DataHparams
from trainer.jobs import BranchJob
from trainer.loop import StageOptions
from trainer.stage import load_result
from trainer.trunk import open_trunk

SOURCE, SAME, FEWER = "digits[0-4]", "digits[5-9]", "digits[6-9]"
SPEC = {"name": "tr", "dataset": [SOURCE, SAME], "methods": ["dense", "lth", "transfer"],
        "lrs": [0.1], "sparsities": [0.5], "seeds": [0], "training": {"epochs": 1},
        "transfer": {"targets": [SAME, FEWER]}}
CPU = torch.device("cpu")
FEATURES = ("fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias")
HEAD = ("fc3.weight", "fc3.bias")
State = dict[str, torch.Tensor]


class Sweep(InProcessSweep):
    @property
    def source_blobs(self) -> Store:
        chain = next(c for c in self.plan.chains if c.trunk.data.label == SOURCE)
        return self.store.child("artifacts", chain.trunk.artifact_dir)

    def job(self, target: str, init: str, regime: str) -> BranchJob:
        return next(b for b in self.plan.branches if b.point.method == "transfer"
                    and b.trunk.data.label == SOURCE
                    and b.method_hparams == {"target": target, "init": init, "regime": regime})

    def final(self, job: BranchJob) -> State:
        return load_result(self.source_blobs.child(job.stage_dir)).state


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Sweep:
    return Sweep(*run_in_process(SPEC, tmp_path_factory.mktemp("transfer")))


def _target(label: str) -> DataHparams:
    return spec_module.parse(SPEC).data_hparams(label)


def test_every_arm_is_planned_from_each_other_dataset_of_the_grid(sweep: Sweep) -> None:
    arms = [b for b in sweep.plan.branches if b.point.method == "transfer"]
    pairs = [(b.trunk.data.label, b.method_hparams["target"]) for b in arms]
    assert sorted(set(pairs)) == [(SOURCE, SAME), (SOURCE, FEWER), (SAME, FEWER)]
    assert all(pairs.count(p) == 3 * 2 for p in set(pairs))  # inits x regimes; no SAME->SAME
    assert {b.mask_blob for b in arms} == {mask_blob(0.5)}  # the source chain's IMP mask


@pytest.mark.parametrize("target", [SAME, FEWER])
@pytest.mark.parametrize("init", ["late_reset", "init", "reinit"])
def test_finetune_arms_start_from_their_init_under_the_source_mask(
        sweep: Sweep, target: str, init: str) -> None:
    blobs = sweep.source_blobs
    mask = checkpoint.load(blobs, mask_blob(0.5))["mask"]
    theta0 = checkpoint.load(blobs, "init.pt")["state"]
    theta_s = load_result(blobs.child("level_0")).state
    job = sweep.job(target, init, "finetune")
    ctx = open_trunk(job.trunk, sweep.store.child("artifacts"), CPU, _target(target))
    fresh = ctx.build(seeding.generator(0, "reinit")).state_dict()
    base = {"late_reset": theta_s, "init": theta0, "reinit": fresh}[init]
    start = {k: v.clone() for k, v in base.items()}
    classes = len(_target(target).classes)
    if classes != 5:  # the source head does not fit: a new one
        head = ctx.build(seeding.generator(0, "transfer_head")).state_dict()
        start.update({k: head[k] for k in HEAD})
    # a new head is dense and in the mask: all ones of its own shape
    train_mask = {**mask, "fc3.weight": torch.ones(start["fc3.weight"].shape, dtype=torch.bool)}
    assert torch.equal(train_mask["fc3.weight"], mask["fc3.weight"]) == (classes == 5)
    ctx.model.load_state_dict(start)
    expected = loop.train(ctx.model, ctx.data, job.trunk.train, train_mask, job.trunk.seed)
    final = sweep.final(job)
    assert all(torch.equal(final[k], expected.state[k]) for k in final)
    assert final["fc3.weight"].shape == (classes, 100)
    for name in ("fc1.weight", "fc2.weight"):  # the source mask holds on the target
        assert torch.count_nonzero(final[name][~mask[name]]) == 0


@pytest.mark.parametrize("init", ["late_reset", "init", "reinit"])
def test_freeze_arms_keep_the_masked_features_and_train_only_a_new_head(
        sweep: Sweep, init: str) -> None:
    blobs = sweep.source_blobs
    mask = checkpoint.load(blobs, mask_blob(0.5))["mask"]
    job = sweep.job(SAME, init, "freeze")
    final = sweep.final(job)
    ctx = open_trunk(job.trunk, sweep.store.child("artifacts"), CPU, _target(SAME))
    base = {"late_reset": load_result(blobs.child("level_0")).state,
            "init": checkpoint.load(blobs, "init.pt")["state"],
            "reinit": ctx.build(seeding.generator(0, "reinit")).state_dict()}[init]
    for name in FEATURES:
        expected = base[name] * mask[name] if name in mask else base[name]
        assert torch.equal(final[name], expected), name
    head = ctx.build(seeding.generator(0, "transfer_head")).state_dict()
    assert not torch.equal(final["fc3.weight"], head["fc3.weight"])  # trained
    start = {**base, **{k: head[k] for k in HEAD}}
    ctx.model.load_state_dict(start)
    features = {k: m for k, m in mask.items() if k != "fc3.weight"}
    names = {n for n, _ in ctx.model.named_parameters()} - set(HEAD)
    expected = loop.train(ctx.model, ctx.data, job.trunk.train, features, job.trunk.seed,
                          options=StageOptions(frozen=frozenset(names)))
    assert all(torch.equal(final[k], expected.state[k]) for k in final)


def test_rows_name_source_target_init_and_regime_and_test_on_the_target(sweep: Sweep) -> None:
    runs = load.load_runs(sweep.store.path, method="transfer", source_dataset=SOURCE)
    assert len(runs) == 12
    assert (runs.dataset == runs.target_dataset).all()
    assert set(runs.target_dataset) == {SAME, FEWER}
    assert set(zip(runs.transfer_init, runs.transfer_regime, strict=True)) == {
        (i, r) for i in ("late_reset", "init", "reinit") for r in ("finetune", "freeze")}
    lth = load.load_runs(sweep.store.path, method="lth")
    assert lth.transfer_init.isna().all() and (lth.source_dataset == lth.dataset).all()
    # the row's accuracy is the final model's on the target's test split
    job = sweep.job(FEWER, "init", "finetune")
    ctx = open_trunk(job.trunk, sweep.store.child("artifacts"), CPU, _target(FEWER))
    ctx.model.load_state_dict(sweep.final(job))
    _, acc = loop.evaluate(ctx.model, ctx.data.test_x, ctx.data.test_y)
    row = runs[runs.config_hash == job.point.config_hash].iloc[0]
    assert row.test_acc == pytest.approx(acc)
    # its sparsity counts the new dense head, as lth's counts the source's dense head
    mask = checkpoint.load(sweep.source_blobs, mask_blob(0.5))["mask"]
    removed = sum(int((~mask[n]).sum()) for n in ("fc1.weight", "fc2.weight"))
    total = sum(mask[n].numel() for n in ("fc1.weight", "fc2.weight")) + 4 * 100
    assert row.sparsity == pytest.approx(removed / total)
    source_lth = lth[(lth.dataset == SOURCE) & (lth.target_sparsity == 0.5)].iloc[0]
    assert source_lth.sparsity == pytest.approx(removed / (total - 400 + 500))
    assert len(ctx.data.test_y) == datasets.sizes(_target(FEWER))[1]


def test_an_exported_transfer_ticket_is_theta_s_under_the_mask_with_its_new_head(
        sweep: Sweep, tmp_path: Path) -> None:
    out = tmp_path / "t.pt"
    result = CliRunner().invoke(app, [
        "export", "tr", "--storage", str(Path(sweep.store.path).parent), "--method",
        "transfer", "--sparsity", "0.5", "--dataset", SOURCE, "--target", FEWER, "--init",
        "late_reset", "--regime", "finetune", "--out", str(out)])
    assert result.exit_code == 0, result.output
    model, mask = tickets.load_ticket(out)
    theta_s = load_result(sweep.source_blobs.child("level_0")).state
    state = model.state_dict()
    for name in ("fc1.weight", "fc2.weight"):
        assert torch.equal(state[name], theta_s[name] * mask[name])
    assert state["fc3.weight"].shape == mask["fc3.weight"].shape == (4, 100)
    assert mask["fc3.weight"].all()  # the new head is dense
    ambiguous = CliRunner().invoke(app, [
        "export", "tr", "--storage", str(Path(sweep.store.path).parent), "--method",
        "transfer", "--sparsity", "0.5", "--out", str(tmp_path / "u.pt")])
    assert ambiguous.exit_code == 2 and "--init reinit" in ambiguous.stderr
