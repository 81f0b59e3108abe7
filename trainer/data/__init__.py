"""Dataset registry: name -> ``Dataset`` (loader, example shape, class count, file check), and
``load`` for the trial's device.

Add a dataset with one module defining ``load_<name>(hp: DataHparams) -> InMemoryData`` (CPU
tensors) and ``missing_<name>(hp) -> list[Path]``, plus one line in ``DATASETS``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from trainer import seeding
from trainer.data import cifar
from trainer.data import digits
from trainer.data import mnist_family
from trainer.data import smallnorb
from trainer.data import svhn
from trainer.data import tiny_imagenet
from trainer.data.base import InMemoryData
from trainer.hparams import DataHparams


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


def _none_missing(_: DataHparams) -> list[Path]:
    return []  # bundled with scikit-learn


def _even(train: int, test: int, classes: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    return (train,) * classes, (test,) * classes


# Keys are the names a sweep spec uses. Loader modules document files, normalization and
# augmentation: svhn (crop-only, digits are never flipped), smallnorb (first camera, area-
# downsampled to 28x28, standardized with its own training-set statistics), tiny_imagenet
# (labels in sorted-wnid order, the val images as test split).
DATASETS: dict[str, Dataset] = {
    "digits": Dataset(digits.load, (1, 8, 8), 10, (digits.NUM_TRAIN, digits.NUM_TEST),
                      _none_missing, digits.CLASS_SIZES),
    "fashion-mnist": Dataset(mnist_family.load_fashion_mnist, (1, 28, 28), 10, (60000, 10000),
                             mnist_family.missing_fashion_mnist, _even(6000, 1000, 10)),
    "mnist": Dataset(mnist_family.load_mnist, (1, 28, 28), 10, (60000, 10000),
                     mnist_family.missing_mnist, mnist_family.MNIST_CLASS_SIZES),
    "cifar10": Dataset(cifar.load_cifar10, (3, 32, 32), 10, (50000, 10000),
                       cifar.missing_cifar10, _even(5000, 1000, 10)),
    "cifar100": Dataset(cifar.load_cifar100, (3, 32, 32), 100, (50000, 10000),
                        cifar.missing_cifar100, _even(500, 100, 100)),
    "svhn": Dataset(svhn.load_svhn, (3, 32, 32), 10, (73257, 26032), svhn.missing_svhn,
                    svhn.SVHN_CLASS_SIZES),
    "smallnorb": Dataset(smallnorb.load_smallnorb, (1, smallnorb.SIZE, smallnorb.SIZE), 5,
                         (24300, 24300), smallnorb.missing_smallnorb, _even(4860, 4860, 5),
                         downloadable=False),
    "tiny-imagenet": Dataset(tiny_imagenet.load_tiny_imagenet, (3, 64, 64), 200,
                             (100000, 10000), tiny_imagenet.missing_tiny_imagenet,
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


def check_classes(hp: DataHparams) -> None:
    """Raise ValueError unless every class of ``hp.classes`` exists in the dataset."""
    n = get(hp.name).num_classes
    bad = [c for c in hp.classes if c >= n]
    if bad:
        raise ValueError(f"dataset {hp.label!r}: {hp.name} has classes 0-{n - 1}, not {bad}")


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


def expand(x: torch.Tensor, shape: tuple[int, int, int]) -> torch.Tensor:
    """Examples ``x`` (N, C, H, W) resized bilinearly (antialiased when shrinking) to the
    ``shape``'s H x W, a single channel repeated to its C: (N, C', H', W').

    Source: Mehta 2019 (arXiv 1905.07785) code: Fashion-MNIST "expanded to 3 channels,
    32 x 32" for a CIFAR-10 ResNet-18 (METHODS.md 2.6; the resize method is inferred).
    """
    c, h, w = shape
    if tuple(x.shape[2:]) != (h, w):
        x = torch.nn.functional.interpolate(x, size=(h, w), mode="bilinear",
                                            align_corners=False, antialias=True)
    return x.expand(-1, c, -1, -1).contiguous() if x.shape[1] != c else x


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


def load(hp: DataHparams, device: torch.device | str = "cpu") -> InMemoryData:
    """Load a dataset, keep the requested subsets and move every tensor to ``device``.

    The full CPU copy is cached per (name, root, download) for the life of the process, since
    Ray reuses worker processes across trials. Each call returns a new ``InMemoryData``; on the
    CPU its tensors are views of the cached ones, so callers must not modify them in place.

    Args:
        hp: Which dataset; ``classes`` keeps those classes (relabelled 0..k-1 in sorted
            order), then ``train_subset``/``test_subset`` keep the first N examples (0 = all).
        device: Where the returned tensors live, e.g. ``"cuda:0"``.

    Returns:
        The dataset with train_x (N, C, H, W) float32, train_y (N,) int64, test_x, test_y on
        ``device`` (and val_x, val_y when ``hp.validation`` holds examples out of the
        training set, see ``validation_split``); ``augment`` is the loader's (it runs on
        whatever device the batch is on).

    Raises:
        ValueError: unknown name or class, a subset that is negative or larger than the
            split, a validation split that leaves no training example, or a ``shape`` the
            images cannot be expanded to (``input_shape``).
        FileNotFoundError: the dataset's files are missing and ``hp.download`` is False.
    """
    check_classes(hp)  # unknown names, classes and shapes fail before touching the cache
    shape = input_shape(hp)
    full = _select(_load_cpu(hp.name, hp.root, hp.download), hp.classes)
    train_n = _subset_size(hp.train_subset, len(full.train_y), "train_subset", hp.name)
    test_n = _subset_size(hp.test_subset, len(full.test_y), "test_subset", hp.name)
    train_idx, val_idx = validation_split(train_n, hp.validation)

    def served(x: torch.Tensor) -> torch.Tensor:  # the kept examples, expanded, on the device
        return (expand(x, shape) if hp.shape else x).to(device)

    val = {} if val_idx is None else {"val_x": served(full.train_x[val_idx]),
                                       "val_y": full.train_y[val_idx].to(device)}
    return InMemoryData(
        train_x=served(full.train_x[:train_n] if train_idx is None else full.train_x[train_idx]),
        train_y=(full.train_y[:train_n] if train_idx is None else full.train_y[train_idx])
        .to(device),
        test_x=served(full.test_x[:test_n]),
        test_y=full.test_y[:test_n].to(device),
        num_classes=full.num_classes,
        augment=full.augment,
        **val,
    )


def _select(full: InMemoryData, classes: tuple[int, ...]) -> InMemoryData:
    """The examples of ``classes`` (in their order), labels mapped to 0..k-1; all if ()."""
    if not classes:
        return full
    lookup = torch.full((full.num_classes,), -1, dtype=torch.int64)
    lookup[list(classes)] = torch.arange(len(classes))

    def keep(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.isin(y, torch.tensor(classes)).nonzero().flatten()  # (n,) in file order
        return x[idx], lookup[y[idx]]

    (train_x, train_y), (test_x, test_y) = keep(full.train_x, full.train_y), \
        keep(full.test_x, full.test_y)
    return InMemoryData(train_x=train_x, train_y=train_y, test_x=test_x, test_y=test_y,
                        num_classes=len(classes), augment=full.augment)


def validation_split(n: int, validation: int) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Indices (train, validation) of a split of the first ``n`` training examples.

    A permutation from the generator seeded by (0, "validation_split") picks ``validation``
    examples; both index sets are returned sorted, so training keeps the loader's order (the
    data order of every epoch is drawn later, per replicate). The split depends only on ``n``
    and ``validation``: every replicate and method of a sweep holds out the same examples.

    Returns:
        (None, None) when ``validation`` is 0 (nothing is reindexed), else two sorted int64
        index tensors of lengths ``n - validation`` and ``validation``.
    Raises:
        ValueError: ``validation`` is negative or leaves no training example.
    Source: Frankle & Carbin 2019, App. C (5,000 examples held out; METHODS.md §3).
    """
    if validation == 0:
        return None, None
    if not 0 < validation < n:
        raise ValueError(f"data.validation must be in [0, {n - 1}] (training examples left: "
                         f"{n}), got {validation}")
    perm = torch.randperm(n, generator=seeding.generator(0, "validation_split"))
    return perm[validation:].sort().values, perm[:validation].sort().values


# Two entries: a worker rarely switches datasets, and CIFAR is ~740 MB of float32 per copy.
@functools.lru_cache(maxsize=2)
def _load_cpu(name: str, root: str, download: bool) -> InMemoryData:
    return get(name).load(DataHparams(name=name, root=root, download=download))


def _subset_size(requested: int, available: int, field: str, name: str) -> int:
    if requested < 0 or requested > available:
        raise ValueError(
            f"data.{field} must be in [0, {available}] for {name!r} (0 = all), got {requested}"
        )
    return requested or available
