"""The plain-text sweep summary printed by `lottery report` and at the end of `lottery run`."""

from __future__ import annotations

import math

import pandas as pd

from analysis.search import format_search
from analysis.search import grid_rows
from analysis.stats import DEFAULT_TOLERANCE
from analysis.stats import RP_DENSE_COLUMNS
from analysis.stats import dense_correlation
from analysis.stats import require_columns
from analysis.stats import summarize
from analysis.stats import winning_ticket

EMPTY_MESSAGE = "No runs to report: the runs table is empty."

# Row order of methods in the accuracy table; unknown methods follow alphabetically.
_METHOD_ORDER = ("dense", "lth", "lth_rewind", "random_reinit", "random_pruning", "pf",
                 "omp_lth", "omp_random_reinit", "omp_pf", "rst", "rst_iter", "sdt",
                 "transfer")


def format_report(runs: pd.DataFrame, search_metric: str = "val_acc") -> str:
    """Render a sweep's runs table as a human-readable text report.

    Per (model, dataset) it shows: final test accuracy in percent as "mean% ± std" over seeds
    (rows (lr, method), one column per target sparsity, dense in column "0"); the dense
    R_p(θ0, θT) table (rows lr, columns p = 0.1 ... 0.5); and the winning-ticket verdict per
    (lr, target sparsity) from `analysis.stats.winning_ticket`.

    Rows an Optuna search tried (`search` set) are left out of those tables and shown in a
    section of their own (`analysis.search.format_search`: best configuration per cell and
    its history, chosen on `search_metric`).

    Args:
        runs: Runs table as returned by `analysis.load.load_runs` (columns of
            `analysis.schema.RUNS`; accuracies are fractions).
        search_metric: The searches' metric, `val_acc` or `val_loss`.
    Returns:
        The report; a single line (`EMPTY_MESSAGE`) when `runs` has no rows.
    Raises:
        ValueError: `runs` lacks a column the report needs.
    """
    if runs.empty:
        return EMPTY_MESSAGE
    require_columns(runs, ["sweep", "model", "dataset", "seed"], "format_report")
    searched = format_search(runs, search_metric)
    runs = grid_rows(runs)
    if runs.empty:
        return searched + "\n"
    summary = summarize(runs)
    correlation = dense_correlation(runs)
    tickets = winning_ticket(runs)
    sections = [_header(runs, summary)]
    for (model, dataset), group in summary.groupby(["model", "dataset"], sort=True):
        sections.append(f"=== {model} / {dataset} ===")
        sections.append(_accuracy_section(group))
        mine = correlation[(correlation["model"] == model) & (correlation["dataset"] == dataset)]
        sections.append(_correlation_section(mine))
        mine = tickets[(tickets["model"] == model) & (tickets["dataset"] == dataset)]
        sections.append(_ticket_section(mine))
    return "\n\n".join(sections + ([searched] if searched else [])) + "\n"


def _header(runs: pd.DataFrame, summary: pd.DataFrame) -> str:
    """One line: sweeps, models, datasets, row count, conditions and seeds per condition.

    A condition is a grid point but its seed (the summary's rows); ``lottery plan`` and
    ``lottery status`` count grid points with their seeds, one row each."""
    n_min, n_max = int(summary["n"].min()), int(summary["n"].max())
    replicates = str(n_min) if n_min == n_max else f"{n_min}-{n_max}"
    return (
        f"sweep: {_names(runs['sweep'])} | models: {_names(runs['model'])} | "
        f"datasets: {_names(runs['dataset'])} | {len(runs)} rows: {len(summary)} "
        f"condition{'' if len(summary) == 1 else 's'} (grid points but the seed), "
        f"{replicates} seed{'' if n_max == 1 else 's'} each"
    )


def _names(column: pd.Series) -> str:
    return ", ".join(sorted(str(value) for value in column.dropna().unique()))


