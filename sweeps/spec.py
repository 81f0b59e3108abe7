"""Sweep spec: YAML -> validated, frozen ``SweepSpec``; every error before any trial starts.

Validation uses pydantic (strict types, unknown keys forbidden, no inf/nan anywhere). Errors are
collected and raised together as one ``SpecError`` whose lines name the field path, the reason
and the value, e.g. ``lrs[1]: must be > 0 (got -0.1)``.

YAML is read by ``sweeps.spec_yaml`` (safe loader, duplicate keys refused). What needs the
models and the data (layers, shapes, files) is checked by ``sweeps.preflight``.
"""

from __future__ import annotations

import difflib
import json
import math
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated
from typing import Any

import pydantic
from pydantic import Field
from pydantic import field_validator
from pydantic import model_validator

from sweeps.errors import SpecError
from sweeps.spec_groups import BASE_RECIPE
from sweeps.spec_groups import NAME_PATTERN
from sweeps.spec_groups import DataSpec
from sweeps.spec_groups import ExecutionSpec
from sweeps.spec_groups import Group
from sweeps.spec_groups import PruningSpec
from sweeps.spec_groups import RecipeSpec
from sweeps.spec_groups import ResourcesSpec
from sweeps.spec_groups import RSTSpec
from sweeps.spec_groups import SearchSpec
from sweeps.spec_groups import TrainingSpec
from sweeps.spec_groups import TransferSpec
from sweeps.spec_groups import data_hparams
from sweeps.spec_groups import raise_all
from sweeps.spec_yaml import read_yaml
from sweeps.store import check_location
from trainer import data as datasets
from trainer import methods
from trainer import models
from trainer.hparams import DataHparams
from trainer.hparams import PruneHparams
from trainer.hparams import RecipeHparams
from trainer.hparams import TrainHparams

__all__ = ["BASE_RECIPE", "SpecError", "SweepSpec", "load", "parse", "read_yaml"]

DEFAULT_METHODS = ["dense", "lth", "random_reinit", "random_pruning", "pf"]


