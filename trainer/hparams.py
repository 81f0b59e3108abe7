"""Frozen hyperparameter groups shared by the planner and the trainer.

Every group is a frozen, keyword-only dataclass holding JSON scalars or tuples, so it can be
hashed into a content key (``sweeps.store.content_key``) and sent to a Ray worker as a plain dict
(``to_dict`` / ``from_dict``). Validation of user input happens earlier, in ``sweeps.spec``; the
checks here only guard programmatic construction.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


def _as_float_tuple(values: Any) -> tuple[float, ...]:
    return tuple(float(v) for v in values)


@dataclass(frozen=True, kw_only=True)
class DataHparams:
    """Which dataset to serve and how.

    Attributes:
        name: Registry key in ``trainer.data.DATASETS`` (e.g. ``digits``, ``fashion-mnist``).
        root: Directory holding the dataset files; ``""`` means the loader's default location.
        download: Allow torchvision to download a missing dataset (never done in tests).
        train_subset: Keep only the first N training examples (0 = all). For smoke runs.
        test_subset: Keep only the first N test examples (0 = all).
        validation: Examples held out of the (subset) training set as a validation split
            (0 = none; Frankle & Carbin 2019 hold out 5,000). The same examples for every
            replicate and method: a permutation seeded by (0, "validation_split") picks them.
    """

    name: str = "digits"
    root: str = ""
    download: bool = False
    train_subset: int = 0
    test_subset: int = 0
    validation: int = 0


@dataclass(frozen=True, kw_only=True)
class TrainHparams:
    """One training run: optimizer, learning rate, schedule and length.

    Attributes:
        optimizer: ``sgd`` (with momentum, optionally Nesterov-free) or ``adam``.
        lr: Initial learning rate (> 0).
        epochs: Training length in epochs (passes over the training set).
        batch_size: Examples per step.
        momentum: SGD momentum (ignored by Adam).
        weight_decay: L2 coefficient passed to the optimizer.
        milestones: Epochs (1-based, counted from the start of this run) after which the LR is
            multiplied by ``gamma``; e.g. (80, 120) is the CIFAR schedule of Liu et al. 2021.
        gamma: LR decay factor at each milestone.
    """

    optimizer: str = "sgd"
    lr: float = 0.1
    epochs: int = 10
    batch_size: int = 64
    momentum: float = 0.9
    weight_decay: float = 0.0
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1

    def __post_init__(self) -> None:
        # lr=1 and lr=1.0 must be one config (STYLE.md 2.4).
        object.__setattr__(self, "lr", float(self.lr))
        object.__setattr__(self, "momentum", float(self.momentum))
        object.__setattr__(self, "weight_decay", float(self.weight_decay))
        object.__setattr__(self, "gamma", float(self.gamma))
        object.__setattr__(self, "milestones", tuple(int(m) for m in self.milestones))
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")


@dataclass(frozen=True, kw_only=True)
class PruneHparams:
    """How IMP masks are made (Frankle & Carbin 2019, §1 and App. B; METHODS.md 2.1).

    Attributes:
        rate: Fraction of the *remaining* prunable weights removed per IMP level, so the
            sparsity after L levels is ``1 - (1 - rate) ** L``.
        scope: ``layerwise`` (each layer pruned to the same sparsity, F&C's LeNet rule) or
            ``global`` (one magnitude threshold over all pruned layers, open_lth's rule).
        keep_dense: Layers never pruned: ``output`` (the classifier weight), ``first`` (the
            first layer's weight) or exact parameter names such as ``fc2.weight``.
    """

    rate: float = 0.2
    scope: str = "layerwise"
    keep_dense: tuple[str, ...] = ("output",)

    def __post_init__(self) -> None:
        object.__setattr__(self, "rate", float(self.rate))
        object.__setattr__(self, "keep_dense", tuple(self.keep_dense))
        if not 0.0 < self.rate < 1.0:
            raise ValueError(f"pruning rate must be in (0, 1), got {self.rate}")
        if self.scope not in ("layerwise", "global"):
            raise ValueError(f"pruning scope must be 'layerwise' or 'global', got {self.scope!r}")


def to_dict(group: Any) -> dict[str, Any]:
    """Return a JSON-ready dict of a hparams group (tuples become lists)."""
    out = dataclasses.asdict(group)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}


def from_dict(cls: type, values: dict[str, Any]) -> Any:
    """Rebuild a hparams group from ``to_dict`` output (lists become tuples)."""
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})
