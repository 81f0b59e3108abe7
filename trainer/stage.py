"""A stage = one training run whose checkpoints and result live in one blob directory.

Skip-if-done (open_lth's idiom): a stage whose ``final.pt`` exists is loaded, not retrained;
otherwise it resumes after the last epoch of its newest good checkpoint.

Checkpoint policy (what a crash can lose): the model and optimizer state is written after an
epoch only when ``checkpoint_every`` seconds (``execution.checkpoint_every_s``, default 30;
0 = after every epoch) have passed since the stage started or last wrote one, and the result
always at the stage's end (``final.pt``), after which the checkpoints are deleted. A crash
therefore loses at most the last ``checkpoint_every`` seconds of each running stage plus the
epoch in flight; finished stages (IMP levels, branches, θT) are never lost. Writes alternate
between two slots (``checkpoint-0.pt``, ``checkpoint-1.pt``), so a truncated newest checkpoint
falls back to the one before it; a stage with no good checkpoint, or whose ``final.pt`` is
corrupt, starts over. Corrupt blobs are logged as warnings.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from collections.abc import Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import asdict
from typing import Any

import torch
from torch import nn

from trainer import checkpoint
from trainer.checkpoint import Blobs
from trainer.data.base import InMemoryData
from trainer.hparams import CHECKPOINT_EVERY_S
from trainer.hparams import TrainHparams
from trainer.loop import EpochHook
from trainer.loop import EpochRecord
from trainer.loop import StageOptions
from trainer.loop import StageResult
from trainer.loop import train

FINAL = "final.pt"
CHECKPOINT_SLOTS = ("checkpoint-0.pt", "checkpoint-1.pt")
_CHECKPOINT_KEYS = ("model", "optimizer", "records", "wall_time_s")
_FINAL_KEYS = ("state", "records", "wall_time_s")
_every_s: ContextVar[float] = ContextVar("checkpoint_every_s", default=CHECKPOINT_EVERY_S)


@contextmanager
def checkpoint_every(seconds: float) -> Iterator[None]:
    """Within the block, stages write a checkpoint at most every ``seconds`` (0: each epoch).

    Raises:
        ValueError: ``seconds`` is negative.
    """
    if seconds < 0:
        raise ValueError(f"checkpoint interval must be >= 0 seconds, got {seconds}")
    token = _every_s.set(float(seconds))
    try:
        yield
    finally:
        _every_s.reset(token)


class BlobCheckpoints:
    """``trainer.loop.Checkpoints`` kept in two alternating slots of a blob directory, written
    at most every ``every_s`` seconds (``checkpoint_every``'s setting when None)."""

    def __init__(self, blobs: Blobs, every_s: float | None = None) -> None:
        self.blobs = blobs
        self.every_s = _every_s.get() if every_s is None else every_s
        self._since = time.monotonic()
        self._newest = 0  # slot index holding the newest state; the next write takes the other

    def load(self) -> dict[str, Any] | None:
        """The good checkpoint with the most finished epochs (or passes), or None."""
        saved = [checkpoint.load_or_none(self.blobs, slot, _CHECKPOINT_KEYS)
                 for slot in CHECKPOINT_SLOTS]
        good = [(len(s["records"]), i) for i, s in enumerate(saved) if s is not None]
        if not good:
            return None
        self._newest = max(good)[1]
        return saved[self._newest]

    def save(self, state: dict[str, Any]) -> None:
        """Write ``state`` into the slot not holding the newest state, if ``every_s`` seconds
        passed since the stage started or last wrote (the write's own time not counted)."""
        if time.monotonic() - self._since < self.every_s:
            return
        self._newest = 1 - self._newest
        checkpoint.save(self.blobs, CHECKPOINT_SLOTS[self._newest], state)
        self._since = time.monotonic()

    def clear(self) -> None:
        """Delete both slots (the stage's result is stored: they are never read again)."""
        for slot in CHECKPOINT_SLOTS:
            self.blobs.delete(slot)


def load_result(blobs: Blobs) -> StageResult | None:
    """The stored result of a finished stage, or None if it has not finished (or is corrupt)."""
    saved = checkpoint.load_or_none(blobs, FINAL, _FINAL_KEYS)
    if saved is None:
        return None
    records = tuple(EpochRecord(**r) for r in saved["records"])
    return StageResult(state=saved["state"], records=records,
                       wall_time_s=float(saved["wall_time_s"]))


def run_stage(blobs: Blobs, model: nn.Module, start: Mapping[str, torch.Tensor],
              mask: Mapping[str, torch.Tensor], data: InMemoryData, hp: TrainHparams,
              seed: int, on_epoch: EpochHook | None = None,
              options: StageOptions | None = None) -> StageResult:
    """Train from ``start`` under ``mask`` unless this stage already finished.

    Args:
        blobs: The stage's directory.
        model: A network of the right architecture on the data's device (weights replaced).
        start: Initial state_dict (CPU or device); masked entries are zeroed before training.
        mask: Bool masks by parameter name, on the data's device.
        data: In-memory dataset.
        hp: Training hparams.
        seed: Replicate seed (data order).
        on_epoch: Progress hook.
        options: Loss, warmup, frozen parameters, start step (``trainer.loop.StageOptions``).
    Returns:
        The stage result (loaded or freshly computed).
    """
    done = load_result(blobs)
    if done is not None:
        return done
    model.load_state_dict(start)
    checkpoints = BlobCheckpoints(blobs)
    result = train(model, data, hp, mask, seed, checkpoints, on_epoch, options)
    checkpoint.save(blobs, FINAL, {"state": result.state,
                                   "records": [asdict(r) for r in result.records],
                                   "wall_time_s": result.wall_time_s})
    checkpoints.clear()
    return result