class SweepSpec(Group):
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
    transfer: TransferSpec = TransferSpec()
    recipes: dict[Annotated[str, Field(pattern=NAME_PATTERN, max_length=60)], RecipeSpec] = \
        {BASE_RECIPE: RecipeSpec()}
    resources: ResourcesSpec = ResourcesSpec()
    data: DataSpec = DataSpec()
    execution: ExecutionSpec = ExecutionSpec()
    search: SearchSpec | None = None
    storage: str = "results"

    @field_validator("storage", mode="after")
    @classmethod
    def _location(cls, value: str) -> str:
        check_location(value)
        return value

    @field_validator("model", "dataset", "methods", mode="after")
    @classmethod
    def _registered(cls, value: str | list[str], info: Any) -> str | list[str]:
        registry = {"model": models.MODELS, "dataset": datasets.DATASETS,
                    "methods": methods.METHODS}[info.field_name]
        what = info.field_name.rstrip("s")
        names = [(info.field_name, value)] if isinstance(value, str) else [
            (f"{info.field_name}[{i}]", v) for i, v in enumerate(value)]
        problems = []  # every element's, one line each (``_pydantic_problems`` splits them)
        for where, name in names:
            prefix = "" if isinstance(value, str) else f"{where} "
            if info.field_name == "dataset":  # NAME or NAME[classes]
                try:
                    hp = data_hparams(name)
                    if hp.name in registry:
                        datasets.check_task(hp)
                except ValueError as err:
                    problems.append(f"{prefix}{err}")
                    continue
                name = hp.name
            if name not in registry:
                problems.append(f"{prefix}unknown {what} {name!r}; known: {sorted(registry)}")
        if problems:
            raise ValueError("\n".join(problems))
        return value

    @field_validator("lrs", mode="after")
    @classmethod
    def _positive(cls, value: list[float]) -> list[float]:
        bad = [f"lrs[{i}] must be > 0 (got {lr})" for i, lr in enumerate(value)
               if not math.isfinite(lr) or lr <= 0]
        if bad:
            raise ValueError("\n".join(bad))
        return value

    @field_validator("sparsities", mode="after")
    @classmethod
    def _fractions(cls, value: list[float]) -> list[float]:
        bad = [f"sparsities[{i}] must be in [0, 1) (got {s}"
               + (f"; a fraction removed: {s / 100:g} for {s:g} %)" if 1 < s <= 100 else ")")
               for i, s in enumerate(value) if not 0.0 <= s < 1.0]
        if bad:
            raise ValueError("\n".join(bad))
        return value

    @field_validator("model", "dataset", "methods", "lrs", "seeds", "sparsities", mode="after")
    @classmethod
    def _distinct(cls, value: Any, info: Any) -> Any:
        values = [value] if isinstance(value, str) else value
        if info.field_name != "sparsities" and not values:
            raise ValueError("must not be empty (the grid would have no points)")
        # one class selection may be written two ways: digits[0-2] and digits[0,1,2]
        same = [data_hparams(v).label for v in values] if info.field_name == "dataset" else values
        if len(set(same)) != len(same):
            raise ValueError(f"has duplicate values {values}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> SweepSpec:
        """The checks across fields, every problem at once (one ``field: reason`` a line)."""
        raise_all(list(self._sparsity_problems()), list(self._transfer_problems()),
                  list(self._search_problems()), list(self._recipe_problems()))
        return self

    def _sparsity_problems(self) -> Iterator[str]:
        if set(self.methods) - {"dense"} and not self.sparsities:
            yield "sparsities: must not be empty (the grid would have no points)"

    def _transfer_problems(self) -> Iterator[str]:
        arms = "transfer" in self.methods
        if arms and not self.transfer.targets:
            yield "transfer.targets: method transfer needs at least one target dataset"
        if self.transfer.targets and not arms:
            yield "transfer.targets: given, but `transfer` is not in methods"
        if arms and (not self.transfer.inits or not self.transfer.regimes):
            yield "transfer: inits and regimes must not be empty"
        labels = {data_hparams(d).label for d in self.datasets}
        for j, target in enumerate(self.transfer.targets if arms else ()):
            if not labels - {data_hparams(target).label}:
                yield (f"transfer.targets[{j}]: {target} is the grid's only dataset; "
                       "a target is trained from every other `dataset` entry")
        distilled = [n for n, r in self.recipes.items() if r.distill is not None]
        if arms and distilled:
            yield (f"recipes.{distilled[0]}.distill: the teacher θT predicts the source's "
                   "classes, so transfer arms cannot distill from it")
        if self.pruning.rewind.epochs is not None and "lth_rewind" in self.methods and \
                not self.training.iterations and \
                self.pruning.rewind.epochs >= self.training.epochs:
            yield (f"pruning.rewind.epochs: must be below training.epochs "
                   f"({self.training.epochs}), got {self.pruning.rewind.epochs}")

    def _search_problems(self) -> Iterator[str]:
        if self.search is None:
            return
        if "lrs" in self.model_fields_set:
            yield "search: picks the lr; give `lrs` (a grid) or `search`, not both"
        if self.data.validation <= 0:
            yield (f"search.metric: {self.search.metric} is measured on the validation "
                   "split, never the test set; set data.validation > 0")
        if self.search.epochs is not None and self.training.iterations:
            yield "search.epochs: training is given in iterations"
        several = [m for m in self.methods if len(self.method_variants(m)) > 1]
        if len(self.recipes) > 1 or several:
            what = f"method {several[0]}" if several else "the recipes axis"
            yield (f"search: {what} gives several points per cell; a search cell is one "
                   "(model, dataset, method, sparsity, seed) point")

    def _recipe_problems(self) -> Iterator[str]:
        if not self.recipes:
            yield "recipes: must not be empty; the plain recipe is `base: {}`"
        seen: dict[RecipeHparams, str] = {}
        for name, recipe in self.recipes.items():
            hp = recipe.hparams()
            if name == BASE_RECIPE and hp != RecipeHparams():
                yield (f"recipes.{name}: `{BASE_RECIPE}` is the plain recipe of the dense run "
                       "and the IMP levels and must be {}; give these settings another name")
            elif name != BASE_RECIPE and hp == RecipeHparams():
                yield f"recipes.{name}: changes nothing; the plain recipe is `{BASE_RECIPE}: {{}}`"
            elif hp in seen:
                yield f"recipes.{name}: same settings as recipes.{seen[hp]}"
            seen.setdefault(hp, name)

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
                            iterations=t.iterations, schedule=t.schedule,
                            warmup_epochs=t.warmup_epochs,
                            batch_size=t.batch_size, momentum=t.momentum,
                            weight_decay=t.weight_decay, milestones=tuple(t.milestones),
                            gamma=t.gamma)

    def prune_hparams(self) -> PruneHparams:
        p = self.pruning
        return PruneHparams(rate=p.rate, scope=p.scope, keep_dense=tuple(p.keep_dense),
                            rates=tuple(p.rates.items()))

    def method_variants(self, method: str) -> list[Any]:
        """The hparams variants of ``method`` from its spec group (``[None]`` if it has none):
        one for ``rst`` (the ``rst:`` group), one per combination for grouped axes."""
        m = methods.get(method)
        if m.configure is None:
            return [None]
        return list(m.configure(self.model_dump()[m.group]))

    def method_hparams(self, method: str) -> Any:
        """The one hparams variant of ``method`` (None if it has none), e.g. ``rst``'s."""
        return self.method_variants(method)[0]

    def recipe_hparams(self) -> dict[str, RecipeHparams]:
        """Recipe name -> its hparams (``base`` -> ``RecipeHparams()``)."""
        return {name: recipe.hparams() for name, recipe in self.recipes.items()}

    def data_hparams(self, dataset: str) -> DataHparams:
        """The data of one ``dataset`` entry (``fashion-mnist[0-4]`` selects classes)."""
        return data_hparams(dataset, self.data)

    def to_json(self) -> dict[str, Any]:
        """The full spec, defaults included (stored as ``spec.json`` beside the results); a
        search spec leaves out ``lrs`` (the search picks them), so it parses back."""
        out = json.loads(self.model_dump_json())
        if self.search is not None:
            del out["lrs"]
        return out


