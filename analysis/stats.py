"""Small pure functions over the runs table (shape: one row per grid point and seed).

Every function takes the DataFrame returned by `analysis.load.load_runs` (any superset of the
columns it names under "Args") and returns a new DataFrame; inputs are never modified. Float
keys (lr, target_sparsity) are rounded to 12 decimals before grouping, so float noise in the
stored values never splits a group.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd

GRID_KEYS: tuple[str, ...] = ("model", "dataset", "method", "lr", "target_sparsity")
RP_DENSE_COLUMNS: tuple[str, ...] = tuple(f"rp_dense_p{pct}" for pct in (10, 20, 30, 40, 50))
_SPREAD_COLUMNS = ("test_acc", "best_test_acc", "sparsity", "rp_run_p20")
_FLOAT_KEY_DECIMALS = 12
# Ma et al. 2021 §2.2: "similar" = within 0.5 points of accuracy on CIFAR-10.
DEFAULT_TOLERANCE = 0.005


def summarize(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean and spread over replicates for every (model, dataset, method, lr, target_sparsity).

    Args:
        runs: Runs table with columns model, dataset, method, lr, target_sparsity, test_acc,
            best_test_acc, sparsity, rp_run_p20 (fractions) and total_epochs.
    Returns:
        One row per grid point, sorted by the keys, with columns: the 5 keys; `n` (replicates:
        seeds with a test_acc; the rows of one seed, e.g. one point loaded from two sweeps,
        count once, as their mean); `<col>_mean` and `<col>_std` (sample std over seeds,
        ddof=1, NaN for n == 1) for test_acc, best_test_acc, sparsity and rp_run_p20; and
        `total_epochs_mean`.
    Raises:
        ValueError: a required column is missing.
    """
    require_columns(runs, [*GRID_KEYS, "seed", *_SPREAD_COLUMNS, "total_epochs"], "summarize")
    seeds = per_seed(_round_keys(runs), GRID_KEYS, [*_SPREAD_COLUMNS, "total_epochs"])
    aggregations: dict[str, tuple[str, str]] = {"n": ("test_acc", "count")}
    for column in _SPREAD_COLUMNS:
        aggregations[f"{column}_mean"] = (column, "mean")
        aggregations[f"{column}_std"] = (column, "std")
    aggregations["total_epochs_mean"] = ("total_epochs", "mean")
    grouped = seeds.groupby(list(GRID_KEYS), sort=True, dropna=False)
    return grouped.agg(**aggregations).reset_index()


