"""CIFAR-10 and CIFAR-100 (32x32 RGB) as normalized tensors, plus batched flip/crop augmentation.

The arrays come from torchvision's ``CIFAR10``/``CIFAR100`` (``.data`` is (N, 32, 32, 3) uint8,
``.targets`` a list of ints), read once; no per-sample PIL transforms. torchvision 0.29 checks the
md5 of every batch file and of the meta file against its table before reading, so only the
genuine python-pickle release (``cifar-10-python.tar.gz`` / ``cifar-100-python.tar.gz``,
extracted) is accepted.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torchvision.datasets import CIFAR10
from torchvision.datasets import CIFAR100

from trainer.data._common import normalize_uint8
from trainer.data._common import resolve_root
from trainer.data.base import InMemoryData
from trainer.hparams import DataHparams

# CIFAR-10 training-set per-channel statistics. Note: open_lth's datasets/cifar10.py normalizes
# with the ImageNet values (0.485, 0.456, 0.406) / (0.229, 0.224, 0.225) instead.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
# CIFAR-100 training-set statistics, as used by DLTH (METHODS.md 2.4, "Data in code").
CIFAR100_MEAN = (0.5071, 0.4867, 0.4408)
CIFAR100_STD = (0.2675, 0.2565, 0.2761)


@dataclass(frozen=True)
class RandomFlipCrop:
    """Random horizontal flip plus random crop with zero-pixel padding, for a whole batch.

    Equivalent in distribution to torchvision's ``RandomHorizontalFlip()`` followed by
    ``RandomCrop(32, padding=4)`` applied to the raw image before ``Normalize``: the padding is
    filled with ``fill``, the normalized value of a black pixel. Per-sample flip flags and
    crop offsets are drawn on the CPU generator (so a seed gives the same batch on any device),
    moved to the batch's device, and applied with one gather: no loop over samples.

    Attributes:
        fill: Per-channel value of the padded border, length C (``-mean / std``), or length 1
            for every channel (a one-channel set expanded to C channels by ``data.shape``).
        padding: Border width in pixels; crop offsets are uniform in [0, 2 * padding].
        flip: Flip half the samples horizontally. False = crop only (digits, e.g. SVHN); the
            flip flags are still drawn, so the crop offsets of a seed do not depend on it.

    Source: open_lth ``datasets/cifar10.py``; Liu et al. 2021 (P1) §4.1; METHODS.md 2.1.
    """

    fill: tuple[float, ...]
    padding: int = 4
    flip: bool = True

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Augment a batch.

        Args:
            x: (B, C, H, W) float batch on any device.
            generator: CPU generator; draws 3 * B numbers (flip flags, row and column offsets).

        Returns:
            (B, C, H, W) augmented batch on ``x``'s device, same dtype.
        """
        b, c, h, w = x.shape
        p = self.padding
        flip = (torch.rand(b, generator=generator) < 0.5) & self.flip
        dy = torch.randint(0, 2 * p + 1, (b,), generator=generator)
        dx = torch.randint(0, 2 * p + 1, (b,), generator=generator)
        flip, dy, dx = flip.to(x.device), dy.to(x.device), dx.to(x.device)

        fill = torch.tensor(self.fill, dtype=x.dtype, device=x.device)
        # one value for every channel: a one-channel set expanded to C channels (``data.shape``)
        fill = (fill.expand(c) if fill.numel() == 1 else fill).reshape(1, c, 1, 1)
        padded = fill.expand(b, c, h + 2 * p, w + 2 * p).clone()
        padded[:, :, p : p + h, p : p + w] = x

        rows = dy[:, None] + torch.arange(h, device=x.device)  # (B, H) rows in the padded image
        cols = torch.arange(w, device=x.device).expand(b, w)  # (B, W)
        # flipping the crop == cropping the flipped image at the mirrored offset
        cols = torch.where(flip[:, None], w - 1 - cols, cols) + dx[:, None]
        index = rows[:, :, None] * (w + 2 * p) + cols[:, None, :]  # (B, H, W) flat index
        index = index.view(b, 1, h * w).expand(b, c, h * w)
        flat = padded.view(b, c, (h + 2 * p) * (w + 2 * p))  # (B, C, Hp*Wp)
        return flat.gather(2, index).view(b, c, h, w)  # (B, C, H*W) -> (B, C, H, W)


