"""Tests for trainer/metrics.py: accuracy and the R_p weight correlation (Liu et al. 2021)."""

from __future__ import annotations

import math

import pytest
import torch

from trainer import metrics


def _randn(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


# --- accuracy ---------------------------------------------------------------------------------


def test_accuracy_on_a_hand_example() -> None:
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [0.1, 0.2, 0.3], [5.0, 0.0, 9.0]])
    labels = torch.tensor([0, 1, 2, 0])
    assert metrics.accuracy(logits, labels) == 0.75


def test_accuracy_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match="logits"):
        metrics.accuracy(torch.zeros(4), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="labels"):
        metrics.accuracy(torch.zeros(4, 3), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="logits"):
        metrics.accuracy(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long))


# --- R_p: hand-computed cases -----------------------------------------------------------------


@pytest.mark.parametrize("p", [0.1, 0.2, 0.5, 1.0])
def test_identical_weights_give_rp_one(p: float) -> None:
    a = {"conv": _randn(4, 3, 3, 3, seed=0), "fc": _randn(10, 20, seed=1)}
    assert metrics.weight_correlation(a, a, p) == 1.0


def test_rp_uses_magnitudes_so_a_sign_flip_is_identical() -> None:
    a = {"fc": _randn(10, 20, seed=2)}
    assert metrics.weight_correlation(a, {"fc": -a["fc"]}, 0.3) == 1.0


def test_rp_two_layers_of_ten_weights_at_p_0p2() -> None:
    # k_l = round(0.2 * 10) = 2 per layer.
    # layer x: top-2 of a = {9, 8}, top-2 of b = {9, 0} -> overlap 1
    # layer y: top-2 of a = {0, 1}, top-2 of b = {1, 0} -> overlap 2
    # R_0.2 = (1 + 2) / (2 + 2) = 0.75
    a = {
        "x": torch.arange(10.0),
        "y": torch.tensor([9.0, -8.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 0.0, 0.5]),
    }
    b = {
        "x": torch.tensor([8.5, 0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 9.0]),
        "y": torch.tensor([7.0, 8.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 0.0, 0.5]),
    }
    assert metrics.weight_correlation(a, b, 0.2) == 0.75
    assert metrics.layer_weight_correlation(a, b, 0.2) == {"x": 0.5, "y": 1.0}


def test_anti_correlated_magnitudes_give_rp_zero() -> None:
    a = {"w": torch.arange(1.0, 11.0).reshape(2, 5)}
    b = {"w": torch.arange(10.0, 0.0, -1.0).reshape(2, 5)}
    assert metrics.weight_correlation(a, b, 0.5) == 0.0


def test_rp_denominator_is_the_sum_of_rounded_top_set_sizes() -> None:
    # n = 5, p = 0.3: k = round(1.5) = 2, so R_p is overlap / 2, not overlap / 1.5.
    a = {"w": torch.tensor([5.0, 4.0, 3.0, 2.0, 1.0])}
    b = {"w": torch.tensor([5.0, 1.0, 3.0, 2.0, 4.0])}
    assert metrics.weight_correlation(a, b, 0.3) == 0.5


def test_layers_with_empty_top_sets_are_skipped() -> None:
    # layer "tiny" has k = round(0.2 * 2) = 0 and must not count, even though it disagrees.
    a = {"big": torch.arange(10.0), "tiny": torch.tensor([1.0, 2.0])}
    b = {"big": torch.arange(10.0), "tiny": torch.tensor([2.0, 1.0])}
    assert metrics.weight_correlation(a, b, 0.2) == 1.0
    assert metrics.layer_weight_correlation(a, b, 0.2) == {"big": 1.0}
    with pytest.raises(ValueError, match="round"):
        metrics.weight_correlation({"tiny": a["tiny"]}, {"tiny": b["tiny"]}, 0.2)


# --- R_p with masks ---------------------------------------------------------------------------