def dense_correlation(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean R_p(θ0, θT) of the dense network per learning rate, for p = 0.1 ... 0.5.

    Every row of a trunk (lr, seed) carries the same dense R_p values, so rows are first
    reduced to one value per seed (mean, ignoring NaN), then averaged over seeds. The values
    describe the trunk the row's mask comes from, so transfer rows count under their
    `source_dataset` (the trunk's), not the target they were trained on. Compare each column with
    its null value p: R_p ~= p means θ0 and θT are uncorrelated; R_p > p means positive
    correlation (Liu et al. find R_p > p at lr 0.01 and R_p ~= p at lr 0.1).

    Args:
        runs: Runs table with columns model, dataset, lr, seed and rp_dense_p10 ... p50.
    Returns:
        One row per (model, dataset, lr), sorted, with columns model, dataset, lr, `n_seeds`
        (distinct seeds) and rp_dense_p10 ... rp_dense_p50 (means over seeds, in [0, 1]).
    Raises:
        ValueError: a required column is missing.
    Source: Liu et al. 2021 (arXiv 2102.11068), §4.2, Eq. 1 and Fig. 4.
    """
    keys = ["model", "dataset", "lr"]
    require_columns(runs, [*keys, "seed", *RP_DENSE_COLUMNS], "dense_correlation")
    runs = plain(runs)
    runs = runs.assign(dataset=source_datasets(runs))
    grouped = per_seed(_round_keys(runs), keys, RP_DENSE_COLUMNS).groupby(keys, sort=True)
    result = grouped[list(RP_DENSE_COLUMNS)].mean()
    result.insert(0, "n_seeds", grouped["seed"].nunique())
    return result.reset_index()


def winning_ticket(runs: pd.DataFrame, tolerance: float = DEFAULT_TOLERANCE) -> pd.DataFrame:
    """Partial winning-ticket verdict per (model, dataset, lr, target_sparsity).

    A grid point is a winning ticket when, at the same lr, the lottery ticket (lth) is
    "similar" to the dense net (lth >= dense - tolerance, criterion 4) and beats random
    reinitialization by a clear gap (lth > random_reinit + tolerance, criterion 3). This is a
    partial check: criterion 3 in the source compares with random_reinit trained at *any* lr,
    and criteria 1, 2 and 5 (enough sparsity and epochs, small-dense drop, well-trained dense)
    are not checked. The default 0.005 (0.5 points of accuracy) is the source's CIFAR-10 rule;
    it uses 0.01 for CIFAR-100 and Tiny-ImageNet and 0.015 for ImageNet.

    Args:
        runs: Runs table with columns model, dataset, method, lr, target_sparsity and
            test_acc (final, fraction). Methods used: dense, lth, random_reinit.
        tolerance: Absolute accuracy tolerance, fraction (0.005 = 0.5 points).
    Returns:
        One row per (model, dataset, lr, target_sparsity) that has lth or random_reinit rows,
        sorted, with columns the 4 keys, `lth_test_acc`, `dense_test_acc`,
        `random_reinit_test_acc` (means over seeds, each seed once: `seed_means`; NaN when
        the arm is missing) and bool
        `winning_ticket` (False whenever an arm is missing).
    Raises:
        ValueError: a required column is missing, or tolerance is negative or not finite.
    Source: Ma et al. 2021, "Sanity Checks for Lottery Tickets" (arXiv 2107.00166), §2.2,
        criteria (3)-(4).
    """
    if not math.isfinite(tolerance) or tolerance < 0:
        raise ValueError(f"tolerance must be a finite fraction >= 0, got {tolerance!r}")
    require_columns(runs, [*GRID_KEYS, "test_acc"], "winning_ticket")
    table = _arm_accuracies(_round_keys(runs))
    lth = table["lth_test_acc"]
    # Comparisons with NaN (a missing arm) are False, so such points are never tickets.
    verdict = (lth >= table["dense_test_acc"] - tolerance) & (
        lth > table["random_reinit_test_acc"] + tolerance
    )
    return table.assign(winning_ticket=verdict.astype(bool))


def per_seed(frame: pd.DataFrame, keys: Sequence[str], columns: Sequence[str]) -> pd.DataFrame:
    """Replicates are seeds: one row per group of ``keys`` and seed, each of ``columns`` the
    mean of that seed's rows (one grid point loaded from two sweeps counts once; NaN values
    are skipped). A frame without a ``seed`` column, or grouped by it already, is returned
    as it is.

    Returns:
        Columns ``keys``, ``seed`` and ``columns``, sorted by the keys and the seed.
    """
    if "seed" not in frame.columns or "seed" in keys:
        return frame
    return frame.groupby([*keys, "seed"], sort=True, dropna=False, observed=True)[
        list(columns)].mean().reset_index()


def seed_means(runs: pd.DataFrame, keys: list[str], column: str = "test_acc") -> pd.Series:
    """Mean of ``column`` over seeds per ``keys``, each seed counted once (``per_seed``).

    Args:
        runs: A table with ``keys``, ``column`` and, normally, ``seed``.
        keys: The grouping columns (float keys already rounded).
        column: The value column; NaN values are skipped (a seed with only NaN is no seed).
    Returns:
        A Series indexed by ``keys`` (sorted).
    """
    return per_seed(runs, keys, [column]).groupby(list(keys), sort=True)[column].mean()


def source_datasets(runs: pd.DataFrame) -> pd.Series:
    """The dataset each row's trunk (θ0, θT, the mask) comes from: ``source_dataset``, which
    differs from ``dataset`` on transfer rows; the row's own dataset where it is null (parts
    older than the column) or the table lacks it."""
    if "source_dataset" not in runs.columns:
        return runs["dataset"]
    return runs["source_dataset"].fillna(runs["dataset"])


def _arm_accuracies(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean test_acc over seeds of lth, dense (same lr, any sparsity) and random_reinit per
    sparse point."""
    keys = ["model", "dataset", "lr", "target_sparsity"]
    means = seed_means(runs, list(GRID_KEYS)).reset_index()
    sparse = means[means["method"].isin(["lth", "random_reinit"])]
    table = sparse[keys].drop_duplicates().sort_values(keys, ignore_index=True)
    for method in ("lth", "random_reinit"):
        arm = means.loc[means["method"] == method, [*keys, "test_acc"]]
        arm = arm.rename(columns={"test_acc": f"{method}_test_acc"})
        table = table.merge(arm, how="left", on=keys)
    dense_rows = means[means["method"] == "dense"].groupby(keys[:3])["test_acc"]
    dense = dense_rows.mean().rename("dense_test_acc").reset_index()
    table = table.merge(dense, how="left", on=keys[:3])
    return table[[*keys, "lth_test_acc", "dense_test_acc", "random_reinit_test_acc"]]


