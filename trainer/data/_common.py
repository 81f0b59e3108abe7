"""Helpers shared by the file-backed loaders: default locations, atomic writes (gunzip,
arrays), normalization."""

from __future__ import annotations

import contextlib
import gzip
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch

CACHE_ENV = "LOTTERY_DATA_CACHE"


def cache_dir() -> Path:
    """Return the per-user directory for downloaded or decompressed dataset files.

    ``$LOTTERY_DATA_CACHE`` if set, else ``$XDG_CACHE_HOME/lottery-sweeps``, else
    ``~/.cache/lottery-sweeps``. The directory is not created here.
    """
    override = os.environ.get(CACHE_ENV)
    if override:
        return Path(override).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "lottery-sweeps"


def resolve_root(root: str) -> Path:
    """Return ``root`` with ``~`` expanded, or ``cache_dir()/torchvision`` when it is empty."""
    return Path(root).expanduser() if root else cache_dir() / "torchvision"


@contextlib.contextmanager
def _replacing(dst: Path) -> Iterator[BinaryIO]:
    """A file to write ``dst``'s new content to: a per-process temp file beside it, renamed
    onto ``dst`` when the block ends and removed if it raises, so concurrent Ray workers never
    read a half-written file.

    Raises:
        OSError: the directory cannot be made or written.
    """
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as out:
            yield out
        os.replace(tmp, dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def gunzip_atomic(src: Path, dst: Path) -> None:
    """Decompress ``src`` (.gz) to ``dst`` unless ``dst`` exists (written whole or not at
    all)."""
    if dst.is_file():
        return
    with gzip.open(src, "rb") as fin, _replacing(dst) as fout:
        shutil.copyfileobj(fin, fout, length=1 << 20)


def save_arrays_atomic(dst: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` as an uncompressed ``.npz`` at ``dst``, whole or not at all.

    Raises:
        OSError: the directory cannot be made or written.
    """
    with _replacing(dst) as out:
        np.savez(out, **arrays)


def normalize_uint8(
    x: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]
) -> torch.Tensor:
    """Scale uint8 pixels to [0, 1], then standardize each channel.

    Args:
        x: (N, C, H, W) uint8 pixels in 0..255 (any strides).
        mean: Per-channel mean of the [0, 1] pixels, length C.
        std: Per-channel standard deviation of the [0, 1] pixels, length C.

    Returns:
        (N, C, H, W) contiguous float32 tensor ``(x / 255 - mean) / std``.
    """
    out = x.to(torch.float32, memory_format=torch.contiguous_format)
    shift = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    scale = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    # in place: CIFAR-10's training set is 614 MB as float32, so avoid temporaries
    return out.div_(255.0).sub_(shift).div_(scale)
