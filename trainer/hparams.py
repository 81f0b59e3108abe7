"""Frozen hyperparameter groups shared by the planner and the trainer.

Every group is a frozen, keyword-only dataclass holding JSON scalars or tuples, so it can be
hashed into a content key (``sweeps.store.content_key``) and sent to a Ray worker as a plain dict
(``to_dict`` / ``from_dict``). Validation of user input happens earlier, in ``sweeps.spec``; the
checks here only guard programmatic construction.
"""

from __future__ import annotations

import dataclasses
import math
import re
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
        classes: Keep only these classes (sorted, distinct), relabelled 0..k-1 in that order;
            () = all. Written ``fashion-mnist[0-4]`` in a spec (``parse_dataset``), e.g. the
            source and target halves of a transfer experiment (Mehta 2019; METHODS.md 2.6).
            Subsets and the validation split apply after the class selection.
        shape: (C, H, W) every example is expanded to, () = the dataset's own: the image is
            resized bilinearly (antialiased) to H x W and a single channel repeated C times,
            as Mehta 2019 serves Fashion-MNIST and SmallNORB to a CIFAR-10 ResNet-18 (3 x 32
            x 32; METHODS.md 2.6). Applied once when the data is loaded, before training.
    """

    name: str = "digits"
    root: str = ""
    download: bool = False
    train_subset: int = 0
    test_subset: int = 0
    validation: int = 0
    classes: tuple[int, ...] = ()
    shape: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "classes", tuple(sorted({int(c) for c in self.classes})))
        object.__setattr__(self, "shape", tuple(int(n) for n in self.shape))
        if any(c < 0 for c in self.classes):
            raise ValueError(f"classes must be >= 0, got {self.classes}")
        if self.shape and (len(self.shape) != 3 or min(self.shape) < 1):
            raise ValueError(f"shape must be (C, H, W) of positive ints, got {self.shape}")

    @property
    def label(self) -> str:
        """The dataset as a spec writes it: ``fashion-mnist`` or ``fashion-mnist[0-4]``."""
        return self.name if not self.classes else f"{self.name}[{_ranges(self.classes)}]"

    @property
    def slug(self) -> str:
        """``label`` safe in file and trial names: ``fashion-mnist_c0-4``, ``digits_c0.2``."""
        return self.name if not self.classes else \
            f"{self.name}_c{_ranges(self.classes).replace(',', '.')}"


def _ranges(classes: tuple[int, ...]) -> str:
    """Sorted ints as ranges: (0, 1, 2, 5) -> ``0-2,5``."""
    parts, start = [], None
    for i, c in enumerate(classes):
        start = c if start is None else start
        if i + 1 == len(classes) or classes[i + 1] != c + 1:
            parts.append(f"{start}" if start == c else f"{start}-{c}")
            start = None
    return ",".join(parts)


_DATASET_PATTERN = re.compile(r"^([^\[\]]+?)(?:\[([0-9 ,\-]*)\])?$")


def parse_dataset(text: str) -> tuple[str, tuple[int, ...]]:
    """Split a spec's dataset entry into (registry name, classes).

    ``fashion-mnist`` -> ("fashion-mnist", ()); ``fashion-mnist[0-4]`` -> (..., (0, 1, 2, 3,
    4)); ``cifar10[0,2,5-7]`` -> (..., (0, 2, 5, 6, 7)).

    Raises:
        ValueError: malformed brackets or ranges, a descending range, a repeated class, or an
            empty selection.
    """
    match = _DATASET_PATTERN.match(text.strip())
    if match is None:
        raise ValueError(f"dataset {text!r}: expected NAME or NAME[CLASSES], e.g. "
                         "fashion-mnist[0-4] or cifar10[0,2,5-7]")
    name, spec = match.group(1).strip(), match.group(2)
    if spec is None:
        return name, ()
    classes: list[int] = []
    for part in spec.split(","):
        lo, dash, hi = part.strip().partition("-")
        try:
            first, last = int(lo), int(hi) if dash else int(lo)
        except ValueError:
            raise ValueError(f"dataset {text!r}: {part.strip()!r} is not a class index or a "
                             "range like 0-4") from None
        if last < first:
            raise ValueError(f"dataset {text!r}: range {part.strip()!r} is descending")
        classes += range(first, last + 1)
    if len(set(classes)) != len(classes):
        raise ValueError(f"dataset {text!r}: a class is selected twice")
    return name, tuple(sorted(classes))


@dataclass(frozen=True, kw_only=True)
class TrainHparams:
    """One training run: optimizer, learning rate, schedule and length.

    Attributes:
        optimizer: ``sgd`` (with momentum, optionally Nesterov-free) or ``adam``.
        lr: Initial learning rate (> 0).
        epochs: Training length in epochs (passes over the training set).
        iterations: Training length in optimizer steps instead (0 = ``epochs`` epochs); the
            last epoch is then cut short (Frankle & Carbin and Mehta give iterations).
        batch_size: Examples per step.
        momentum: SGD momentum (ignored by Adam).
        weight_decay: L2 coefficient passed to the optimizer.
        milestones: Epochs (1-based, counted from the start of this run) after which the LR is
            multiplied by ``gamma``; e.g. (80, 120) is the CIFAR schedule of Liu et al. 2021.
        gamma: LR decay factor at each milestone.
        schedule: ``step`` (the milestones) or ``cosine`` (per epoch, from ``lr`` towards 0
            over the run's epochs: lr · ½(1 + cos(π (e - 1) / E)); P1b's ImageNet schedule).
        warmup_epochs: Linear LR warmup of every training run, in epochs (applied per step:
            step i uses min(1, (i + 1) / W) of the scheduled LR; Frankle & Carbin §4 warm up
            VGG-19 and ResNet-18 for 10K / 20K iterations). A recipe's warmup replaces it.
    """

    optimizer: str = "sgd"
    lr: float = 0.1
    epochs: int = 10
    batch_size: int = 64
    momentum: float = 0.9
    weight_decay: float = 0.0
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    iterations: int = 0
    schedule: str = "step"
    warmup_epochs: float = 0.0

    def __post_init__(self) -> None:
        # lr=1 and lr=1.0 must be one config (STYLE.md 2.4).
        object.__setattr__(self, "lr", float(self.lr))
        object.__setattr__(self, "momentum", float(self.momentum))
        object.__setattr__(self, "weight_decay", float(self.weight_decay))
        object.__setattr__(self, "gamma", float(self.gamma))
        object.__setattr__(self, "milestones", tuple(int(m) for m in self.milestones))
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        object.__setattr__(self, "warmup_epochs", float(self.warmup_epochs))
        if self.epochs < 1 or self.iterations < 0 or self.warmup_epochs < 0:
            raise ValueError(f"epochs must be >= 1, iterations and warmup_epochs >= 0, got "
                             f"{self.epochs}, {self.iterations}, {self.warmup_epochs}")
        if self.schedule not in ("step", "cosine"):
            raise ValueError(f"schedule must be 'step' or 'cosine', got {self.schedule!r}")

    def steps(self, steps_per_epoch: int) -> int:
        """Optimizer steps of one training run: ``iterations``, else ``epochs`` passes."""
        return self.iterations or self.epochs * steps_per_epoch

    def run_epochs(self, steps_per_epoch: int) -> float:
        """Length of one training run in epochs (fractional with ``iterations``)."""
        return self.steps(steps_per_epoch) / steps_per_epoch


# Seconds between a stage's checkpoints (``execution.checkpoint_every_s``; ``trainer.stage``).
CHECKPOINT_EVERY_S = 30.0


def steps_per_epoch(n_train: int, batch_size: int) -> int:
    """Optimizer steps in one pass over ``n_train`` examples (the last batch may be short)."""
    return math.ceil(n_train / batch_size)


RATE_GROUPS = ("conv", "fc", "output")


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
        rates: Per-layer rates by layer group, ``(("conv", 0.1), ("output", 0.1))``: ``conv``
            (convolution weights), ``fc`` (linear weights but the output layer), ``output``
            (``model.output_layer``); layers of other groups use ``rate``. Layerwise scope
            only (Frankle & Carbin 2019, App. B and Fig. 2: Conv-2/4/6 prune convs at 10 %,
            FC at 20 %, the output at 10 % per level; LeNet's output at half the FC rate).
    """

    rate: float = 0.2
    scope: str = "layerwise"
    keep_dense: tuple[str, ...] = ("output",)
    rates: tuple[tuple[str, float], ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "rate", float(self.rate))
        object.__setattr__(self, "keep_dense", tuple(self.keep_dense))
        rates = tuple(sorted((str(g), float(r)) for g, r in dict(self.rates).items()))
        object.__setattr__(self, "rates", rates)
        if not 0.0 < self.rate < 1.0:
            raise ValueError(f"pruning rate must be in (0, 1), got {self.rate}")
        if self.scope not in ("layerwise", "global"):
            raise ValueError(f"pruning scope must be 'layerwise' or 'global', got {self.scope!r}")
        for group, rate in rates:
            if group not in RATE_GROUPS or not 0.0 < rate < 1.0:
                raise ValueError(f"pruning rates need a group in {RATE_GROUPS} and a rate in "
                                 f"(0, 1), got {group!r}: {rate}")
        if rates and self.scope != "layerwise":
            raise ValueError("per-layer pruning rates need scope 'layerwise'")

    def group_rate(self, group: str) -> float:
        """The per-level rate of layer group ``group`` (``rates``, else ``rate``)."""
        return dict(self.rates).get(group, self.rate)


