"""The report's tables, each a tidy DataFrame with intervals (``analysis.intervals``).

Arms are ``analysis.stats.arm_labels`` (a method, with its recipe / transfer variant); float
keys are rounded to 12 decimals. Accuracies and correlations stay fractions here; formatting
to percent is the renderer's job.
"""

from __future__ import annotations

import pandas as pd

from analysis.intervals import paired_difference
from analysis.intervals import summarize
from analysis.stats import RP_DENSE_COLUMNS
from analysis.stats import arm_labels
from analysis.stats import plain
from analysis.stats import require_columns

CELL = ["model", "dataset"]
POINT = ["model", "dataset", "lr", "target_sparsity"]
# (a, b) of the differences the papers ask about: Liu et al. (lth - random_reinit, pf - lth),
# Bai et al. (rst - random_pruning), Frankle & Carbin (lth - dense).
DIFFERENCES = (("lth", "random_reinit"), ("pf", "lth"), ("rst", "random_pruning"),
               ("lth", "dense"))
BUDGET_ARMS = ("lth", "pf", "rst", "rst_iter", "omp_lth", "omp_pf", "omp_random_reinit",
               "lth_rewind")


# What every table reads of a runs table (``analysis.schema.RUNS``).
NEEDED = ["model", "dataset", "method", "lr", "target_sparsity", "seed"]


def prepare(runs: pd.DataFrame, *columns: str) -> pd.DataFrame:
    """``runs`` with an ``arm`` column, rounded float keys and string keys as plain objects.

    Raises:
        ValueError: ``runs`` lacks a key column or one of ``columns``.
    """
    require_columns(runs, [*NEEDED, *columns], "analysis.tables")
    runs = plain(runs)
    return runs.assign(arm=arm_labels(runs), lr=runs["lr"].round(12),
                       target_sparsity=runs["target_sparsity"].round(12))


def accuracy(runs: pd.DataFrame, column: str = "test_acc") -> pd.DataFrame:
    """Mean ``column`` (a fraction) with its interval over seeds per (model, dataset, lr, arm,
    target sparsity); also the mean measured sparsity (``sparsity``) for plotting against
    weights remaining.

    Returns:
        Columns model, dataset, lr, arm, target_sparsity, ``mean``, ``low``, ``high``, ``n``
        (seeds), ``ci_method``, ``sparsity``; no rows for an empty ``runs``.
    Raises:
        ValueError: ``runs`` lacks a key column, ``column`` or ``sparsity``.
    Source: Frankle & Carbin 2019, Figs. 3-5 (accuracy vs weights remaining).
    """
    r = prepare(runs, column, "sparsity")
    table = summarize(r, [*CELL, "lr", "arm", "target_sparsity"], column)
    if r.empty:
        return table.assign(sparsity=pd.Series(dtype=float))
    measured = r.groupby([*CELL, "lr", "arm", "target_sparsity"], observed=True)["sparsity"]
    return table.merge(measured.mean().rename("sparsity").reset_index(),
                       on=[*CELL, "lr", "arm", "target_sparsity"])


def differences(runs: pd.DataFrame, column: str = "test_acc") -> pd.DataFrame:
    """The ``DIFFERENCES`` present in ``runs``, paired by seed at every (model, dataset, lr,
    sparsity); ``lth - dense`` pairs each seed's ticket with that seed's dense net at the same
    lr. Columns: ``comparison`` (``a - b``), the point keys, ``mean``, ``low``, ``high``,
    ``n``, ``ci_method``, ``p_improvement``. Differences are fractions (0.01 = 1 point).

    Raises:
        ValueError: ``runs`` lacks a key column or ``column``.
    Source: Liu et al. 2021 §4 (lth vs random_reinit, pf vs lth), Bai et al. 2022 (rst vs
    random_pruning), Frankle & Carbin 2019 (lth vs dense); pairing and P(X > Y): rliable.
    """
    r = prepare(runs, column)
    out = []
    for a, b in DIFFERENCES:
        if not ({a, b} <= set(r["arm"])):
            continue
        pair = r[r["arm"].isin([a, b])]
        if b == "dense":  # the dense run stands beside every sparsity of its trunk
            dense = r[r["arm"] == "dense"].drop(columns="target_sparsity")
            sparsities = r.loc[r["arm"] == a, [*CELL, "lr", "target_sparsity"]].drop_duplicates()
            pair = pd.concat([r[r["arm"] == a],
                              dense.merge(sparsities, on=[*CELL, "lr"])], ignore_index=True)
        d = paired_difference(pair, POINT, "arm", a, b, column)
        out.append(d.assign(comparison=f"{a} - {b}"))
    if not out:
        return pd.DataFrame(columns=["comparison", *POINT, "mean", "low", "high", "n",
                                     "ci_method", "p_improvement"])
    table = pd.concat(out, ignore_index=True)
    return table[["comparison", *POINT, "mean", "low", "high", "n", "ci_method",
                  "p_improvement"]]


