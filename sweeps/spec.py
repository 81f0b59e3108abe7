"""Sweep spec: YAML -> validated, frozen ``SweepSpec``; every error before any trial starts.

Validation uses pydantic (strict types, unknown keys forbidden, no inf/nan anywhere). Errors are
collected and raised together as one ``SpecError`` whose lines name the field path, the reason
and the value, e.g. ``lrs[1]: must be > 0 (got -0.1)``.

YAML is read with ruamel.yaml's safe loader (YAML 1.2, so ``1e-3`` is a number; no Python
tags). Duplicate keys are errors, reported with their field paths, never resolved silently.
What needs the models and the data (layers, shapes, files) is checked by ``sweeps.preflight``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated
from typing import Any
from typing import Literal

import pydantic
from pydantic import BaseModel
from pydantic import ConfigDict
from pydantic import Field
from pydantic import field_validator
from pydantic import model_validator
from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError
from ruamel.yaml.error import YAMLError
from ruamel.yaml.nodes import MappingNode
from ruamel.yaml.nodes import Node
from ruamel.yaml.nodes import SequenceNode

from sweeps.errors import SpecError
from trainer import data as datasets
from trainer import methods
from trainer import models
from trainer.hparams import DataHparams
from trainer.hparams import PruneHparams
from trainer.hparams import TrainHparams
from trainer.methods.rst import RSTHparams

__all__ = ["SpecError", "SweepSpec", "load", "parse"]

DEFAULT_METHODS = ["dense", "lth", "random_reinit", "random_pruning", "pf"]
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"


class _Group(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)


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


class RSTSpec(_Group):
    """``rst:`` the transformation of ``rst``/``rst_iter`` (``trainer.methods.rst``; METHODS.md
    2.4). Defaults are DLTH's code's: about 90,000 iterations at batch 64 per cycle."""

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
    validation: Annotated[int, Field(ge=0)] = 0


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
    rst: RSTSpec = RSTSpec()
    resources: ResourcesSpec = ResourcesSpec()
    data: DataSpec = DataSpec()
    execution: ExecutionSpec = ExecutionSpec()
    storage: str = "results"

    @field_validator("model", "dataset", "methods", mode="after")
    @classmethod
    def _registered(cls, value: str | list[str], info: Any) -> str | list[str]:
        registry = {"model": models.MODELS, "dataset": datasets.DATASETS,
                    "methods": methods.METHODS}[info.field_name]
        what = info.field_name.rstrip("s")
        names = [(info.field_name, value)] if isinstance(value, str) else [
            (f"{info.field_name}[{i}]", v) for i, v in enumerate(value)]
        for where, name in names:
            if name not in registry:
                prefix = "" if isinstance(value, str) else f"{where} "
                raise ValueError(f"{prefix}unknown {what} {name!r}; known: {sorted(registry)}")
        return value

    @field_validator("lrs", mode="after")
    @classmethod
    def _positive(cls, value: list[float]) -> list[float]:
        for i, lr in enumerate(value):
            if not math.isfinite(lr) or lr <= 0:
                raise ValueError(f"lrs[{i}] must be > 0 (got {lr})")
        return value

    @field_validator("sparsities", mode="after")
    @classmethod
    def _fractions(cls, value: list[float]) -> list[float]:
        for i, s in enumerate(value):
            if not 0.0 <= s < 1.0:
                raise ValueError(f"sparsities[{i}] must be in [0, 1) (got {s})")
        return value

    @field_validator("model", "dataset", "methods", "lrs", "seeds", "sparsities", mode="after")
    @classmethod
    def _distinct(cls, value: Any, info: Any) -> Any:
        values = [value] if isinstance(value, str) else value
        if info.field_name != "sparsities" and not values:
            raise ValueError("must not be empty (the grid would have no points)")
        if len(set(values)) != len(values):
            raise ValueError(f"has duplicate values {values}")
        return value

    @model_validator(mode="after")
    def _sparsities_needed(self) -> SweepSpec:
        if set(self.methods) - {"dense"} and not self.sparsities:
            raise ValueError("sparsities: must not be empty (the grid would have no points)")
        return self

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

    def method_hparams(self, method: str) -> Any:
        """The hparams of ``method`` from its spec group (``rst:``), or None if it has none."""
        configure = methods.get(method).configure
        return None if configure is None else configure(RSTHparams(**self.rst.model_dump()))

    def data_hparams(self, dataset: str) -> DataHparams:
        d = self.data
        return DataHparams(name=dataset, root=d.root, download=d.download,
                           train_subset=d.train_subset, test_subset=d.test_subset,
                           validation=d.validation)

    def to_json(self) -> dict[str, Any]:
        """The full spec, defaults included (stored as ``spec.json`` beside the results)."""
        return json.loads(self.model_dump_json())


_UNION_TAGS = {"str", "list[str]"}  # pydantic names the branches of ``str | list[str]``


def _pydantic_problems(err: pydantic.ValidationError) -> list[tuple[str, str]]:
    """Turn pydantic errors into (field path, reason) pairs, e.g. ``lrs[1]``, ``training.x``."""
    out: dict[str, str] = {}
    for e in err.errors():
        path = ""
        for part in e["loc"]:
            if part in _UNION_TAGS:
                continue
            path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else part)
        reason = "unknown key" if e["type"] == "extra_forbidden" else e["msg"]
        if e["type"] == "value_error":
            reason = reason.removeprefix("Value error, ")
            # our validators name the element ("lrs[1] must ...") or the field ("f: ...")
            head, _, rest = reason.partition(" ")
            if path and head.startswith(f"{path}["):
                path, reason = head, rest
            elif not path and ": " in reason:
                path, reason = reason.split(": ", 1)
        elif e["type"] != "extra_forbidden" and not isinstance(e.get("input"), dict):
            reason += f" (got {e.get('input')!r})"
        out.setdefault(path or "(top level)", reason)
    return list(out.items())


def parse(raw: Any, source: str = "<spec>") -> SweepSpec:
    """Validate a decoded YAML/JSON document.

    Raises:
        SpecError: listing every problem found.
    """
    if not isinstance(raw, dict):
        raise SpecError(source, [("(top level)", "must be a mapping of keys to values, got "
                                                 f"{type(raw).__name__}")])
    try:
        return SweepSpec.model_validate(raw)
    except pydantic.ValidationError as err:
        raise SpecError(source, _pydantic_problems(err)) from None


def load(path: str | Path) -> SweepSpec:
    """Read and validate a YAML sweep spec file.

    Raises:
        SpecError: unreadable file, YAML syntax error, duplicate keys, a tag that is not plain
            YAML (e.g. ``!!python/object``), or invalid content.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        reason = getattr(err, "strerror", None) or str(err)
        raise SpecError(str(path), [("(file)", f"cannot read: {reason}")]) from None
    return parse(read_yaml(text, str(path)), str(path))