def test_masked_rp_counts_only_surviving_weights() -> None:
    # 5 of 10 survive (indices 0-4); p = 0.4 -> k = round(0.4 * 5) = 2.
    # The huge values at pruned indices 5-9 must be ignored.
    keep = torch.tensor([True] * 5 + [False] * 5)
    a = {"w": torch.tensor([1.0, 5.0, 4.0, 2.0, 3.0, 99.0, 98.0, 97.0, 96.0, 95.0])}
    b = {"w": torch.tensor([5.0, 4.0, 1.0, 2.0, 3.0, 0.0, 0.0, 0.0, 0.0, 0.0])}
    # top-2 of a among survivors = {1, 2}; of b = {0, 1} -> overlap 1 -> 1/2
    assert metrics.weight_correlation(a, b, 0.4, mask={"w": keep}) == 0.5
    # without the mask a's top-4 of 10 are the pruned positions, so nothing overlaps b's
    assert metrics.weight_correlation(a, b, 0.4) == 0.0


def test_masked_rp_uses_all_weights_of_layers_missing_from_mask() -> None:
    a = {"m": torch.arange(10.0), "d": torch.arange(10.0)}
    b = {"m": torch.arange(10.0), "d": torch.arange(10.0).flip(0)}
    mask = {"m": torch.arange(10) < 5}  # "d" is not in the mask: all 10 weights survive
    per_layer = metrics.layer_weight_correlation(a, b, 0.2, mask=mask)
    assert per_layer == {"m": 1.0, "d": 0.0}
    assert metrics.weight_correlation(a, b, 0.2, mask=mask) == 1 / 3  # k_m = 1, k_d = 2


def test_masked_rp_rejects_a_mask_of_the_wrong_shape() -> None:
    a = {"w": torch.arange(10.0)}
    with pytest.raises(ValueError, match="'w'"):
        metrics.weight_correlation(a, a, 0.2, mask={"w": torch.ones(5, dtype=torch.bool)})


# --- R_p validation and statistics ------------------------------------------------------------


@pytest.mark.parametrize("p", [0.0, -0.1, 1.5, math.nan])
def test_rp_rejects_p_outside_unit_interval(p: float) -> None:
    a = {"w": torch.arange(10.0)}
    with pytest.raises(ValueError, match="p must be"):
        metrics.weight_correlation(a, a, p)
    with pytest.raises(ValueError, match="p must be"):
        metrics.layer_weight_correlation(a, a, p)


def test_rp_rejects_mismatched_layers_and_shapes() -> None:
    a = {"w": torch.zeros(4, 5), "v": torch.zeros(3)}
    with pytest.raises(ValueError, match="'v'"):
        metrics.weight_correlation(a, {"w": torch.zeros(4, 5)}, 0.5)
    with pytest.raises(ValueError, match="'u'"):
        metrics.weight_correlation(a, {**a, "u": torch.zeros(3)}, 0.5)
    with pytest.raises(ValueError, match="'w'"):
        metrics.weight_correlation(a, {"w": torch.zeros(5, 4), "v": torch.zeros(3)}, 0.5)


@pytest.mark.parametrize("p", [0.1, 0.2, 0.3, 0.4, 0.5])
def test_independent_random_weights_give_rp_close_to_p(p: float) -> None:
    a = {"conv": _randn(64, 16, 3, 3, seed=10), "fc": _randn(90_784, seed=11)}  # 100k weights
    b = {"conv": _randn(64, 16, 3, 3, seed=20), "fc": _randn(90_784, seed=21)}
    assert metrics.weight_correlation(a, b, p) == pytest.approx(p, abs=0.01)


def test_correlated_random_weights_give_rp_above_p() -> None:
    a = {"fc": _randn(100_000, seed=30)}
    b = {"fc": a["fc"] + 0.5 * _randn(100_000, seed=31)}
    assert metrics.weight_correlation(a, b, 0.2) > 0.4


