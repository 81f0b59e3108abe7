"""Dataset registry: name -> ``Dataset`` (loader, example shape, class count, sizes, file
check), described without importing torch, torchvision or a loader; ``load`` (in
``trainer.data.serve``) serves a dataset on the trial's device.

Add a dataset with one module defining ``load_<name>(hp: DataHparams) -> InMemoryData`` (CPU
tensors) and ``missing_<name>(hp) -> list[Path]``, plus one line in ``DATASETS`` naming them.
A loader module is imported on the first call of its functions, so planning a sweep, its
status and its report never load torch.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any

from trainer.hparams import DataHparams

if TYPE_CHECKING:
    from trainer.data.base import InMemoryData

# Served by ``trainer.data.serve`` (torch), imported when first used: ``trainer.data.load``.
_SERVED = ("load", "expand", "validation_split")
SMALLNORB_SIZE = 28  # smallNORB examples are (1, 28, 28) (area-downsampled from 96 x 96)


@dataclass(frozen=True)
class Dataset:
    """One entry of ``DATASETS``.

    Attributes:
        load: ``DataHparams -> InMemoryData``: reads the full dataset into CPU tensors
            (uncached; ``train_subset``/``test_subset`` are not applied).
        input_shape: (C, H, W) of one example, known without reading any file.
        num_classes: Number of classes.
        sizes: (training examples, test examples) of the full splits.
        missing_files: ``DataHparams -> list[Path]``: the files ``load`` would need that are
            not on this machine ([] when all are there, or when it may download them).
        class_sizes: (train, test) examples of each class, so a class selection's sizes are
            known without reading the files.
        downloadable: Whether ``data.download: true`` can fetch missing files (torchvision's
            loaders can; smallNORB and Tiny ImageNet must be placed by hand).
    """

    load: Callable[[DataHparams], InMemoryData]
    input_shape: tuple[int, int, int]
    num_classes: int
    sizes: tuple[int, int]
    missing_files: Callable[[DataHparams], list[Path]]
    class_sizes: tuple[tuple[int, ...], tuple[int, ...]]
    downloadable: bool = True


@dataclass(frozen=True)
class _Lazy:
    """``module.function`` of a loader module in this package, imported on the first call
    (loader modules import torch and torchvision)."""

    module: str
    function: str

    @property
    def path(self) -> str:
        """The loader module's dotted name."""
        return f"{__name__}.{self.module}"

    def __call__(self, hp: DataHparams) -> Any:
        return getattr(importlib.import_module(self.path), self.function)(hp)


def _none_missing(_: DataHparams) -> list[Path]:
    return []  # bundled with scikit-learn


