"""``rst``: Random Sparse Network Transformation (Bai et al. 2022, Dual LTH; METHODS.md 2.4).

A uniformly random layer-wise mask m on θ0 (``masks.random_prune``: every pruned layer loses
``ceil(s * N_l)`` weights, ``keep_dense`` layers none). Then the transformation: SGD at
``rst.lr`` on the training set with an L2 penalty ½ λ w² on the to-be-masked weights only
(applied as ``grad += λ ⊙ w``), λ grown by ``reg_step`` every ``reg_interval`` iterations until
it passes ``reg_ceiling``, then held for ``stabilize_iterations``; the masked weights are then
zeroed and the standard training runs: ``training.epochs`` epochs under m, from the
transformed weights. ``rst_iter`` repeats pick-grow-stabilize ``cycles`` times (see
``rst_iter``); ``rst`` is its one-cycle case. ``total_epochs`` counts the transformation
(its passes over the training set at ``rst.batch_size``, rounded up) plus the final training.

Source: Bai et al. 2022 (arXiv 2203.04248) and their code ``yueb17/DLTH``
(``pruner/reg_pruner.py``: ``_greg_1``, ``_apply_reg``; ``pruner/reg_pruner_iterative.py``).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from dataclasses import replace
from typing import Any

import torch
import torch.nn.functional as F

from trainer import checkpoint
from trainer import masks
from trainer import seeding
from trainer.loop import steps_per_epoch
from trainer.methods.base import Method
from trainer.methods.base import Phase
from trainer.methods.base import Sources
from trainer.methods.base import Start
from trainer.methods.base import never
from trainer.stage import BlobCheckpoints

SCHEDULES = ("x", "x^2", "x^3")
BUDGETS = ("paper", "match_lth")
RESULT = "final.pt"


@dataclass(frozen=True, kw_only=True)
class RSTHparams:
    """The transformation's constants (``rst:`` in the spec); defaults are DLTH's code's.

    Attributes:
        lr: SGD learning rate of the transformation (``lr_prune``), constant.
        batch_size: Examples per transformation step (``batch_size_prune``).
        momentum: SGD momentum.
        weight_decay: SGD weight decay of the transformation (DLTH's ``--wd``).
        reg_step: λ increment (``reg_granularity_prune``).
        reg_interval: Iterations between increments (``update_reg_interval``).
        reg_ceiling: Growth stops once λ exceeds it (``reg_upper_limit``).
        stabilize_iterations: Iterations λ is then held (``stabilize_reg_interval``).
        schedule: λ after u increments: ``x`` = u·step, ``x^2`` = (u·step)², ``x^3`` = (u·step)³.
        cycles: Pick-grow-stabilize cycles of ``rst_iter`` (``num_cycles``); ``rst`` uses 1.
        budget: ``paper`` (the iterations above) or ``match_lth`` (every iteration count
            scaled so the transformation lasts as many epochs as the IMP levels behind
            ``lth``'s row at this sparsity: the row's total epochs equal lth's).
    """

    lr: float = 0.001
    batch_size: int = 64
    momentum: float = 0.9
    weight_decay: float = 5e-4
    reg_step: float = 1e-4
    reg_interval: int = 5
    reg_ceiling: float = 1.0
    stabilize_iterations: int = 40000
    schedule: str = "x"
    cycles: int = 5
    budget: str = "paper"

    def __post_init__(self) -> None:
        for name in ("lr", "momentum", "weight_decay", "reg_step", "reg_ceiling"):
            object.__setattr__(self, name, float(getattr(self, name)))
        if self.schedule not in SCHEDULES or self.budget not in BUDGETS:
            raise ValueError(f"rst schedule must be one of {SCHEDULES} and budget one of "
                             f"{BUDGETS}, got {self.schedule!r}, {self.budget!r}")
        if self.reg_step <= 0 or self.reg_interval < 1 or self.cycles < 1:
            raise ValueError("rst reg_step must be > 0, reg_interval and cycles >= 1")


def _grown(u: int, hp: RSTHparams) -> float:
    """λ after ``u`` increments."""
    power = SCHEDULES.index(hp.schedule) + 1
    return (u * hp.reg_step) ** power if power > 1 else u * hp.reg_step


def increments(hp: RSTHparams) -> int:
    """U: the number of increments at which λ first exceeds ``reg_ceiling``."""
    power = SCHEDULES.index(hp.schedule) + 1
    u = max(1, math.floor(hp.reg_ceiling ** (1 / power) / hp.reg_step))
    while u > 1 and _grown(u - 1, hp) > hp.reg_ceiling:
        u -= 1
    while _grown(u, hp) <= hp.reg_ceiling:
        u += 1
    return u


@dataclass(frozen=True)
class Schedule:
    """λ as a pure function of the iteration within a cycle (so resuming needs no λ state).

    Attributes:
        hp: The constants.
        scale: Multiplies the growth's iteration counts (1 for ``budget: paper``).
        length: Iterations of one cycle when a budget fixes it (the stabilization takes what
            the growth leaves), else None: growth + ``stabilize_iterations``.
    """

    hp: RSTHparams
    scale: float = 1.0
    length: int | None = None

    @property
    def growth_end(self) -> int:
        """First iteration with λ > ceiling: the U-th increment, at (U - 1) x interval."""
        return math.ceil((increments(self.hp) - 1) * self.hp.reg_interval * self.scale - 1e-9)

    @property
    def iterations(self) -> int:
        """Iterations of one cycle: the growth, then the stabilization."""
        if self.length is not None:
            return max(self.length, self.growth_end)
        return self.growth_end + self.hp.stabilize_iterations

    def lam(self, i: int) -> float:
        """λ at iteration ``i`` (0-based): increment u = floor(i / interval) + 1 happens
        before iteration i's step, as in DLTH's ``_greg_1``; held from ``growth_end`` on."""
        u = math.floor(i / (self.hp.reg_interval * self.scale) + 1e-9) + 1
        return _grown(min(u, increments(self.hp)), self.hp)


def cycle_sparsity(target: float, cycle: int, cycles: int) -> float:
    """Cumulative sparsity after ``cycle`` of ``cycles``: 1 - (1 - p_c)^c with the per-cycle
    rate p_c = 1 - (1 - target)^(1/cycles) (DLTH ``reg_pruner_iterative``; METHODS.md 2.4.5)."""
    p_c = 1.0 - (1.0 - target) ** (1.0 / cycles)
    return 1.0 - (1.0 - p_c) ** cycle


def cycle_mask(src: Sources, exclude: frozenset[str], hp: RSTHparams, cycle: int) -> dict:
    """The mask after ``cycle`` (1-based): each cycle adds random picks to the previous one."""
    mask = {n: m.clone() for n, m in src.mask.items()}
    for c in range(1, cycle + 1):
        gen = seeding.generator(src.seed, "rst_mask", f"{src.target_sparsity:.6f}", c)
        mask = masks.random_prune(mask, cycle_sparsity(src.target_sparsity, c, hp.cycles),
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
        done = _transform(src, phase, hp)
        checkpoint.save(phase.blobs, RESULT, done)
    extra = _passes(done["iterations"], len(phase.data.train_y), hp)
    state = {k: v * done["mask"][k] if k in done["mask"] else v
             for k, v in done["state"].items()}
    return Start(state=state, mask=done["mask"], extra_epochs=extra)


def steps_per_pass(n: int, hp: RSTHparams) -> int:
    """Iterations in one pass over ``n`` training examples at ``rst.batch_size``."""
    return steps_per_epoch(n, hp.batch_size)


def schedule_for(phase: Phase, hp: RSTHparams) -> Schedule:
    """The schedule of ``phase`` (see ``schedule``)."""
    n = len(phase.data.train_y)
    per_epoch = steps_per_epoch(n, phase.train.batch_size)
    return schedule(hp, n, phase.imp_rounds * phase.train.run_epochs(per_epoch))


def schedule(hp: RSTHparams, n_train: int, lth_epochs: float) -> Schedule:
    """The paper's schedule, or (``match_lth``) one fitted into lth's epochs.

    ``match_lth``: the cycles share ``lth_epochs`` passes over the ``n_train`` examples (the
    IMP levels behind lth's row); the growth is scaled by the same factor as the whole, and the
    stabilization takes the rest of each cycle.
    """
    paper = Schedule(hp)
    if hp.budget == "paper":
        return paper
    per_cycle = int(lth_epochs * steps_per_pass(n_train, hp)) // hp.cycles
    return Schedule(hp, scale=per_cycle / paper.iterations, length=per_cycle)


def prepare_epochs(hp: RSTHparams, n_train: int, lth_epochs: float) -> int:
    """Passes over the training set the transformation takes (``total_epochs``' share)."""
    return _passes(hp.cycles * schedule(hp, n_train, lth_epochs).iterations, n_train, hp)


def _passes(iterations: int, n_train: int, hp: RSTHparams) -> int:
    """Transformation iterations as passes over the training set, rounded up."""
    return math.ceil(iterations / steps_per_pass(n_train, hp))


def _transform(src: Sources, phase: Phase, hp: RSTHparams) -> dict[str, Any]:
    """All cycles of pick-grow-stabilize, resumable after every pass over the data."""
    model, data = phase.model, phase.data
    sched = schedule_for(phase, hp)
    checkpoints = BlobCheckpoints(phase.blobs)
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


def configure(group: dict[str, Any]) -> list[RSTHparams]:
    """The ``rst:`` group; ``rst`` is its one-cycle transformation."""
    return [replace(RSTHparams(**group), cycles=1)]


def rounds(hp: RSTHparams) -> int:
    return hp.cycles


METHOD = Method(name="rst", start=start, needs_trained_mask=never, needs_dense=False,
                mask="random", hparams=RSTHparams, prepare=prepare, group="rst",
                configure=configure,
                rounds=rounds, prepare_epochs=prepare_epochs,
                source="Bai et al. 2022 (Dual LTH, arXiv 2203.04248); yueb17/DLTH "
                       "pruner/reg_pruner.py; METHODS.md 2.4")

