"""Confidence intervals over seeds and paired comparisons of arms, as the field reports them.

Every mean comes with its n and a 95 % interval: Student t (mean ± t_{0.975, n-1} · s / √n)
for n < ``BOOTSTRAP_MIN_N`` seeds, the percentile bootstrap (``BOOTSTRAP_RESAMPLES`` seeded
resamples of the seeds) from there on; the ``ci_method`` column says which. A difference
between two arms that share θ0 (the same seed, model, dataset, lr and sparsity) is paired by
seed; its probability of improvement is rliable's P(X > Y) over all pairs of runs.

Sources: Agarwal et al. 2021, "Deep RL at the Edge of the Statistical Precipice" (NeurIPS
2021; rliable), §4: bootstrap confidence intervals over runs and the probability of
improvement P(X > Y); Student 1908 (t interval);
Efron & Tibshirani 1993 ch. 13 (percentile bootstrap).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from analysis.stats import per_seed

LEVEL = 0.95
BOOTSTRAP_MIN_N = 10
BOOTSTRAP_RESAMPLES = 10_000
_SEED = 0


def interval(values: Sequence[float] | np.ndarray, level: float = LEVEL,
             bounds: tuple[float, float] | None = None) -> dict[str, object]:
    """Mean of ``values`` with its confidence interval.

    Args:
        values: One value per seed (NaN values are dropped).
        level: Coverage, e.g. 0.95.
        bounds: The values' range, e.g. (0, 1) for an accuracy: the interval is clipped to it
            (a t interval of a few seeds, one of them far off, can pass it); None: unclipped.
    Returns:
        ``{"mean", "low", "high", "n", "ci_method"}``: ``ci_method`` is ``"t"`` (Student t,
        n < ``BOOTSTRAP_MIN_N``), ``"bootstrap"`` (percentile, seeded) or ``"none"`` (n < 2:
        no interval, low = high = NaN).
    Raises:
        ValueError: ``level`` outside (0, 1).
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"confidence level must be in (0, 1), got {level}")
    x = np.asarray(values, dtype=float)
    x = x[~np.isnan(x)]
    n = int(x.size)
    mean = float(x.mean()) if n else math.nan
    if n < 2:
        return {"mean": mean, "low": math.nan, "high": math.nan, "n": n, "ci_method": "none"}
    if n < BOOTSTRAP_MIN_N:
        from scipy import stats

        half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * float(x.std(ddof=1)) / math.sqrt(n)
        low, high, method = mean - half, mean + half, "t"
    else:
        rng = np.random.default_rng(_SEED)
        means = x[rng.integers(0, n, size=(BOOTSTRAP_RESAMPLES, n))].mean(axis=1)
        low, high = (float(q) for q in np.quantile(means, [(1 - level) / 2, (1 + level) / 2]))
        method = "bootstrap"
    if bounds is not None:
        low, high = max(low, bounds[0]), min(high, bounds[1])
    return {"mean": mean, "low": low, "high": high, "n": n, "ci_method": method}


def value_bounds(column: str, difference: bool = False) -> tuple[float, float] | None:
    """The range of ``column``'s values (``analysis.schema.UNIT_INTERVAL``: [0, 1]), or of a
    difference of two of them ([-1, 1]); None for an unbounded column."""
    from analysis.schema import UNIT_INTERVAL

    if column not in UNIT_INTERVAL:
        return None
    return (-1.0, 1.0) if difference else (0.0, 1.0)


