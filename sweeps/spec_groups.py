"""The groups of a sweep spec (``training:``, ``pruning:``, ``recipes:`` entries, ...), each a
strict pydantic model with its defaults; ``sweeps.spec.SweepSpec`` holds them.
"""

from __future__ import annotations

import os
from typing import Annotated
from typing import Any
from typing import Literal

from pydantic import BaseModel
from pydantic import ConfigDict
from pydantic import Field
from pydantic import ValidationError
from pydantic import field_validator
from pydantic import model_validator

from trainer import data as datasets
from trainer.hparams import CHECKPOINT_EVERY_S
from trainer.hparams import DataHparams
from trainer.hparams import RecipeHparams
from trainer.hparams import parse_dataset

BASE_RECIPE = "base"
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"


def raise_all(*problems: list[str]) -> None:
    """Raise every problem a cross-field check found at once, one ``field: reason`` a line
    (``sweeps.spec._pydantic_problems`` splits them again).

    Raises:
        ValueError: when any list is non-empty.
    """
    lines = [line for group in problems for line in group]
    if lines:
        raise ValueError("\n".join(lines))


class Group(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)


class TrainingSpec(Group):
    """``training:`` (METHODS.md §4 lists the papers' values). Epoch counts are per run."""

    optimizer: Literal["sgd", "adam"] = "sgd"
    epochs: Annotated[int, Field(gt=0)] = 10
    batch_size: Annotated[int, Field(gt=0)] = 64
    momentum: Annotated[float, Field(ge=0, lt=1)] = 0.9
    weight_decay: Annotated[float, Field(ge=0)] = 0.0
    milestones: list[Annotated[int, Field(gt=0)]] = []
    gamma: Annotated[float, Field(gt=0, le=1)] = 0.1
    iterations: Annotated[int, Field(ge=0)] = 0
    schedule: Literal["step", "cosine"] = "step"
    warmup_epochs: Annotated[float, Field(ge=0)] = 0.0

    @model_validator(mode="after")
    def _one_length(self) -> TrainingSpec:
        raise_all([".iterations: give the length as epochs or as iterations, not both"]
                  if self.iterations and "epochs" in self.model_fields_set else [],
                  [".milestones: only used with schedule: step"]
                  if self.milestones and self.schedule != "step" else [])
        return self


class RewindSpec(Group):
    """``pruning.rewind:`` θk of ``lth_rewind``: ``{epochs: e}`` or ``{iterations: k}``."""

    epochs: Annotated[int, Field(ge=0)] | None = None
    iterations: Annotated[int, Field(ge=0)] | None = None

    @model_validator(mode="after")
    def _one(self) -> RewindSpec:
        if (self.epochs is None) == (self.iterations is None):
            raise ValueError(".epochs: give exactly one of epochs or iterations")
        return self


class PruningSpec(Group):
    """``pruning:`` IMP rate per level (``rates``: per layer group, as Frankle & Carbin's
    ``{conv: 0.1, fc: 0.2, output: 0.1}``), scope, layers kept dense, and lth_rewind's θk."""

    rate: Annotated[float, Field(gt=0, lt=1)] = 0.2
    scope: Literal["layerwise", "global"] = "layerwise"
    keep_dense: list[str] = ["output"]
    rewind: RewindSpec = RewindSpec(epochs=1)
    rates: dict[Literal["conv", "fc", "output"], Annotated[float, Field(gt=0, lt=1)]] = {}

    @model_validator(mode="after")
    def _rates(self) -> PruningSpec:
        raise_all([".rates: per-layer rates need scope: layerwise (Frankle & Carbin's "
                   "Conv-2/4/6 rule)"] if self.rates and self.scope != "layerwise" else [],
                  [".rates.output: the output layer is in keep_dense; remove 'output' from "
                   "pruning.keep_dense to prune it at this rate"]
                  if "output" in self.rates and "output" in self.keep_dense else [])
        return self


class TransferSpec(Group):
    """``transfer:`` the arms of method ``transfer`` (``trainer.methods.transfer``): every
    (target, init, regime) combination, for every dataset of the grid but the target."""

    targets: list[str] = []
    inits: list[Literal["late_reset", "init", "reinit"]] = ["late_reset", "init", "reinit"]
    regimes: list[Literal["finetune", "freeze"]] = ["finetune", "freeze"]

    @field_validator("targets", mode="after")
    @classmethod
    def _targets(cls, value: list[str]) -> list[str]:
        for i, target in enumerate(value):
            try:
                hp = data_hparams(target)
                datasets.check_task(hp)
            except ValueError as err:
                raise ValueError(f"transfer.targets[{i}] {err}") from None
        return value

    @field_validator("targets", "inits", "regimes", mode="after")
    @classmethod
    def _distinct(cls, value: list[str], info: Any) -> list[str]:
        same = [data_hparams(v).label for v in value] if info.field_name == "targets" else value
        if len(set(same)) != len(same):
            raise ValueError(f"has duplicate values {value}")
        return value


