"""Ticket verdicts with all five criteria of Ma et al. 2021 ("Sanity Checks for Lottery
Tickets", arXiv 2107.00166, §2.2; METHODS.md 2.3).

Per (model, dataset, target sparsity) and mask kind (IMP: ``lth`` against ``random_reinit``;
OMP: ``omp_lth`` against ``omp_random_reinit``), on mean test accuracy over seeds (each seed
once, ``analysis.stats.seed_means``):

1. non-trivial sparsity (>= ``min_sparsity``) and enough epochs: every dense run's final
   accuracy is within the tolerance of its best epoch and, given the curves table, rose by
   at most the tolerance over its last ``PLATEAU`` of epochs (a run still improving fails; a
   run of a single epoch leaves (1) not decidable; without curves only the first half is
   checked);
2. the small-dense network ``sdt`` shows a clear drop: at some lr, sdt < LT - gap;
3. at some lr, LT beats the RR arm trained at *any* lr by more than the gap;
4. at some lr, LT >= the dense net trained at the same lr - tolerance;
5. at some lr, LT >= the best dense net (any lr) - tolerance.

(1)-(5) all hold: ``jackpot``; (1)-(4) but not (5): ``secondary prize``; otherwise ``none``,
with the reason of each failed criterion (a failed one of (1)-(4) decides ``none`` even when
another cannot be decided); otherwise a criterion that cannot be decided (its arm has no rows
or only NaN accuracies) makes the verdict ``not decidable`` and names the missing arm.
"Similar" is within 0.5 points of accuracy for CIFAR-10-sized problems, 1 point for CIFAR-100
and Tiny ImageNet, 1.5 for ImageNet; the clear gap of (2) and (3) is 0.5 points (the paper
puts no number on (2)'s "clear drop": ours).
"""

from __future__ import annotations

import math

import pandas as pd

from analysis.stats import arm_labels
from analysis.stats import plain
from analysis.stats import require_columns
from analysis.stats import seed_means

# Ma et al. §2.2: the similarity tolerance per dataset (fraction of accuracy).
TOLERANCES = {"cifar100": 0.01, "tiny-imagenet": 0.01, "imagenet": 0.015}
DEFAULT_TOLERANCE = 0.005
GAP = 0.005
MIN_SPARSITY = 0.5
# Criterion (1) with curves: the final fraction of a dense run's epochs that must not raise
# its test accuracy by more than the tolerance (our reading of "sufficient epochs").
PLATEAU = 0.25
PAIRS = (("lth", "random_reinit", "IMP"), ("omp_lth", "omp_random_reinit", "OMP"))
VERDICT_COLUMNS = ["model", "dataset", "target_sparsity", "mask", "verdict", "c1", "c2", "c3",
                   "c4", "c5", "c2_pt", "c3_pt", "c4_pt", "c5_pt", "reasons"]


def tolerance(dataset: str) -> float:
    """The similarity tolerance of ``dataset`` (a class selection counts as its dataset)."""
    return TOLERANCES.get(str(dataset).split("[", 1)[0], DEFAULT_TOLERANCE)


