"""Tests for the dropout variants of Conv-2/4/6 and ``trainer.models.dropout``."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from trainer import models
from trainer.models import dropout

DIGITS = (1, 8, 8)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def conv2_pair() -> tuple[nn.Module, nn.Module]:
    """conv2 and conv2_dropout built from the same seed on 8x8 inputs (training mode)."""
    plain = models.build("conv2", DIGITS, 10, _gen(5))
    return plain, models.build("conv2_dropout", DIGITS, 10, _gen(5))


def _fc_inputs(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    inputs: list[torch.Tensor] = []
    hooks = [
        getattr(model, fc).register_forward_pre_hook(lambda _m, args: inputs.append(args[0]))
        for fc in ("fc1", "fc2", "fc3")
    ]
    with torch.no_grad():
        model(x)
    for hook in hooks:
        hook.remove()
    return inputs


@pytest.mark.parametrize("n", [2, 4, 6])
def test_dropout_variant_has_the_plain_models_parameters_and_init(n: int) -> None:
    plain = models.build(f"conv{n}", DIGITS, 10, _gen(7)).state_dict()
    dropped = models.build(f"conv{n}_dropout", DIGITS, 10, _gen(7)).state_dict()
    assert list(plain) == list(dropped)
    assert all(torch.equal(plain[k], dropped[k]) for k in plain)


def test_dropout_eval_mode_is_deterministic_and_equals_the_plain_model(conv2_pair) -> None:
    plain, dropped = conv2_pair
    x = torch.randn(4, *DIGITS, generator=_gen(8))
    with torch.no_grad():
        out = dropped.eval()(x)
        assert torch.equal(out, plain.eval()(x)) and torch.equal(out, dropped(x))
    plain.train()
    dropped.train()


def test_dropout_train_mode_drops_half_of_each_fc_input_and_rescales(conv2_pair) -> None:
    plain, dropped = conv2_pair
    x = torch.randn(16, *DIGITS, generator=_gen(9))
    with torch.no_grad():
        assert not torch.allclose(dropped(x), plain(x))
    clean = _fc_inputs(plain.eval(), x)[0]  # fc1's input: the conv features (no BN, no dropout)
    plain.train()
    seen = _fc_inputs(dropped, x)
    kept = seen[0] != 0
    assert torch.equal(seen[0][kept], 2.0 * clean[kept])  # survivors scaled by 1 / (1 - 0.5)
    assert kept.sum() / (clean != 0).sum() == pytest.approx(0.5, abs=0.02)
    for features in seen[1:]:  # fc2, fc3 inputs: about half of the nonzero activations survive
        assert 0.0 < (features != 0).float().mean() < 0.5


def test_dropout_masks_are_a_function_of_input_and_weights_only() -> None:
    model = models.build("conv2_dropout", DIGITS, 10, _gen(6))
    x = torch.randn(4, *DIGITS, generator=_gen(10))
    before = torch.random.get_rng_state()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        first = _fc_inputs(model, x)
        torch.manual_seed(2)
        again = _fc_inputs(model, x)
    assert torch.equal(torch.random.get_rng_state(), before)  # forward leaves the RNG alone
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    mask = first[0] != 0

    other_batch = torch.cat([x[:3], x[3:] + 1e-3])  # one example changed: new masks for all
    assert not torch.equal(_fc_inputs(model, other_batch)[0][:3] != 0, mask[:3])
    with torch.no_grad():
        model.fc1.weight[0, 0] += 1.0  # not a key: the masks of fc1's input stay
    assert torch.equal(_fc_inputs(model, x)[0] != 0, mask)
    with torch.no_grad():
        model.fc3.weight[0, 0] += 1e-3  # the key weight: an optimizer step draws new masks
    assert not torch.equal(_fc_inputs(model, x)[0] != 0, mask)


def test_dropout_trains_through_the_mask() -> None:
    model = models.build("conv2_dropout", DIGITS, 3, _gen(0))
    loss = model(torch.randn(4, *DIGITS, generator=_gen(1))).sum()
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_keyed_dropout_unit() -> None:
    drop = dropout.KeyedDropout(0.5)
    x = torch.ones(200, 100)
    out = drop(x, dropout.keyed_generator(x))
    assert set(out.unique().tolist()) == {0.0, 2.0}
    assert (out == 0).float().mean().item() == pytest.approx(0.5, abs=0.02)
    assert torch.equal(out, drop(x, dropout.keyed_generator(x)))
    assert torch.equal(drop.eval()(x, None), x)
    with pytest.raises(ValueError, match="needs a generator"):
        drop.train()(x, None)
    for p in (0.0, 1.0, -0.1):
        with pytest.raises(ValueError, match="dropout p"):
            dropout.KeyedDropout(p)
    assert not list(drop.parameters()) and not list(drop.buffers())
