"""Tests for trainer/loop.py and trainer/stage.py: schedule, determinism, masks, resume, skip."""

from __future__ import annotations

import dataclasses
import os

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sweeps.store import Store
from trainer import data as datasets
from trainer import loop
from trainer import masks
from trainer import models
from trainer import stage
from trainer.data.base import InMemoryData
from trainer.hparams import DataHparams
from trainer.hparams import TrainHparams
from trainer.loop import EpochRecord

State = dict[str, torch.Tensor]


@pytest.fixture(scope="module")
def digits() -> InMemoryData:
    return datasets.load(DataHparams(name="digits"))


@pytest.fixture(autouse=True)
def every_epoch():
    """These tests crash stages after chosen epochs: checkpoint after each one."""
    with stage.checkpoint_every(0):
        yield


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


def _assert_states_equal(a: State, b: State) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


class Counter:
    """An on_epoch hook that remembers the epochs it saw."""

    def __init__(self) -> None:
        self.epochs: list[int] = []

    def __call__(self, record: EpochRecord) -> None:
        self.epochs.append(record.epoch)


# --- learning-rate schedule -----------------------------------------------------------------

def test_lr_at_divides_by_gamma_after_each_milestone() -> None:
    hp = _hp(lr=0.5, milestones=(2, 4), gamma=0.1)
    got = [loop.lr_at(hp, e) for e in range(1, 8)]
    assert got == pytest.approx([0.5, 0.5, 0.05, 0.05, 0.005, 0.005, 0.005], rel=1e-12)


def test_lr_at_matches_torch_multistep_lr_stepped_per_epoch() -> None:
    hp = _hp(lr=0.3, milestones=(2, 4, 5), gamma=0.5)
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=hp.lr)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=list(hp.milestones),
                                                 gamma=hp.gamma)
    for epoch in range(1, 9):
        assert loop.lr_at(hp, epoch) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-12)
        opt.step()
        sched.step()


def test_records_carry_the_scheduled_lr_of_each_epoch(digits: InMemoryData) -> None:
    hp = _hp(milestones=(1, 2), gamma=0.1)
    result = loop.train(_model(digits), digits, hp, {}, seed=0)
    assert [r.epoch for r in result.records] == [1, 2, 3]
    assert [r.lr for r in result.records] == pytest.approx([0.1, 0.01, 0.001])


# --- determinism ----------------------------------------------------------------------------

def test_same_seed_gives_bit_identical_weights_and_records(digits: InMemoryData) -> None:
    model = _model(digits)
    mask = _half_mask(model)
    a = loop.train(_model(digits), digits, _hp(epochs=2), mask, seed=3)
    b = loop.train(_model(digits), digits, _hp(epochs=2), mask, seed=3)
    _assert_states_equal(a.state, b.state)
    assert a.records == b.records


def test_different_seed_changes_data_order_and_final_weights(digits: InMemoryData) -> None:
    a = loop.train(_model(digits), digits, _hp(epochs=1), {}, seed=0)
    b = loop.train(_model(digits), digits, _hp(epochs=1), {}, seed=1)
    assert not torch.equal(a.state["fc1.weight"], b.state["fc1.weight"])
    assert a.records[0].train_loss != b.records[0].train_loss


# --- masks ----------------------------------------------------------------------------------

@pytest.mark.parametrize("optimizer,lr", [("sgd", 0.1), ("adam", 1e-3)])
def test_masked_weights_are_exactly_zero_at_every_epoch_and_at_the_end(
    digits: InMemoryData, optimizer: str, lr: float
) -> None:
    model = _model(digits)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    mask = _half_mask(model)
    seen: list[int] = []

    def check(record: EpochRecord) -> None:
        params = dict(model.named_parameters())
        for name, m in mask.items():
            assert torch.count_nonzero(params[name].detach()[~m]) == 0, (record.epoch, name)
        seen.append(record.epoch)

    # weight decay and momentum/Adam moments would drift masked weights off zero if unmasked
    hp = _hp(optimizer=optimizer, lr=lr, weight_decay=1e-3)
    result = loop.train(model, digits, hp, mask, seed=0, on_epoch=check)
    assert seen == [1, 2, 3]
    for name, m in mask.items():
        assert torch.count_nonzero(result.state[name][~m]) == 0
        assert not torch.equal(result.state[name][m], start[name][m])  # survivors trained


