"""A validation split end to end: F&C's early-stopping epoch in rows, val columns in curves."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
import torch

from analysis.load import load_curves
from analysis.load import load_runs
from sweeps import spec as spec_module
from sweeps.plan import make_plan
from sweeps.store import Store
from sweeps.trial_run import run_job

SPEC = {"name": "val", "dataset": "digits", "methods": ["dense", "lth", "pf"], "lrs": [0.1],
        "sparsities": [0.36, 0.5], "seeds": [0], "training": {"epochs": 3, "batch_size": 64},
        "data": {"validation": 300}}


def _run(root: Path, spec: dict) -> Path:
    torch.set_num_threads(1)
    plan = make_plan(spec_module.parse(spec))
    store = Store(str(root)).child(spec["name"])
    for job in (*plan.chains, *plan.branches):
        run_job(job, store, torch.device("cpu"))
    return Path(store.path)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _run(tmp_path_factory.mktemp("val"), SPEC)


def test_every_row_carries_its_early_stopping_epoch_and_the_test_accuracy_there(
        sweep: Path) -> None:
    runs, curves = load_runs(sweep), load_curves(sweep)
    assert len(runs) == 5
    steps = math.ceil((1437 - 300) / 64)
    for _, row in runs.iterrows():
        stage = curves[(curves.trial_id == row.trial_id) & (curves.level == row.level)] \
            if row.method in ("dense", "lth") and row.trial_id.startswith("chain-") else \
            curves[curves.trial_id == row.trial_id]
        assert len(stage) == 3 and stage.val_loss.notna().all()
        best = stage.loc[stage.val_loss.idxmin()]
        assert row.best_val_epoch == best.epoch
        assert row.best_val_iteration == best.epoch * steps
        assert row.test_acc_at_best_val == best.test_acc
        final = stage[stage.epoch == 3].iloc[0]
        assert (row.val_acc, row.val_loss) == (final.val_acc, final.val_loss)
        assert 0.0 <= row.val_acc <= 1.0


def test_without_a_split_the_val_columns_are_null(tmp_path: Path) -> None:
    plain = _run(tmp_path, {**SPEC, "name": "noval", "methods": ["dense"], "data": {}})
    row = load_runs(plain).iloc[0]
    assert pd.isna(row.val_acc) and pd.isna(row.best_val_epoch)
    assert pd.isna(row.test_acc_at_best_val)
    assert load_curves(plain).val_loss.isna().all()


def test_the_split_is_part_of_the_trunk_key() -> None:
    with_split = make_plan(spec_module.parse(SPEC)).chains[0].trunk.artifact_dir
    without = make_plan(spec_module.parse({**SPEC, "data": {}})).chains[0].trunk.artifact_dir
    assert with_split != without
