"""Tests for trainer/masks.py: IMP arithmetic, magnitude and random masks, apply, sparsity."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor
from torch import nn
from torch import tensor

from trainer import levels
from trainer import masks

TensorDict = dict[str, Tensor]
SIZES = {"conv.weight": (7, 5, 3, 3), "fc1.weight": (300, 1), "fc2.weight": (10, 100)}


class TinyNet(nn.Module):
    """Conv -> BN -> Linear -> Linear with the ``first_layer``/``output_layer`` attributes."""

    first_layer = "conv.weight"
    output_layer = "fc2.weight"

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.bn = nn.BatchNorm2d(2)
        self.fc1 = nn.Linear(8, 4)
        self.fc2 = nn.Linear(4, 3)


def _weights(seed: int) -> TensorDict:
    gen = torch.Generator().manual_seed(seed)
    return {name: torch.randn(shape, generator=gen) for name, shape in SIZES.items()}


def _big_and_small() -> TensorDict:
    """Layer "a" holds large weights and layer "b" small ones, both increasing in |w|."""
    return {"a": tensor([10.0, -20.0, 30.0, 40.0]), "b": tensor([0.1, 0.2, -0.3, 0.4])}


def _kept(mask: TensorDict) -> dict[str, int]:
    return {name: int(m.sum()) for name, m in mask.items()}


def test_level_sparsity_for_rate_0p2_compounds_on_remaining_weights() -> None:
    got = [levels.level_sparsity(0.2, level) for level in range(5)]
    assert got == pytest.approx([0.0, 0.2, 0.36, 0.488, 0.5904])


@pytest.mark.parametrize(
    ("target", "expected"),
    [(0.0, 0), (0.19, 0), (0.2, 1), (0.36, 2), (0.5, 3), (0.75, 6), (0.9, 10), (0.99, 20)],
)
def test_level_for_returns_largest_level_not_above_target(target: float, expected: int) -> None:
    assert levels.level_for(target, 0.2) == expected
    assert levels.level_sparsity(0.2, expected) <= target + 1e-9
    assert levels.level_sparsity(0.2, expected + 1) > target + 1e-9


def test_is_level_sparsity_accepts_imp_levels_only() -> None:
    assert levels.is_level_sparsity(0.36, 0.2)
    assert levels.is_level_sparsity(0.488, 0.2)
    assert levels.is_level_sparsity(levels.level_sparsity(0.2, 12), 0.2)
    assert levels.is_level_sparsity(0.0, 0.2)
    assert not levels.is_level_sparsity(0.5, 0.2)
    assert not levels.is_level_sparsity(0.9, 0.2)


def test_level_arithmetic_rejects_bad_inputs() -> None:
    with pytest.raises(ValueError, match="rate"):
        levels.level_sparsity(1.0, 2)
    with pytest.raises(ValueError, match="level"):
        levels.level_sparsity(0.2, -1)
    with pytest.raises(ValueError, match="target"):
        levels.level_for(1.0, 0.2)
    with pytest.raises(ValueError, match="rate"):
        levels.level_for(0.5, 0.0)


def _prune_dense(weights: TensorDict, target: float, scope: str, *exclude: str) -> TensorDict:
    """magnitude_prune starting from the all-True mask."""
    full = masks.full_mask(weights, weights)
    return masks.magnitude_prune(weights, full, target, scope, frozenset(exclude))


def _imp(n_levels: int, scope: str) -> TensorDict:
    """IMP at rate 0.2, with new "trained" weights at every level."""
    mask = masks.full_mask(_weights(0), SIZES)
    for level in range(1, n_levels + 1):
        target = levels.level_sparsity(0.2, level)
        mask = masks.magnitude_prune(_weights(level), mask, target, scope, frozenset())
    return mask


def test_imp_level_3_keeps_0p8_cubed_of_weights() -> None:
    mask = _imp(3, "layerwise")
    assert _kept(mask) == {name: round(0.8**3 * m.numel()) for name, m in mask.items()}
    assert _kept(mask) == {"conv.weight": 161, "fc1.weight": 154, "fc2.weight": 512}


@pytest.mark.parametrize("level", [1, 2, 4, 5])
def test_imp_level_keeps_0p8_to_the_level_per_layer_or_pooled(level: int) -> None:
    mask = _imp(level, "layerwise")
    assert _kept(mask) == {name: round(0.8**level * m.numel()) for name, m in mask.items()}
    pooled = _imp(level, "global")
    total = sum(m.numel() for m in pooled.values())
    assert sum(_kept(pooled).values()) == round(0.8**level * total)


def test_layerwise_keeps_the_largest_magnitude_weights() -> None:
    mask = _prune_dense({"w": tensor([[0.5, -3.0, 0.1], [2.0, -0.2, 1.0]])}, 0.5, "layerwise")
    assert mask["w"].tolist() == [[False, True, False], [True, False, True]]


def test_layerwise_prunes_each_layer_to_the_target() -> None:
    weights = _big_and_small()
    mask = _prune_dense(weights, 0.5, "layerwise")
    assert mask["a"].tolist() == [False, False, True, True]
    assert mask["b"].tolist() == [False, False, True, True]


def test_global_pools_layers_so_a_small_layer_loses_everything() -> None:
    weights = _big_and_small()
    mask = _prune_dense(weights, 0.5, "global")
    assert mask["a"].all()
    assert not mask["b"].any()
    assert masks.sparsity(mask) == 0.5


def test_global_ranks_only_weights_still_kept() -> None:
    weights = {"a": tensor([5.0, 4.0, 3.0, 2.0]), "b": tensor([1.0, 9.0, 0.5, 0.2])}
    old = {"a": torch.ones(4, dtype=torch.bool), "b": tensor([True, False, True, True])}
    mask = masks.magnitude_prune(weights, old, 0.5, "global", frozenset())
    assert mask["a"].all()  # b's 9.0 is already pruned, so it cannot outrank a
    assert not mask["b"].any()


@pytest.mark.parametrize("scope", ["layerwise", "global"])
def test_excluded_layer_stays_dense_and_target_counts_pruned_layers_only(scope: str) -> None:
    mask = _prune_dense(_weights(1), 0.75, scope, "fc2.weight")
    assert mask["fc2.weight"].all()
    pruned = {name: m for name, m in mask.items() if name != "fc2.weight"}
    n_pruned = sum(m.numel() for m in pruned.values())
    assert sum(_kept(pruned).values()) == pytest.approx(0.25 * n_pruned, abs=len(pruned))


def test_excluded_layer_keeps_its_current_mask_unchanged() -> None:
    weights = {"a": tensor([1.0, 2.0, 3.0, 4.0]), "b": tensor([1.0, 2.0, 3.0, 4.0])}
    old = {"a": torch.ones(4, dtype=torch.bool), "b": tensor([False, True, True, False])}
    mask = masks.magnitude_prune(weights, old, 0.5, "layerwise", frozenset({"b"}))
    assert mask["b"].tolist() == [False, True, True, False]
    assert mask["a"].tolist() == [False, False, True, True]


@pytest.mark.parametrize("scope", ["layerwise", "global"])
def test_new_mask_is_subset_of_old_mask_and_inputs_are_unchanged(scope: str) -> None:
    weights, old = _weights(2), _prune_dense(_weights(1), 0.36, scope)
    before = {name: (weights[name].clone(), old[name].clone()) for name in SIZES}
    new = masks.magnitude_prune(weights, old, 0.6, scope, frozenset())
    for name in SIZES:
        assert not (new[name] & ~old[name]).any(), name
        assert torch.equal(weights[name], before[name][0])
        assert torch.equal(old[name], before[name][1])
    assert masks.sparsity(new) == pytest.approx(0.6, abs=1e-2)


def test_magnitude_prune_is_deterministic_and_breaks_ties_by_index() -> None:
    weights = {"w": torch.ones(2, 4), "v": torch.ones(8)}
    first = _prune_dense(weights, 0.5, "global")
    second = _prune_dense(weights, 0.5, "global")
    assert all(torch.equal(first[name], second[name]) for name in weights)
    assert first["w"].all()  # 8 of 16 kept: the lowest pooled indices win
    assert not first["v"].any()
    layer = _prune_dense(weights, 0.5, "layerwise")
    assert layer["w"].tolist() == [[True, True, True, True], [False, False, False, False]]


@pytest.mark.parametrize("scope", ["layerwise", "global"])
def test_unpruning_raises(scope: str) -> None:
    weights = _weights(4)
    half = _prune_dense(weights, 0.5, scope)
    with pytest.raises(ValueError, match="un-prune"):
        masks.magnitude_prune(weights, half, 0.2, scope, frozenset())
    again = masks.magnitude_prune(weights, half, 0.5, scope, frozenset())  # same level is fine
    assert all(torch.equal(again[name], half[name]) for name in SIZES)


def test_layerwise_raises_when_one_layer_is_already_sparser_than_the_target() -> None:
    weights = _big_and_small()
    pooled = _prune_dense(weights, 0.5, "global")  # b lost all 4 weights
    with pytest.raises(ValueError, match="un-prune layer 'b'"):
        masks.magnitude_prune(weights, pooled, 0.5, "layerwise", frozenset())


def test_magnitude_prune_rejects_bad_target_scope_and_mask() -> None:
    weights = _weights(5)
    full = masks.full_mask(weights, SIZES)
    for target in (1.0, -0.1):
        with pytest.raises(ValueError, match="target"):
            masks.magnitude_prune(weights, full, target, "layerwise", frozenset())
    with pytest.raises(ValueError, match="scope"):
        masks.magnitude_prune(weights, full, 0.5, "per_channel", frozenset())
    bad = {**full, "fc1.weight": torch.ones(3, dtype=torch.bool)}
    with pytest.raises(ValueError, match="fc1.weight"):
        masks.magnitude_prune(weights, bad, 0.5, "global", frozenset())
    with pytest.raises(ValueError, match="bool"):
        masks.magnitude_prune(
            weights, {"fc1.weight": torch.ones(300, 1)}, 0.5, "global", frozenset()
        )


def _sparse_mask() -> TensorDict:
    return _prune_dense(_weights(6), 0.7, "layerwise", "fc2.weight")


def test_random_mask_like_keeps_per_layer_counts_and_moves_positions() -> None:
    mask = _sparse_mask()
    rand = masks.random_mask_like(mask, torch.Generator().manual_seed(0))
    assert _kept(rand) == _kept(mask)
    assert {name: m.shape for name, m in rand.items()} == {n: m.shape for n, m in mask.items()}
    assert all(m.dtype == torch.bool for m in rand.values())
    assert rand["fc2.weight"].all()  # an all-True (dense) layer stays all-True
    for name in ("conv.weight", "fc1.weight"):
        assert not torch.equal(rand[name], mask[name]), name


def test_random_mask_like_is_seeded() -> None:
    mask = _sparse_mask()
    first = masks.random_mask_like(mask, torch.Generator().manual_seed(7))
    again = masks.random_mask_like(mask, torch.Generator().manual_seed(7))
    other = masks.random_mask_like(mask, torch.Generator().manual_seed(8))
    assert all(torch.equal(first[name], again[name]) for name in SIZES)
    assert not torch.equal(first["fc1.weight"], other["fc1.weight"])


def test_apply_zeroes_exactly_the_masked_entries() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    keep = tensor([[True, False, True, True], [False, False, True, False], [True] * 4])
    masks.apply(model, {"0.weight": keep})
    after = dict(model.named_parameters())
    assert torch.equal(after["0.weight"][keep], before["0.weight"][keep])
    assert (after["0.weight"][~keep] == 0).all()
    for name in ("0.bias", "2.weight", "2.bias"):
        assert torch.equal(after[name], before[name]), name
    assert after["0.weight"].requires_grad


def test_apply_rejects_unknown_layer_and_wrong_shape() -> None:
    model = nn.Sequential(nn.Linear(4, 3))
    with pytest.raises(ValueError, match="fc.weight"):
        masks.apply(model, {"fc.weight": torch.ones(3, 4, dtype=torch.bool)})
    with pytest.raises(ValueError, match="0.weight"):
        masks.apply(model, {"0.weight": torch.ones(4, 3, dtype=torch.bool)})


def test_an_enforcer_checks_once_and_zeroes_the_same_entries_after_every_change() -> None:
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    keep = tensor([[True, False, True, True], [False, False, True, False], [True] * 4])
    with pytest.raises(ValueError, match="0.weight"):
        masks.enforcer(model, {"0.weight": torch.ones(4, 3, dtype=torch.bool)})
    enforce = masks.enforcer(model, {"0.weight": keep})
    weight = model[0].weight
    for step in range(3):  # as after optimizer steps and a checkpoint load
        with torch.no_grad():
            weight.copy_(torch.randn(3, 4) + step)
        expected = weight.detach().clone()
        reference = nn.Sequential(nn.Linear(4, 3))
        reference.load_state_dict({"0.weight": expected, "0.bias": model[0].bias.detach()})
        masks.apply(reference, {"0.weight": keep})
        enforce()
        assert torch.equal(weight, reference[0].weight)
        assert (weight[~keep] == 0).all() and torch.equal(weight[keep], expected[keep])
    assert weight.requires_grad


def test_sparsity_density_and_layer_sparsity_on_a_hand_made_mask() -> None:
    mask = {"a": tensor([True, False, False, True]), "b": tensor([[True, True], [True, False]])}
    assert masks.sparsity(mask) == 3 / 8
    assert masks.density(mask) == 5 / 8
    assert masks.layer_sparsity(mask) == {"a": 0.5, "b": 0.25}
    assert masks.sparsity({"c": torch.ones(5, dtype=torch.bool)}) == 0.0
    with pytest.raises(ValueError, match="empty"):
        masks.sparsity({})


def test_prunable_names_are_conv_and_linear_weights_in_module_order() -> None:
    assert masks.prunable_names(TinyNet()) == ["conv.weight", "fc1.weight", "fc2.weight"]
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(8, 2))
    assert masks.prunable_names(model) == ["0.weight", "3.weight"]


def test_full_mask_is_all_true_with_weight_shapes() -> None:
    weights = _weights(0)
    mask = masks.full_mask(weights, ["fc1.weight", "conv.weight"])
    assert list(mask) == ["fc1.weight", "conv.weight"]
    assert all(m.all() and m.shape == weights[n].shape for n, m in mask.items())
    with pytest.raises(ValueError, match="nope"):
        masks.full_mask(weights, ["nope"])


def test_resolve_keep_dense_aliases_and_explicit_names() -> None:
    model = TinyNet()
    both = {"conv.weight", "fc1.weight"}
    assert masks.resolve_keep_dense(model, ["output"]) == {"fc2.weight"}
    assert masks.resolve_keep_dense(model, ["first"]) == {"conv.weight"}
    assert masks.resolve_keep_dense(model, ("first", "fc1.weight")) == both
    assert masks.resolve_keep_dense(model, []) == frozenset()
    model.output_layer = "fc2"  # a module name resolves to its weight
    assert masks.resolve_keep_dense(model, ["output"]) == {"fc2.weight"}


@pytest.mark.parametrize("entry", ["fc3.weight", "bn.weight", "fc1.bias", "last"])
def test_resolve_keep_dense_unknown_entry_names_entry_and_valid_names(entry: str) -> None:
    with pytest.raises(ValueError, match=entry) as err:
        masks.resolve_keep_dense(TinyNet(), [entry])
    assert "fc1.weight" in str(err.value)