ACTIVATIONS = ("relu", "swish", "mish", "pswish")


@dataclass(frozen=True, kw_only=True)
class RecipeHparams:
    """A retraining recipe: the "tweaks" applied to a stage that trains after its mask.

    Every default is a no-op, so ``RecipeHparams()`` is the plain recipe (``base``) and only
    non-default fields enter content keys. Recipes never touch the dense run or the IMP levels
    that make masks.

    Attributes:
        label_smoothing: α in [0, 1): the target puts 1 - α on the label and α / (C - 1) on
            each other class (ToST ``label-smoothening/train_ticket.py``).
        activation: ``relu`` | ``swish`` (x·σ(x)) | ``mish`` | ``pswish`` (x·σ(βx)).
        beta: β of ``pswish`` (ToST's default 2).
        distill_alpha: α in [0, 1] of knowledge distillation from the trunk's dense θT:
            loss = α·T²·KL(p_T(teacher) ‖ p_T(student)) + (1 - α)·CE; 0 = none (KD ticket,
            VITA-Group/KD-ticket: T = 5, α = 0.9).
        distill_temperature: T > 0 of the distillation softmax.
        warmup_epochs: Linear LR warmup over this many epochs (in steps: the LR of step i is
            lr·min(1, (i + 1) / W), W = warmup_epochs x steps per epoch), then the schedule.
        skip_connections: ToST's extra 1x1 "jump" convolutions in every ResNet block
            (``trainer.models.Arch``); only ResNets have them.
    Source: Jaiswal et al. 2021 (arXiv 2101.03255 v3) and the ToST / KD-ticket code;
        METHODS.md 2.5.
    """

    label_smoothing: float = 0.0
    activation: str = "relu"
    beta: float = 2.0
    distill_alpha: float = 0.0
    distill_temperature: float = 1.0
    warmup_epochs: float = 0.0
    skip_connections: bool = False

    def __post_init__(self) -> None:
        for name in ("label_smoothing", "beta", "distill_alpha", "distill_temperature",
                     "warmup_epochs"):
            object.__setattr__(self, name, float(getattr(self, name)))
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got "
                             f"{self.activation!r}")
        if not 0.0 <= self.label_smoothing < 1.0 or not 0.0 <= self.distill_alpha <= 1.0:
            raise ValueError("label_smoothing must be in [0, 1) and distill_alpha in [0, 1]")
        if self.beta <= 0 or self.distill_temperature <= 0 or self.warmup_epochs < 0:
            raise ValueError("beta and distill_temperature must be > 0, warmup_epochs >= 0")


def to_dict(group: Any) -> dict[str, Any]:
    """Return a JSON-ready dict of a hparams group (tuples become lists)."""
    out = dataclasses.asdict(group)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}


def from_dict(cls: type, values: dict[str, Any]) -> Any:
    """Rebuild a hparams group from ``to_dict`` output (lists become tuples)."""
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})
