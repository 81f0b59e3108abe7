"""The one training loop: in-memory tensors, on-device batches, masks enforced every step.

Every epoch is resumable and reproducible on its own: the data order and augmentation of epoch
``e`` come from generators seeded with (replicate seed, role, e), and the LR of epoch ``e`` is a
pure function of the schedule, so a run restored from the checkpoint taken after epoch ``e - 1``
computes exactly the numbers of an uninterrupted run (on CPU).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from collections.abc import Mapping
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

EVAL_BATCH = 2048


@dataclass(frozen=True)
class EpochRecord:
    """Metrics of one finished epoch (1-based). Losses are mean cross-entropy in nats.

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
        wall_time_s: Seconds spent training, summed over resumed attempts.
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


def lr_at(hp: TrainHparams, epoch: int) -> float:
    """LR used during ``epoch`` (1-based): ``lr * gamma ** #{milestones m : m < epoch}``.

    Same as ``torch.optim.lr_scheduler.MultiStepLR`` stepped once per epoch.
    """
    return hp.lr * hp.gamma ** sum(1 for m in hp.milestones if m < epoch)


def make_optimizer(model: nn.Module, hp: TrainHparams) -> torch.optim.Optimizer:
    """SGD (momentum, weight decay) or Adam, as in METHODS.md §4.

    Raises:
        ValueError: unknown optimizer name.
    """
    if hp.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=hp.lr, momentum=hp.momentum,
                               weight_decay=hp.weight_decay)
    if hp.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=hp.lr, weight_decay=hp.weight_decay)
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


def train_epoch(model: nn.Module, data: InMemoryData, opt: torch.optim.Optimizer,
                mask: Mapping[str, torch.Tensor], batch_size: int, order: torch.Generator,
                augment: torch.Generator) -> float:
    """One pass over the training set in the order drawn from ``order``; returns mean loss."""
    model.train()
    n = len(data.train_x)
    perm = torch.randperm(n, generator=order).to(data.train_x.device)
    total = torch.zeros((), device=data.train_x.device)
    for i in range(0, n, batch_size):
        idx = perm[i:i + batch_size]
        xb, yb = data.train_x[idx], data.train_y[idx]
        if data.augment is not None:
            xb = data.augment(xb, augment)
        loss = F.cross_entropy(model(xb), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        masks.apply(model, mask)
        total += loss.detach() * len(idx)
    return total.item() / n


def train(model: nn.Module, data: InMemoryData, hp: TrainHparams,
          mask: Mapping[str, torch.Tensor], seed: int,
          checkpoints: Checkpoints | None = None, on_epoch: EpochHook | None = None
          ) -> StageResult:
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
    Returns:
        The final weights and per-epoch records.
    """
    opt = make_optimizer(model, hp)
    masks.apply(model, mask)
    records: list[EpochRecord] = []
    elapsed = 0.0
    saved = checkpoints.load() if checkpoints is not None else None
    if saved is not None:
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["optimizer"])
        records = [EpochRecord(**r) for r in saved["records"]]
        elapsed = float(saved["wall_time_s"])
    for epoch in range(len(records) + 1, hp.epochs + 1):
        start = time.perf_counter()
        lr = lr_at(hp, epoch)
        for group in opt.param_groups:
            group["lr"] = lr
        train_loss = train_epoch(model, data, opt, mask, hp.batch_size,
                                 seeding.generator(seed, "data_order", epoch),
                                 seeding.generator(seed, "augment", epoch))
        test_loss, test_acc = evaluate(model, data.test_x, data.test_y)
        val_loss, val_acc = (None, None) if data.val_x is None else \
            evaluate(model, data.val_x, data.val_y)
        records.append(EpochRecord(epoch, lr, train_loss, test_loss, test_acc, val_loss,
                                   val_acc))
        elapsed += time.perf_counter() - start
        if checkpoints is not None:
            checkpoints.save({"model": model.state_dict(), "optimizer": opt.state_dict(),
                              "records": [asdict(r) for r in records], "wall_time_s": elapsed})
        if on_epoch is not None:
            on_epoch(records[-1])
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    return StageResult(state=state, records=tuple(records), wall_time_s=elapsed)
