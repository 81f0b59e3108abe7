"""Retraining recipes ("tweaks"): what a ``RecipeHparams`` changes about a stage.

A recipe changes three things and nothing else: the network's architecture options
(activation, ToST's jump convolutions; ``arch``), the training loss (label smoothing,
distillation from the dense θT; ``loss``) and the LR warmup (``options``). The plain recipe
(``RecipeHparams()``, named ``base`` in specs) changes nothing.

Source: Jaiswal et al. 2021 (arXiv 2101.03255 v3; METHODS.md 2.5) and the code of its authors'
ToST (VITA-Group/ToST) and KD ticket (VITA-Group/KD-ticket).
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from trainer.hparams import RecipeHparams
from trainer.loop import Loss
from trainer.loop import StageOptions
from trainer.loop import cross_entropy
from trainer.models import Arch

BASE = RecipeHparams()


def arch(recipe: RecipeHparams, width: float = 1.0) -> Arch:
    """The architecture options of ``recipe`` (and a width, for small-dense networks)."""
    return Arch(width=width, activation=recipe.activation, beta=recipe.beta,
                skip_connections=recipe.skip_connections)


def smoothed_cross_entropy(logits: torch.Tensor, y: torch.Tensor, alpha: float) -> torch.Tensor:
    """Cross-entropy against the smoothed target: 1 - α on the label, α / (C - 1) elsewhere.

    Equals (1 - α)·CE + α / (C - 1)·Σ_{j≠y} -log p_j, averaged over the batch. (PyTorch's
    ``label_smoothing`` spreads α / C over all C classes instead.)

    Args:
        logits: (B, C) scores, C >= 2.
        y: (B,) int labels.
        alpha: Smoothing α in [0, 1).
    Returns:
        Scalar mean loss in nats.
    Source: ToST ``label-smoothening/train_ticket.py``; METHODS.md 2.5.
    """
    logp = F.log_softmax(logits, dim=1)  # (B, C)
    nll = -logp.gather(1, y[:, None]).squeeze(1)  # (B,) -log p_y
    others = -logp.sum(dim=1) - nll  # (B,) Σ_{j≠y} -log p_j
    return ((1.0 - alpha) * nll + alpha / (logits.shape[1] - 1) * others).mean()


def distillation(student: torch.Tensor, teacher: torch.Tensor, temperature: float
                 ) -> torch.Tensor:
    """T²·KL(softmax(z_t / T) ‖ softmax(z_s / T)), summed over classes, averaged over the batch.

    Args:
        student: (B, C) logits of the network being trained.
        teacher: (B, C) logits of the teacher (no gradient).
        temperature: T > 0.
    Source: Hinton et al. 2015; VITA-Group/KD-ticket (T = 5, α = 0.9); METHODS.md 2.5.
    """
    t = temperature
    kl = F.kl_div(F.log_softmax(student / t, dim=1), F.softmax(teacher / t, dim=1),
                  reduction="batchmean")
    return t * t * kl


def loss(recipe: RecipeHparams, teacher: nn.Module | None = None) -> Loss:
    """The training loss of ``recipe``: cross-entropy, smoothed or not, mixed with KD.

    Args:
        recipe: The recipe.
        teacher: The dense θT network in eval mode on the data's device; needed when
            ``recipe.distill_alpha > 0``.
    Returns:
        ``(logits, x, y) -> loss``: α·KD + (1 - α)·CE with α = ``distill_alpha``, CE smoothed
        by ``label_smoothing``.
    Raises:
        ValueError: distillation without a teacher.
    """
    alpha, smooth = recipe.distill_alpha, recipe.label_smoothing
    if alpha and teacher is None:
        raise ValueError("a distillation recipe needs the dense teacher network")
    if not alpha and not smooth:
        return cross_entropy

    def ce(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return smoothed_cross_entropy(logits, y, smooth) if smooth else \
            F.cross_entropy(logits, y)

    def total(logits: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if not alpha:
            return ce(logits, y)
        with torch.no_grad():
            target = teacher(x)  # (B, C)
        return alpha * distillation(logits, target, recipe.distill_temperature) + \
            (1.0 - alpha) * ce(logits, y)

    return total


def options(recipe: RecipeHparams, steps_per_epoch: int, teacher: nn.Module | None = None,
            base: StageOptions | None = None) -> StageOptions:
    """``base`` (a method's own options: frozen layers, start step) with the recipe's loss and
    warmup (``warmup_epochs`` x ``steps_per_epoch`` steps, rounded, at least 1 when > 0)."""
    warmup = max(1, round(recipe.warmup_epochs * steps_per_epoch)) if recipe.warmup_epochs \
        else 0
    return dataclasses.replace(base or StageOptions(), loss=loss(recipe, teacher),
                               warmup_steps=warmup)
