"""SVHN (Street View House Numbers, cropped 32x32 RGB digits) as normalized tensors.

Read once through torchvision's ``SVHN``: ``<root>/train_32x32.mat`` and ``<root>/test_32x32.mat``
(no sub-folder), loaded with ``scipy.io.loadmat``: ``X`` is (32, 32, 3, N) uint8 and ``y`` is
(N, 1) with label 10 for the digit 0, which torchvision maps to 0. torchvision 0.29 checks each
file's md5 against the release before reading it, so only the genuine files are accepted. The
``extra`` split (531,131 easier images) is not used.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torchvision.datasets import SVHN

from trainer.data._common import normalize_uint8
from trainer.data._common import resolve_root
from trainer.data.base import InMemoryData
from trainer.data.cifar import RandomFlipCrop
from trainer.hparams import DataHparams

# SVHN training-set per-channel statistics of the [0, 1] pixels (the commonly used values).
SVHN_MEAN = (0.4377, 0.4438, 0.4728)
SVHN_STD = (0.1980, 0.2010, 0.1970)

SPLITS = ("train", "test")


def load_svhn(hp: DataHparams) -> InMemoryData:
    """Load SVHN (73,257 train / 26,032 test, digits 0-9) with crop-only augmentation.

    Args:
        hp: ``root`` holds ``train_32x32.mat`` and ``test_32x32.mat`` ("" =
            ``cache_dir()/torchvision``); ``download`` lets torchvision fetch them there.

    Returns:
        CPU tensors: train_x (73257, 3, 32, 32) float32 standardized per channel
        (``SVHN_MEAN``/``SVHN_STD``), train_y (73257,) int64 with the digit as label (the
        files' 10 becomes 0), test_x (26032, 3, 32, 32), test_y (26032,), 10 classes, and
        ``augment = RandomFlipCrop(padding=4, flip=False)``: a random pad-4 crop, never a
        flip (a mirrored digit is not the same digit).

    Raises:
        FileNotFoundError: files are missing and ``download`` is False.
        RuntimeError: files are present but fail torchvision's md5 check.

    Source: Netzer et al. 2011 (http://ufldl.stanford.edu/housenumbers/); mean/std are the
        commonly used SVHN training-set statistics; the crop without flip is the usual digit
        variant of the CIFAR recipe (METHODS.md 2.1) (inferred: none of the seed papers
        trains on SVHN).
    """
    root = resolve_root(hp.root)
    if not hp.download:
        _require_files(root)
    try:
        train, test = (SVHN(str(root), split=s, download=hp.download) for s in SPLITS)
    except RuntimeError as err:
        if hp.download:
            raise  # a failed download, not a corrupt local copy
        raise RuntimeError(
            f"SVHN files in {root} failed torchvision's md5 check ({err}). Delete them and set "
            "`data: {download: true}` in the sweep spec, or point `data.root` at a directory "
            "holding intact copies of train_32x32.mat and test_32x32.mat."
        ) from err
    fill = tuple(-m / s for m, s in zip(SVHN_MEAN, SVHN_STD, strict=True))
    # torchvision's .data is (N, 3, 32, 32) uint8 (a transposed view of X), .labels (N,) int64
    return InMemoryData(
        train_x=normalize_uint8(torch.from_numpy(train.data), SVHN_MEAN, SVHN_STD),
        train_y=torch.from_numpy(train.labels).to(torch.int64).reshape(-1),
        test_x=normalize_uint8(torch.from_numpy(test.data), SVHN_MEAN, SVHN_STD),
        test_y=torch.from_numpy(test.labels).to(torch.int64).reshape(-1),
        num_classes=10,
        augment=RandomFlipCrop(fill=fill, padding=4, flip=False),
    )


def missing_svhn(hp: DataHparams) -> list[Path]:
    """The SVHN files ``load_svhn`` would read that are not there ([] if downloading)."""
    return [] if hp.download else _missing(resolve_root(hp.root))


def _missing(root: Path) -> list[Path]:
    paths = [root / SVHN.split_list[split][1] for split in SPLITS]
    return [path for path in paths if not path.is_file()]


def _require_files(root: Path) -> None:
    """Raise a FileNotFoundError listing every file torchvision would look for."""
    missing = _missing(root)
    if not missing:
        return
    raise FileNotFoundError(
        "SVHN not found: torchvision expects the cropped-digit .mat files\n"
        + "\n".join(f"  {path}" for path in missing)
        + f"\nSet `data: {{download: true}}` in the sweep spec to download them into {root} "
        + "(from http://ufldl.stanford.edu/housenumbers/), or point `data.root` at a directory "
        + "holding train_32x32.mat and test_32x32.mat."
    )
