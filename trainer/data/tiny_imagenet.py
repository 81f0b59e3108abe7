"""Tiny ImageNet (200 ImageNet classes, 64x64 RGB JPEGs) as normalized tensors.

The Stanford CS231n release (http://cs231n.stanford.edu/tiny-imagenet-200.zip), extracted:
``<root>/tiny-imagenet-200/wnids.txt`` (the 200 WordNet ids, one a line), ``train/<wnid>/images/
*.JPEG`` (500 a class) and ``val/images/*.JPEG`` labelled by ``val/val_annotations.txt`` (tab-
separated: file name, wnid, then a bounding box; 50 a class). The official ``test/`` images have
no public labels, so the validation images serve as the test split, as is usual.

Classes are numbered in sorted wnid order (``class_wnids``), which is the order torchvision's
``ImageFolder`` gives ``train/``; ``wnids.txt`` itself is not sorted. Every image is decoded once
with PIL (a few grayscale ones are converted to RGB), about a minute for the 110,000 files; the
float32 training tensor is 4.9 GB.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from trainer.data._common import normalize_uint8
from trainer.data._common import resolve_root
from trainer.data.base import InMemoryData
from trainer.data.cifar import RandomFlipCrop
from trainer.hparams import DataHparams

FOLDER = "tiny-imagenet-200"
URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
SIZE = 64
# ImageNet per-channel statistics (the usual torchvision values).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def load_tiny_imagenet(hp: DataHparams) -> InMemoryData:
    """Load Tiny ImageNet (100,000 train / 10,000 val-as-test, 200 classes) with flip+crop.

    Training examples are ordered round robin over the classes (the k-th image of every class
    in label order, then the (k+1)-th; a class's images by file name), so the first N
    (``train_subset``) are balanced across classes. Test examples keep the order of
    ``val_annotations.txt``.

    Args:
        hp: ``root`` holds ``tiny-imagenet-200/`` ("" = ``cache_dir()/torchvision``).
            ``download`` is ignored: torchvision cannot fetch Tiny ImageNet.

    Returns:
        CPU tensors: train_x (100000, 3, 64, 64) float32 standardized with ImageNet's mean/std,
        train_y (100000,) int64 indices into ``class_wnids``, test_x (10000, 3, 64, 64),
        test_y (10000,), 200 classes, and ``augment = RandomFlipCrop(padding=4)``.

    Raises:
        FileNotFoundError: the folder or one of its parts is missing (the message says where
            to get the archive), or a class has no training image.
        ValueError: ``val_annotations.txt`` names an unknown wnid, or an image is not 64x64.

    Source: Le & Yang 2015, CS231n Tiny ImageNet; the ImageNet mean/std are torchvision's.
        The pad-4 crop + flip is the CIFAR recipe (open_lth; P1b's code, METHODS.md 2.3)
        carried over to 64x64 (inferred: P1b's and P3's Tiny ImageNet augmentation is not
        stated in the sources read).
    """
    folder = resolve_root(hp.root) / FOLDER
    _require_files(folder)
    wnids = class_wnids(folder)
    per_class = []
    for wnid in wnids:
        images = sorted((folder / "train" / wnid / "images").glob("*.JPEG"))
        if not images:
            raise FileNotFoundError(f"Tiny ImageNet: no training image (*.JPEG) in "
                                    f"{folder / 'train' / wnid / 'images'}")
        per_class.append(images)
    train = [(images[k], label) for k in range(max(map(len, per_class)))
             for label, images in enumerate(per_class) if k < len(images)]
    test = _val_examples(folder, {wnid: label for label, wnid in enumerate(wnids)})
    fill = tuple(-m / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD, strict=True))
    return InMemoryData(
        train_x=normalize_uint8(_read_images([p for p, _ in train]), IMAGENET_MEAN, IMAGENET_STD),
        train_y=torch.tensor([y for _, y in train], dtype=torch.int64),
        test_x=normalize_uint8(_read_images([p for p, _ in test]), IMAGENET_MEAN, IMAGENET_STD),
        test_y=torch.tensor([y for _, y in test], dtype=torch.int64),
        num_classes=len(wnids),
        augment=RandomFlipCrop(fill=fill, padding=4),
    )


def class_wnids(folder: Path) -> list[str]:
    """The WordNet ids of ``folder/wnids.txt``, sorted: label i is ``class_wnids(folder)[i]``."""
    return sorted({line.strip() for line in (folder / "wnids.txt").read_text().splitlines()
                   if line.strip()})


def missing_tiny_imagenet(hp: DataHparams) -> list[Path]:
    """The parts of ``tiny-imagenet-200/`` ``load_tiny_imagenet`` needs that are not there:
    files and folders, one ``train/<wnid>/images`` per class once ``wnids.txt`` exists.
    ``download`` does not help: torchvision has no loader for it."""
    return _missing(resolve_root(hp.root) / FOLDER)


def _missing(folder: Path) -> list[Path]:
    files = [folder / "wnids.txt", folder / "val" / "val_annotations.txt"]
    dirs = [folder / "val" / "images"]
    if files[0].is_file():
        dirs += [folder / "train" / wnid / "images" for wnid in class_wnids(folder)]
    else:
        dirs.append(folder / "train")
    return [p for p in files if not p.is_file()] + [p for p in dirs if not p.is_dir()]


def _val_examples(folder: Path, labels: dict[str, int]) -> list[tuple[Path, int]]:
    """(image path, label) of every line of ``val/val_annotations.txt``, in file order."""
    annotations = folder / "val" / "val_annotations.txt"
    examples = []
    for number, line in enumerate(annotations.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        name, wnid = line.split("\t")[:2]
        if wnid not in labels:
            raise ValueError(f"{annotations}:{number}: wnid {wnid!r} is not in wnids.txt")
        examples.append((folder / "val" / "images" / name, labels[wnid]))
    return examples


def _read_images(paths: list[Path]) -> torch.Tensor:
    """Decode JPEGs into one (N, 3, SIZE, SIZE) uint8 tensor (a channels-last view)."""
    out = np.empty((len(paths), SIZE, SIZE, 3), dtype=np.uint8)
    for i, path in enumerate(paths):
        with Image.open(path) as image:
            if image.size != (SIZE, SIZE):
                raise ValueError(f"{path}: Tiny ImageNet images are {SIZE}x{SIZE}, "
                                 f"got {image.size[0]}x{image.size[1]}")
            out[i] = np.asarray(image.convert("RGB"))
    return torch.from_numpy(out).permute(0, 3, 1, 2)  # (N, H, W, C) -> (N, C, H, W)


def _require_files(folder: Path) -> None:
    """Raise a FileNotFoundError listing the missing parts and where to get the archive."""
    missing = _missing(folder)
    if not missing:
        return
    shown = missing[:10] + ([] if len(missing) <= 10 else [f"... {len(missing) - 10} more"])
    raise FileNotFoundError(
        f"Tiny ImageNet not found in {folder}: missing\n"
        + "\n".join(f"  {path}" for path in shown)
        + "\nThere is no automatic download (`data.download` does not apply). Download "
        + f"{URL} and unzip it into {folder.parent}, or point `data.root` at a directory "
        + f"holding {FOLDER}/."
    )
