"""The one training loop: in-memory tensors, on-device batches, masks enforced every step.

Every epoch is resumable and reproducible on its own: the data order and augmentation of epoch
``e`` come from generators seeded with (replicate seed, role, e), and the LR of epoch ``e`` is a
pure function of the schedule, so a run restored from the checkpoint taken after epoch ``e - 1``
computes exactly the numbers of an uninterrupted run (on CPU).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import asdict
from dataclasses import dataclass
from typing import Any
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

from trainer import masks
from trainer import seeding
from trainer.data.base import InMemoryData
from trainer.hparams import TrainHparams
from trainer.hparams import steps_per_epoch

EVAL_BATCH = 2048


@dataclass(frozen=True)
class EpochRecord:
    """Metrics of one finished epoch (1-based). Losses are means in nats: ``train_loss`` of the
    training objective (``StageOptions.loss``: cross-entropy unless a recipe changes it), the
    test and validation losses always cross-entropy.

    ``val_loss``/``val_acc`` are None without a validation split (``data.validation``).
    """

    epoch: int
    lr: float
    train_loss: float
    test_loss: float
    test_acc: float
    val_loss: float | None = None
    val_acc: float | None = None


@dataclass(frozen=True)
class StageResult:
    """One finished training run (a "stage"): final weights and per-epoch records.

    Attributes:
        state: Final ``state_dict`` on CPU (masked weights are exactly zero).
        records: One ``EpochRecord`` per epoch, in order.
        wall_time_s: Seconds of the training loop, summed over resumed attempts: the epochs
            and each epoch's test (and validation) evaluation, not loading or checkpoints.
    """

    state: dict[str, torch.Tensor]
    records: tuple[EpochRecord, ...]
    wall_time_s: float

    @property
    def final(self) -> EpochRecord:
        return self.records[-1]

    @property
    def best(self) -> EpochRecord:
        """The epoch of highest test accuracy (earliest on ties): chosen on the test set."""
        return max(self.records, key=lambda r: (r.test_acc, -r.epoch))

    @property
    def best_val(self) -> EpochRecord | None:
        """The epoch of minimum validation loss (earliest on ties), None without a split.

        Source: Frankle & Carbin 2019, §2 and App. C ("early-stopping iteration").
        """
        if self.records[0].val_loss is None:
            return None
        return min(self.records, key=lambda r: (r.val_loss, r.epoch))


class Checkpoints(Protocol):
    """Where a stage keeps its latest per-epoch state (``trainer.stage`` implements it)."""

    def load(self) -> dict[str, Any] | None:
        """The last saved state, or None for a fresh start."""

    def save(self, state: dict[str, Any]) -> None:
        """Persist the state after an epoch, atomically."""


EpochHook = Callable[[EpochRecord], None]
# (logits (B, K), inputs (B, C, H, W), labels (B,)) -> scalar training loss.
Loss = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
# (global step just taken, 1-based; the model) -> None, after the step's masks are applied.
StepHook = Callable[[int, nn.Module], None]


def cross_entropy(logits: torch.Tensor, _: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The plain training loss: mean cross-entropy of (B, K) logits against (B,) labels."""
    return F.cross_entropy(logits, y)


@dataclass(frozen=True)
class StageOptions:
    """What a stage changes about the plain loop; every default is a no-op.

    Attributes:
        loss: The training loss (``trainer.recipes`` builds label smoothing and
            distillation); evaluation always reports plain cross-entropy.
        warmup_steps: Linear LR warmup: step i (0-based, counted from step 0 of the
            schedule) uses ``lr_at(epoch) * min(1, (i + 1) / warmup_steps)``.
        frozen: Parameter names that are not trained (no gradient, not in the optimizer).
        start_step: The first step to train, 0-based: the schedule, the data order and the
            epoch numbers continue from there (rewinding to θk trains steps k.., open_lth's
            ``train_start_step``). Augmentation draws restart at the epoch's first batch, so
            a k inside an epoch gets that epoch's draws shifted by the skipped batches (exact
            for a k on an epoch boundary, as ``pruning.rewind.epochs`` gives).
        end_step: Train up to this step (exclusive); None = the run's length
            (``TrainHparams.steps``: ``iterations``, or ``epochs`` full epochs).
        on_step: Called after every optimizer step (e.g. to keep θk of a dense run).
    """

    loss: Loss = cross_entropy
    warmup_steps: int = 0
    frozen: frozenset[str] = frozenset()
    start_step: int = 0
    end_step: int | None = None
    on_step: StepHook | None = None