def _even(train: int, test: int, classes: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    return (train,) * classes, (test,) * classes


# Keys are the names a sweep spec uses. Loader modules document files, normalization and
# augmentation: svhn (crop-only, digits are never flipped), smallnorb (first camera, area-
# downsampled to 28x28, standardized with its own training-set statistics), tiny_imagenet
# (labels in sorted-wnid order, the val images as test split).
DATASETS: dict[str, Dataset] = {
    # digits: the fixed stratified 80/20 split of trainer.data.digits (1,797 images).
    "digits": Dataset(_Lazy("digits", "load"), (1, 8, 8), 10, (1437, 360), _none_missing,
                      ((142, 146, 142, 146, 145, 145, 145, 143, 139, 144),
                       (36, 36, 35, 37, 36, 37, 36, 36, 35, 36))),
    "fashion-mnist": Dataset(_Lazy("mnist_family", "load_fashion_mnist"), (1, 28, 28), 10,
                             (60000, 10000), _Lazy("mnist_family", "missing_fashion_mnist"),
                             _even(6000, 1000, 10)),
    "mnist": Dataset(_Lazy("mnist_family", "load_mnist"), (1, 28, 28), 10, (60000, 10000),
                     _Lazy("mnist_family", "missing_mnist"),
                     ((5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949),
                      (980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009))),
    "cifar10": Dataset(_Lazy("cifar", "load_cifar10"), (3, 32, 32), 10, (50000, 10000),
                       _Lazy("cifar", "missing_cifar10"), _even(5000, 1000, 10)),
    "cifar100": Dataset(_Lazy("cifar", "load_cifar100"), (3, 32, 32), 100, (50000, 10000),
                        _Lazy("cifar", "missing_cifar100"), _even(500, 100, 100)),
    "svhn": Dataset(_Lazy("svhn", "load_svhn"), (3, 32, 32), 10, (73257, 26032),
                    _Lazy("svhn", "missing_svhn"),
                    # per digit 0-9, the widely reported counts of the two .mat files
                    ((4948, 13861, 10585, 8497, 7458, 6882, 5727, 5595, 5045, 4659),
                     (1744, 5099, 4149, 2882, 2523, 2384, 1977, 2019, 1660, 1595))),
    "smallnorb": Dataset(_Lazy("smallnorb", "load_smallnorb"),
                         (1, SMALLNORB_SIZE, SMALLNORB_SIZE), 5, (24300, 24300),
                         _Lazy("smallnorb", "missing_smallnorb"), _even(4860, 4860, 5),
                         downloadable=False),
    "tiny-imagenet": Dataset(_Lazy("tiny_imagenet", "load_tiny_imagenet"), (3, 64, 64), 200,
                             (100000, 10000), _Lazy("tiny_imagenet", "missing_tiny_imagenet"),
                             _even(500, 50, 200), downloadable=False),
}


def get(name: str) -> Dataset:
    """Return the dataset registered as ``name``.

    Args:
        name: A key of ``DATASETS``.

    Returns:
        Its ``Dataset`` entry.

    Raises:
        ValueError: ``name`` is not registered.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known: {sorted(DATASETS)}")
    return DATASETS[name]


def loader_module(name: str) -> str | None:
    """The dotted name of the module that loads dataset ``name`` (what a Ray worker may import
    ahead of its first trial), or None when its loader is not a registered module function.

    Raises:
        ValueError: ``name`` is not registered.
    """
    return getattr(get(name).load, "path", None)


def check_classes(hp: DataHparams) -> None:
    """Raise ValueError unless every class of ``hp.classes`` exists in the dataset."""
    n = get(hp.name).num_classes
    bad = [c for c in hp.classes if c >= n]
    if bad:
        raise ValueError(f"dataset {hp.label!r}: {hp.name} has classes 0-{n - 1}, not {bad}")


def check_task(hp: DataHparams) -> None:
    """``check_classes``, and a selection keeps at least two classes: what a sweep's
    dataset or transfer target may be (one class is no classification task).

    Raises:
        ValueError: naming the dataset label and the reason.
    """
    check_classes(hp)
    if len(hp.classes) == 1:
        raise ValueError(f"dataset {hp.label!r}: a class selection needs at least 2 classes")


def input_shape(hp: DataHparams) -> tuple[int, int, int]:
    """(C, H, W) of one example of ``hp`` as served: ``hp.shape`` when set, else the
    dataset's own (known without reading any file).

    Raises:
        ValueError: unknown dataset, or a ``shape`` whose channels the dataset's images cannot
            be expanded to (only one channel repeats; C must otherwise stay as it is).
    """
    own = get(hp.name).input_shape
    if not hp.shape:
        return own
    if own[0] not in (1, hp.shape[0]):
        raise ValueError(f"{hp.name} images have {own[0]} channels; they cannot be expanded "
                         f"to {hp.shape[0]} (only a single channel is repeated)")
    return (hp.shape[0], hp.shape[1], hp.shape[2])


def num_classes(hp: DataHparams) -> int:
    """Classes a model for ``hp`` predicts: the selection's size, else the dataset's."""
    check_classes(hp)
    return len(hp.classes) or get(hp.name).num_classes


def sizes(hp: DataHparams) -> tuple[int, int]:
    """(training, test) examples of ``hp``'s class selection, before subsets and validation.

    Raises:
        ValueError: unknown dataset or a class it does not have.
    """
    check_classes(hp)
    entry = get(hp.name)
    if not hp.classes:
        return entry.sizes
    train, test = entry.class_sizes
    return sum(train[c] for c in hp.classes), sum(test[c] for c in hp.classes)




def __getattr__(name: str) -> Any:
    """``trainer.data.load`` / ``expand`` / ``validation_split``: from ``trainer.data.serve``,
    imported (with torch) on first use."""
    if name in _SERVED:
        from trainer.data import serve

        return getattr(serve, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