def budgets(runs: pd.DataFrame) -> pd.DataFrame:
    """Equal-budget comparison of the pf / lth / rst / omp / rewind arms: per point, each arm's
    total epochs (checked from the rows, not assumed) and test accuracy with its interval, and
    whether every arm at the point had the same budget.

    Returns:
        Columns model, dataset, lr, target_sparsity, arm, ``total_epochs`` (an int, or
        ``"min-max"`` when the arm's rows differ), ``mean``, ``low``, ``high``, ``n``,
        ``ci_method``, ``equal_budget``.
    Raises:
        ValueError: ``runs`` lacks a key column, test_acc or total_epochs.
    Source: Liu et al. 2021 §5 (P&F vs lottery-ticket retraining at the same total epochs).
    """
    r = prepare(runs, "test_acc", "total_epochs")
    r = r[r["arm"].isin(BUDGET_ARMS)]
    if r.empty:
        return pd.DataFrame(columns=[*POINT, "arm", "total_epochs", "mean", "low", "high", "n",
                                     "ci_method", "equal_budget"])
    acc = summarize(r, [*POINT, "arm"], "test_acc")
    epochs = r.groupby([*POINT, "arm"], observed=True)["total_epochs"].agg(
        lambda s: int(s.max()) if s.nunique() == 1 else f"{s.min()}-{s.max()}")
    table = acc.merge(epochs.rename("total_epochs").reset_index(), on=[*POINT, "arm"])
    equal = table.groupby(POINT, observed=True)["total_epochs"].transform(
        lambda s: s.astype(str).nunique() == 1)
    return table.assign(equal_budget=equal.astype(bool))[
        [*POINT, "arm", "total_epochs", "mean", "low", "high", "n", "ci_method",
         "equal_budget"]]


def correlation(runs: pd.DataFrame) -> pd.DataFrame:
    """R_p(θ0, θT) of the dense nets per (model, dataset, lr) and p, one value per seed, with
    its interval and the null value p (Liu et al. 2021 Eq. 1, Fig. 4).

    Returns:
        Columns model, dataset, lr, ``p``, ``mean``, ``low``, ``high``, ``n``, ``ci_method``.
    Raises:
        ValueError: ``runs`` lacks a key column or an ``rp_dense_p*`` column.
    """
    r = prepare(runs, *RP_DENSE_COLUMNS)
    if "source_dataset" in r:
        r["dataset"] = r["source_dataset"].fillna(r["dataset"]).astype("object")
    per_seed = r.groupby([*CELL, "lr", "seed"], observed=True)[list(RP_DENSE_COLUMNS)].mean()
    long = per_seed.reset_index().melt(id_vars=[*CELL, "lr", "seed"], var_name="column",
                                       value_name="rp")
    long["p"] = long["column"].str.removeprefix("rp_dense_p").astype(int) / 100
    return summarize(long, [*CELL, "lr", "p"], "rp", bounds=(0.0, 1.0))


def mechanism(runs: pd.DataFrame) -> pd.DataFrame:
    """Liu et al.'s mechanism pairs on the pf rows (Fig. 5c/d): R_0.2 of the P&F solution
    with θ0 ⊙ m (``init``) and with a fresh θ0' ⊙ m (``reinit``), per point, with intervals;
    the null value is 0.2.

    Returns:
        Columns ``pair`` (init | reinit), model, dataset, lr, target_sparsity, ``mean``,
        ``low``, ``high``, ``n``, ``ci_method``.
    Raises:
        ValueError: ``runs`` lacks a key column or a ``rp_*_vs_pf_p20`` column.
    """
    r = prepare(runs, "rp_init_vs_pf_p20", "rp_reinit_vs_pf_p20")
    r = r[r["arm"] == "pf"]
    out = []
    for column, name in (("rp_init_vs_pf_p20", "init"), ("rp_reinit_vs_pf_p20", "reinit")):
        out.append(summarize(r, POINT, column).assign(pair=name))
    table = pd.concat(out, ignore_index=True) if out else pd.DataFrame()
    return table[["pair", *POINT, "mean", "low", "high", "n", "ci_method"]]


def early_stopping(runs: pd.DataFrame) -> pd.DataFrame:
    """Frankle & Carbin's early-stopping iteration (minimum validation loss) per point and
    arm, with intervals; empty without a validation split.

    Returns:
        Columns model, dataset, lr, arm, target_sparsity, ``mean``, ``low``, ``high``, ``n``,
        ``ci_method`` of ``best_val_iteration`` (the schedule's step at the best epoch's end).
    Raises:
        ValueError: ``runs`` lacks a key column or best_val_iteration.
    Source: Frankle & Carbin 2019 §2 (early-stopping iteration: minimum validation loss).
    """
    r = prepare(runs, "best_val_iteration")
    r = r[r["best_val_iteration"].notna()]
    return summarize(r, [*CELL, "lr", "arm", "target_sparsity"], "best_val_iteration")


def warnings(runs: pd.DataFrame, failed: list[str] | None = None) -> list[str]:
    """What a reader must know before trusting the tables: points with too few seeds for an
    interval, arms missing at a sparsity others have, and failed trials.

    Raises:
        ValueError: ``runs`` lacks a key column.
    """
    r = prepare(runs)
    out = []
    n = r.groupby([*CELL, "lr", "arm", "target_sparsity"], observed=True)["seed"].nunique()
    few = n[n < 2]
    for key, count in few.items():
        model, dataset, lr, arm, s = key
        out.append(f"{model} / {dataset} lr {lr:g} {arm} at {s:g}: {count} seed, no interval")
    sparse = r[r["arm"] != "dense"]
    for (model, dataset, lr), g in sparse.groupby([*CELL, "lr"], observed=True):
        arms = set(g["arm"])
        for s, gs in g.groupby("target_sparsity"):
            missing = sorted(arms - set(gs["arm"]))
            if missing:
                out.append(f"{model} / {dataset} lr {lr:g} sparsity {s:g}: no rows for "
                           f"{', '.join(missing)} (failed or not yet run)")
    out += [f"failed trial: {name}" for name in failed or []]
    return out