def lr_at(hp: TrainHparams, epoch: int, epochs: int | None = None) -> float:
    """LR used during ``epoch`` (1-based) of a run of ``epochs`` epochs (default hp.epochs).

    ``step``: ``lr * gamma ** #{milestones m : m < epoch}``, as
    ``torch.optim.lr_scheduler.MultiStepLR`` stepped once per epoch. ``cosine``:
    ``lr * ½(1 + cos(π (epoch - 1) / epochs))``, as ``CosineAnnealingLR(T_max=epochs)`` stepped
    once per epoch (warmup, if any, multiplies either).
    """
    if hp.schedule == "cosine":
        total = epochs or hp.epochs
        return hp.lr * 0.5 * (1.0 + math.cos(math.pi * (epoch - 1) / total))
    return hp.lr * hp.gamma ** sum(1 for m in hp.milestones if m < epoch)


def make_optimizer(model: nn.Module, hp: TrainHparams,
                   frozen: frozenset[str] = frozenset()) -> torch.optim.Optimizer:
    """SGD (momentum, weight decay) or Adam, as in METHODS.md §4, over the unfrozen parameters.

    Raises:
        ValueError: unknown optimizer name.
    """
    params = [p for n, p in model.named_parameters() if n not in frozen]
    if hp.optimizer == "sgd":
        return torch.optim.SGD(params, lr=hp.lr, momentum=hp.momentum,
                               weight_decay=hp.weight_decay)
    if hp.optimizer == "adam":
        return torch.optim.Adam(params, lr=hp.lr, weight_decay=hp.weight_decay)
    raise ValueError(f"unknown optimizer {hp.optimizer!r}; known: ['adam', 'sgd']")


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """Mean cross-entropy (nats) and accuracy (fraction) of ``model`` on (N, C, H, W) ``x``."""
    model.eval()
    loss = torch.zeros((), device=x.device)
    correct = torch.zeros((), device=x.device)
    for i in range(0, len(x), EVAL_BATCH):
        logits = model(x[i:i + EVAL_BATCH])
        loss += F.cross_entropy(logits, y[i:i + EVAL_BATCH], reduction="sum")
        correct += (logits.argmax(dim=1) == y[i:i + EVAL_BATCH]).sum()
    return loss.item() / len(x), correct.item() / len(x)


@dataclass(frozen=True)
class _Epoch:
    """One epoch's share of the schedule: its number, LR and global steps [first, stop)."""

    number: int
    lr: float
    first: int
    stop: int


