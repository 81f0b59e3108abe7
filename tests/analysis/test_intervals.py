"""Intervals over seeds and paired differences (analysis.intervals)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis import intervals


def test_small_n_gets_a_student_t_interval() -> None:
    x = [0.80, 0.82, 0.85]
    got = intervals.interval(x)
    half = stats.t.ppf(0.975, 2) * np.std(x, ddof=1) / math.sqrt(3)
    assert got["ci_method"] == "t" and got["n"] == 3
    assert got["low"] == pytest.approx(np.mean(x) - half)
    assert got["high"] == pytest.approx(np.mean(x) + half)


def test_large_n_gets_a_seeded_percentile_bootstrap() -> None:
    x = np.random.default_rng(1).normal(0.5, 0.1, size=40)
    a, b = intervals.interval(x), intervals.interval(x)
    assert a["ci_method"] == "bootstrap" and a == b  # seeded: the same interval twice
    assert a["low"] < x.mean() < a["high"]
    t = stats.t.interval(0.95, 39, loc=x.mean(), scale=stats.sem(x))
    assert a["low"] == pytest.approx(t[0], abs=0.01) and a["high"] == pytest.approx(t[1], abs=0.01)


def test_one_value_has_no_interval_and_nans_are_dropped() -> None:
    got = intervals.interval([0.7, math.nan])
    assert got["n"] == 1 and got["ci_method"] == "none" and math.isnan(got["low"])
    with pytest.raises(ValueError, match="level"):
        intervals.interval([1, 2], level=1.5)


def test_probability_of_improvement_counts_pairs_and_half_ties() -> None:
    assert intervals.probability_of_improvement([2, 3], [1, 1]) == 1.0
    assert intervals.probability_of_improvement([1, 2], [1, 3]) == pytest.approx(
        (0.5 + 0 + 1 + 0) / 4)
    assert math.isnan(intervals.probability_of_improvement([], [1]))


def test_differences_are_paired_by_seed() -> None:
    # seed effects dominate: unpaired, a and b overlap; paired, a beats b by 0.01 every seed
    frame = pd.DataFrame({"k": 0, "seed": [0, 1, 2] * 2, "arm": ["a"] * 3 + ["b"] * 3,
                          "v": [0.71, 0.81, 0.91, 0.70, 0.80, 0.90]})
    d = intervals.paired_difference(frame, ["k"], "arm", "a", "b", "v")
    assert d["n"][0] == 3 and d["mean"][0] == pytest.approx(0.01)
    assert d["low"][0] == pytest.approx(0.01) and d["high"][0] == pytest.approx(0.01)
    assert 0.5 < d["p_improvement"][0] < 1.0  # over all runs, not pairs
    lone = frame[~((frame.arm == "b") & (frame.seed == 2))]
    assert intervals.paired_difference(lone, ["k"], "arm", "a", "b", "v")["n"][0] == 2


def test_format_interval_in_percent() -> None:
    assert intervals.format_interval(0.8812, 0.87, 0.89) == "88.12 [87.00, 89.00]"
    assert intervals.format_interval(0.5, math.nan, math.nan) == "50.00"


def test_intervals_of_fractions_stay_in_their_range() -> None:
    """Three seeds, one collapsed (a thin small-dense net): the t interval of the mean would
    run below 0 and above 1; an accuracy's is clipped to [0, 1], a difference's to [-1, 1]."""
    accs = [0.10, 0.88, 0.89]
    raw = intervals.interval(accs)
    assert raw["low"] < 0 and raw["high"] > 1
    clipped = intervals.interval(accs, bounds=(0.0, 1.0))
    assert (clipped["low"], clipped["high"], clipped["mean"]) == (0.0, 1.0, raw["mean"])
    frame = pd.DataFrame({"arm": ["sdt"] * 3 + ["lth"] * 3, "seed": [0, 1, 2] * 2,
                          "test_acc": accs + [0.90, 0.91, 0.92], "loss": accs + accs})
    acc = intervals.summarize(frame, ["arm"], "test_acc").set_index("arm")
    assert acc.loc["sdt", "low"] == 0.0 and acc.loc["sdt", "high"] == 1.0
    loss = intervals.summarize(frame, ["arm"], "loss").set_index("arm")  # not a fraction
    assert loss.loc["sdt", "low"] < 0
    frame["k"] = 1
    diff = intervals.paired_difference(frame, ["k"], "arm", "lth", "sdt").iloc[0]
    assert -1.0 <= diff["low"] and diff["high"] <= 1.0 and diff["high"] == 1.0
