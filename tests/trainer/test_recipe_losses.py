"""Tests for trainer/recipes.py without a sweep: the recipe losses by hand (smoothed
cross-entropy, distillation) and the options and architecture a recipe gives (METHODS.md
2.5). End to end: ``test_recipes``."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from trainer import loop
from trainer import recipes
from trainer.hparams import RecipeHparams
from trainer.loop import StageOptions
from trainer.models import Arch

LOGITS = [[2.0, -1.0, 0.5, 0.0], [0.1, 0.2, 0.3, -3.0], [-1.5, 4.0, 1.0, 2.0]]
LABELS = [2, 0, 1]


def _log_softmax(row: list[float]) -> list[float]:
    top = max(row)
    lse = top + math.log(sum(math.exp(z - top) for z in row))
    return [z - lse for z in row]


# --- smoothed cross-entropy --------------------------------------------------------------------

@pytest.mark.parametrize("alpha", [0.1, 0.3])
def test_smoothed_cross_entropy_puts_1_minus_alpha_on_the_label_and_alpha_over_c_minus_1_on_others(
    alpha: float
) -> None:
    c = len(LOGITS[0])
    by_hand = 0.0
    for row, y in zip(LOGITS, LABELS, strict=True):
        logp = _log_softmax(row)
        others = sum(logp[j] for j in range(c) if j != y)
        by_hand -= (1 - alpha) * logp[y] + alpha / (c - 1) * others
    by_hand /= len(LOGITS)
    got = recipes.smoothed_cross_entropy(torch.tensor(LOGITS), torch.tensor(LABELS), alpha)
    assert got.shape == ()
    assert got.item() == pytest.approx(by_hand, rel=1e-6)


def test_smoothed_cross_entropy_at_alpha_0_is_plain_cross_entropy() -> None:
    logits, y = torch.tensor(LOGITS), torch.tensor(LABELS)
    got = recipes.smoothed_cross_entropy(logits, y, 0.0)
    assert got.item() == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-6)


def test_smoothed_cross_entropy_is_not_pytorchs_alpha_over_c_label_smoothing() -> None:
    logits, y, alpha = torch.tensor(LOGITS), torch.tensor(LABELS), 0.1
    c = logits.shape[1]
    got = recipes.smoothed_cross_entropy(logits, y, alpha).item()
    assert abs(got - F.cross_entropy(logits, y, label_smoothing=alpha).item()) > 1e-4
    # α / (C - 1) on each other class is PyTorch's ε / C with ε = α·C / (C - 1)
    assert got == pytest.approx(
        F.cross_entropy(logits, y, label_smoothing=alpha * c / (c - 1)).item(), rel=1e-6)


# --- distillation -----------------------------------------------------------------------------

@pytest.mark.parametrize("temperature", [1.0, 2.0, 5.0])
def test_distillation_is_t_squared_kl_of_teacher_to_student_summed_over_classes_mean_over_batch(
    temperature: float
) -> None:
    student = LOGITS
    teacher = [[0.0, 1.0, -1.0, 2.0], [1.0, 1.0, 0.0, 0.0], [3.0, -2.0, 0.5, 0.5]]
    by_hand = 0.0
    for s, t in zip(student, teacher, strict=True):
        log_ps = _log_softmax([z / temperature for z in s])
        log_pt = _log_softmax([z / temperature for z in t])
        by_hand += sum(math.exp(lt) * (lt - ls) for lt, ls in zip(log_pt, log_ps, strict=True))
    by_hand *= temperature ** 2 / len(student)
    got = recipes.distillation(torch.tensor(student), torch.tensor(teacher), temperature)
    assert got.shape == ()
    assert got.item() == pytest.approx(by_hand, rel=1e-5)
    reverse = recipes.distillation(torch.tensor(teacher), torch.tensor(student), temperature)
    assert reverse.item() != pytest.approx(by_hand, rel=1e-3)  # KL's direction matters


def test_distillation_is_zero_when_student_and_teacher_agree() -> None:
    logits = torch.tensor(LOGITS)
    assert recipes.distillation(logits, logits.clone(), 3.0).item() == pytest.approx(0.0,
                                                                                   abs=1e-6)


# --- loss ---------------------------------------------------------------------------------------

class _Teacher(nn.Module):
    """A linear network on flattened (B, 1, 2, 2) inputs: 4 classes."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        with torch.no_grad():
            self.fc.weight.copy_(torch.arange(16.0).reshape(4, 4) / 10 - 0.7)
            self.fc.bias.copy_(torch.tensor([0.1, -0.2, 0.3, 0.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))  # (B, 1, 2, 2) -> (B, 4) -> (B, 4)


def _batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn((3, 1, 2, 2), generator=gen)
    return torch.tensor(LOGITS, requires_grad=True), x, torch.tensor(LABELS)


def test_the_plain_recipe_loss_is_the_loops_cross_entropy() -> None:
    assert recipes.loss(RecipeHparams()) is loop.cross_entropy
    assert recipes.loss(recipes.BASE, _Teacher()) is loop.cross_entropy
    assert recipes.loss(RecipeHparams(activation="swish", warmup_epochs=1.0)) is \
        loop.cross_entropy  # architecture and warmup do not touch the loss


def test_the_smoothing_recipe_loss_is_smoothed_cross_entropy() -> None:
    logits, x, y = _batch()
    got = recipes.loss(RecipeHparams(label_smoothing=0.2))(logits, x, y)
    assert torch.equal(got, recipes.smoothed_cross_entropy(logits, y, 0.2))
    assert not torch.equal(got, F.cross_entropy(logits, y))


@pytest.mark.parametrize("smooth", [0.0, 0.1])
@pytest.mark.parametrize("alpha", [0.3, 1.0])
def test_the_distillation_recipe_loss_mixes_alpha_kd_with_1_minus_alpha_ce(
    alpha: float, smooth: float
) -> None:
    logits, x, y = _batch()
    teacher = _Teacher()
    recipe = RecipeHparams(distill_alpha=alpha, distill_temperature=2.0, label_smoothing=smooth)
    got = recipes.loss(recipe, teacher)(logits, x, y)
    with torch.no_grad():
        target = teacher(x)
    ce = recipes.smoothed_cross_entropy(logits, y, smooth) if smooth else \
        F.cross_entropy(logits, y)
    expected = alpha * recipes.distillation(logits, target, 2.0) + (1 - alpha) * ce
    assert got.item() == pytest.approx(expected.item(), rel=1e-6)
    got.backward()
    assert logits.grad is not None  # the student learns ...
    assert all(p.grad is None for p in teacher.parameters())  # ... the teacher does not


def test_distillation_without_a_teacher_raises_value_error() -> None:
    with pytest.raises(ValueError, match="teacher"):
        recipes.loss(RecipeHparams(distill_alpha=0.5))


# --- options and arch -------------------------------------------------------------------------

@pytest.mark.parametrize("epochs,spe,steps", [(0.5, 10, 5), (0.0, 10, 0), (1.0, 23, 23),
                                              (2.0, 23, 46), (0.01, 10, 1), (0.26, 10, 3)])
def test_options_warm_up_for_warmup_epochs_times_steps_per_epoch_rounded_at_least_1(
    epochs: float, spe: int, steps: int
) -> None:
    assert recipes.options(RecipeHparams(warmup_epochs=epochs), spe).warmup_steps == steps


def test_options_keep_the_methods_frozen_layers_start_and_end_step_and_hook() -> None:
    def hook(step: int, model: nn.Module) -> None:
        return None

    base = StageOptions(frozen=frozenset({"fc1.weight"}), start_step=7, end_step=30,
                        on_step=hook)
    got = recipes.options(RecipeHparams(label_smoothing=0.1, warmup_epochs=0.5), 10, None, base)
    assert (got.frozen, got.start_step, got.end_step, got.on_step) == \
        (base.frozen, 7, 30, hook)
    assert got.warmup_steps == 5
    logits, x, y = _batch()
    assert torch.equal(got.loss(logits, x, y), recipes.smoothed_cross_entropy(logits, y, 0.1))
    assert recipes.options(recipes.BASE, 10) == StageOptions()


def test_options_pass_the_teacher_to_the_distillation_loss() -> None:
    logits, x, y = _batch()
    teacher = _Teacher()
    recipe = RecipeHparams(distill_alpha=0.5, distill_temperature=3.0)
    got = recipes.options(recipe, 10, teacher).loss(logits, x, y)
    assert got.item() == pytest.approx(recipes.loss(recipe, teacher)(logits, x, y).item())
    with pytest.raises(ValueError, match="teacher"):
        recipes.options(recipe, 10)


def test_arch_maps_activation_beta_skip_connections_and_width() -> None:
    recipe = RecipeHparams(activation="pswish", beta=3.0, skip_connections=True,
                           label_smoothing=0.1)
    assert recipes.arch(recipe, 0.5) == Arch(width=0.5, activation="pswish", beta=3.0,
                                             skip_connections=True)
    assert recipes.arch(RecipeHparams(activation="mish")) == Arch(activation="mish")
    assert recipes.arch(recipes.BASE) == Arch()
    assert recipes.arch(RecipeHparams(label_smoothing=0.1, distill_alpha=0.5,
                                      warmup_epochs=1.0)) == Arch()