class RSTIterSpec(Group):
    """``rst.iterative:`` what ``rst_iter`` uses instead of the ``rst:`` group's values (None:
    the group's). DLTH's README runs RST_Iter with ``--update_reg_interval 1
    --stabilize_reg_interval 10000`` (20,000 iterations per cycle), one-shot RST with the
    code's defaults (about 90,000); METHODS.md 2.4 item 5."""

    reg_interval: Annotated[int, Field(gt=0)] | None = None
    stabilize_iterations: Annotated[int, Field(ge=0)] | None = None


class RSTSpec(Group):
    """``rst:`` the transformation of ``rst``/``rst_iter`` (``trainer.methods.rst``; METHODS.md
    2.4). Defaults are DLTH's code's: about 90,000 iterations at batch 64 per cycle;
    ``iterative`` overrides some of them for ``rst_iter`` only."""

    lr: Annotated[float, Field(gt=0)] = 0.001
    batch_size: Annotated[int, Field(gt=0)] = 64
    momentum: Annotated[float, Field(ge=0, lt=1)] = 0.9
    weight_decay: Annotated[float, Field(ge=0)] = 5e-4
    reg_step: Annotated[float, Field(gt=0)] = 1e-4
    reg_interval: Annotated[int, Field(gt=0)] = 5
    reg_ceiling: Annotated[float, Field(gt=0)] = 1.0
    stabilize_iterations: Annotated[int, Field(ge=0)] = 40000
    schedule: Literal["x", "x^2", "x^3"] = "x"
    cycles: Annotated[int, Field(gt=0)] = 5
    budget: Literal["paper", "match_lth"] = "paper"
    iterative: RSTIterSpec = RSTIterSpec()


class DistillSpec(Group):
    """``distill:`` of a recipe: knowledge distillation from the trunk's dense θT (KD ticket)."""

    temperature: Annotated[float, Field(gt=0)] = 5.0
    alpha: Annotated[float, Field(gt=0, le=1)] = 0.9  # 0 would be no distillation


class RecipeSpec(Group):
    """One entry of ``recipes:`` (``trainer.hparams.RecipeHparams``; METHODS.md 2.5)."""

    label_smoothing: Annotated[float, Field(ge=0, lt=1)] = 0.0
    activation: Literal["relu", "swish", "mish", "pswish"] = "relu"
    beta: Annotated[float, Field(gt=0)] = 2.0
    distill: DistillSpec | None = None
    warmup_epochs: Annotated[float, Field(ge=0)] = 0.0
    skip_connections: bool = False

    @model_validator(mode="after")
    def _beta_needs_pswish(self) -> RecipeSpec:
        if self.beta != 2.0 and self.activation != "pswish":
            raise ValueError(".beta: only used with activation: pswish")
        return self

    def hparams(self) -> RecipeHparams:
        d = self.distill
        return RecipeHparams(label_smoothing=self.label_smoothing, activation=self.activation,
                             beta=self.beta, distill_alpha=d.alpha if d else 0.0,
                             distill_temperature=d.temperature if d else 1.0,
                             warmup_epochs=self.warmup_epochs,
                             skip_connections=self.skip_connections)


class ResourcesSpec(Group):
    """``resources:`` per trial; ``gpu`` may be fractional (e.g. 0.25: four trials per GPU)."""

    cpu: Annotated[float, Field(gt=0)] = 1.0
    gpu: Annotated[float, Field(ge=0)] = 0.0


class DataSpec(Group):
    """``data:`` where the dataset lives, whether it may be downloaded, subsets, the validation
    split and the example shape (``DataHparams``)."""

    root: str = ""
    download: bool = False
    train_subset: Annotated[int, Field(ge=0)] = 0
    test_subset: Annotated[int, Field(ge=0)] = 0
    validation: Annotated[int, Field(ge=0)] = 0
    shape: list[Annotated[int, Field(gt=0)]] = []

    @field_validator("root", mode="after")
    @classmethod
    def _absolute(cls, value: str) -> str:
        """A relative root (or ``~``) is taken from the driver's current directory, as a local
        ``storage`` is: the trials run in Tune's trial directories (RAY_FACTS §1)."""
        return os.path.abspath(os.path.expanduser(value)) if value else value

    @field_validator("shape", mode="after")
    @classmethod
    def _shape(cls, value: list[int]) -> list[int]:
        if value and len(value) != 3:
            raise ValueError(f"must be [C, H, W] (every example is expanded to it), got {value}")
        return value


