"""``lottery report --out``: the tables (analysis.tables) and the HTML / Markdown report of a
real small sweep, rendered in headless Chromium (every figure decoded, the page not blank)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from conftest import run_in_process

from analysis import tables
from analysis.load import load_curves
from analysis.load import load_layers
from analysis.load import load_runs
from analysis.report_files import write_report

SPEC = {"name": "rep", "dataset": "digits", "model": "lenet_300_100",
        "methods": ["dense", "lth", "random_reinit", "pf"], "lrs": [0.05, 0.2],
        "sparsities": [0.36, 0.59], "seeds": [0, 1], "training": {"epochs": 2},
        "data": {"validation": 200}}


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("rep")
    run_in_process(SPEC, root)
    return root / "rep"


def test_tables_carry_intervals_budgets_and_pairs(sweep: Path) -> None:
    runs = load_runs(sweep)
    acc = tables.accuracy(runs)
    assert len(acc) == 2 * (1 + 3 * 2) and set(acc.ci_method) == {"t"}
    assert (acc["low"] <= acc["mean"]).all() and (acc["mean"] <= acc["high"]).all()
    diffs = tables.differences(runs)
    assert set(diffs.comparison) == {"lth - random_reinit", "pf - lth", "lth - dense"}
    assert (diffs.n == 2).all()
    budget = tables.budgets(runs)
    pf = budget[budget.arm == "pf"]
    assert not pf.empty and (pf.vs_lth == 0).all()  # pf and lth train the same epochs
    corr = tables.correlation(runs)
    assert sorted(corr.p.unique()) == [0.1, 0.2, 0.3, 0.4, 0.5] and (corr.n == 2).all()
    assert set(tables.mechanism(runs).pair) == {"init", "reinit"}
    assert tables.warnings(runs) == []
    lone = runs[~((runs.method == "pf") & (runs.seed == 1))]
    assert any("1 seed, no interval" in w for w in tables.warnings(lone, ["t1"]))
    assert tables.warnings(lone, ["t1"])[-1] == "failed trial: t1"


def test_a_point_loaded_twice_is_one_replicate_not_two(sweep: Path) -> None:
    """Replicates are seeds: the same rows loaded from two sweeps (a grid and its extension
    overlap) must not halve the intervals."""
    from analysis.stats import summarize as point_summary

    once, twice = load_runs(sweep), load_runs([sweep, sweep])
    assert len(twice) == 2 * len(once)
    for table in (tables.accuracy, tables.budgets, tables.mechanism, tables.correlation):
        pd.testing.assert_frame_equal(table(twice), table(once))
    assert (point_summary(twice)["n"] == 2).all()
    pd.testing.assert_frame_equal(point_summary(twice), point_summary(once))


def test_tables_of_no_rows_are_empty_and_a_missing_column_is_named(sweep: Path) -> None:
    runs = load_runs(sweep)
    nothing = load_runs(sweep, method="nope")
    assert nothing.empty
    for table in (tables.accuracy, tables.differences, tables.budgets, tables.mechanism,
                  tables.early_stopping, tables.correlation):
        assert table(nothing).empty
    with pytest.raises(ValueError, match=r"lacks columns \['test_acc'\]"):
        tables.accuracy(runs.drop(columns="test_acc"))
    with pytest.raises(ValueError, match=r"lacks columns \['nope'\]"):
        tables.accuracy(runs, column="nope")


def test_the_report_files_hold_every_section(sweep: Path, tmp_path: Path) -> None:
    md, page = write_report(load_runs(sweep), load_curves(sweep), tmp_path / "out",
                            {"name": "rep"}, ["chain-x"], layers=load_layers(sweep))
    text = md.read_text()
    for title in ("## Sweep", "## Warnings", "## Test accuracy", "## Paired differences",
                  "## Ticket verdicts", "## Equal budget", "## Weight correlation",
                  "## Early stopping", "## Training curves", "## Mask overlap",
                  "between seeds", "between lrs", "failed trial: chain-x"):
        assert title in text, title
    for link in [line.split("](")[1].rstrip(")") for line in text.splitlines()
                 if line.startswith("![")]:
        assert (md.parent / link).stat().st_size > 1000, link
    html = page.read_text()
    assert html.count('<img class="fig"') >= 4 and "data:image/png;base64," in html


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def test_the_html_report_renders_in_headless_chromium(sweep: Path, tmp_path: Path) -> None:
    browser = _chromium()
    if browser is None:
        if os.environ.get("CI"):
            pytest.fail("CI must install Debian's chromium (.ci/run does)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    _, page = write_report(load_runs(sweep), load_curves(sweep), tmp_path / "out")
    figures = page.read_text().count('<img class="fig"')
    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu",
             f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*flags, "--dump-dom", "--virtual-time-budget=10000", page.as_uri()],
                         capture_output=True, text=True, timeout=120).stdout
    assert f'data-figures="{figures}/{figures}"' in dom  # every figure decoded
    shot = tmp_path / "shot.png"
    subprocess.run([*flags, f"--screenshot={shot}", "--window-size=1200,1600", page.as_uri()],
                   capture_output=True, timeout=120, check=True)
    import matplotlib.image

    pixels = matplotlib.image.imread(shot)[..., :3]
    ink = (pixels.mean(axis=2) < 0.9).mean()
    assert ink > 0.02 and pixels.std() > 0.05  # text, tables and plots, not a blank page


def test_report_out_where_it_cannot_write_exits_2_naming_it(sweep: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from sweeps.cli import app

    taken = tmp_path / "a-file"
    taken.write_text("not a directory")
    result = CliRunner().invoke(app, ["report", str(sweep), "--out", str(taken)])
    assert result.exit_code == 2
    assert f"cannot write {taken}:" in result.stderr and "Traceback" not in result.output


def test_budgets_compare_every_sparse_arm_with_the_tickets_epochs() -> None:
    rows = [{"model": "m", "dataset": "d", "method": method, "lr": 0.1,
             "target_sparsity": 0.0 if method == "dense" else 0.8, "seed": seed,
             "test_acc": 0.9, "total_epochs": epochs}
            for method, epochs in (("dense", 6), ("lth", 30), ("pf", 30), ("omp_lth", 12),
                                   ("random_reinit", 30))
            for seed in (0, 1)]
    rows[-1]["total_epochs"] = 31  # one random_reinit row differs: no single budget
    budget = tables.budgets(pd.DataFrame(rows)).set_index("arm")
    assert "dense" not in budget.index
    assert budget.loc["pf", "vs_lth"] == 0 and budget.loc["lth", "vs_lth"] == 0
    assert budget.loc["omp_lth", "vs_lth"] == -18
    assert budget.loc["random_reinit", "total_epochs"] == "30-31"
    assert budget.loc["random_reinit", "vs_lth"] is None
    no_ticket = tables.budgets(pd.DataFrame([r for r in rows if r["method"] != "lth"]))
    assert no_ticket["vs_lth"].isna().all()


def test_warnings_name_a_run_far_below_its_other_seeds() -> None:
    rows = [{"model": "m", "dataset": "d", "method": "sdt", "lr": 0.1, "target_sparsity": 0.9,
             "seed": seed, "test_acc": acc} for seed, acc in ((0, 0.84), (1, 0.10), (2, 0.85))]
    rows += [{**rows[0], "method": "lth", "seed": s, "test_acc": 0.88 - 0.05 * s}
             for s in range(3)]  # 5 points apart: noise, not a collapse
    found = tables.warnings(pd.DataFrame(rows))
    assert len(found) == 1 and "sdt at 0.9: seed 1 ends at 10.0 % against 84.5 %" in found[0]


def test_accuracy_axes_leave_a_collapsed_arms_mean_off_scale() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from analysis.figures import _focus

    fig, ax = plt.subplots()
    _focus(ax, pd.Series([88.2, 88.6, 89.0, 89.4, 87.9, 88.1, 47.1]))
    low, high = ax.get_ylim()
    assert 80 < low < 87.9 and 89.4 < high < 91  # the other arms keep their spread
    _focus(ax, pd.Series([81.2, 83.0, 85.1, 87.2]))  # a genuine spread stays whole
    assert ax.get_ylim()[0] < 81.2 and ax.get_ylim()[1] > 87.2
    plt.close(fig)


def test_early_stopping_at_the_last_epoch_is_censored() -> None:
    """A minimum of the validation loss at the last epoch says only "at least here": such a
    cell keeps its mean as a lower bound and loses its interval."""
    base = {"model": "m", "dataset": "d", "method": "lth", "lr": 0.1, "target_sparsity": 0.5,
            "level": 3}
    runs = pd.DataFrame([{**base, "seed": s, "trial_id": f"t{s}", "best_val_epoch": e,
                          "best_val_iteration": 100 * e}
                         for s, e in ((0, 4), (1, 6), (2, 5))]
                        + [{**base, "target_sparsity": 0.8, "seed": s, "trial_id": f"u{s}",
                            "best_val_epoch": e, "best_val_iteration": 100 * e}
                           for s, e in ((0, 2), (1, 3), (2, 4))])
    curves = pd.DataFrame([{**base, "target_sparsity": r.target_sparsity, "trial_id": r.trial_id,
                            "epoch": e} for r in runs.itertuples() for e in range(1, 7)])
    es = tables.early_stopping(runs, curves).set_index("target_sparsity")
    assert es.loc[0.5, "censored"] == 1 and es.loc[0.5, "ci_method"] == "censored"
    assert pd.isna(es.loc[0.5, "low"]) and es.loc[0.5, "mean"] == 500
    assert es.loc[0.8, "censored"] == 0 and es.loc[0.8, "low"] >= 0  # clipped at step 0
    assert tables.early_stopping(runs)["censored"].isna().all()  # no curves: unknown


def test_the_mask_overlap_section_compares_masks_found_differently() -> None:
    """Between arms, only masks found in different ways (IMP vs one-shot, vs a random mask):
    random reinit keeps the ticket's mask, a trivial 1.0."""
    import numpy as np

    from analysis.report_files import _overlaps

    rng = np.random.default_rng(0)
    rows = [{"model": "m", "dataset": "d", "method": method, "lr": 0.1, "target_sparsity": 0.8,
             "seed": 0, "layer": "fc1", "n_weights": 800,
             "mask_bits": np.packbits(rng.random(800) < 0.2).tobytes()}
            for method in ("lth", "omp_lth", "random_reinit")]
    section = _overlaps(pd.DataFrame(rows))
    tables_by_name = dict(section.tables)
    assert set(tables_by_name) == {"between arms"}  # one seed, one lr
    pairs = set(zip(tables_by_name["between arms"].a, tables_by_name["between arms"].b,
                    strict=True))
    assert pairs == {("lth", "omp_lth")}
