"""A stage = one training run whose checkpoints and result live in one blob directory.

Skip-if-done (open_lth's idiom): a stage whose ``final.pt`` exists is loaded, not retrained;
otherwise it resumes after the last epoch of its newest good checkpoint. Two checkpoint slots
are kept (``checkpoint-0.pt`` after even epochs, ``checkpoint-1.pt`` after odd ones), so a
truncated newest checkpoint falls back to the one before it; a stage with no good checkpoint
starts over. A corrupt ``final.pt`` is ignored the same way (the last checkpoint holds the
finished state, so nothing is retrained). Corrupt blobs are logged as warnings.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

import torch
from torch import nn

from trainer import checkpoint
from trainer.checkpoint import Blobs
from trainer.data.base import InMemoryData
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


class BlobCheckpoints:
    """``trainer.loop.Checkpoints`` kept in two alternating slots of a blob directory."""

    def __init__(self, blobs: Blobs) -> None:
        self.blobs = blobs

    def load(self) -> dict[str, Any] | None:
        """The good checkpoint with the most finished epochs, or None."""
        saved = [checkpoint.load_or_none(self.blobs, slot, _CHECKPOINT_KEYS)
                 for slot in CHECKPOINT_SLOTS]
        good = [s for s in saved if s is not None]
        return max(good, key=lambda s: len(s["records"]), default=None)

    def save(self, state: dict[str, Any]) -> None:
        """Write the state after epoch E into slot E mod 2 (the other slot keeps E - 1)."""
        slot = CHECKPOINT_SLOTS[len(state["records"]) % 2]
        checkpoint.save(self.blobs, slot, state)


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
    result = train(model, data, hp, mask, seed, BlobCheckpoints(blobs), on_epoch, options)
    checkpoint.save(blobs, FINAL, {"state": result.state,
                                   "records": [asdict(r) for r in result.records],
                                   "wall_time_s": result.wall_time_s})
    return result
