"""Optuna search beside the grid (spec ``search:``): the spec's checks, cells and trial plans,
studies rebuilt from the tables, and a real Ray Tune search on digits that a re-run does not
repeat and a larger ``trials`` continues."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import lottery
from conftest import write_spec

from analysis import search as asearch
from analysis.load import load_runs
from analysis.report import format_report
from sweeps import search
from sweeps import spec as spec_module
from sweeps.errors import SpecError
from sweeps.keys import trunk_key
from sweeps.plan import make_plan
from sweeps.store import Store

SEARCH = {"kind": "optuna", "trials": 2, "lr": {"low": 0.01, "high": 0.2, "log": True}}
SPEC = {"name": "stest", "dataset": "digits", "model": "lenet_300_100",
        "methods": ["lth", "random_reinit"], "sparsities": [0.5], "seeds": [0],
        "training": {"epochs": 2, "batch_size": 128}, "data": {"validation": 200},
        "search": SEARCH}


def _spec(**changes: object) -> spec_module.SweepSpec:
    return spec_module.parse({**SPEC, **changes})


# --- the spec ---------------------------------------------------------------------------------

def test_a_search_replaces_the_lr_grid() -> None:
    with pytest.raises(SpecError, match="lrs.*or `search`, not both"):
        _spec(lrs=[0.1])


def test_a_search_needs_a_validation_split() -> None:
    with pytest.raises(SpecError, match=r"search\.metric.*data\.validation"):
        _spec(data={})


@pytest.mark.parametrize(("field", "value", "match"), [
    ("lr", {"low": 0.3, "high": 0.1}, "below"),
    ("lr", {"low": 0.0, "high": 0.1, "log": True}, "log scale"),
    ("epochs", {"low": 1.5, "high": 4}, "integer bounds"),
    ("momentum", {"low": 0.5, "high": 1.0}, "valid training.momentum"),
    ("gamma", {"low": 0.0, "high": 0.5}, "valid training.gamma"),
    ("weight_decay", {"low": -0.1, "high": 0.1}, "valid training.weight_decay"),
    ("lr", {"low": 0.0, "high": 0.1}, "stay > 0"),
    ("kind", "grid", "kind"),
    ("trials", 0, "trials"),
    ("metric", "test_acc", "metric"),
])
def test_bad_search_fields_are_named(field: str, value: object, match: str) -> None:
    with pytest.raises(SpecError, match=rf"search\.{field}.*" if field != "kind" else "kind"):
        _spec(search={**SEARCH, field: value})


def test_a_cell_is_one_point_so_recipes_cannot_be_searched() -> None:
    with pytest.raises(SpecError, match="recipes axis"):
        _spec(recipes={"base": {}, "smooth": {"label_smoothing": 0.1}})


# --- cells and trial plans --------------------------------------------------------------------

def test_cells_cover_method_sparsity_and_seed_with_dense_once() -> None:
    spec = _spec(methods=["dense", "lth"], sparsities=[0.5, 0.8], seeds=[0, 1])
    labels = [c.label for c in search.cells(spec)]
    assert labels == ["dense-lenet_300_100-digits-s0-seed0", "lth-lenet_300_100-digits-s0.5-seed0",
                      "lth-lenet_300_100-digits-s0.8-seed0", "dense-lenet_300_100-digits-s0-seed1",
                      "lth-lenet_300_100-digits-s0.5-seed1", "lth-lenet_300_100-digits-s0.8-seed1"]


def test_a_trial_shares_its_trunk_with_the_grid_but_has_its_own_row_key() -> None:
    spec = _spec(search={**SEARCH, "weight_decay": {"low": 0.0, "high": 0.001}})
    cell = search.cells(spec)[0]
    params = {"lr": 0.05, "weight_decay": 0.0005}
    one, two = (search.trial_plan(spec, cell, params, n) for n in (0, 1))
    grid = make_plan(spec_module.parse({**SPEC, "search": None, "lrs": [0.05],
                                        "methods": ["lth"],
                                        "training": {**SPEC["training"],
                                                     "weight_decay": 0.0005}}))
    assert trunk_key(one.chains[0].trunk) == trunk_key(grid.chains[0].trunk)
    assert one.chains[0].trunk.train.weight_decay == 0.0005
    keys = {p.config_hash for p in one.points} | {p.config_hash for p in two.points}
    assert len(keys) == 2 and not keys & {p.config_hash for p in grid.points}
    point = one.points[0]
    assert (point.search, point.search_trial) == ("optuna", 0)
    assert json.loads(point.search_params) == params


def test_history_todo_and_warm_studies_come_from_the_tables(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    spec = _spec()
    store = Store(str(tmp_path)).child("stest")
    lth, rr = search.cells(spec)
    value = search.run_trial(spec, lth, {"lr": 0.05}, 0, store, torch.device("cpu"))
    search.run_trial(spec, lth, {"lr": 0.5}, 1, store, torch.device("cpu"))  # outside [.01, .2]
    done = search.history(store, spec)
    assert [t.number for t in done[lth]] == [0, 1] and done[rr] == []
    assert done[lth][0].value == value and 0 <= value <= 1
    # the budget counts the trials inside the current space: lr 0.5 is not one of them
    assert search.todo(spec, done) == [(lth, 1), (rr, 2)]
    assert search.todo(spec.model_copy(update={"search": spec.search.model_copy(
        update={"trials": 3})}), done) == [(lth, 2), (rr, 3)]
    study = search.study(spec, lth, done[lth])
    assert len(study._ot_study.trials) == 1  # the trial outside the space is not fed back
    picked = study.suggest("t")
    assert 0.01 <= picked["lr"] <= 0.2


def test_the_report_shows_the_best_configuration_per_cell() -> None:
    runs = pd.DataFrame({
        "sweep": "s", "model": "m", "dataset": "d", "method": "lth", "target_sparsity": 0.5,
        "seed": 0, "search": "optuna", "search_trial": [0, 1, 2],
        "search_params": ['{"lr": 0.1}', '{"lr": 0.02}', '{"lr": 0.05}'],
        "val_acc": [0.80, 0.90, 0.85], "test_acc": [0.79, 0.88, 0.86]})
    b = asearch.best(runs)
    assert len(b) == 1 and b.search_trial[0] == 1 and b.lr[0] == 0.02 and b.trials[0] == 3
    assert list(asearch.history(runs).best_so_far) == [0.80, 0.90, 0.90]
    lossy = runs.assign(val_loss=[0.5, 0.7, 0.4])
    assert asearch.best(lossy, "val_loss").search_trial[0] == 2
    text = format_report(runs)
    assert "best configuration per cell" in text and "0.8 0.9 0.9" in text


def test_plan_prints_the_search_budget(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from sweeps.cli import app

    path = write_spec(tmp_path / "s.yaml", SPEC)
    result = CliRunner().invoke(app, ["plan", str(path)])
    assert result.exit_code == 0, result.output
    assert "search 'optuna'" in result.stdout and "2 cells x 2 trials" in result.stdout
    assert "lr in [0.01, 0.2] (log)" in result.stdout


# --- through Ray Tune -------------------------------------------------------------------------

@pytest.mark.ray
def test_a_search_runs_through_tune_resumes_and_continues(tmp_path: Path, ray_env) -> None:
    path = write_spec(tmp_path / "s.yaml", SPEC)
    results = tmp_path / "results"
    first = lottery(["run", str(path), "--storage", str(results)], ray_env, tmp_path)
    assert "4 trials launched" in first.stderr
    runs = load_runs(results / "stest")
    assert len(runs) == 4 and set(runs.search) == {"optuna"}
    for _, cell in runs.groupby(["method"]):
        assert sorted(cell.search_trial) == [0, 1]
    lrs = [json.loads(p)["lr"] for p in runs.search_params]
    assert all(0.01 <= lr <= 0.2 for lr in lrs) and list(runs.lr.sort_values()) == sorted(lrs)
    assert runs.val_acc.between(0, 1).all()
    assert "best configuration per cell" in first.stdout

    again = lottery(["run", str(path), "--storage", str(results)], ray_env, tmp_path)
    assert "0 trials launched" in again.stderr
    assert len(load_runs(results / "stest")) == 4
    status = lottery(["status", "stest", "--storage", str(results)], ray_env, tmp_path)
    assert "trials: 4 done" in status.stdout and "points done: 4 of 4" in status.stdout

    more = write_spec(tmp_path / "s.yaml", {**SPEC, "search": {**SEARCH, "trials": 3}})
    lottery(["run", str(more), "--storage", str(results)], ray_env, tmp_path)
    runs = load_runs(results / "stest")
    assert len(runs) == 6
    for _, cell in runs.groupby(["method"]):
        assert sorted(cell.search_trial) == [0, 1, 2]

    out = tmp_path / "report"
    lottery(["report", "stest", "--storage", str(results), "--out", str(out)], ray_env,
            tmp_path)
    assert (out / "figures" / "search_history.png").stat().st_size > 1000
    assert "figures/search_history.png" in (out / "report.md").read_text()
    assert "best configuration per cell" in (out / "report.html").read_text()


# --- the searcher and its studies (no Ray: Tune's Searcher called directly) -------------------

def test_cells_of_a_seed_wait_for_the_trunks_an_earlier_cell_is_training() -> None:
    """A fresh study picks what the seed's earlier cell picked, so lth's trial 0 stands on
    dense trial 0's trunk: it waits for it; the other seed's cells go on meanwhile."""
    from sweeps.search_tune import CellSearcher

    spec = _spec(methods=["dense", "lth"], seeds=[0, 1])
    done: dict = {}
    searcher = CellSearcher(spec, search.todo(spec, done), done, {})
    handed = {f"t{i}": searcher.suggest(f"t{i}") for i in range(5)}
    cells = [(c["cell"]["method"], c["cell"]["seed"]) if c else None for c in handed.values()]
    assert cells == [("dense", 0), ("dense", 0), ("dense", 1), ("dense", 1), None]
    searcher.on_trial_complete("t0", {"val_acc": 0.5})
    assert searcher.suggest("t5") is None  # dense seed 0's trial 1 still trains the trunk
    searcher.on_trial_complete("t1", {"val_acc": 0.6})
    lth = searcher.suggest("t6")
    assert (lth["cell"]["method"], lth["cell"]["seed"], lth["number"]) == ("lth", 0, 0)
    assert lth["params"] == handed["t0"]["params"]  # the same pick: the same trunk


def test_a_resumed_study_draws_new_picks_and_keeps_diverged_trials_as_bad() -> None:
    import optuna

    spec = _spec()
    lth, _ = search.cells(spec)
    first = search.study(spec, lth, []).suggest("a")
    again = search.study(spec, lth, []).suggest("b")
    assert first == again  # a fresh study of a seed is reproducible
    resumed = search.study(spec, lth, [search.Tried(0, first, 0.5)])
    assert resumed.suggest("c") != first  # not trial 0 again
    diverged = search.study(spec, lth, [search.Tried(0, first, None)])
    assert [t.state for t in diverged._ot_study.trials] == [optuna.trial.TrialState.PRUNED]


def test_a_transfer_search_cell_is_its_source() -> None:
    spec = _spec(dataset=["digits[0-4]", "digits[5-9]"], methods=["transfer"],
                 transfer={"targets": ["digits[5-9]"], "inits": ["init"],
                           "regimes": ["finetune"]})
    (cell,) = search.cells(spec)  # digits[5-9] has no target but itself: no cell
    assert cell.dataset == "digits[0-4]"
    plan = search.trial_plan(spec, cell, {"lr": 0.05}, 0)
    assert len(plan.points) == 1 and plan.points[0].method == "transfer"


def test_trial_names_carry_the_search_name() -> None:
    lth, _ = search.cells(_spec())
    names = {search.trial_name(n, lth, 0) for n in ("optuna", "wide")}
    assert len(names) == 2 and all(n.startswith("search-") and n.endswith("-t0") for n in names)
    assert "optuna" in search.trial_name("optuna", lth, 0)