class RangeSpec(Group):
    """A searched value: ``{low, high, log}`` (uniform, or log-uniform when ``log``)."""

    low: float
    high: float
    log: bool = False

    @model_validator(mode="after")
    def _order(self) -> RangeSpec:
        if not self.low < self.high:
            raise ValueError(f".low must be below .high, got {self.low} and {self.high}")
        if self.log and self.low <= 0:
            raise ValueError(f".low must be > 0 on a log scale, got {self.low}")
        return self


# Training fields a search may pick besides lr; the int ones are sampled as integers.
SEARCH_FLOATS = ("momentum", "weight_decay", "gamma", "warmup_epochs")
SEARCH_INTS = ("epochs", "batch_size")


def _training_range(name: str, r: RangeSpec) -> list[str]:
    """The problem of a searched training field whose bounds ``training.<name>`` refuses
    (momentum must stay below 1, gamma above 0, ...), or nothing."""
    for value in (r.low, r.high):
        try:
            TrainingSpec(**{name: int(value) if name in SEARCH_INTS else float(value)})
        except ValidationError as err:
            reason = err.errors()[0]["msg"]
            return [f".{name}: must stay a valid training.{name} ({reason}), got {r.low} to "
                    f"{r.high}"]
    return []


class SearchSpec(Group):
    """``search:`` an Optuna TPE search (through Ray Tune's ``OptunaSearch``) instead of the
    ``lrs`` grid: per (model, dataset, method, sparsity, seed) cell, ``trials`` configurations
    of ``lr`` (and any of ``SEARCH_FLOATS`` / ``SEARCH_INTS`` given as a range), maximizing
    ``val_acc`` or minimizing ``val_loss`` on the validation split (never the test set).
    ``name`` marks its rows (the ``search`` column). ``sweeps.search`` runs it."""

    kind: Literal["optuna"]
    name: Annotated[str, Field(pattern=NAME_PATTERN, max_length=60)] = "optuna"
    trials: Annotated[int, Field(gt=0)]
    metric: Literal["val_acc", "val_loss"] = "val_acc"
    lr: RangeSpec
    momentum: RangeSpec | None = None
    weight_decay: RangeSpec | None = None
    gamma: RangeSpec | None = None
    warmup_epochs: RangeSpec | None = None
    epochs: RangeSpec | None = None
    batch_size: RangeSpec | None = None

    @model_validator(mode="after")
    def _bounds(self) -> SearchSpec:
        ints = {n: r for n in SEARCH_INTS if (r := getattr(self, n)) is not None}
        bad_ints = [n for n, r in ints.items()
                    if r.low != int(r.low) or r.high != int(r.high) or r.low < 1]
        raise_all([f".{n}: an integer field needs integer bounds >= 1, got {ints[n].low} and "
                   f"{ints[n].high}" for n in bad_ints],
                  [f".lr: must stay > 0, got {self.lr.low} to {self.lr.high}"]
                  if self.lr.low <= 0 else [],
                  [problem for n in (*SEARCH_FLOATS, *SEARCH_INTS)
                   if (r := getattr(self, n)) is not None and n not in bad_ints
                   for problem in _training_range(n, r)])
        return self

    @property
    def mode(self) -> str:
        """``max`` for accuracy, ``min`` for loss."""
        return "max" if self.metric.endswith("acc") else "min"

    def space(self) -> dict[str, RangeSpec]:
        """The searched fields: ``lr`` first, then the training fields given."""
        out = {"lr": self.lr}
        for name in (*SEARCH_FLOATS, *SEARCH_INTS):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        return out


class ExecutionSpec(Group):
    """``execution:`` retries and concurrency of the Ray Tune run, how often a stage writes a
    checkpoint (seconds, ``trainer.stage``; 0 = after every epoch), and whether ``lottery
    run`` compacts the sweep's loose parts in its tail and when it ends (``sweeps.tail``,
    ``sweeps.compact``)."""

    max_retries: Annotated[int, Field(ge=0)] = 2
    max_concurrent_trials: Annotated[int, Field(ge=0)] = 0
    checkpoint_every_s: Annotated[float, Field(ge=0)] = CHECKPOINT_EVERY_S
    compact: bool = True


def data_hparams(dataset: str, d: DataSpec | None = None) -> DataHparams:
    """The data of one dataset entry (``fashion-mnist[0-4]`` selects classes) with the
    ``data:`` settings ``d`` (defaults when None).

    Raises:
        ValueError: a malformed class selection.
    """
    name, classes = parse_dataset(dataset)
    d = d or DataSpec()
    return DataHparams(name=name, root=d.root, download=d.download,
                       train_subset=d.train_subset, test_subset=d.test_subset,
                       validation=d.validation, classes=classes, shape=tuple(d.shape))
