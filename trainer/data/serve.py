"""Serving a registered dataset: load it once per process, keep the requested classes and
subsets, hold out a validation split, expand to a shape and move it to the trial's device.

Reached as ``trainer.data.load`` / ``expand`` / ``validation_split``; this module imports
torch, the registry (``trainer.data``) does not.
"""

from __future__ import annotations

import functools

import torch

from trainer import seeding
from trainer.data import check_classes
from trainer.data import get
from trainer.data import input_shape
from trainer.data.base import InMemoryData
from trainer.hparams import DataHparams


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
