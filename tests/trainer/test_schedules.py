"""Tests for the run length and LR schedule of ``TrainHparams``: iterations, cosine, warmup."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch import nn

from sweeps import spec as spec_module
from sweeps.errors import SpecError
from sweeps.plan import make_plan
from sweeps.store import content_key
from trainer import data as datasets
from trainer import loop
from trainer import models
from trainer.hparams import DataHparams
from trainer.hparams import TrainHparams

SPE = 23  # digits: 1437 training examples, batch 64


@pytest.fixture(scope="module")
def digits():
    return datasets.load(DataHparams(name="digits"))


def _model(data) -> nn.Module:
    return models.build("lenet_300_100", data.input_shape, data.num_classes,
                        torch.Generator().manual_seed(0))


def _steps(data, hp: TrainHparams, **options) -> tuple[list[int], loop.StageResult]:
    seen: list[int] = []
    result = loop.train(_model(data), data, hp, {}, 0,
                        options=loop.StageOptions(on_step=lambda s, _: seen.append(s), **options))
    return seen, result


def test_iterations_set_the_run_length_in_steps_and_cut_the_last_epoch(digits) -> None:
    hp = TrainHparams(lr=0.1, epochs=10, batch_size=64, iterations=30)
    seen, result = _steps(digits, hp)
    assert seen == list(range(1, 31))
    assert [r.epoch for r in result.records] == [1, 2]  # 23 steps, then 7 of epoch 2
    assert hp.steps(SPE) == 30 and hp.run_epochs(SPE) == pytest.approx(30 / 23)
    again = loop.train(_model(digits), digits, dataclasses.replace(hp, iterations=0, epochs=2),
                       {}, 0, options=loop.StageOptions(end_step=30))
    assert all(torch.equal(again.state[k], result.state[k]) for k in result.state)


def test_cosine_follows_the_formula_and_torchs_cosine_annealing_per_epoch() -> None:
    hp = TrainHparams(lr=0.4, epochs=6, schedule="cosine")
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=hp.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=hp.epochs)
    for epoch in range(1, hp.epochs + 1):
        expected = 0.4 * 0.5 * (1 + math.cos(math.pi * (epoch - 1) / 6))
        assert loop.lr_at(hp, epoch) == pytest.approx(expected, rel=1e-12)
        assert loop.lr_at(hp, epoch) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-9)
        opt.step()
        sched.step()
    assert loop.lr_at(hp, 2, epochs=12) > loop.lr_at(hp, 2)  # a longer run decays slower


def test_a_cosine_run_records_its_decaying_lr_over_the_runs_epochs(digits) -> None:
    hp = TrainHparams(lr=0.1, epochs=3, batch_size=64, schedule="cosine")
    _, result = _steps(digits, hp)
    assert [r.lr for r in result.records] == [loop.lr_at(hp, e, 3) for e in (1, 2, 3)]
    assert result.records[0].lr > result.records[1].lr > result.records[2].lr


def test_training_warmup_is_a_per_step_warmup_of_every_run(digits) -> None:
    plain = TrainHparams(lr=0.1, epochs=2, batch_size=64)
    warm = dataclasses.replace(plain, warmup_epochs=0.5)
    _, by_field = _steps(digits, warm)
    _, by_option = _steps(digits, plain, warmup_steps=round(0.5 * SPE))
    assert all(torch.equal(by_field.state[k], by_option.state[k]) for k in by_field.state)
    _, unwarmed = _steps(digits, plain)
    assert not torch.equal(unwarmed.state["fc1.weight"], by_field.state["fc1.weight"])
    _, recipe = _steps(digits, warm, warmup_steps=3)  # a recipe's warmup replaces it
    _, three = _steps(digits, plain, warmup_steps=3)
    assert all(torch.equal(recipe.state[k], three.state[k]) for k in three.state)


def test_the_spec_takes_iterations_or_epochs_and_milestones_only_with_step() -> None:
    spec = spec_module.parse({"name": "t", "training": {"iterations": 50000, "schedule": "cosine",
                                                       "warmup_epochs": 1.5}})
    hp = spec.train_hparams(0.1)
    assert (hp.iterations, hp.schedule, hp.warmup_epochs) == (50000, "cosine", 1.5)
    for training, field in (({"epochs": 3, "iterations": 10}, "training.iterations"),
                            ({"schedule": "cosine", "milestones": [2]}, "training.milestones")):
        with pytest.raises(SpecError) as info:
            spec_module.parse({"name": "t", "training": training})
        assert [f for f, _ in info.value.problems] == [field]


def test_the_new_fields_keep_every_existing_trunk_key() -> None:
    assert content_key("t", TrainHparams()) == content_key("t", TrainHparams(
        iterations=0, schedule="step", warmup_epochs=0))
    assert content_key("t", TrainHparams(iterations=5)) != content_key("t", TrainHparams())


def test_the_plan_budget_counts_iterations_as_fractional_epochs_rounded_up() -> None:
    spec = spec_module.parse({"name": "t", "methods": ["dense", "lth", "pf"],
                              "sparsities": [0.36], "training": {"iterations": 30}})
    plan = make_plan(spec)
    chain, (branch,) = plan.chains[0], plan.branches
    assert chain.levels == 2
    assert plan.epochs(chain) == math.ceil(3 * 30 / 23)  # levels 0..2
    assert plan.epochs(branch) == math.ceil(30 / 23)