def read_yaml(text: str, source: str = "<spec>") -> Any:
    """Decode YAML text with the safe loader, refusing duplicate keys.

    Raises:
        SpecError: a syntax error, duplicate keys (all of them, by field path) or an unsafe
            tag (with the field it is on).
    """
    yaml = YAML(typ="safe", pure=True)
    try:
        root = yaml.compose(text)
    except YAMLError as err:
        raise SpecError(source, [("(yaml)", _one_line(err))]) from None
    duplicates = _duplicate_keys(root, "") if root is not None else []
    if duplicates:
        raise SpecError(source, duplicates)
    try:
        return yaml.load(text)
    except YAMLError as err:
        mark = getattr(err, "problem_mark", None) if isinstance(err, MarkedYAMLError) else None
        where = _path_at(root, mark.line, mark.column, "") if mark and root else None
        raise SpecError(source, [(where or "(yaml)", _one_line(err))]) from None


def _one_line(err: YAMLError) -> str:
    """``context problem (line L, column C)`` of a YAML error, on one line."""
    if not isinstance(err, MarkedYAMLError) or err.problem is None:
        return " ".join(str(err).split())
    mark = err.problem_mark
    where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
    return " ".join(p for p in (err.context, err.problem) if p) + where


def _child_paths(node: Node, path: str) -> list[tuple[str, Node, Node | None]]:
    """(path, value node, key node) of each child of a mapping or sequence node."""
    if isinstance(node, MappingNode):
        return [(f"{path}.{k.value}" if path else str(k.value), v, k) for k, v in node.value]
    if isinstance(node, SequenceNode):
        return [(f"{path}[{i}]", v, None) for i, v in enumerate(node.value)]
    return []


def _duplicate_keys(node: Node, path: str) -> list[tuple[str, str]]:
    """Every key that appears twice in one mapping, as (field path, reason)."""
    out, seen = [], {}
    for child, value, key in _child_paths(node, path):
        if key is not None:
            line = key.start_mark.line + 1
            if child in seen:
                out.append((child, f"duplicate key (lines {seen[child]} and {line}); each key "
                                   "may appear once"))
            seen.setdefault(child, line)
        out += _duplicate_keys(value, child)
    return out


def _path_at(node: Node, line: int, column: int, path: str) -> str | None:
    """The field path of the deepest node starting at (line, column), 0-based."""
    for child, value, _ in _child_paths(node, path):
        if (value.start_mark.line, value.start_mark.column) == (line, column):
            return child
        deeper = _path_at(value, line, column, child)
        if deeper:
            return deeper
    return None