def arm_labels(runs: pd.DataFrame) -> pd.Series:
    """The arm of each row: its method, with a non-plain recipe and a transfer variant added.

    ``lth`` (recipe base), ``lth+smooth`` (recipe smooth), ``transfer[late_reset,freeze]``,
    ``transfer[init,finetune]+kd``. Rows of parts older than these columns (nulls) are plain.

    Args:
        runs: A runs table (columns method, and recipe / transfer_init / transfer_regime
            when present).
    Returns:
        A string Series aligned with ``runs``.
    """
    label = runs["method"].astype(str)
    if "transfer_init" in runs.columns:
        init, regime = runs["transfer_init"], runs["transfer_regime"]
        has = init.notna()
        label = label.where(~has, label + "[" + init.astype(str) + "," + regime.astype(str)
                            + "]")
    if "recipe" in runs.columns:
        recipe = runs["recipe"]
        named = recipe.notna() & (recipe != "base")
        label = label.where(~named, label + "+" + recipe.astype(str))
    return label


def plain(runs: pd.DataFrame) -> pd.DataFrame:
    """``runs`` with categorical columns (``analysis.load.CATEGORICAL``) as plain objects, so
    groupby never forms empty category combinations and fillna may mix columns."""
    cats = [c for c in runs.columns if isinstance(runs[c].dtype, pd.CategoricalDtype)]
    return runs.astype({c: "object" for c in cats}) if cats else runs


def _round_keys(runs: pd.DataFrame) -> pd.DataFrame:
    """Copy of `runs` with lr and target_sparsity rounded, so float noise cannot split groups,
    and `method` holding the arm label (`arm_labels`), so recipes and transfer variants of a
    method are grouped apart."""
    runs = plain(runs)
    rounded = {
        column: runs[column].round(_FLOAT_KEY_DECIMALS)
        for column in ("lr", "target_sparsity")
        if column in runs.columns
    }
    if "method" in runs.columns:
        rounded["method"] = arm_labels(runs)
    return runs.assign(**rounded)


def require_columns(frame: pd.DataFrame, columns: list[str], caller: str) -> None:
    """Check that a DataFrame has the columns a function needs.

    Args:
        frame: Any DataFrame, usually a runs table.
        columns: Column names that must be present.
        caller: Name put at the start of the error message.
    Raises:
        ValueError: naming every column of `columns` that `frame` lacks.
    """
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise ValueError(f"{caller}: runs table lacks columns {missing}")
