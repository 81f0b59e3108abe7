"""Tests for analysis/stats.py on a hand-made runs table with known answers."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from analysis.stats import dense_correlation
from analysis.stats import summarize
from analysis.stats import winning_ticket

NOISY_0P1 = 0.7 - 0.6  # 0.09999999999999998: must group with lr 0.1
# Dense R_p(θ0, θT) for p = 0.1 ... 0.5, by (lr, seed); every row of that lr and seed has it.
RP_DENSE = {
    (0.01, 0): (0.2, 0.3, 0.4, 0.5, 0.6),
    (0.01, 1): (0.3, 0.4, 0.5, 0.6, 0.7),
    (0.1, 0): (0.1, 0.2, 0.3, 0.4, 0.5),
    (0.1, 1): (0.12, 0.22, 0.32, 0.42, 0.52),
}
# (method, lr, target_sparsity) -> final test_acc of seed 0, seed 1 (None: seed missing).
ACC = {
    ("dense", 0.01, 0.0): (0.90, 0.92),
    ("lth", 0.01, 0.5): (0.91, 0.91),
    ("lth", 0.01, 0.8): (0.88, 0.90),
    ("random_reinit", 0.01, 0.5): (0.89, 0.89),
    ("random_reinit", 0.01, 0.8): (0.86, 0.88),
    ("dense", 0.1, 0.0): (0.93, 0.93),
    ("lth", 0.1, 0.5): (0.928, 0.928),
    ("random_reinit", 0.1, 0.5): (0.925, 0.925),
    ("lth", 0.1, 0.8): (0.92, None),
}


def _run(method: str, lr: float, target: float, seed: int, acc: float) -> dict[str, object]:
    rp = RP_DENSE[(lr, seed)]
    return {
        "sweep": "demo",
        "trial_id": f"{method}-{lr}-{seed}",
        "model": "resnet20",
        "dataset": "cifar10",
        "method": method,
        "lr": NOISY_0P1 if (lr == 0.1 and seed == 1) else lr,
        "target_sparsity": target,
        "seed": seed,
        "test_acc": acc,
        "best_test_acc": acc + 0.01,
        "sparsity": target + (0.01 if seed else -0.01) * (target > 0),
        "rp_run_p20": 0.3 + 0.2 * seed if (method, lr, target) == ("lth", 0.01, 0.5) else 0.2,
        "total_epochs": 10 if method == "dense" else 10 + 30 * (1 + (target > 0.5)),
        **{f"rp_dense_p{pct}": value for pct, value in zip((10, 20, 30, 40, 50), rp, strict=True)},
    }


def make_runs() -> pd.DataFrame:
    """2 seeds, 2 lrs, dense + lth + random_reinit at 2 sparsities (see ACC)."""
    rows = [
        _run(method, lr, target, seed, acc)
        for (method, lr, target), accs in ACC.items()
        for seed, acc in enumerate(accs)
        if acc is not None
    ]
    return pd.DataFrame(rows).sample(frac=1.0, random_state=0)  # input order must not matter


def _row(frame: pd.DataFrame, **keys: object) -> pd.Series:
    mask = pd.Series(True, index=frame.index)
    for name, value in keys.items():
        mask &= frame[name] == value
    assert mask.sum() == 1, keys
    return frame[mask].iloc[0]


def test_summarize_groups_replicates_despite_float_noise() -> None:
    summary = summarize(make_runs())
    assert len(summary) == len(ACC)
    assert list(summary.columns) == [
        "model", "dataset", "method", "lr", "target_sparsity", "n",
        "test_acc_mean", "test_acc_std", "best_test_acc_mean", "best_test_acc_std",
        "sparsity_mean", "sparsity_std", "rp_run_p20_mean", "rp_run_p20_std", "total_epochs_mean",
    ]  # fmt: skip
    assert _row(summary, method="lth", lr=0.1, target_sparsity=0.5)["n"] == 2
    assert _row(summary, method="lth", lr=0.1, target_sparsity=0.8)["n"] == 1


def test_summarize_means_and_sample_stds() -> None:
    summary = summarize(make_runs())
    dense = _row(summary, method="dense", lr=0.01)
    assert dense["test_acc_mean"] == pytest.approx(0.91)
    assert dense["test_acc_std"] == pytest.approx(math.sqrt(2) * 0.01)  # ddof=1
    assert dense["best_test_acc_mean"] == pytest.approx(0.92)
    assert dense["total_epochs_mean"] == 10
    lth = _row(summary, method="lth", lr=0.01, target_sparsity=0.5)
    assert lth["test_acc_std"] == pytest.approx(0.0)
    assert lth["sparsity_mean"] == pytest.approx(0.5)
    assert lth["sparsity_std"] == pytest.approx(math.sqrt(2) * 0.01)
    assert lth["rp_run_p20_mean"] == pytest.approx(0.4)
    assert lth["rp_run_p20_std"] == pytest.approx(math.sqrt(2) * 0.1)
    assert _row(summary, method="lth", lr=0.01, target_sparsity=0.8)["total_epochs_mean"] == 70


def test_summarize_std_of_one_replicate_is_nan() -> None:
    single = _row(summarize(make_runs()), method="lth", lr=0.1, target_sparsity=0.8)
    assert single["test_acc_mean"] == pytest.approx(0.92)
    assert math.isnan(single["test_acc_std"])


def test_summarize_counts_seeds_with_a_result() -> None:
    runs = make_runs()
    runs.loc[(runs["method"] == "dense") & (runs["lr"] == 0.01) & (runs["seed"] == 1),
             "test_acc"] = float("nan")
    row = summarize(runs).set_index(["method", "lr"]).loc[("dense", 0.01)]
    assert row["n"] == 1 and row["test_acc_mean"] == pytest.approx(0.90)


def test_summarize_is_sorted_by_grid_keys() -> None:
    summary = summarize(make_runs())
    keys = ["model", "dataset", "method", "lr", "target_sparsity"]
    pd.testing.assert_frame_equal(summary, summary.sort_values(keys, ignore_index=True))
    assert list(summary["method"].unique()) == ["dense", "lth", "random_reinit"]


def test_summarize_of_empty_runs_is_empty() -> None:
    assert summarize(make_runs().iloc[:0]).empty


def test_functions_name_missing_columns() -> None:
    runs = make_runs().drop(columns=["rp_run_p20", "rp_dense_p30"])
    with pytest.raises(ValueError, match=r"summarize: .*\['rp_run_p20'\]"):
        summarize(runs)
    with pytest.raises(ValueError, match=r"dense_correlation: .*\['rp_dense_p30'\]"):
        dense_correlation(runs)
    with pytest.raises(ValueError, match=r"winning_ticket: .*\['test_acc'\]"):
        winning_ticket(runs.drop(columns=["test_acc"]))


def test_dense_correlation_averages_per_seed_then_over_seeds() -> None:
    corr = dense_correlation(make_runs())
    assert list(corr.columns) == [
        "model", "dataset", "lr", "n_seeds",
        "rp_dense_p10", "rp_dense_p20", "rp_dense_p30", "rp_dense_p40", "rp_dense_p50",
    ]  # fmt: skip
    assert list(corr["lr"]) == [0.01, 0.1]
    assert list(corr["n_seeds"]) == [2, 2]
    low = corr.iloc[0, 4:].to_numpy(dtype=float)
    assert low == pytest.approx([0.25, 0.35, 0.45, 0.55, 0.65])
    # Seed 0 has 4 rows at lr 0.1 and seed 1 only 3: a row-weighted mean would give 0.1086.
    high = corr.iloc[1, 4:].to_numpy(dtype=float)
    assert high == pytest.approx([0.11, 0.21, 0.31, 0.41, 0.51])


def test_dense_correlation_ignores_rows_without_values() -> None:
    runs = make_runs()
    runs.loc[runs["method"] == "lth", "rp_dense_p20"] = float("nan")
    corr = dense_correlation(runs)
    assert corr["rp_dense_p20"].to_numpy() == pytest.approx([0.35, 0.21])


def test_winning_ticket_verdicts_on_hand_made_numbers() -> None:
    tickets = winning_ticket(make_runs())
    assert list(tickets.columns) == [
        "model", "dataset", "lr", "target_sparsity",
        "lth_test_acc", "dense_test_acc", "random_reinit_test_acc", "winning_ticket",
    ]  # fmt: skip
    assert list(zip(tickets["lr"], tickets["target_sparsity"], strict=True)) == [
        (0.01, 0.5), (0.01, 0.8), (0.1, 0.5), (0.1, 0.8)
    ]  # fmt: skip
    # lr 0.01 @ 0.5: 0.91 >= 0.91 - 0.005 and 0.91 > 0.89 + 0.005 -> ticket.
    # lr 0.01 @ 0.8: 0.89 < 0.905 (worse than dense).  lr 0.1 @ 0.5: 0.928 <= 0.925 + 0.005 (no
    # clear gap over random_reinit).  lr 0.1 @ 0.8: no random_reinit arm.
    assert tickets["winning_ticket"].tolist() == [True, False, False, False]
    assert tickets["winning_ticket"].dtype == bool
    first = tickets.iloc[0]
    assert (first["lth_test_acc"], first["dense_test_acc"]) == pytest.approx((0.91, 0.91))
    assert first["random_reinit_test_acc"] == pytest.approx(0.89)
    assert math.isnan(tickets.iloc[3]["random_reinit_test_acc"])


def test_winning_ticket_tolerance_cuts_both_ways() -> None:
    # lr 0.1 @ 0.5 (lth 0.928, dense 0.93, random_reinit 0.925) passes only for tolerances in
    # [0.002, 0.003): 0.928 >= 0.93 - t and 0.928 > 0.925 + t.
    assert winning_ticket(make_runs(), tolerance=0.0)["winning_ticket"].tolist() == [
        True, False, False, False
    ]  # fmt: skip
    assert winning_ticket(make_runs(), tolerance=0.0025)["winning_ticket"].tolist() == [
        True, False, True, False
    ]  # fmt: skip
    # A large tolerance demands a large gap over random_reinit, so nothing is a ticket.
    assert not winning_ticket(make_runs(), tolerance=0.03)["winning_ticket"].any()


def test_winning_ticket_without_dense_arm_is_false() -> None:
    runs = make_runs()
    tickets = winning_ticket(runs[runs["method"] != "dense"])
    assert tickets["dense_test_acc"].isna().all()
    assert not tickets["winning_ticket"].any()


def test_winning_ticket_without_sparse_arms_is_empty() -> None:
    runs = make_runs()
    assert winning_ticket(runs[runs["method"] == "dense"]).empty


@pytest.mark.parametrize("tolerance", [-0.01, float("nan")])
def test_winning_ticket_rejects_bad_tolerance(tolerance: float) -> None:
    with pytest.raises(ValueError, match="tolerance"):
        winning_ticket(make_runs(), tolerance=tolerance)


def test_stats_do_not_modify_the_input() -> None:
    runs = make_runs()
    before = runs.copy()
    summarize(runs)
    dense_correlation(runs)
    winning_ticket(runs)
    pd.testing.assert_frame_equal(runs, before)


def test_arms_keep_recipes_and_transfer_variants_apart_and_old_rows_plain() -> None:
    from analysis.stats import arm_labels

    runs = pd.DataFrame({
        "method": ["lth", "lth", "lth", "transfer", "transfer"],
        "recipe": ["base", "smooth", None, "base", "kd"],
        "transfer_init": [None, None, None, "late_reset", "init"],
        "transfer_regime": [None, None, None, "freeze", "finetune"]})
    assert list(arm_labels(runs)) == ["lth", "lth+smooth", "lth", "transfer[late_reset,freeze]",
                                      "transfer[init,finetune]+kd"]
    assert list(arm_labels(runs[["method"]])) == ["lth"] * 3 + ["transfer"] * 2


def test_summaries_group_recipes_apart_instead_of_averaging_them() -> None:
    base = _run("lth", 0.1, 0.5, 0, 0.9)
    rows = [{**base, "recipe": "base"}, {**base, "recipe": "smooth", "test_acc": 0.7}]
    table = summarize(pd.DataFrame(rows)).set_index("method")
    assert table.loc["lth", "test_acc_mean"] == pytest.approx(0.9)
    assert table.loc["lth+smooth", "test_acc_mean"] == pytest.approx(0.7)


def test_transfer_rows_count_their_trunks_r_p_under_the_source_dataset() -> None:
    source = {**_run("dense", 0.1, 0.0, 0, 0.9), "dataset": "a", "source_dataset": "a"}
    target_own = {**_run("dense", 0.1, 0.0, 0, 0.8), "dataset": "b", "source_dataset": "b",
                  "rp_dense_p10": 0.5}
    moved = {**source, "method": "transfer", "dataset": "b", "source_dataset": "a"}
    table = dense_correlation(pd.DataFrame([source, target_own, moved])).set_index("dataset")
    assert table.loc["a", "rp_dense_p10"] == pytest.approx(source["rp_dense_p10"])
    assert table.loc["b", "rp_dense_p10"] == pytest.approx(0.5)  # not mixed with the source's


def test_winning_ticket_counts_each_seed_once() -> None:
    """A seed whose point was loaded twice (two sweeps) weighs as one seed: lth seeds 0.91
    (twice) and 0.89 give 0.90, not 0.9033, so lth is within 0.005 of dense 0.905 only then."""
    rows = [_run("dense", 0.01, 0.0, 0, 0.905), _run("random_reinit", 0.01, 0.5, 0, 0.80),
            _run("lth", 0.01, 0.5, 0, 0.91), _run("lth", 0.01, 0.5, 0, 0.91),
            _run("lth", 0.01, 0.5, 1, 0.89)]
    ticket = winning_ticket(pd.DataFrame(rows)).iloc[0]
    assert ticket["lth_test_acc"] == pytest.approx(0.90)
    rows[3]["seed"] = 2  # three distinct seeds now
    assert winning_ticket(pd.DataFrame(rows)).iloc[0]["lth_test_acc"] == \
        pytest.approx((0.91 + 0.91 + 0.89) / 3)