# --- resume ---------------------------------------------------------------------------------

@pytest.mark.parametrize("optimizer,lr", [("sgd", 0.1), ("adam", 1e-3)])
@pytest.mark.parametrize("done", [1, 2])
def test_resume_after_epoch_k_is_bit_identical_to_an_uninterrupted_run(
    digits: InMemoryData, tmp_path, optimizer: str, lr: float, done: int
) -> None:
    hp = _hp(optimizer=optimizer, lr=lr, epochs=3, milestones=(2,), weight_decay=1e-4)
    mask = _half_mask(_model(digits))
    whole = loop.train(_model(digits), digits, hp, mask, seed=5)

    checkpoints = stage.BlobCheckpoints(Store(str(tmp_path)).child("stage"))
    first = loop.train(_model(digits), digits, dataclasses.replace(hp, epochs=done),
                       mask, seed=5, checkpoints=checkpoints)
    assert len(first.records) == done
    counter = Counter()
    resumed = loop.train(_model(digits), digits, hp, mask, seed=5, checkpoints=checkpoints,
                         on_epoch=counter)

    assert counter.epochs == list(range(done + 1, hp.epochs + 1))
    assert resumed.records == whole.records
    _assert_states_equal(resumed.state, whole.state)


# --- evaluation and optimizers ---------------------------------------------------------------

@pytest.mark.parametrize("eval_batch", [loop.EVAL_BATCH, 100])
def test_evaluate_returns_mean_cross_entropy_and_accuracy(
    digits: InMemoryData, monkeypatch: pytest.MonkeyPatch, eval_batch: int
) -> None:
    monkeypatch.setattr(loop, "EVAL_BATCH", eval_batch)  # 100 exercises the chunked sum
    model = _model(digits)
    loss, acc = loop.evaluate(model, digits.train_x, digits.train_y)
    with torch.no_grad():
        logits = model(digits.train_x)
    assert loss == pytest.approx(F.cross_entropy(logits, digits.train_y).item(), rel=1e-5)
    assert acc == pytest.approx((logits.argmax(1) == digits.train_y).float().mean().item())
    assert not model.training


@pytest.mark.parametrize("optimizer,lr", [("sgd", 0.05), ("adam", 1.2e-3)])
def test_optimizer_trains_digits_loss_decreases_over_three_epochs(
    digits: InMemoryData, optimizer: str, lr: float
) -> None:
    model = _model(digits)
    loss_before, _ = loop.evaluate(model, digits.test_x, digits.test_y)
    result = loop.train(model, digits, _hp(optimizer=optimizer, lr=lr), {}, seed=0)
    train_losses = [r.train_loss for r in result.records]
    assert train_losses[2] < train_losses[0]
    assert result.final.test_loss < loss_before
    assert result.final.test_acc > 0.8


def test_unknown_optimizer_raises_value_error_naming_it(digits: InMemoryData) -> None:
    with pytest.raises(ValueError, match="unknown optimizer 'rmsprop'"):
        loop.make_optimizer(_model(digits), _hp(optimizer="rmsprop"))
    with pytest.raises(ValueError, match="rmsprop"):
        loop.train(_model(digits), digits, _hp(optimizer="rmsprop"), {}, seed=0)