def probability_of_improvement(x: Sequence[float], y: Sequence[float]) -> float:
    """P(X > Y): the fraction of (x, y) pairs with x > y, ties counting one half (rliable's
    probability of improvement, the normalized Mann-Whitney U). NaN if either is empty."""
    a = np.asarray(x, dtype=float)
    b = np.asarray(y, dtype=float)
    a, b = a[~np.isnan(a)], b[~np.isnan(b)]
    if not a.size or not b.size:
        return math.nan
    diff = a[:, None] - b[None, :]
    return float(((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size)


def summarize(frame: pd.DataFrame, keys: list[str], column: str, level: float = LEVEL,
              bounds: tuple[float, float] | None = None) -> pd.DataFrame:
    """``interval`` of ``column`` for every group of ``keys``, over seeds.

    Replicates are seeds: when ``frame`` has a ``seed`` column, the rows of one group and
    seed (the same grid point loaded from two sweeps) count once, as their mean, so ``n`` is
    the number of seeds with a value. Intervals are clipped to ``bounds``, by default the
    column's range (``value_bounds``: [0, 1] for accuracies).

    Returns:
        One row per group: ``keys``, ``mean``, ``low``, ``high``, ``n``, ``ci_method``.
    Raises:
        ValueError: ``frame`` lacks a column of ``keys`` or ``column``.
    """
    missing = [c for c in [*keys, column] if c not in frame.columns]
    if missing:
        raise ValueError(f"summarize: the table lacks columns {missing}")
    frame = per_seed(frame, keys, [column])
    bounds = bounds or value_bounds(column)
    rows = []
    for key, group in frame.groupby(keys, sort=True, dropna=False, observed=True):
        key = key if isinstance(key, tuple) else (key,)
        rows.append({**dict(zip(keys, key, strict=True)),
                     **interval(group[column].to_numpy(), level, bounds)})
    return pd.DataFrame(rows, columns=[*keys, "mean", "low", "high", "n", "ci_method"])


def paired_difference(frame: pd.DataFrame, keys: list[str], arm: str, a: str, b: str,
                      column: str = "test_acc", level: float = LEVEL) -> pd.DataFrame:
    """``a - b`` of ``column`` per group of ``keys``, paired by seed.

    Args:
        frame: Rows with ``keys``, ``seed``, the arm column ``arm`` and ``column``.
        keys: Grouping columns, e.g. model, dataset, lr, target_sparsity.
        arm: Column naming each row's arm (e.g. ``method`` or ``arm``).
        a, b: The two arms.
        column: The compared value.
    Returns:
        One row per group having both arms on at least one common seed: ``keys``, the paired
        difference's ``mean``, ``low``, ``high`` (clipped to [-1, 1] for a fraction column,
        ``value_bounds``), ``n`` (paired seeds), ``ci_method``, and ``p_improvement`` (P(a > b)
        over all runs of the two arms).
    Raises:
        ValueError: ``frame`` lacks a column of ``keys``, ``seed``, ``arm`` or ``column``.
    """
    missing = [c for c in [*keys, "seed", arm, column] if c not in frame.columns]
    if missing:
        raise ValueError(f"paired_difference: the table lacks columns {missing}")
    out = []
    both = frame[frame[arm].isin([a, b])]
    for key, group in both.groupby(keys, sort=True, dropna=False, observed=True):
        key = key if isinstance(key, tuple) else (key,)
        wide = group.pivot_table(index="seed", columns=arm, values=column, aggfunc="mean",
                                 observed=True)
        if a not in wide or b not in wide:
            continue
        diff = (wide[a] - wide[b]).dropna()
        if diff.empty:
            continue
        out.append({**dict(zip(keys, key, strict=True)),
                    **interval(diff.to_numpy(), level, value_bounds(column, difference=True)),
                    "p_improvement": probability_of_improvement(
                        group.loc[group[arm] == a, column], group.loc[group[arm] == b, column])})
    return pd.DataFrame(out, columns=[*keys, "mean", "low", "high", "n", "ci_method",
                                      "p_improvement"])


def format_interval(mean: float, low: float, high: float, scale: float = 100.0,
                    digits: int = 2) -> str:
    """``mean [low, high]`` scaled (fractions to percent by default); ``mean`` alone when
    there is no interval."""
    if math.isnan(mean):
        return "-"
    if math.isnan(low):
        return f"{scale * mean:.{digits}f}"
    return f"{scale * mean:.{digits}f} [{scale * low:.{digits}f}, {scale * high:.{digits}f}]"