def _accuracy_section(summary: pd.DataFrame) -> str:
    """Table of "mean% ± std" final test accuracy: rows (lr, method), columns target sparsity."""
    cells = summary.assign(
        cell=[
            _percent(m, s)
            for m, s in zip(summary["test_acc_mean"], summary["test_acc_std"], strict=True)
        ]
    )
    table = cells.pivot(index=["lr", "method"], columns="target_sparsity", values="cell")
    order = sorted(table.index, key=lambda key: (key[0], _method_rank(key[1]), key[1]))
    table = table.reindex(pd.MultiIndex.from_tuples(order))
    table.index = pd.MultiIndex.from_tuples(
        [(_number_label(lr), method) for lr, method in order], names=["lr", "method"]
    )
    table.columns = [_number_label(float(value)) for value in table.columns]
    table.columns.name = "target sparsity"
    title = "Final test accuracy, % (mean ± std over seeds; dense in sparsity column 0)"
    return f"{title}\n{table.fillna('-').to_string()}"


def _correlation_section(correlation: pd.DataFrame) -> str:
    """Table of mean dense R_p(θ0, θT): rows lr, columns p."""
    title = "Dense R_p(θ0, θT), mean over seeds (null value = p; Liu et al. 2021 Eq. 1)"
    if correlation.empty or correlation[list(RP_DENSE_COLUMNS)].isna().all().all():
        return f"{title}\n(not recorded)"
    table = correlation.set_index(correlation["lr"].map(_number_label))[list(RP_DENSE_COLUMNS)]
    table.columns = [f"p={int(name.removeprefix('rp_dense_p')) / 100:g}" for name in table.columns]
    table = table.map(lambda value: "-" if math.isnan(value) else f"{value:.3f}")
    table["seeds"] = correlation["n_seeds"].to_numpy()
    return (f"{title}\n{table.to_string()}\n(a partial check; Ma et al.'s five criteria: "
            "`lottery report NAME --out DIR` or analysis.verdicts.ticket_verdicts)")


def _ticket_section(tickets: pd.DataFrame) -> str:
    """Table of lth / dense / random_reinit accuracy and the verdict per (lr, sparsity)."""
    pts = f"{100 * DEFAULT_TOLERANCE:g} pt"
    title = f"Winning ticket (lth >= dense - {pts} and lth > random_reinit + {pts}, same lr)"
    if tickets.empty:
        return f"{title}\n(no lth or random_reinit rows)"
    columns = {
        "lth_test_acc": "lth %",
        "dense_test_acc": "dense %",
        "random_reinit_test_acc": "random_reinit %",
    }
    index = [tickets["lr"].map(_number_label), tickets["target_sparsity"].map(_number_label)]
    table = tickets.set_index(index)[list(columns)]
    verdict = tickets["winning_ticket"].map({True: "yes", False: "no"}).to_numpy()
    missing = table.isna().any(axis=1).to_numpy()
    table = table.map(lambda value: "-" if math.isnan(value) else f"{100 * value:.2f}")
    table.columns = list(columns.values())
    table["winning ticket"] = [
        "no (missing arm)" if gap else word for word, gap in zip(verdict, missing, strict=True)
    ]
    return f"{title}\n{table.to_string()}"


def _percent(mean: float, std: float) -> str:
    """Format fractions as "91.23% ± 0.45" (percent); the ± part is omitted when std is NaN."""
    if math.isnan(mean):
        return "-"
    if math.isnan(std):
        return f"{100 * mean:.2f}%"
    return f"{100 * mean:.2f}% ± {100 * std:.2f}"


def _method_rank(arm: str) -> int:
    """Rank of an arm label by its method (``lth+smooth`` ranks as ``lth``)."""
    method = arm.split("+")[0].split("[")[0]
    return _METHOD_ORDER.index(method) if method in _METHOD_ORDER else len(_METHOD_ORDER)


def _number_label(value: float) -> str:
    """Short label for an lr or sparsity: 0.1 -> "0.1", 0.0 -> "0", 1e-05 -> "1e-05"."""
    return f"{value:g}"