def test_best_is_highest_test_acc_earliest_on_ties() -> None:
    recs = tuple(EpochRecord(e, 0.1, 1.0, 1.0, acc) for e, acc in [(1, 0.5), (2, 0.9),
                                                                      (3, 0.9), (4, 0.7)])
    result = loop.StageResult(state={}, records=recs, wall_time_s=0.0)
    assert result.best.epoch == 2
    assert result.final.epoch == 4


# --- stages: skip-if-done and crash recovery ---------------------------------------------------

def test_run_stage_skips_training_when_final_exists(digits: InMemoryData, tmp_path) -> None:
    blobs = Store(str(tmp_path)).child("s")
    model = _model(digits)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    mask = _half_mask(model)
    first_calls, second_calls = Counter(), Counter()
    first = stage.run_stage(blobs, model, start, mask, digits, _hp(epochs=2), 0, first_calls)
    assert blobs.get(stage.FINAL) is not None
    for slot in stage.CHECKPOINT_SLOTS:  # final.pt alone marks the stage as done
        assert not os.path.exists(blobs.join(slot))  # (its checkpoints are deleted)
    second = stage.run_stage(blobs, _model(digits, seed=9), start, mask, digits,
                             _hp(epochs=2), 0, second_calls)
    assert first_calls.epochs == [1, 2]
    assert second_calls.epochs == []
    _assert_states_equal(first.state, second.state)
    assert first.records == second.records
    assert first.wall_time_s == second.wall_time_s


def test_run_stage_after_a_crash_resumes_and_matches_an_uninterrupted_stage(
    digits: InMemoryData, tmp_path
) -> None:
    model = _model(digits)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    mask = _half_mask(model)
    hp = _hp(epochs=3, milestones=(2,))
    whole = stage.run_stage(Store(str(tmp_path)).child("whole"), _model(digits), start, mask,
                            digits, hp, 0)

    def crash_after_epoch_1(record: EpochRecord) -> None:
        raise KeyboardInterrupt  # the checkpoint of epoch 1 is already saved

    blobs = Store(str(tmp_path)).child("crashed")
    with pytest.raises(KeyboardInterrupt):
        stage.run_stage(blobs, _model(digits), start, mask, digits, hp, 0, crash_after_epoch_1)
    assert blobs.get(stage.FINAL) is None
    assert blobs.get(stage.CHECKPOINT_SLOTS[1]) is not None  # epoch 1 -> slot 1
    counter = Counter()
    resumed = stage.run_stage(blobs, _model(digits, seed=9), start, mask, digits, hp, 0,
                              counter)
    assert counter.epochs == [2, 3]
    assert resumed.records == whole.records
    _assert_states_equal(resumed.state, whole.state)
    assert stage.load_result(blobs) is not None


def _crash_after(epochs: int):
    calls = []

    def hook(record: EpochRecord) -> None:
        calls.append(record.epoch)
        if len(calls) == epochs:
            raise KeyboardInterrupt  # the checkpoint of this epoch is already saved
    return hook


