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
from analysis.stats import per_seed
from analysis.stats import plain
from analysis.stats import require_columns

CELL = ["model", "dataset"]
POINT = ["model", "dataset", "lr", "target_sparsity"]
# (a, b) of the differences the papers ask about: Liu et al. (lth - random_reinit, pf - lth),
# Bai et al. (rst - random_pruning), Frankle & Carbin (lth - dense), Ma et al. (the OMP
# ticket vs its random reinit, criterion (3); the ticket vs the small-dense net, criterion
# (2); IMP vs one-shot masks).
DIFFERENCES = (("lth", "random_reinit"), ("pf", "lth"), ("rst", "random_pruning"),
               ("lth", "dense"), ("omp_lth", "omp_random_reinit"), ("lth", "sdt"),
               ("lth", "omp_lth"))


# A run this far below the median of its point's other seeds (a fraction: 10 points of
# accuracy) is named in the warnings.
COLLAPSE = 0.10

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
    random_pruning), Frankle & Carbin 2019 (lth vs dense), Ma et al. 2021 §2.2 (omp_lth vs
    omp_random_reinit, lth vs sdt, lth vs omp_lth); pairing and P(X > Y): rliable.
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
    """Budgets of every sparse arm: per point, each arm's total epochs (checked from the rows,
    not assumed) and test accuracy with its interval, and its epochs beside the ticket's.

    Returns:
        Columns model, dataset, lr, target_sparsity, arm, ``total_epochs`` (an int, or
        ``"min-max"`` when the arm's rows differ), ``mean``, ``low``, ``high``, ``n``,
        ``ci_method``, ``vs_lth`` (the arm's total epochs minus lth's at the point: 0 is
        Liu et al.'s equal budget; None without an lth arm there or with varying epochs).
    Raises:
        ValueError: ``runs`` lacks a key column, test_acc or total_epochs.
    Source: Liu et al. 2021 §5 (P&F vs lottery-ticket retraining at the same total epochs).
    """
    r = prepare(runs, "test_acc", "total_epochs")
    r = r[r["arm"] != "dense"]
    if r.empty:
        return pd.DataFrame(columns=[*POINT, "arm", "total_epochs", "mean", "low", "high", "n",
                                     "ci_method", "vs_lth"])
    acc = summarize(r, [*POINT, "arm"], "test_acc")
    spread = r.groupby([*POINT, "arm"], observed=True)["total_epochs"].agg(
        ["min", "max"]).reset_index()
    one = spread["min"] == spread["max"]
    spread["total_epochs"] = [int(hi) if same else f"{int(lo)}-{int(hi)}"
                              for lo, hi, same in zip(spread["min"], spread["max"], one,
                                                      strict=True)]
    spread["fixed"] = spread["max"].where(one)  # NaN: the arm's rows differ
    lth = spread.loc[spread["arm"] == "lth", [*POINT, "fixed"]].rename(columns={"fixed": "lth"})
    table = acc.merge(spread[[*POINT, "arm", "total_epochs", "fixed"]], on=[*POINT, "arm"]) \
        .merge(lth, on=POINT, how="left")
    vs = [None if pd.isna(d) else int(d) for d in table["fixed"] - table["lth"]]
    return table.assign(vs_lth=pd.Series(vs, index=table.index, dtype=object))[
        [*POINT, "arm", "total_epochs", "mean", "low", "high", "n", "ci_method", "vs_lth"]]


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


def early_stopping(runs: pd.DataFrame, curves: pd.DataFrame | None = None) -> pd.DataFrame:
    """Frankle & Carbin's early-stopping iteration (minimum validation loss) per point and
    arm, with intervals; empty without a validation split.

    Validation is read once per epoch, so a run whose minimum is at its last epoch may still
    be improving: its early-stopping iteration is only known to be at least that (censored).
    Given the curves table, ``censored`` counts such runs, and a group holding one gets no
    interval (its mean is a lower bound).

    Returns:
        Columns model, dataset, lr, arm, target_sparsity, ``mean``, ``low``, ``high``, ``n``,
        ``ci_method`` (``censored`` for a cell holding a censored run) of
        ``best_val_iteration`` (the schedule's step at the best epoch's end), and ``censored``
        (runs at their last epoch; None without curves).
    Raises:
        ValueError: ``runs`` lacks a key column or best_val_iteration.
    Source: Frankle & Carbin 2019 §2 (early-stopping iteration: minimum validation loss).
    """
    r = prepare(runs, "best_val_iteration")
    r = r[r["best_val_iteration"].notna()]
    keys = [*CELL, "lr", "arm", "target_sparsity"]
    table = summarize(r, keys, "best_val_iteration", bounds=(0.0, float("inf")))
    stage = ["trial_id", "level", "method", "target_sparsity"]
    if curves is None or curves.empty or r.empty or \
            not {*stage, "epoch"} <= set(curves.columns) or "best_val_epoch" not in r.columns:
        return table.assign(censored=None)
    c = plain(curves).assign(target_sparsity=curves["target_sparsity"].round(12))
    last = c.groupby(stage, observed=True)["epoch"].max().rename("last_epoch").reset_index()
    r = r.merge(last, on=stage, how="left")
    censored = (r["best_val_epoch"] >= r["last_epoch"]).astype(int).groupby(
        [r[k] for k in keys], observed=True).sum().rename("censored")
    table = table.merge(censored.reset_index(), on=keys, how="left")
    hit = table["censored"] > 0
    table.loc[hit, ["low", "high"]] = float("nan")
    table.loc[hit, "ci_method"] = "censored"
    return table


def warnings(runs: pd.DataFrame, failed: list[str] | None = None) -> list[str]:
    """What a reader must know before trusting the tables: points with too few seeds for an
    interval, runs far below the other seeds of their point (``COLLAPSE``: a collapsed or
    diverged run, which the means and intervals include), arms missing at a sparsity others
    have, and failed trials.

    Raises:
        ValueError: ``runs`` lacks a key column.
    """
    r = prepare(runs)
    out = []
    if "test_acc" in r.columns:
        out += _collapsed(r)
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


def _collapsed(r: pd.DataFrame) -> list[str]:
    """Runs whose test accuracy is more than ``COLLAPSE`` below the median of the other
    seeds of their point and arm (each seed's rows averaged first)."""
    keys = [*CELL, "lr", "arm", "target_sparsity"]
    seeds = per_seed(r, keys, ["test_acc"]).set_index([*keys, "seed"])["test_acc"].dropna()
    out = []
    for key, group in seeds.groupby(level=keys, observed=True):
        if len(group) < 2:
            continue
        model, dataset, lr, arm, s = key
        for (*_, seed), value in group.items():
            others = float(group.drop(index=group.index[group.index.get_level_values("seed")
                                                         == seed]).median())
            if value < others - COLLAPSE:
                out.append(f"{model} / {dataset} lr {lr:g} {arm} at {s:g}: seed {seed} ends "
                           f"at {100 * value:.1f} % against {100 * others:.1f} % for the other "
                           "seeds (collapsed?); the mean and interval include it")
    return out

