"""Reading Optuna searches (spec ``search:``) back from the runs table: the best configuration
per cell, each cell's history, and a search-history figure.

A search row has ``search`` (the search's name), ``search_trial`` (its number in the cell's
study) and ``search_params`` (the picked values as JSON); a cell is (search, model, dataset,
source_dataset, method, target_sparsity, seed): a transfer cell is its source, trained and
measured on the target ``dataset``. The metric is a validation column (``val_acc`` maximized,
``val_loss`` minimized); test accuracy is only reported beside it, never used to choose.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

CELL = ["search", "model", "dataset", "source_dataset", "method", "target_sparsity", "seed"]


def search_rows(runs: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``runs`` that a search tried (empty when there are none)."""
    if "search" not in runs:
        return runs.iloc[0:0]
    return runs[runs["search"].notna()]


def grid_rows(runs: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``runs`` that are grid points (all of them without a ``search`` column)."""
    if "search" not in runs:
        return runs
    return runs[runs["search"].isna()]


def history(runs: pd.DataFrame, metric: str = "val_acc") -> pd.DataFrame:
    """Every search trial in cell and trial order, with its picked values as columns and the
    best ``metric`` so far in its cell.

    Args:
        runs: A runs table (``analysis.load.load_runs``).
        metric: ``val_acc`` (higher is better) or ``val_loss`` (lower is better).
    Returns:
        Columns ``CELL``, ``search_trial``, one column per searched field (``lr``, ...),
        ``metric``, ``best_so_far`` and ``test_acc``.
    Raises:
        ValueError: ``metric`` is neither.
    """
    if metric not in ("val_acc", "val_loss"):
        raise ValueError(f"search metric must be val_acc or val_loss, got {metric!r}")
    from analysis.stats import plain
    from analysis.stats import source_datasets

    rows = plain(search_rows(runs))
    if rows.empty:
        return pd.DataFrame(columns=[*CELL, "search_trial", metric, "best_so_far", "test_acc"])
    rows = rows.assign(source_dataset=source_datasets(rows))
    params = pd.DataFrame([json.loads(p) for p in rows["search_params"]], index=rows.index)
    out = pd.concat([rows[[*CELL, "search_trial", metric, "test_acc"]], params], axis=1)
    for column in CELL:
        out[column] = out[column].astype("object")
    out = out.sort_values([*CELL, "search_trial"]).reset_index(drop=True)
    best = out.groupby(CELL, sort=False)[metric]
    out["best_so_far"] = best.cummax() if metric == "val_acc" else best.cummin()
    return out[[*CELL, "search_trial", *params.columns, metric, "best_so_far", "test_acc"]]


def best(runs: pd.DataFrame, metric: str = "val_acc") -> pd.DataFrame:
    """The best trial of every cell by ``metric`` (ties: the earlier trial), with the number
    of trials the cell ran.

    Args:
        runs: A runs table (``analysis.load.load_runs``).
        metric: As ``history``.
    Returns:
        Columns as ``history`` (without ``best_so_far``) plus ``trials``; empty without
        search rows.
    Raises:
        ValueError: ``metric`` is neither ``val_acc`` nor ``val_loss``.
    """
    h = history(runs, metric)
    if h.empty:
        return h.assign(trials=pd.Series(dtype="int64"))
    order = h.sort_values([*CELL, metric, "search_trial"],
                          ascending=[True] * len(CELL) + [metric == "val_loss", True])
    top = order.groupby(CELL, sort=True).head(1).drop(columns="best_so_far")
    counts = h.groupby(CELL).size().rename("trials").reset_index()
    return top.merge(counts, on=CELL).reset_index(drop=True)


def plot_history(runs: pd.DataFrame, path: str | Path, metric: str = "val_acc") -> list[Path]:
    """Draw each cell's ``metric`` per trial (points) and best so far (line), one panel per
    (model, dataset, method, sparsity) with one colour per seed; save PNG and SVG.

    Args:
        runs: A runs table with search rows.
        path: File name without suffix; ``.png`` and ``.svg`` are written beside it.
        metric: As ``history``.
    Returns:
        The written files.
    Raises:
        ValueError: ``runs`` has no search rows.
    """
    from analysis.figures import pyplot
    from analysis.figures import save

    plt = pyplot()
    h = history(runs, metric)
    if h.empty:
        raise ValueError("no search rows to plot")
    panels = list(h.groupby([c for c in CELL if c != "seed"], sort=True))
    cols = min(3, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    for ax, (key, group) in zip(axes.flat, panels, strict=False):
        for seed, g in group.groupby("seed", sort=True):
            ax.scatter(g["search_trial"], g[metric], s=14, alpha=0.6)
            ax.plot(g["search_trial"], g["best_so_far"], label=f"seed {seed}")
        _, model, dataset, source, method, sparsity = key
        data = dataset if source == dataset else f"{source} -> {dataset}"
        ax.set_title(f"{method} s={sparsity:g}\n{model} / {data}", fontsize=9)
        ax.set_xlabel("trial")
        ax.set_ylabel(metric)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    fig.tight_layout()
    return save(fig, Path(path))


def format_search(runs: pd.DataFrame, metric: str = "val_acc") -> str:
    """The text section of ``lottery report`` for searches: best configuration per cell and
    the best-so-far curve per cell ("" without search rows).

    Raises:
        ValueError: ``metric`` is neither ``val_acc`` nor ``val_loss``.
    """
    b = best(runs, metric)
    if b.empty:
        return ""
    lines = ["=== searches (best configuration per cell, chosen on validation) ==="]
    params = [c for c in b.columns if c not in (*CELL, "search_trial", metric, "test_acc",
                                                "trials")]
    with pd.option_context("display.width", 200, "display.max_columns", None,
                           "display.float_format", "{:.4g}".format):
        lines.append(b[[*CELL, "trials", "search_trial", *params, metric, "test_acc"]]
                     .to_string(index=False))
    h = history(runs, metric)
    lines.append(f"\n--- history: best {metric} after each trial, per cell ---")
    for key, group in h.groupby(CELL, sort=True):
        search, model, dataset, source, method, sparsity, seed = key
        curve = " ".join(f"{v:.4g}" for v in group["best_so_far"])
        data = dataset if source == dataset else f"{source} -> {dataset}"
        lines.append(f"{search} {method} s={sparsity:g} seed {seed} ({model} / {data}): "
                     f"{curve}")
    return "\n".join(lines)