_UNION_TAGS = {"str", "list[str]"}  # pydantic names the branches of ``str | list[str]``


def _close_key(loc: tuple) -> str:
    """``; did you mean 'epochs'?`` for an unknown key ``loc[-1]`` close to a field of its
    group (``difflib``'s closeness), else nothing."""
    model: type[pydantic.BaseModel] = SweepSpec
    keyed = False  # the field before is a dict (``recipes``): this part is one of its keys
    for part in loc[:-1]:
        if keyed or isinstance(part, int) or part in _UNION_TAGS:
            keyed = False
            continue
        field = model.model_fields.get(part)
        if field is None:
            return ""
        kind = field.annotation
        keyed = typing.get_origin(kind) is dict
        groups = [t for t in (kind, *typing.get_args(kind))
                  if isinstance(t, type) and issubclass(t, pydantic.BaseModel)]
        if not groups:
            return ""
        model = groups[0]
    close = difflib.get_close_matches(str(loc[-1]), list(model.model_fields), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _pydantic_problems(err: pydantic.ValidationError) -> list[tuple[str, str]]:
    """Turn pydantic errors into (field path, reason) pairs, e.g. ``lrs[1]``, ``training.x``.

    Our validators' lines are all kept (one field may have several problems); of pydantic's
    own errors, the first per field (a ``str | list[str]`` field fails once per branch)."""
    out: dict[str, list[str]] = {}
    for e in err.errors():
        path = ""
        for part in e["loc"]:
            if part in _UNION_TAGS:
                continue
            path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else part)
        if e["type"] == "value_error":  # ours: one problem a line
            for line in e["msg"].removeprefix("Value error, ").split("\n"):
                field, reason = _named(path, line)
                if reason not in out.setdefault(field, []):
                    out[field].append(reason)
            continue
        reason = "unknown key" + _close_key(e["loc"]) if e["type"] == "extra_forbidden" \
            else e["msg"]
        if e["type"] != "extra_forbidden" and not isinstance(e.get("input"), dict):
            reason += f" (got {e.get('input')!r})"
        out.setdefault(path or "(top level)", [reason])
    return [(field, reason) for field, reasons in out.items() for reason in reasons]


def _named(path: str, reason: str) -> tuple[str, str]:
    """(field path, reason) of one of our validators' lines, which name the element
    (``lrs[1] must ...``), a nested field (``.x: ...``) or, at the top level, the field."""
    head, _, rest = reason.partition(" ")
    if path and head.startswith(f"{path}["):
        path, reason = head, rest
    elif path and head.startswith(".") and head.endswith(":"):  # a nested field
        path, reason = path + head[:-1], rest
    elif not path and ": " in reason:
        path, reason = reason.split(": ", 1)
    return path or "(top level)", reason


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