def load_cifar10(hp: DataHparams) -> InMemoryData:
    """Load CIFAR-10 (50,000 train / 10,000 test, 10 classes) with flip+crop augmentation.

    Args:
        hp: ``root`` holds ``cifar-10-batches-py/`` ("" = ``cache_dir()/torchvision``);
            ``download`` lets torchvision fetch and extract the archive there.

    Returns:
        CPU tensors: train_x (50000, 3, 32, 32) float32 standardized per channel,
        train_y (50000,) int64, test_x (10000, 3, 32, 32), test_y (10000,), and
        ``augment = RandomFlipCrop``.

    Raises:
        FileNotFoundError: files are missing and ``download`` is False.
        RuntimeError: files are present but fail torchvision's md5 check.

    Source: augmentation from open_lth ``datasets/cifar10.py``; mean/std are CIFAR-10's own
        training-set statistics (open_lth uses ImageNet's, see the constants above).
    """
    return _load(CIFAR10, hp, CIFAR10_MEAN, CIFAR10_STD, 10)


def load_cifar100(hp: DataHparams) -> InMemoryData:
    """Load CIFAR-100 (50,000 train / 10,000 test, 100 fine classes) with flip+crop augmentation.

    Args:
        hp: ``root`` holds ``cifar-100-python/`` ("" = ``cache_dir()/torchvision``);
            ``download`` lets torchvision fetch and extract the archive there.

    Returns:
        CPU tensors as for ``load_cifar10`` with 100 classes (fine labels).

    Raises:
        FileNotFoundError: files are missing and ``download`` is False.
        RuntimeError: files are present but fail torchvision's md5 check.

    Source: normalization from DLTH (``yueb17/DLTH``, METHODS.md 2.4); augmentation as CIFAR-10.
    """
    return _load(CIFAR100, hp, CIFAR100_MEAN, CIFAR100_STD, 100)


def _load(
    cls: type[CIFAR10],
    hp: DataHparams,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    num_classes: int,
) -> InMemoryData:
    """Read both splits with torchvision's ``cls`` and convert them to normalized tensors."""
    root = resolve_root(hp.root)
    if not hp.download:
        _require_files(cls, root)
    try:
        train = cls(str(root), train=True, download=hp.download)
        test = cls(str(root), train=False, download=hp.download)
    except RuntimeError as err:
        if hp.download:
            raise  # a failed download, not a corrupt local copy
        raise RuntimeError(
            f"{cls.__name__} files in {root / cls.base_folder} failed torchvision's md5 check "
            f"({err}). Delete them and set `data: {{download: true}}` in the sweep spec, "
            "or point `data.root` at an intact copy of the python-pickle release."
        ) from err
    fill = tuple(-m / s for m, s in zip(mean, std, strict=True))
    return InMemoryData(
        train_x=_to_tensor(train.data, mean, std),
        train_y=torch.as_tensor(np.asarray(train.targets), dtype=torch.int64),
        test_x=_to_tensor(test.data, mean, std),
        test_y=torch.as_tensor(np.asarray(test.targets), dtype=torch.int64),
        num_classes=num_classes,
        augment=RandomFlipCrop(fill=fill),
    )


def _to_tensor(data: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """(N, H, W, C) uint8 -> (N, C, H, W) float32, normalized per channel."""
    return normalize_uint8(torch.from_numpy(data).permute(0, 3, 1, 2), mean, std)


def missing_cifar10(hp: DataHparams) -> list[Path]:
    """The CIFAR-10 files ``load_cifar10`` would read that are not there ([] if downloading)."""
    return [] if hp.download else _missing(CIFAR10, resolve_root(hp.root))


def missing_cifar100(hp: DataHparams) -> list[Path]:
    """The CIFAR-100 files ``load_cifar100`` would read that are not there."""
    return [] if hp.download else _missing(CIFAR100, resolve_root(hp.root))


def _missing(cls: type[CIFAR10], root: Path) -> list[Path]:
    folder = root / cls.base_folder
    names = [name for name, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]]
    return [folder / name for name in names if not (folder / name).is_file()]


def _require_files(cls: type[CIFAR10], root: Path) -> None:
    """Raise a FileNotFoundError listing every file torchvision would look for."""
    missing = _missing(cls, root)
    if not missing:
        return
    raise FileNotFoundError(
        f"{cls.__name__} not found: torchvision expects the extracted python-pickle release\n"
        + "\n".join(f"  {path}" for path in missing)
        + f"\nSet `data: {{download: true}}` in the sweep spec to download {cls.filename} into "
        + f"{root}, or point `data.root` at a directory holding {cls.base_folder}/."
    )
