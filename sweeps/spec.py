"""Sweep spec: YAML -> validated, frozen ``SweepSpec``; every error before any trial starts.

Validation uses pydantic (strict types, unknown keys forbidden). Errors are collected and
raised together as one ``SpecError`` whose lines name the field path, the reason and the value,
e.g. ``lrs[1]: must be > 0 (got -0.1)``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated
from typing import Any
from typing import Literal

import pydantic
import yaml
from pydantic import BaseModel
from pydantic import ConfigDict
from pydantic import Field

from trainer import data as datasets
from trainer import methods
from trainer import models
from trainer.hparams import DataHparams
from trainer.hparams import PruneHparams
from trainer.hparams import TrainHparams

DEFAULT_METHODS = ["dense", "lth", "random_reinit", "random_pruning", "pf"]
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"


class SpecError(ValueError):
    """A sweep spec is invalid; ``problems`` lists ``(field path, reason)`` pairs."""

    def __init__(self, source: str, problems: list[tuple[str, str]]) -> None:
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  - {field}: {reason}" for field, reason in problems)
        super().__init__(f"invalid sweep spec {source}:\n{lines}")


class _Group(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class TrainingSpec(_Group):
    """``training:`` (METHODS.md §4 lists the papers' values). Epoch counts are per run."""

    optimizer: Literal["sgd", "adam"] = "sgd"
    epochs: Annotated[int, Field(gt=0)] = 10
    batch_size: Annotated[int, Field(gt=0)] = 64
    momentum: Annotated[float, Field(ge=0, lt=1)] = 0.9
    weight_decay: Annotated[float, Field(ge=0)] = 0.0
    milestones: list[Annotated[int, Field(gt=0)]] = []
    gamma: Annotated[float, Field(gt=0, le=1)] = 0.1


class PruningSpec(_Group):
    """``pruning:`` IMP rate per level, scope and layers kept dense."""

    rate: Annotated[float, Field(gt=0, lt=1)] = 0.2
    scope: Literal["layerwise", "global"] = "layerwise"
    keep_dense: list[str] = ["output"]


class ResourcesSpec(_Group):
    """``resources:`` per trial; ``gpu`` may be fractional (e.g. 0.25: four trials per GPU)."""

    cpu: Annotated[float, Field(gt=0)] = 1.0
    gpu: Annotated[float, Field(ge=0)] = 0.0


class DataSpec(_Group):
    """``data:`` where the dataset lives and whether it may be downloaded."""

    root: str = ""
    download: bool = False
    train_subset: Annotated[int, Field(ge=0)] = 0
    test_subset: Annotated[int, Field(ge=0)] = 0


class ExecutionSpec(_Group):
    """``execution:`` retries and concurrency of the Ray Tune run."""

    max_retries: Annotated[int, Field(ge=0)] = 2
    max_concurrent_trials: Annotated[int, Field(ge=0)] = 0


class SweepSpec(_Group):
    """A whole sweep: the grid (model x dataset x method x lr x sparsity x seed) and settings."""

    name: Annotated[str, Field(pattern=NAME_PATTERN, max_length=100)]
    dataset: str | list[str] = "digits"
    model: str | list[str] = "lenet_300_100"
    methods: list[str] = DEFAULT_METHODS
    lrs: list[float] = [0.1]
    sparsities: list[float] = [0.5, 0.8]
    seeds: list[Annotated[int, Field(ge=0)]] = [0]
    training: TrainingSpec = TrainingSpec()
    pruning: PruningSpec = PruningSpec()
    resources: ResourcesSpec = ResourcesSpec()
    data: DataSpec = DataSpec()
    execution: ExecutionSpec = ExecutionSpec()
    storage: str = "results"

    @property
    def datasets(self) -> list[str]:
        """The dataset axis (``dataset`` may be one name or a list)."""
        return [self.dataset] if isinstance(self.dataset, str) else list(self.dataset)

    @property
    def models(self) -> list[str]:
        """The model axis (``model`` may be one name or a list)."""
        return [self.model] if isinstance(self.model, str) else list(self.model)

    def train_hparams(self, lr: float) -> TrainHparams:
        t = self.training
        return TrainHparams(optimizer=t.optimizer, lr=lr, epochs=t.epochs,
                            batch_size=t.batch_size, momentum=t.momentum,
                            weight_decay=t.weight_decay, milestones=tuple(t.milestones),
                            gamma=t.gamma)

    def prune_hparams(self) -> PruneHparams:
        p = self.pruning
        return PruneHparams(rate=p.rate, scope=p.scope, keep_dense=tuple(p.keep_dense))

    def data_hparams(self, dataset: str) -> DataHparams:
        d = self.data
        return DataHparams(name=dataset, root=d.root, download=d.download,
                           train_subset=d.train_subset, test_subset=d.test_subset)

    def to_json(self) -> dict[str, Any]:
        """The full spec, defaults included (stored as ``spec.json`` beside the results)."""
        return json.loads(self.model_dump_json())


def _semantic_problems(spec: SweepSpec) -> list[tuple[str, str]]:
    """Checks beyond types: registry names, ranges, duplicates, empty axes."""
    problems: list[tuple[str, str]] = []
    registries = [("model", spec.models, models.MODELS), ("dataset", spec.datasets,
                  datasets.DATASETS), ("methods", spec.methods, methods.METHODS)]
    for field, values, registry in registries:
        for i, value in enumerate(values):
            if value not in registry:
                problems.append((f"{field}[{i}]" if len(values) > 1 or field == "methods"
                                 else field, f"unknown {field.rstrip('s')} {value!r}; known: "
                                 f"{sorted(registry)}"))
    for i, lr in enumerate(spec.lrs):
        if not math.isfinite(lr) or lr <= 0:
            problems.append((f"lrs[{i}]", f"must be > 0 (got {lr})"))
    for i, s in enumerate(spec.sparsities):
        if not 0.0 <= s < 1.0:
            problems.append((f"sparsities[{i}]", f"must be in [0, 1) (got {s})"))
    axes = {"model": spec.models, "dataset": spec.datasets, "methods": spec.methods,
            "lrs": spec.lrs, "seeds": spec.seeds}
    if set(spec.methods) - {"dense"}:
        axes["sparsities"] = spec.sparsities
    for field, values in axes.items():
        if not values:
            problems.append((field, "must not be empty (the grid would have no points)"))
        elif len(set(values)) != len(values):
            problems.append((field, f"has duplicate values {values}"))
    return problems


def _pydantic_problems(err: pydantic.ValidationError) -> list[tuple[str, str]]:
    out = []
    for e in err.errors():
        path = ""
        for part in e["loc"]:
            path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else part)
        reason = "unknown key" if e["type"] == "extra_forbidden" else e["msg"]
        if e["type"] != "extra_forbidden" and "input" in e and not isinstance(e["input"], dict):
            reason += f" (got {e['input']!r})"
        out.append((path or "(top level)", reason))
    return out


def parse(raw: Any, source: str = "<spec>") -> SweepSpec:
    """Validate a decoded YAML/JSON document.

    Raises:
        SpecError: listing every problem found.
    """
    if not isinstance(raw, dict):
        raise SpecError(source, [("(top level)", "must be a mapping of keys to values, got "
                                                 f"{type(raw).__name__}")])
    try:
        spec = SweepSpec.model_validate(raw)
    except pydantic.ValidationError as err:
        raise SpecError(source, _pydantic_problems(err)) from None
    problems = _semantic_problems(spec)
    if problems:
        raise SpecError(source, problems)
    return spec


def load(path: str | Path) -> SweepSpec:
    """Read and validate a YAML sweep spec file.

    Raises:
        SpecError: unreadable file, YAML syntax error, or invalid content.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as err:
        raise SpecError(str(path), [("(file)", f"cannot read: {err.strerror}")]) from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise SpecError(str(path), [("(yaml)", str(err).replace("\n", " "))]) from None
    return parse(raw, str(path))
