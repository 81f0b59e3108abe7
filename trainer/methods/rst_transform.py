"""RST's transformation (Bai et al. 2022, Dual LTH; METHODS.md 2.4): the torch half of
``trainer.methods.rst``, imported by a trial when it transforms.

Random masks grown cycle by cycle (``cycle_mask``), then per cycle SGD with the L2 penalty
½ λ w² on the to-be-masked weights, λ grown then held (``rst.Schedule``), resumable after
every pass over the data.

Source: Bai et al. 2022 (arXiv 2203.04248); yueb17/DLTH ``pruner/reg_pruner.py``
(``_greg_1``, ``_apply_reg``) and ``pruner/reg_pruner_iterative.py``.
"""

from __future__ import annotations

import time
from typing import Any

import torch
import torch.nn.functional as F

from trainer import checkpoint
from trainer import masks
from trainer import seeding
from trainer.methods import rst
from trainer.methods.base import Phase
from trainer.methods.base import Sources
from trainer.methods.base import Start
from trainer.methods.rst import RESULT
from trainer.methods.rst import RSTHparams
from trainer.methods.rst import Schedule
from trainer.stage import BlobCheckpoints


def cycle_mask(src: Sources, exclude: frozenset[str], hp: RSTHparams, cycle: int) -> dict:
    """The mask after ``cycle`` (1-based): each cycle adds random picks to the previous one."""
    mask = {n: m.clone() for n, m in src.mask.items()}
    for c in range(1, cycle + 1):
        gen = seeding.generator(src.seed, "rst_mask", f"{src.target_sparsity:.6f}", c)
        mask = masks.random_prune(mask, rst.cycle_sparsity(src.target_sparsity, c, hp.cycles),
                                  exclude, gen)
    return mask


def start(src: Sources) -> Start:
    """θ0 under the final random mask, before the transformation (what RST starts from)."""
    hp: RSTHparams = src.hparams
    return Start(state=src.init, mask=cycle_mask(src, src.exclude, hp, hp.cycles))


def prepare(src: Sources, phase: Phase) -> Start:
    """The transformation (see the module docstring); skip-if-done through ``phase.blobs``.

    Returns:
        Start(θ_transformed ⊙ m, m, extra_epochs = the transformation's passes over the data).
    """
    hp: RSTHparams = phase.hparams
    done = checkpoint.load_or_none(phase.blobs, RESULT, ("state", "mask", "iterations"))
    if done is None:
        checkpoints = BlobCheckpoints(phase.blobs)
        done = _transform(src, phase, hp, checkpoints)
        checkpoint.save(phase.blobs, RESULT, done)
        checkpoints.clear()
    extra = rst.passes(done["iterations"], len(phase.data.train_y), hp)
    state = {k: v * done["mask"][k] if k in done["mask"] else v
             for k, v in done["state"].items()}
    return Start(state=state, mask=done["mask"], extra_epochs=extra)


def _transform(src: Sources, phase: Phase, hp: RSTHparams,
               checkpoints: BlobCheckpoints) -> dict[str, Any]:
    """All cycles of pick-grow-stabilize, resumable after a pass over the data (checkpoints
    at most every ``execution.checkpoint_every_s``, ``trainer.stage``)."""
    model, data = phase.model, phase.data
    sched = rst.schedule_for(phase, hp)
    saved = checkpoints.load()
    passes: list[dict[str, Any]] = [] if saved is None else list(saved["records"])
    model.load_state_dict(src.init if saved is None else saved["model"])
    began, elapsed = time.perf_counter(), 0.0 if saved is None else saved["wall_time_s"]
    cycle, i = (1, 0) if not passes else (passes[-1]["cycle"], passes[-1]["iteration"])
    opt = _optimizer(model, hp)
    if i >= sched.iterations:
        cycle, i = cycle + 1, 0
    elif saved is not None:
        opt.load_state_dict(saved["optimizer"])  # mid-cycle: momentum continues
    while cycle <= hp.cycles:
        mask = _on(cycle_mask(src, phase.exclude, hp, cycle), data.train_x.device)
        while i < sched.iterations:
            k = len(passes)
            i, loss = _one_pass(model, data, opt, mask, sched, i,
                                (seeding.generator(src.seed, "rst_order", cycle, k),
                                 seeding.generator(src.seed, "rst_augment", cycle, k)))
            passes.append({"cycle": cycle, "iteration": i, "loss": loss})
            checkpoints.save({"model": model.state_dict(), "optimizer": opt.state_dict(),
                              "records": passes,
                              "wall_time_s": elapsed + time.perf_counter() - began})
        cycle, i = cycle + 1, 0
        opt = _optimizer(model, hp)  # λ and the optimizer restart every cycle (DLTH)
    final = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    return {"state": final, "mask": cycle_mask(src, phase.exclude, hp, hp.cycles),
            "iterations": hp.cycles * sched.iterations,
            "wall_time_s": elapsed + time.perf_counter() - began}


def _on(mask: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {n: m.to(device) for n, m in mask.items()}


def _optimizer(model: torch.nn.Module, hp: RSTHparams) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=hp.lr, momentum=hp.momentum,
                           weight_decay=hp.weight_decay)


def _one_pass(model: torch.nn.Module, data: Any, opt: torch.optim.Optimizer, mask: dict,
              sched: Schedule, i: int, gens: tuple[torch.Generator, torch.Generator]
              ) -> tuple[int, float]:
    """One pass over the training set (or until the cycle ends); returns (iteration, loss).

    Args:
        gens: (data order, augmentation) generators of this pass.
    """
    order, augment = gens
    model.train()
    params = dict(model.named_parameters())
    penalized = {n: ~m for n, m in mask.items() if not bool(m.all())}  # to-be-masked weights
    n = len(data.train_x)
    perm = torch.randperm(n, generator=order).to(data.train_x.device)
    total, seen = 0.0, 0
    for b in range(0, n, sched.hp.batch_size):
        if i >= sched.iterations:
            break
        idx = perm[b:b + sched.hp.batch_size]
        xb = data.train_x[idx]
        if data.augment is not None:
            xb = data.augment(xb, augment)
        loss = F.cross_entropy(model(xb), data.train_y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        lam = sched.lam(i)
        with torch.no_grad():
            for name, where in penalized.items():
                params[name].grad.add_(lam * where * params[name])  # grad of ½ λ w² on m̄
        opt.step()
        total, seen, i = total + loss.item() * len(idx), seen + len(idx), i + 1
    return i, total / max(seen, 1)