def test_rp_is_deterministic_under_ties() -> None:
    a = {"w": torch.tensor([1.0, 1.0, 1.0, 1.0, 0.0, 0.0])}
    b = {"w": torch.tensor([0.0, 0.0, 1.0, 1.0, 1.0, 1.0])}
    first = metrics.layer_weight_correlation(a, b, 0.5)
    assert first == metrics.layer_weight_correlation(a, b, 0.5)
    # k = 3; ties go to the lower index: T(a) = {0, 1, 2}, T(b) = {2, 3, 4} -> 1/3
    assert first == {"w": pytest.approx(1 / 3)}


def _top(weights: torch.Tensor, keep: torch.Tensor | None, k: int) -> set[int]:
    """A brute-force top-k index set: largest |w| among survivors, ties to the lower index."""
    flat = weights.abs().flatten().tolist()
    alive = range(len(flat)) if keep is None else [i for i, x in enumerate(keep.flatten()) if x]
    return set(sorted(alive, key=lambda i: (-flat[i], i))[:k])


def test_overlaps_of_several_p_match_a_brute_force_count_per_p() -> None:
    a = {"conv": _randn(4, 3, 3, 3, seed=40), "fc": _randn(10, 20, seed=41),
         "tiny": _randn(3, seed=44)}
    b = {"conv": _randn(4, 3, 3, 3, seed=42), "fc": a["fc"] + 0.3 * _randn(10, 20, seed=43),
         "tiny": _randn(3, seed=45)}
    b["conv"][0, 0, 0, :2] = a["conv"][0, 0, 0, :2]  # a few exact ties across both
    mask = {"fc": _randn(10, 20, seed=46) > 0}
    ps = (0.1, 0.2, 0.3, 0.5, 1.0)
    found = metrics.overlaps(a, b, ps, mask)
    for p in ps:
        expected = {}
        for name in a:
            keep = mask.get(name)
            k = round(p * (a[name].numel() if keep is None else int(keep.sum())))
            if k:
                expected[name] = (len(_top(a[name], keep, k) & _top(b[name], keep, k)), k)
        assert found.counts[p] == expected
        assert found.pooled(p) == metrics.weight_correlation(a, b, p, mask)
        assert found.per_layer(p) == metrics.layer_weight_correlation(a, b, p, mask)
    assert "tiny" not in found.counts[0.1]  # round(0.1 * 3) == 0: skipped at that p only
    assert "tiny" in found.counts[0.5]


def test_the_pf_whole_layer_pairs_need_every_layer_denser_than_p() -> None:
    """Liu et al. App. F compares whole layers only for p below the density: a layer at
    density 0.15 (pooled 0.9 with a dense one beside it) leaves those two pairs null."""
    from types import SimpleNamespace

    from trainer.rows import mechanism_pairs

    gen = torch.Generator().manual_seed(0)
    shapes = {"a.weight": (20, 10), "b.weight": (100, 10)}
    state = {k: torch.randn(s, generator=gen) for k, s in shapes.items()}
    ctx = SimpleNamespace(prunable=lambda s: {k: s[k] for k in shapes})
    sparse_a = torch.zeros(200, dtype=torch.bool)
    sparse_a[:30] = True  # density 0.15
    mask = {"a.weight": sparse_a.reshape(20, 10),
            "b.weight": torch.ones(100, 10, dtype=torch.bool)}
    pairs = mechanism_pairs(ctx, mask, state, state, state, state)
    assert pairs["rp_pf_vs_init_p20"] is None and pairs["rp_pf_vs_dense_p20"] is None
    assert pairs["rp_init_vs_pf_p20"] == 1.0  # the survivors' pairs are still there
    dense_enough = {**mask, "a.weight": torch.ones(20, 10, dtype=torch.bool)}
    assert mechanism_pairs(ctx, dense_enough, state, state, state, state)[
        "rp_pf_vs_init_p20"] == 1.0
