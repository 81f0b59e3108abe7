"""The report's figures (matplotlib, Agg backend), each saved as PNG and SVG.

- ``accuracy_vs_remaining``: test accuracy vs percent of weights remaining on a log axis
  (Frankle & Carbin 2019, Figs. 3-5), one panel per lr, one line per arm with its 95 %
  interval band, the dense net as a horizontal band.
- ``correlation_vs_p``: R_p(θ0, θT) vs p per lr with the null line R_p = p (Liu et al. 2021,
  Fig. 4).
- ``early_stopping_vs_remaining``: the early-stopping iteration vs weights remaining per arm
  (Frankle & Carbin's "learns faster"; needs a validation split).
- ``training_curves``: test accuracy per epoch of every IMP level of a chain, per lr.

Every function takes tables from ``analysis.tables`` (or the curves table), draws one figure
per (model, dataset) and returns the files it wrote.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

COLORS = {"dense": "black", "lth": "tab:blue", "random_reinit": "tab:orange",
          "random_pruning": "tab:green", "pf": "tab:red", "lth_rewind": "tab:purple",
          "omp_lth": "tab:cyan", "omp_random_reinit": "tab:olive", "omp_pf": "tab:pink",
          "rst": "tab:brown", "rst_iter": "tab:gray", "sdt": "gold"}


def pyplot():
    """matplotlib.pyplot on the headless Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig, path: Path) -> list[Path]:
    """Write ``fig`` as ``path`` with suffixes .png and .svg (directories made); close it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    written = []
    for suffix in (".png", ".svg"):
        target = path.with_suffix(suffix)
        fig.savefig(target, dpi=110)
        written.append(target)
    pyplot().close(fig)
    return written


def _slug(*parts: object) -> str:
    return "-".join(str(p).replace("/", "_").replace("[", "_").replace("]", "")
                    .replace(",", ".") for p in parts)


def _focus(ax, means: pd.Series) -> None:
    """Y limits around the means (an interval band wider than that is clipped: one collapsed
    seed must not flatten every line; the tables have the numbers). Means further than three
    interquartile ranges out (a collapsed arm's) fall off the axis too."""
    means = means.dropna()
    if means.empty:
        return
    q1, q3 = (float(q) for q in means.quantile([0.25, 0.75]))
    low = max(float(means.min()), q1 - 3 * (q3 - q1))
    high = min(float(means.max()), q3 + 3 * (q3 - q1))
    pad = max(0.15 * (high - low), 0.5)
    ax.set_ylim(low - pad, high + pad)
    ax.set_autoscaley_on(False)


def _remaining_axis(ax) -> None:
    """Log x axis of weights remaining (%), decreasing to the right, plain tick labels."""
    from matplotlib.ticker import FixedLocator
    from matplotlib.ticker import NullFormatter
    from matplotlib.ticker import ScalarFormatter

    ax.set_xscale("log")
    low, high = ax.get_xlim()
    ticks = [t for t in (0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100) if min(low, high) <= t
             <= max(low, high)]
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    if low < high:
        ax.invert_xaxis()
    ax.set_xlabel("weights remaining (%, measured; layers kept dense count)")


def _panels(n: int):
    plt = pyplot()
    fig, axes = plt.subplots(1, n, figsize=(5.0 * n, 3.8), squeeze=False)
    return fig, list(axes.flat)


def accuracy_vs_remaining(acc: pd.DataFrame, out: Path, stem: str = "accuracy") -> list[Path]:
    """One figure per (model, dataset) from ``tables.accuracy``: panels per lr.

    Args:
        acc: ``tables.accuracy``'s table (columns model, dataset, lr, arm, sparsity, mean,
            low, high; fractions).
        out: Directory for ``<stem>-<model>-<dataset>.png`` and ``.svg``.
    Returns:
        The files written (none for an empty table).
    Source: Frankle & Carbin 2019, Figs. 3-5.
    """
    return _by_remaining(acc, out, stem, "test accuracy (%)", scale=100.0, focus=True)


def correlation_vs_p(corr: pd.DataFrame, out: Path, stem: str = "rp") -> list[Path]:
    """One figure per (model, dataset) from ``tables.correlation``: a line per lr, with the
    null line R_p = p.

    Returns:
        The files written (none for an empty table).
    Source: Liu et al. 2021, Eq. 1 and Fig. 4.
    """
    plt = pyplot()
    written = []
    for (model, dataset), cell in corr.groupby(["model", "dataset"], sort=True):
        fig, ax = plt.subplots(figsize=(4.6, 3.8))
        for lr, g in cell.groupby("lr", sort=True):
            g = g.sort_values("p")
            ax.plot(g["p"], g["mean"], marker="o", label=f"lr {lr:g}")
            if g["low"].notna().any():
                ax.fill_between(g["p"], g["low"], g["high"], alpha=0.2)
        ps = sorted(cell["p"].unique())
        ax.plot(ps, ps, ls="--", color="gray", label="null: R_p = p")
        ax.set_xlabel("p (fraction of largest weights)")
        ax.set_ylabel("R_p(θ0, θT)")
        ax.set_title(f"{model} / {dataset}", fontsize=9)
        ax.legend(fontsize=7)
        fig.tight_layout()
        written += save(fig, out / _slug(stem, model, dataset))
    return written


def early_stopping_vs_remaining(es: pd.DataFrame, acc: pd.DataFrame, out: Path,
                                stem: str = "early_stopping") -> list[Path]:
    """One figure per (model, dataset) from ``tables.early_stopping`` (x from the measured
    sparsity of ``tables.accuracy``): panels per lr."""
    if es.empty:
        return []
    keys = ["model", "dataset", "lr", "arm", "target_sparsity"]
    es = es.merge(acc[[*keys, "sparsity"]], on=keys, how="left")
    return _by_remaining(es, out, stem, "early-stopping iteration")


def _by_remaining(table: pd.DataFrame, out: Path, stem: str, ylabel: str, scale: float = 1.0,
                  focus: bool = False) -> list[Path]:
    """Per (model, dataset) one figure, per lr one panel: each arm's ``mean`` (times
    ``scale``) against weights remaining with its interval band; dense as a horizontal band."""
    written: list[Path] = []
    if table.empty:
        return written
    for (model, dataset), cell in table.groupby(["model", "dataset"], sort=True):
        lrs = sorted(cell["lr"].unique())
        fig, axes = _panels(len(lrs))
        for ax, lr in zip(axes, lrs, strict=True):
            at = cell[cell["lr"] == lr]
            if focus:
                _focus(ax, scale * at["mean"])
            for arm, g in at.groupby("arm", sort=True):
                g = g.sort_values("sparsity")
                mean, low, high = (scale * g[c] for c in ("mean", "low", "high"))
                if arm == "dense":
                    ax.axhline(mean.mean(), color="black", lw=1, label="dense")
                    if low.notna().any():
                        ax.axhspan(low.mean(), high.mean(), color="black", alpha=0.1)
                    continue
                color = COLORS.get(arm.split("[")[0].split("+")[0])
                remaining = 100 * (1 - g["sparsity"])
                ax.plot(remaining, mean, marker="o", ms=3, label=arm, color=color)
                if low.notna().any():
                    ax.fill_between(remaining, low, high, alpha=0.2, color=color)
            _remaining_axis(ax)
            ax.set_ylabel(ylabel)
            ax.set_title(f"{model} / {dataset}, lr {lr:g}", fontsize=9)
            ax.legend(fontsize=7)
        fig.tight_layout()
        written += save(fig, out / _slug(stem, model, dataset))
    return written


def training_curves(curves: pd.DataFrame, out: Path, stem: str = "curves") -> list[Path]:
    """Test accuracy per epoch of the IMP chain's levels (method ``lth`` / ``dense`` curves
    of seed 0, or the smallest seed), one panel per lr, one line per level."""
    plt = pyplot()
    c = curves[curves["method"].isin(["dense", "lth"])]
    if "recipe" in c:
        c = c[c["recipe"].isna() | (c["recipe"] == "base")]
    if c.empty:
        return []
    written = []
    for (model, dataset), cell in c.groupby(["model", "dataset"], sort=True, observed=True):
        seed = cell["seed"].min()
        cell = cell[cell["seed"] == seed]
        lrs = sorted(cell["lr"].unique())
        fig, axes = _panels(len(lrs))
        cmap = plt.get_cmap("viridis")
        for ax, lr in zip(axes, lrs, strict=True):
            at = cell[cell["lr"] == lr].drop_duplicates(["level", "epoch"])
            levels = sorted(at["level"].unique())
            for i, (level, g) in enumerate(at.groupby("level", sort=True)):
                remaining = 100 * (1 - g["sparsity"].iloc[0])
                ax.plot(g["epoch"], 100 * g["test_acc"], color=cmap(i / max(1, len(levels) - 1)),
                        marker="o" if len(g) < 10 else None, ms=3,  # one epoch: a dot
                        label=f"level {level} ({remaining:.3g} %)")
            ax.set_xlabel("epoch")
            ax.set_ylabel("test accuracy (%)")
            ax.set_title(f"{model} / {dataset}, lr {lr:g}, seed {seed}", fontsize=9)
            ax.legend(fontsize=6, ncol=2)
        fig.tight_layout()
        written += save(fig, out / _slug(stem, model, dataset))
    return written