def train_epoch(model: nn.Module, data: InMemoryData, opt: torch.optim.Optimizer,
                enforce: Callable[[], None], hp: TrainHparams, epoch: _Epoch,
                gens: tuple[torch.Generator, torch.Generator], options: StageOptions) -> float:
    """Steps ``epoch.first``..``epoch.stop`` of one pass in the order drawn from ``gens[0]``
    (``gens[1]`` draws the augmentation), ``enforce()`` (``masks.enforcer``) after each;
    returns the mean training loss of those batches."""
    model.train()
    n = len(data.train_x)
    perm = torch.randperm(n, generator=gens[0]).to(data.train_x.device)
    offset = (epoch.number - 1) * steps_per_epoch(n, hp.batch_size)
    total = torch.zeros((), device=data.train_x.device)
    seen = 0
    for step in range(epoch.first, epoch.stop):
        b = (step - offset) * hp.batch_size
        idx = perm[b:b + hp.batch_size]
        xb, yb = data.train_x[idx], data.train_y[idx]
        if data.augment is not None:
            xb = data.augment(xb, gens[1])
        if options.warmup_steps:
            for group in opt.param_groups:
                group["lr"] = epoch.lr * min(1.0, (step + 1) / options.warmup_steps)
        loss = options.loss(model(xb), xb, yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        enforce()
        if options.on_step is not None:
            options.on_step(step + 1, model)
        total += loss.detach() * len(idx)
        seen += len(idx)
    return total.item() / max(seen, 1)


def train(model: nn.Module, data: InMemoryData, hp: TrainHparams,
          mask: Mapping[str, torch.Tensor], seed: int,
          checkpoints: Checkpoints | None = None, on_epoch: EpochHook | None = None,
          options: StageOptions | None = None) -> StageResult:
    """Train ``model`` (already holding its start weights, on the data's device) with ``mask``.

    Args:
        model: The network; its weights are the run's initial weights θ_start.
        data: Tensors on the same device as ``model``.
        hp: Optimizer, LR, schedule, epochs and batch size.
        mask: Bool masks by parameter name (empty for a dense run), on the model's device.
        seed: Replicate seed; data order of epoch e uses ``seeding.generator(seed,
            "data_order", e)``, so every run of one replicate sees the same order.
        checkpoints: Per-epoch state store; when it holds a state, training resumes after the
            last saved epoch.
        on_epoch: Called after every epoch (e.g. to report progress).
        options: Loss, warmup, frozen parameters, start/end step and a step hook (all no-ops
            by default).
    Returns:
        The final weights and per-epoch records (one per epoch touched, so a run started at
        step k mid-epoch has a short first epoch).
    Raises:
        ValueError: unknown optimizer, or a start step at or past the end step.
    """
    options = options or StageOptions()
    per_epoch = steps_per_epoch(len(data.train_x), hp.batch_size)
    epochs = math.ceil(hp.steps(per_epoch) / per_epoch)  # the schedule's horizon
    end = hp.steps(per_epoch) if options.end_step is None else options.end_step
    if not options.warmup_steps and hp.warmup_epochs:
        options = dataclasses.replace(
            options, warmup_steps=max(1, round(hp.warmup_epochs * per_epoch)))
    if not 0 <= options.start_step < end:
        raise ValueError(f"start step {options.start_step} must be in [0, {end})")
    opt = make_optimizer(model, hp, options.frozen)
    enforce = masks.enforcer(model, mask)
    enforce()
    records: list[EpochRecord] = []
    elapsed = 0.0
    saved = checkpoints.load() if checkpoints is not None else None
    if saved is not None:
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["optimizer"])
        records = [EpochRecord(**r) for r in saved["records"]]
        elapsed = float(saved["wall_time_s"])
    first = records[-1].epoch + 1 if records else options.start_step // per_epoch + 1
    with _frozen(model, options.frozen):
        for number in range(first, math.ceil(end / per_epoch) + 1):
            began = time.perf_counter()
            epoch = _Epoch(number, lr_at(hp, number, epochs),
                           max(options.start_step, (number - 1) * per_epoch),
                           min(end, number * per_epoch))
            for group in opt.param_groups:
                group["lr"] = epoch.lr
            train_loss = train_epoch(model, data, opt, enforce, hp, epoch,
                                     (seeding.generator(seed, "data_order", number),
                                      seeding.generator(seed, "augment", number)), options)
            test_loss, test_acc = evaluate(model, data.test_x, data.test_y)
            val_loss, val_acc = (None, None) if data.val_x is None else \
                evaluate(model, data.val_x, data.val_y)
            records.append(EpochRecord(number, epoch.lr, train_loss, test_loss, test_acc,
                                       val_loss, val_acc))
            elapsed += time.perf_counter() - began
            if checkpoints is not None:
                checkpoints.save({"model": model.state_dict(), "optimizer": opt.state_dict(),
                                  "records": [asdict(r) for r in records],
                                  "wall_time_s": elapsed})
            if on_epoch is not None:
                on_epoch(records[-1])
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    return StageResult(state=state, records=tuple(records), wall_time_s=elapsed)


@contextmanager
def _frozen(model: nn.Module, names: frozenset[str]) -> Iterator[None]:
    """Turn off gradients of ``names`` for the block (no wasted backward work), then restore."""
    params = [p for n, p in model.named_parameters() if n in names]
    before = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(params, before, strict=True):
            p.requires_grad_(flag)
