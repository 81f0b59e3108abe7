"""Where the trainer keeps weights: a tiny blob protocol plus safe torch (de)serialization."""

from __future__ import annotations

import io
from typing import Any
from typing import Protocol

import torch


class Blobs(Protocol):
    """A directory of named byte blobs with atomic writes (``sweeps.store.Store`` is one)."""

    def get(self, name: str) -> bytes | None:
        """Bytes under ``name``, or None when absent."""

    def put(self, name: str, data: bytes) -> None:
        """Write atomically: readers see the old blob or the new one, never a partial one."""

    def child(self, *parts: str) -> Blobs:
        """The sub-directory ``parts`` joined by ``/``."""


def save(blobs: Blobs, name: str, obj: dict[str, Any]) -> None:
    """Serialize ``obj`` (tensors, numbers, strings, lists, dicts) with ``torch.save``."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    blobs.put(name, buffer.getvalue())


def load(blobs: Blobs, name: str) -> dict[str, Any] | None:
    """Load a blob written by ``save``, or None if absent.

    Uses ``torch.load(weights_only=True)``: a checkpoint can hold only tensors and plain
    containers, so a tampered file cannot execute code on load.
    """
    data = blobs.get(name)
    if data is None:
        return None
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