def ticket_verdicts(runs: pd.DataFrame, min_sparsity: float = MIN_SPARSITY,
                    gap: float = GAP, curves: pd.DataFrame | None = None) -> pd.DataFrame:
    """The five-criteria verdict of every (model, dataset, sparsity, mask kind) with an LT arm.

    Args:
        runs: A runs table (``analysis.load.load_runs``): columns model, dataset, method, lr,
            target_sparsity, seed, test_acc, best_test_acc (fractions).
        min_sparsity: Criterion (1)'s non-trivial sparsity, a fraction removed in [0, 1) (our
            threshold, the paper gives none).
        gap: Criteria (2)'s and (3)'s clear gap, a fraction of accuracy >= 0 (0.005 = 0.5
            points).
        curves: The sweep's curves table (``analysis.load.load_curves``), for criterion (1)'s
            plateau check of the dense runs; None checks only their final vs best epoch.
    Returns:
        ``VERDICT_COLUMNS``: ``c1``..``c5`` are True / False / None (not decidable);
        ``c2_pt``..``c5_pt`` the margin each criterion compares with its threshold, in
        accuracy points (NaN when not decidable): the best drop LT - sdt over the lrs (> gap),
        best LT - best RR (> gap), the closest LT - dense of its lr (>= -tolerance) and best
        LT - best dense (>= -tolerance), so a verdict decided by a hair shows as one;
        ``verdict`` is jackpot | secondary prize | none | not decidable; ``reasons`` explains
        each criterion that failed or could not be decided.
    Raises:
        ValueError: a required column is missing, or ``min_sparsity`` / ``gap`` is out of
            range (e.g. a percent).
    Source: Ma et al. 2021 (arXiv 2107.00166) §2.2.
    """
    if not 0.0 <= min_sparsity < 1.0:
        raise ValueError(f"min_sparsity is a fraction in [0, 1), got {min_sparsity}")
    if not 0.0 <= gap < 1.0:
        raise ValueError(f"gap is a fraction of accuracy in [0, 1), got {gap}")
    require_columns(runs, ["model", "dataset", "method", "lr", "target_sparsity", "seed",
                           "test_acc", "best_test_acc"], "ticket_verdicts")
    runs = plain(runs)
    runs = runs.assign(arm=arm_labels(runs), lr=runs["lr"].round(12),
                       target_sparsity=runs["target_sparsity"].round(12))
    out = []
    for (model, dataset), cell in runs.groupby(["model", "dataset"], sort=True, observed=True):
        # each seed once; an arm with only NaN accuracies has no rows
        means = seed_means(cell, ["arm", "lr", "target_sparsity"]).dropna()
        dense = means.xs("dense", level="arm").droplevel("target_sparsity") \
            if "dense" in means.index.get_level_values("arm") else pd.Series(dtype=float)
        converged = _converged(cell[cell["arm"] == "dense"], _dense_curves(curves, model,
                                                                           dataset),
                               tolerance(dataset))
        for lt, rr, kind in PAIRS:
            if lt not in means.index.get_level_values("arm"):
                continue
            for s in sorted(means.xs(lt, level="arm").index.get_level_values(
                    "target_sparsity").unique()):
                out.append({"model": model, "dataset": dataset, "target_sparsity": s,
                            "mask": kind, **_verdict(means, dense, converged, lt, rr, s,
                                                     tolerance(dataset), min_sparsity, gap)})
    return pd.DataFrame(out, columns=VERDICT_COLUMNS)


def _at(means: pd.Series, arm: str, s: float) -> pd.Series:
    """Mean accuracy of ``arm`` at sparsity ``s`` by lr (empty when missing)."""
    try:
        return means.xs((arm, s), level=("arm", "target_sparsity"))
    except KeyError:
        return pd.Series(dtype=float)


def _dense_curves(curves: pd.DataFrame | None, model: str, dataset: str) -> pd.DataFrame | None:
    """The dense runs' per-epoch rows of one (model, dataset) of ``curves`` (None: none given)."""
    if curves is None:
        return None
    require_columns(curves, ["model", "dataset", "method", "lr", "seed", "epoch", "test_acc"],
                    "ticket_verdicts(curves=...)")
    c = plain(curves)
    return c[(c["method"] == "dense") & (c["model"] == model) & (c["dataset"] == dataset)]


