"""Where the trainer keeps weights: a tiny blob protocol plus safe torch (de)serialization."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterable
from typing import Any
from typing import Protocol

import torch

log = logging.getLogger(__name__)

# ``torch.load`` on damaged bytes raises whatever its unpickler trips over (seen on torch 2.14:
# EOFError for an empty file, RuntimeError "failed finding central directory" or ValueError
# "negative seek value" for a cut zip, UnpicklingError or IndexError for foreign bytes), so
# every Exception counts as "unreadable"; the blob is then reported, never trusted.
_UNREADABLE = (Exception,)


class CorruptBlobError(ValueError):
    """A stored blob exists but cannot be loaded, or lacks the keys its reader needs."""


class Blobs(Protocol):
    """A directory of named byte blobs with atomic writes (``sweeps.store.Store`` is one)."""

    def get(self, name: str) -> bytes | None:
        """Bytes under ``name``, or None when absent."""

    def put(self, name: str, data: bytes) -> None:
        """Write atomically: readers see the old blob or the new one, never a partial one."""

    def delete(self, name: str) -> None:
        """Remove ``name``; nothing happens when it does not exist."""

    def child(self, *parts: str) -> Blobs:
        """The sub-directory ``parts`` joined by ``/``."""


def save(blobs: Blobs, name: str, obj: dict[str, Any]) -> None:
    """Serialize ``obj`` (tensors, numbers, strings, lists, dicts) with ``torch.save``."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    blobs.put(name, buffer.getvalue())


def load(blobs: Blobs, name: str, keys: Iterable[str] = ()) -> dict[str, Any] | None:
    """Load a blob written by ``save``, or None if absent.

    Uses ``torch.load(weights_only=True)``: a checkpoint can hold only tensors and plain
    containers, so a tampered file cannot execute code on load.

    Args:
        blobs: The directory.
        name: Blob name.
        keys: Keys the loaded dict must have.
    Raises:
        CorruptBlobError: the blob exists but is truncated, not a torch file, not a dict, or
            lacks one of ``keys``.
    """
    data = blobs.get(name)
    if data is None:
        return None
    try:
        obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except _UNREADABLE as err:
        raise CorruptBlobError(f"{name}: cannot be loaded ({type(err).__name__}: "
                               f"{str(err)[:200]})") from err
    missing = [k for k in keys if not isinstance(obj, dict) or k not in obj]
    if missing:
        raise CorruptBlobError(f"{name}: not a checkpoint of this kind (missing {missing})")
    return obj


def load_or_none(blobs: Blobs, name: str, keys: Iterable[str] = ()) -> dict[str, Any] | None:
    """``load``, but a corrupt blob is logged as a warning and treated as absent.

    For blobs that can be recomputed (a stage result, a checkpoint, θ0 from its seed): the
    caller recomputes and overwrites them, so a damaged file never fails a trial forever.
    """
    try:
        return load(blobs, name, keys)
    except CorruptBlobError as err:
        log.warning("ignoring a corrupt blob, it will be recomputed: %s", err)
        return None
