"""Ticket verdicts with Ma et al. 2021's five criteria (analysis.verdicts)."""

from __future__ import annotations

import pandas as pd

from analysis.verdicts import ticket_verdicts
from analysis.verdicts import tolerance


def _runs(acc: dict[tuple[str, float, float], float], dataset: str = "cifar10",
          dense_best_gap: float = 0.0) -> pd.DataFrame:
    rows = []
    for (method, lr, s), value in acc.items():
        for seed in (0, 1, 2):
            best = value + (dense_best_gap if method == "dense" else 0.0)
            rows.append({"model": "m", "dataset": dataset, "method": method, "lr": lr,
                         "target_sparsity": s, "seed": seed, "test_acc": value,
                         "best_test_acc": best})
    return pd.DataFrame(rows)


BASE = {("dense", 0.01, 0.0): 0.90, ("dense", 0.1, 0.0): 0.92,
        ("lth", 0.01, 0.8): 0.915, ("lth", 0.1, 0.8): 0.921,
        ("random_reinit", 0.01, 0.8): 0.90, ("random_reinit", 0.1, 0.8): 0.905,
        ("sdt", 0.01, 0.8): 0.88, ("sdt", 0.1, 0.8): 0.89}


def _is(value: object, expected: bool | None) -> bool:
    """A criterion cell equals ``expected`` (numpy bools included; None stays None)."""
    return value is None if expected is None else (value is not None and bool(value) is expected)


def _one(runs: pd.DataFrame) -> pd.Series:
    v = ticket_verdicts(runs)
    assert len(v) == 1
    return v.iloc[0]


def test_all_five_criteria_make_a_jackpot() -> None:
    v = _one(_runs(BASE))
    assert v.verdict == "jackpot" and all(_is(v[c], True) for c in ("c1", "c2", "c3", "c4", "c5"))
    assert v.reasons == "" and v["mask"] == "IMP"


def test_below_the_best_dense_net_is_a_secondary_prize() -> None:
    acc = {**BASE, ("lth", 0.1, 0.8): 0.90, ("lth", 0.01, 0.8): 0.912}  # best dense 0.92
    v = _one(_runs(acc))
    assert v.verdict == "secondary prize" and _is(v.c5, False) and "(5)" in v.reasons


def test_random_reinit_at_any_lr_counts_for_criterion_3() -> None:
    # lth beats RR at its own lr but not the best RR (lr 0.1): no clear gap
    acc = {**BASE, ("random_reinit", 0.1, 0.8): 0.919}
    v = _one(_runs(acc))
    assert v.verdict == "none" and _is(v.c3, False) and "any lr" in v.reasons


def test_trivial_sparsity_and_unconverged_dense_runs_fail_criterion_1() -> None:
    low = {k[:2] + ((0.3,) if k[2] else (0.0,)): v for k, v in BASE.items()}
    assert _is(_one(_runs(low)).c1, False)
    v = _one(_runs(BASE, dense_best_gap=0.02))
    assert _is(v.c1, False) and "dense run ended" in v.reasons


def test_a_missing_arm_is_not_decidable_and_named() -> None:
    acc = {k: v for k, v in BASE.items() if k[0] != "sdt"}
    v = _one(_runs(acc))
    assert v.verdict == "not decidable" and _is(v.c2, None) and "no sdt rows" in v.reasons


def test_omp_pairs_get_their_own_verdict_and_tolerances_follow_the_dataset() -> None:
    acc = {**BASE, ("omp_lth", 0.1, 0.8): 0.80, ("omp_random_reinit", 0.1, 0.8): 0.79}
    v = ticket_verdicts(_runs(acc)).set_index("mask")
    assert v.loc["IMP", "verdict"] == "jackpot" and v.loc["OMP", "verdict"] == "none"
    assert tolerance("cifar100") == 0.01 and tolerance("fashion-mnist[0-4]") == 0.005