def _converged(dense: pd.DataFrame, curves: pd.DataFrame | None,
               tol: float) -> tuple[bool | None, str]:
    """Criterion (1)'s epochs: (verdict, reason when not True). None: no dense rows (or,
    with curves, no dense curve)."""
    dense = dense[dense["test_acc"].notna() & dense["best_test_acc"].notna()]
    if dense.empty:
        return None, "(1) not decidable: no dense rows"
    if not ((dense["best_test_acc"] - dense["test_acc"]) <= tol + 1e-12).all():
        return False, "(1) a dense run ended more than the tolerance below its best epoch"
    if curves is None:
        return True, ""
    if curves.empty:
        return None, "(1) not decidable: no dense curves"
    for (lr, seed), run in curves.groupby(["lr", "seed"], sort=True, observed=True):
        acc = run.sort_values("epoch")["test_acc"].to_numpy()
        if len(acc) < 2:
            return None, f"(1) not decidable: the dense run (lr {lr:g}, seed {seed}) has 1 epoch"
        tail = max(1, math.ceil(PLATEAU * len(acc)))
        rise = float(acc[-1] - acc[-1 - tail])
        if rise > tol + 1e-12:
            return False, (f"(1) the dense run (lr {lr:g}, seed {seed}) still improved "
                           f"{100 * rise:.2f} pt over its last {tail} of {len(acc)} epochs: "
                           "train longer")
    return True, ""


def _verdict(means: pd.Series, dense: pd.Series, converged: tuple[bool | None, str], lt: str,
             rr: str, s: float, tol: float, min_sparsity: float,
             gap: float) -> dict[str, object]:
    ticket, random, small = _at(means, lt, s), _at(means, rr, s), _at(means, "sdt", s)
    c: dict[str, bool | None] = {}
    pt = dict.fromkeys(("c2_pt", "c3_pt", "c4_pt", "c5_pt"), math.nan)
    reasons = []
    enough, why = converged
    if s < min_sparsity:
        c["c1"] = False
        reasons.append(f"(1) sparsity {s:g} < {min_sparsity:g}")
    else:
        c["c1"] = enough
        if why:
            reasons.append(why)
    if small.empty:
        c["c2"] = None
        reasons.append("(2) not decidable: no sdt rows")
    else:
        drop = ticket.reindex(small.index) - small
        c["c2"] = bool((drop > gap).any())
        pt["c2_pt"] = 100 * float(drop.max())
        if not c["c2"]:
            reasons.append(f"(2) sdt is within {100 * gap:g} pt of {lt} at every lr "
                           f"(best drop {100 * drop.max():.2f} pt)")
    if random.empty:
        c["c3"] = None
        reasons.append(f"(3) not decidable: no {rr} rows")
    else:
        margin = ticket.max() - random.max()
        c["c3"] = bool(margin > gap)
        pt["c3_pt"] = 100 * float(margin)
        if not c["c3"]:
            reasons.append(f"(3) best {lt} beats the best {rr} (any lr) by {100 * margin:.2f} pt"
                           f", not > {100 * gap:g}")
    if dense.empty:
        c["c4"] = c["c5"] = None
        reasons.append("(4), (5) not decidable: no dense rows")
    else:
        same = (ticket - dense.reindex(ticket.index)).dropna()
        c["c4"] = bool((same >= -tol - 1e-12).any()) if not same.empty else None
        pt["c4_pt"] = 100 * float(same.max()) if not same.empty else math.nan
        if c["c4"] is None:
            reasons.append(f"(4) not decidable: no dense run at the lrs of {lt}")
        elif not c["c4"]:
            reasons.append(f"(4) {lt} is below the dense net of its lr by more than "
                           f"{100 * tol:g} pt at every lr (closest {100 * same.max():+.2f})")
        best = ticket.max() - dense.max()
        c["c5"] = bool(best >= -tol - 1e-12)
        pt["c5_pt"] = 100 * float(best)
        if not c["c5"]:
            reasons.append(f"(5) best {lt} is {100 * best:+.2f} pt from the best dense net")
    return {"verdict": _name(c), **c, **{k: round(v, 2) for k, v in pt.items()},
            "reasons": "; ".join(reasons)}


def _name(c: dict[str, bool | None]) -> str:
    first = [c[k] for k in ("c1", "c2", "c3", "c4")]
    if any(v is False for v in first):
        return "none"
    if any(v is None for v in first):
        return "not decidable"
    if c["c5"] is None:
        return "not decidable"
    return "jackpot" if c["c5"] else "secondary prize"

