"""Tests for ``trainer.loop.StageOptions``: loss, warmup, frozen parameters, start/end step and
the step hook, on digits with LeNet-300-100 (1-3 epochs of 23 steps each)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from trainer import data as datasets
from trainer import loop
from trainer import masks
from trainer import models
from trainer import seeding
from trainer.data.base import InMemoryData
from trainer.hparams import DataHparams
from trainer.hparams import TrainHparams
from trainer.loop import StageOptions

State = dict[str, torch.Tensor]
SPE = 23  # steps per epoch: ceil(1437 digits training examples / 64)


@pytest.fixture(scope="module")
def digits() -> InMemoryData:
    return datasets.load(DataHparams(name="digits"))


def _model(data: InMemoryData, seed: int = 0) -> nn.Module:
    return models.build("lenet_300_100", data.input_shape, data.num_classes,
                        torch.Generator().manual_seed(seed))


def _half_mask(model: nn.Module, seed: int = 0) -> State:
    """Random 50 % masks on fc1 and fc2; the classifier fc3 stays dense (no mask entry)."""
    gen = torch.Generator().manual_seed(seed)
    return {n: torch.rand(p.shape, generator=gen) < 0.5
            for n, p in model.named_parameters() if n in ("fc1.weight", "fc2.weight")}


def _hp(**kw: object) -> TrainHparams:
    return TrainHparams(**{"lr": 0.1, "epochs": 3, "batch_size": 64, **kw})


def _plain_sgd(**kw: object) -> TrainHparams:
    """SGD without momentum or weight decay: the optimizer keeps no state between steps."""
    return _hp(momentum=0.0, weight_decay=0.0, **kw)


def _clone(model: nn.Module) -> State:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _model_with(data: InMemoryData, state: State) -> nn.Module:
    net = _model(data, seed=9)
    net.load_state_dict(state)
    return net


def _assert_states_equal(a: State, b: State) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


class Steps:
    """An on_step hook that remembers the steps it saw and, optionally, the weights after one
    step and the LR of every step (read from a spied optimizer)."""

    def __init__(self, keep: int | None = None, spy: OptimizerSpy | None = None) -> None:
        self.steps: list[int] = []
        self.lrs: list[float] = []
        self.keep, self.kept, self.spy = keep, None, spy

    def __call__(self, step: int, model: nn.Module) -> None:
        self.steps.append(step)
        if step == self.keep:
            self.kept = _clone(model)
        if self.spy is not None:
            self.lrs.append(self.spy.optimizers[-1].param_groups[0]["lr"])


class OptimizerSpy:
    """Wraps ``loop.make_optimizer`` to keep the optimizers ``loop.train`` builds."""

    def __init__(self) -> None:
        self.optimizers: list[torch.optim.Optimizer] = []
        self.frozen: list[frozenset[str]] = []
        self._make = loop.make_optimizer

    def __call__(self, model: nn.Module, hp: TrainHparams,
                 frozen: frozenset[str] = frozenset()) -> torch.optim.Optimizer:
        opt = self._make(model, hp, frozen)
        self.optimizers.append(opt)
        self.frozen.append(frozen)
        return opt


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> OptimizerSpy:
    spy = OptimizerSpy()
    monkeypatch.setattr(loop, "make_optimizer", spy)
    return spy


def test_steps_per_epoch_counts_a_short_last_batch(digits: InMemoryData) -> None:
    assert loop.steps_per_epoch(len(digits.train_x), 64) == SPE
    assert loop.steps_per_epoch(128, 64) == 2
    assert loop.steps_per_epoch(129, 64) == 3


# --- defaults --------------------------------------------------------------------------------

def test_default_options_reproduce_the_plain_loop_bit_for_bit(digits: InMemoryData) -> None:
    mask = _half_mask(_model(digits))
    hp = _hp(epochs=2, milestones=(1,), weight_decay=1e-4)
    plain = loop.train(_model(digits), digits, hp, mask, seed=2)
    default = loop.train(_model(digits), digits, hp, mask, seed=2, options=StageOptions())
    _assert_states_equal(plain.state, default.state)
    assert plain.records == default.records
    assert StageOptions().loss is loop.cross_entropy


# --- on_step ---------------------------------------------------------------------------------

def test_on_step_is_called_once_per_step_with_1_based_global_steps_after_masking(
    digits: InMemoryData
) -> None:
    model = _model(digits)
    mask = _half_mask(model)
    seen: list[int] = []

    def hook(step: int, net: nn.Module) -> None:
        assert net is model
        params = dict(net.named_parameters())
        for name, m in mask.items():  # weight decay would revive masked weights if unmasked
            assert torch.count_nonzero(params[name].detach()[~m]) == 0, (step, name)
        seen.append(step)

    loop.train(model, digits, _hp(epochs=2, weight_decay=1e-3), mask, seed=0,
               options=StageOptions(on_step=hook))
    assert seen == list(range(1, 2 * SPE + 1))


# --- end_step --------------------------------------------------------------------------------

@pytest.mark.parametrize("k", [5, SPE, SPE + 7])
def test_end_step_stops_after_exactly_k_steps_at_the_weights_of_a_full_run_after_step_k(
    digits: InMemoryData, k: int
) -> None:
    mask = _half_mask(_model(digits))
    hp = _hp(epochs=3, milestones=(1,), weight_decay=1e-4)
    full_steps = Steps(keep=k)
    full = loop.train(_model(digits), digits, hp, mask, seed=1,
                      options=StageOptions(on_step=full_steps))
    assert full_steps.steps == list(range(1, 3 * SPE + 1))

    cut_steps = Steps()
    cut = loop.train(_model(digits), digits, hp, mask, seed=1,
                     options=StageOptions(end_step=k, on_step=cut_steps))
    assert cut_steps.steps == list(range(1, k + 1))
    _assert_states_equal(cut.state, full_steps.kept)
    epochs = -(-k // SPE)  # the epochs touched, the last one possibly short
    assert [r.epoch for r in cut.records] == list(range(1, epochs + 1))
    assert [r.lr for r in cut.records] == [loop.lr_at(hp, e) for e in range(1, epochs + 1)]
    if k % SPE == 0:  # ends on an epoch boundary: its records are the full run's
        assert cut.records == full.records[:epochs]


# --- start_step ------------------------------------------------------------------------------

def test_start_step_mid_epoch_resumes_the_schedule_and_the_step_numbers(
    digits: InMemoryData, spy: OptimizerSpy
) -> None:
    k = SPE + 7  # batch 7 of epoch 2
    hp = _hp(epochs=3, milestones=(1, 2), gamma=0.1)
    steps = Steps(spy=spy)
    result = loop.train(_model(digits), digits, hp, {}, seed=0,
                        options=StageOptions(start_step=k, on_step=steps))
    assert steps.steps == list(range(k + 1, 3 * SPE + 1))
    assert [r.epoch for r in result.records] == [2, 3]
    assert [r.lr for r in result.records] == [loop.lr_at(hp, 2), loop.lr_at(hp, 3)]
    assert [r.lr for r in result.records] == pytest.approx([0.01, 0.001])
    expected = [loop.lr_at(hp, 2)] * (SPE - 7) + [loop.lr_at(hp, 3)] * SPE
    assert steps.lrs == expected


def test_start_step_trains_batch_k_mod_spe_of_that_epochs_permutation_first(
    digits: InMemoryData
) -> None:
    k, seed = SPE + 7, 4
    hp = _hp(epochs=3)
    model = _model(digits)
    start = _clone(model)
    one = loop.train(model, digits, hp, {}, seed=seed,
                     options=StageOptions(start_step=k, end_step=k + 1))
    assert [r.epoch for r in one.records] == [2]

    # the same step by hand: batch 7 of epoch 2's order, a fresh optimizer
    manual = _model_with(digits, start)
    manual.train()
    perm = torch.randperm(len(digits.train_x), generator=seeding.generator(seed, "data_order", 2))
    idx = perm[7 * hp.batch_size:8 * hp.batch_size]
    opt = loop.make_optimizer(manual, hp)
    opt.zero_grad(set_to_none=True)
    F.cross_entropy(manual(digits.train_x[idx]), digits.train_y[idx]).backward()
    opt.step()
    _assert_states_equal(one.state, _clone(manual))
    assert one.records[0].train_loss == pytest.approx(
        F.cross_entropy(_model_with(digits, start)(digits.train_x[idx]),
                        digits.train_y[idx]).item(), rel=1e-6)


def test_start_step_from_theta_k_continues_a_stateless_sgd_run_bit_for_bit(
    digits: InMemoryData
) -> None:
    # Without momentum or weight decay SGD keeps no state, so restarting at step k from the
    # weights after step k must reproduce the rest of the run exactly.
    k = SPE + 7
    mask = _half_mask(_model(digits))
    hp = _plain_sgd(epochs=3, milestones=(2,), gamma=0.5)
    steps = Steps(keep=k)
    full = loop.train(_model(digits), digits, hp, mask, seed=3,
                      options=StageOptions(on_step=steps))
    model = _model(digits, seed=9)
    model.load_state_dict(steps.kept)
    resumed = loop.train(model, digits, hp, mask, seed=3, options=StageOptions(start_step=k))
    _assert_states_equal(resumed.state, full.state)
    assert resumed.records[1:] == full.records[2:]
    assert (resumed.records[0].test_loss, resumed.records[0].test_acc) == \
        (full.records[1].test_loss, full.records[1].test_acc)  # same weights after epoch 2
    assert resumed.records[0].train_loss != full.records[1].train_loss  # a short epoch


@pytest.mark.parametrize("start,end", [(3 * SPE, None), (3 * SPE + 5, None), (10, 10),
                                       (11, 10), (-1, None)])
def test_start_step_at_or_past_the_end_raises_value_error(
    digits: InMemoryData, start: int, end: int | None
) -> None:
    with pytest.raises(ValueError, match=f"start step {start} must be in"):
        loop.train(_model(digits), digits, _hp(epochs=3), {}, seed=0,
                   options=StageOptions(start_step=start, end_step=end))


# --- warmup ----------------------------------------------------------------------------------

@pytest.mark.parametrize("start", [0, 10])
def test_warmup_scales_the_lr_of_step_i_by_i_plus_1_over_w_then_follows_the_schedule(
    digits: InMemoryData, spy: OptimizerSpy, start: int
) -> None:
    w = SPE + 5  # warmup crosses the first epoch boundary
    hp = _hp(epochs=3, milestones=(2,), gamma=0.5)
    steps = Steps(spy=spy)
    result = loop.train(_model(digits), digits, hp, {}, seed=0,
                        options=StageOptions(warmup_steps=w, start_step=start, on_step=steps))
    assert steps.steps == list(range(start + 1, 3 * SPE + 1))
    for step, lr in zip(steps.steps, steps.lrs, strict=True):
        epoch = (step - 1) // SPE + 1
        assert lr == pytest.approx(loop.lr_at(hp, epoch) * min(1.0, step / w), rel=1e-12), step
        if step >= w:
            assert lr == loop.lr_at(hp, epoch), step
    assert steps.lrs[0] == pytest.approx(hp.lr * (start + 1) / w, rel=1e-12)
    assert [r.lr for r in result.records] == [loop.lr_at(hp, r.epoch) for r in result.records]


def test_warmup_changes_the_trained_weights(digits: InMemoryData) -> None:
    plain = loop.train(_model(digits), digits, _hp(epochs=1), {}, seed=0)
    warm = loop.train(_model(digits), digits, _hp(epochs=1), {}, seed=0,
                      options=StageOptions(warmup_steps=SPE))
    assert not torch.equal(plain.state["fc1.weight"], warm.state["fc1.weight"])


def test_warmup_of_one_step_is_the_plain_schedule(digits: InMemoryData) -> None:
    plain = loop.train(_model(digits), digits, _hp(epochs=1), {}, seed=0)
    warm = loop.train(_model(digits), digits, _hp(epochs=1), {}, seed=0,
                      options=StageOptions(warmup_steps=1))
    _assert_states_equal(plain.state, warm.state)


# --- frozen ----------------------------------------------------------------------------------

FROZEN = frozenset({"fc1.weight", "fc2.bias"})


def test_frozen_parameters_stay_bit_identical_and_the_others_train(
    digits: InMemoryData
) -> None:
    model = _model(digits)
    mask = {"fc2.weight": _half_mask(model)["fc2.weight"]}
    start = _clone(model)
    masks.apply(model, mask)
    masked_start = _clone(model)
    during: list[bool] = []

    def hook(step: int, net: nn.Module) -> None:
        params = dict(net.named_parameters())
        during.append(any(params[n].requires_grad for n in FROZEN))

    result = loop.train(model, digits, _hp(epochs=1, weight_decay=1e-3), mask, seed=0,
                        options=StageOptions(frozen=FROZEN, on_step=hook))
    for name in FROZEN:
        assert torch.equal(result.state[name], start[name]), name
    for name in ("fc1.bias", "fc2.weight", "fc3.weight", "fc3.bias"):
        assert not torch.equal(result.state[name], masked_start[name]), name
    assert torch.count_nonzero(result.state["fc2.weight"][~mask["fc2.weight"]]) == 0
    assert during == [False] * SPE  # no gradient work for frozen parameters


def test_frozen_parameters_get_their_requires_grad_back_after_training(
    digits: InMemoryData
) -> None:
    model = _model(digits)
    params = dict(model.named_parameters())
    params["fc3.bias"].requires_grad_(False)  # frozen by the caller: must stay so
    loop.train(model, digits, _hp(epochs=1), {}, seed=0,
               options=StageOptions(frozen=FROZEN | {"fc3.bias"}))
    assert {n: p.requires_grad for n, p in model.named_parameters()} == {
        n: n != "fc3.bias" for n in params}


def test_frozen_parameters_get_their_requires_grad_back_when_training_fails(
    digits: InMemoryData
) -> None:
    model = _model(digits)

    def crash(step: int, net: nn.Module) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        loop.train(model, digits, _hp(epochs=1), {}, seed=0,
                   options=StageOptions(frozen=FROZEN, on_step=crash))
    assert all(p.requires_grad for p in model.parameters())


def test_make_optimizer_holds_only_the_unfrozen_parameters(digits: InMemoryData) -> None:
    model = _model(digits)
    for optimizer in ("sgd", "adam"):
        opt = loop.make_optimizer(model, _hp(optimizer=optimizer), FROZEN)
        held = {id(p) for group in opt.param_groups for p in group["params"]}
        assert held == {id(p) for n, p in model.named_parameters() if n not in FROZEN}
    opt = loop.make_optimizer(model, _hp())
    assert len(opt.param_groups[0]["params"]) == len(list(model.parameters()))


def test_train_builds_its_optimizer_without_the_frozen_parameters(
    digits: InMemoryData, spy: OptimizerSpy
) -> None:
    model = _model(digits)
    loop.train(model, digits, _hp(epochs=1), {}, seed=0, options=StageOptions(frozen=FROZEN))
    assert spy.frozen == [FROZEN]
    held = {id(p) for group in spy.optimizers[0].param_groups for p in group["params"]}
    assert held == {id(p) for n, p in model.named_parameters() if n not in FROZEN}


# --- loss ------------------------------------------------------------------------------------

def test_a_zero_loss_leaves_weights_unchanged_under_plain_sgd(digits: InMemoryData) -> None:
    model = _model(digits)
    mask = _half_mask(model)
    masks.apply(model, mask)
    start = _clone(model)

    def zero(logits: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return 0.0 * F.cross_entropy(logits, y)

    result = loop.train(model, digits, _plain_sgd(epochs=1), mask, seed=0,
                        options=StageOptions(loss=zero))
    _assert_states_equal(result.state, start)
    # The records report the loss that was trained (StageOptions: "evaluation always reports
    # plain cross-entropy"), although EpochRecord's docstring and analysis/schema.py's
    # train_loss column call it training cross-entropy: reported as a doc/contract mismatch.
    assert result.final.train_loss == 0.0
    assert result.final.test_loss > 0.0  # ... and evaluation stays plain cross-entropy
    plain = loop.train(_model(digits), digits, _plain_sgd(epochs=1), mask, seed=0)
    assert not torch.equal(plain.state["fc1.weight"], start["fc1.weight"])


def test_a_doubled_loss_equals_plain_cross_entropy_at_double_the_lr(
    digits: InMemoryData
) -> None:
    calls: list[tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]] = []

    def double(logits: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        calls.append((tuple(logits.shape), tuple(x.shape), tuple(y.shape)))
        return 2.0 * F.cross_entropy(logits, y)

    doubled = loop.train(_model(digits), digits, _plain_sgd(epochs=1, lr=0.05), {}, seed=0,
                         options=StageOptions(loss=double))
    plain = loop.train(_model(digits), digits, _plain_sgd(epochs=1, lr=0.1), {}, seed=0)
    _assert_states_equal(doubled.state, plain.state)  # scaling by 2 is exact in floats
    assert doubled.final.train_loss == pytest.approx(2 * plain.final.train_loss, rel=1e-6)
    assert doubled.final.test_loss == plain.final.test_loss
    assert len(calls) == SPE
    assert calls[0] == ((64, 10), (64, 1, 8, 8), (64,))
    last = len(digits.train_x) - (SPE - 1) * 64
    assert calls[-1] == ((last, 10), (last, 1, 8, 8), (last,))


def test_the_loss_sees_the_inputs_and_labels_of_its_batch(digits: InMemoryData) -> None:
    seen: list[bool] = []
    model = _model(digits)

    def check(logits: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            seen.append(torch.equal(logits, model(x)))
        same = (digits.train_x.flatten(1)[None] == x.flatten(1)[:, None]).all(-1)  # (B, N)
        assert bool((same & (digits.train_y[None] == y[:, None])).any(1).all())
        return F.cross_entropy(logits, y)

    loop.train(model, digits, _hp(epochs=1), {}, seed=0, options=StageOptions(loss=check))
    assert seen == [True] * SPE