def _curves(per_epoch: list[float]) -> pd.DataFrame:
    """Dense curves of BASE's trunks (both lrs, three seeds), every run with ``per_epoch``."""
    return pd.DataFrame([{"model": "m", "dataset": "cifar10", "method": "dense", "lr": lr,
                          "seed": seed, "epoch": e + 1, "test_acc": acc}
                         for lr in (0.01, 0.1) for seed in (0, 1, 2)
                         for e, acc in enumerate(per_epoch)])


def test_a_dense_run_still_improving_has_not_had_enough_epochs() -> None:
    """Criterion (1) with the curves: a final rise larger than the tolerance fails it; a
    plateau passes; a single epoch cannot tell (Ma et al. §2.2, "sufficient epochs")."""
    plateau = ticket_verdicts(_runs(BASE), curves=_curves([0.5, 0.8, 0.9, 0.9])).iloc[0]
    assert plateau.verdict == "jackpot" and _is(plateau.c1, True)
    rising = ticket_verdicts(_runs(BASE), curves=_curves([0.5, 0.7, 0.8, 0.9])).iloc[0]
    assert _is(rising.c1, False) and rising.verdict == "none"
    assert "still improved 10.00 pt over its last 1 of 4 epochs: train longer" in rising.reasons
    single = ticket_verdicts(_runs(BASE), curves=_curves([0.9])).iloc[0]
    assert _is(single.c1, None) and single.verdict == "not decidable"
    assert "has 1 epoch" in single.reasons


def test_an_arm_of_nan_accuracies_is_not_decidable_not_a_failure() -> None:
    runs = _runs(BASE)
    runs.loc[runs["method"] == "random_reinit", "test_acc"] = float("nan")
    v = _one(runs)
    assert v.verdict == "not decidable" and _is(v.c3, None)
    assert "no random_reinit rows" in v.reasons and "nan" not in v.reasons


def test_percent_thresholds_and_missing_columns_are_refused() -> None:
    import pytest

    with pytest.raises(ValueError, match="min_sparsity is a fraction"):
        ticket_verdicts(_runs(BASE), min_sparsity=59)
    with pytest.raises(ValueError, match="gap is a fraction"):
        ticket_verdicts(_runs(BASE), gap=-1)
    with pytest.raises(ValueError, match=r"lacks columns \['best_test_acc'\]"):
        ticket_verdicts(_runs(BASE).drop(columns="best_test_acc"))



def test_each_seed_counts_once() -> None:
    """Seed 0's lth row loaded three times (several sweeps) weighs as one seed: per seed the
    ticket at lr 0.1 is (0.92 + 0.90 + 0.90) / 3 = 0.9067, within the gap of RR's 0.905;
    counting rows it would be 0.912, a clear gap."""
    runs = _runs({**BASE, ("lth", 0.01, 0.8): 0.90, ("lth", 0.1, 0.8): 0.90})
    seed0 = (runs["method"] == "lth") & (runs["lr"] == 0.1) & (runs["seed"] == 0)
    runs.loc[seed0, "test_acc"] = runs.loc[seed0, "best_test_acc"] = 0.92
    v = _one(pd.concat([runs, runs[seed0], runs[seed0]], ignore_index=True))
    assert _is(v.c3, False) and "by 0.17 pt" in v.reasons, v.reasons


def test_each_criterion_shows_its_margin_in_points() -> None:
    v = _one(_runs(BASE))
    # sdt drop 0.915 - 0.88; best LT 0.921 - best RR 0.905; closest LT - dense of its lr
    # (0.915 - 0.90 at lr 0.01); best LT 0.921 - best dense 0.92
    assert (v.c2_pt, v.c3_pt, v.c4_pt, v.c5_pt) == (3.5, 1.6, 1.5, 0.1)
    missing = _one(_runs({k: x for k, x in BASE.items() if k[0] != "sdt"}))
    assert pd.isna(missing.c2_pt) and missing.c3_pt == 1.6