def test_a_truncated_newest_checkpoint_falls_back_to_the_one_before_it(
    digits: InMemoryData, tmp_path, caplog
) -> None:
    model = _model(digits)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    mask, hp = _half_mask(model), _hp(epochs=4)
    whole = stage.run_stage(Store(str(tmp_path)).child("whole"), _model(digits), start, mask,
                            digits, hp, 0)
    blobs = Store(str(tmp_path)).child("crashed")
    with pytest.raises(KeyboardInterrupt):
        stage.run_stage(blobs, _model(digits), start, mask, digits, hp, 0, _crash_after(3))
    newest = blobs.join(stage.CHECKPOINT_SLOTS[1])  # epoch 3 -> slot 1; slot 0 holds epoch 2
    with open(newest, "r+b") as handle:
        handle.truncate(os.path.getsize(newest) // 2)
    counter = Counter()
    resumed = stage.run_stage(blobs, _model(digits, seed=9), start, mask, digits, hp, 0,
                              counter)
    assert counter.epochs == [3, 4]  # from epoch 2's checkpoint, not from scratch
    assert "checkpoint-1.pt" in caplog.text
    assert resumed.records == whole.records
    _assert_states_equal(resumed.state, whole.state)


def test_no_good_checkpoint_restarts_the_stage_and_a_corrupt_final_is_recomputed_untrained(
    digits: InMemoryData, tmp_path
) -> None:
    model = _model(digits)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    mask, hp = _half_mask(model), _hp(epochs=2)
    blobs = Store(str(tmp_path)).child("s")
    whole = stage.run_stage(blobs, _model(digits), start, mask, digits, hp, 0)
    assert not any(blobs.get(slot) for slot in stage.CHECKPOINT_SLOTS)  # deleted once final
    blobs.put(stage.FINAL, b"truncated")
    counter = Counter()
    again = stage.run_stage(blobs, _model(digits, seed=9), start, mask, digits, hp, 0, counter)
    assert counter.epochs == [1, 2]  # no checkpoint is left: the stage starts over
    _assert_states_equal(again.state, whole.state)
    assert stage.load_result(blobs) is not None  # final.pt written again
    for slot in (stage.FINAL, *stage.CHECKPOINT_SLOTS):
        blobs.put(slot, b"")
    counter = Counter()
    third = stage.run_stage(blobs, _model(digits, seed=9), start, mask, digits, hp, 0, counter)
    assert counter.epochs == [1, 2]  # nothing readable: the stage starts over
    _assert_states_equal(third.state, whole.state)


def test_checkpoints_are_written_at_most_every_interval(digits: InMemoryData, tmp_path,
                                                       monkeypatch) -> None:
    """With a clock that moves 10 s per epoch and a 15 s interval, only epochs 3 and 5 are
    written (the slots alternate per write); a crash after epoch 4 resumes after epoch 3."""
    clock = [0.0]
    monkeypatch.setattr(stage.time, "monotonic", lambda: clock[0])

    def tick(record: EpochRecord) -> None:
        clock[0] += 10.0

    model = _model(digits)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    mask, hp = _half_mask(model), _hp(epochs=6)
    written = []
    blobs = Store(str(tmp_path)).child("s")
    checkpoints = stage.BlobCheckpoints(blobs, every_s=15.0)
    real_save = stage.checkpoint.save
    monkeypatch.setattr(stage.checkpoint, "save", lambda b, name, obj: (
        written.append((name, len(obj["records"]))), real_save(b, name, obj)))
    loop.train(model, digits, hp, mask, 0, checkpoints, tick)
    assert written == [(stage.CHECKPOINT_SLOTS[1], 3), (stage.CHECKPOINT_SLOTS[0], 5)]

    with stage.checkpoint_every(15.0):
        crashed = Store(str(tmp_path)).child("crashed")

        def crash(record: EpochRecord) -> None:
            tick(record)
            if record.epoch == 4:
                raise KeyboardInterrupt
        with pytest.raises(KeyboardInterrupt):
            stage.run_stage(crashed, _model(digits), start, mask, digits, hp, 0, crash)
        counter = Counter()
        stage.run_stage(crashed, _model(digits), start, mask, digits, hp, 0, counter)
        assert counter.epochs == [4, 5, 6]  # what the crash lost: epoch 4
    with pytest.raises(ValueError, match="must be >= 0"):
        with stage.checkpoint_every(-1):
            pass


def test_run_stage_zeroes_masked_start_weights_before_training(
    digits: InMemoryData, tmp_path
) -> None:
    model = _model(digits)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    mask = _half_mask(model)
    assert all(torch.count_nonzero(start[n][~m]) > 0 for n, m in mask.items())
    result = stage.run_stage(Store(str(tmp_path)), model, start, mask, digits, _hp(epochs=1), 0)
    assert masks.sparsity({n: result.state[n] != 0 for n in mask}) == pytest.approx(
        masks.sparsity(mask))
