"""The preflight's model checks (torch): every (model, dataset) pair built with one forward
pass, ``pruning.keep_dense`` and ``pruning.rates`` resolved against each model, each recipe's
architecture options built; and each transfer target's shape and classes. Called by
``sweeps.preflight.check``, in this process or in a child (``sweeps.preflight_child``: the
spec's JSON on stdin, the problems as a JSON list of [field, reason] pairs on stdout).
"""

from __future__ import annotations

import json
import sys

import torch

from sweeps.preflight import Problem
from sweeps.preflight import axis
from sweeps.preflight import data_fields
from sweeps.spec import SweepSpec
from sweeps.spec import parse
from trainer import data as datasets
from trainer import masks
from trainer import models
from trainer import recipes
from trainer import seeding


def model_problems(spec: SweepSpec) -> list[Problem]:
    """Build every (model, dataset) pair, run a forward pass, resolve ``keep_dense``; build
    every model with each recipe's architecture options."""
    out: list[Problem] = []
    prunes = set(spec.methods) - {"dense"}
    for i, model in enumerate(spec.models):
        for dataset in spec.datasets:
            hp = spec.data_hparams(dataset)
            shape, classes = datasets.input_shape(hp), datasets.num_classes(hp)
            where = axis("model", i, spec.models)
            try:
                net = _forward(model, shape, classes)
            except (ValueError, TypeError, RuntimeError) as err:
                out.append((where, f"{model} cannot be built for {dataset} inputs "
                                   f"{shape}: {err}"))
                continue
            out += _keep_dense_problems(spec, net, model, bool(prunes))
            out += _recipe_problems(spec, model, shape, classes)
        out += _target_problems(spec, model)
    return list(dict.fromkeys(out))


def _target_problems(spec: SweepSpec, model: str) -> list[Problem]:
    """Each transfer target must have the sources' example shape, and ``model`` must build
    for its classes."""
    out: list[Problem] = []
    fields = data_fields(spec)
    sources = {datasets.input_shape(spec.data_hparams(d)) for d in spec.datasets}
    for field, hp in fields.items():
        if not field.startswith("transfer."):
            continue
        shape = datasets.input_shape(hp)
        if sources != {shape}:
            out.append((field, f"{hp.label} examples are {shape} but the datasets it is "
                               f"trained from have {sorted(sources)}; a ticket transfers "
                               "between datasets of one example shape"))
            continue
        try:
            _forward(model, shape, datasets.num_classes(hp))
        except (ValueError, TypeError, RuntimeError) as err:
            out.append((field, f"{model} cannot be built for {hp.label}: {err}"))
    return out


def _forward(model: str, shape: tuple[int, int, int], classes: int,
             arch: models.Arch | None = None) -> torch.nn.Module:
    """Build ``model`` and run a forward pass on a (2, C, H, W) zero batch.

    Raises:
        ValueError: the logits are not (2, classes); or what building raises.
    """
    net = models.build(model, shape, classes, seeding.generator(0, "preflight"),
                       arch or models.Arch())
    with torch.no_grad():
        logits = net.eval()(torch.zeros((2, *shape)))
    if tuple(logits.shape) != (2, classes):
        raise ValueError(f"logits of shape {tuple(logits.shape)}, expected (B, {classes})")
    return net


def _recipe_problems(spec: SweepSpec, model: str, shape: tuple[int, int, int],
                     classes: int) -> list[Problem]:
    """Each recipe whose architecture options ``model`` cannot take (e.g. jump convolutions
    on a network without residual blocks)."""
    out = []
    for name, recipe in spec.recipe_hparams().items():
        arch = recipes.arch(recipe)
        if arch == models.Arch():
            continue
        try:
            _forward(model, shape, classes, arch)
        except (ValueError, TypeError, RuntimeError) as err:
            field = "skip_connections" if recipe.skip_connections else "activation"
            out.append((f"recipes.{name}.{field}", f"{model}: {err}"))
    return out


def _keep_dense_problems(spec: SweepSpec, net: torch.nn.Module, model: str,
                         prunes: bool) -> list[Problem]:
    out = []
    for k, entry in enumerate(spec.pruning.keep_dense):
        try:
            masks.resolve_keep_dense(net, [entry])
        except ValueError as err:
            out.append((f"pruning.keep_dense[{k}]", f"{err} (model {model})"))
    if not out and prunes:
        kept = masks.resolve_keep_dense(net, spec.pruning.keep_dense)
        if set(masks.prunable_names(net)) <= kept:
            out.append(("pruning.keep_dense", f"keeps every prunable layer of {model} dense, "
                                              "so there is nothing to prune"))
        out += _rates_problems(spec, net, model, kept)
    return out


def _rates_problems(spec: SweepSpec, net: torch.nn.Module, model: str,
                    kept: frozenset[str]) -> list[Problem]:
    """Each ``pruning.rates`` group with no pruned layer in ``model`` (a rate that would
    prune nothing)."""
    present = set(masks.layer_groups(net, kept).values())
    return [(f"pruning.rates.{group}", f"{model} has no pruned {group} layer (groups: "
                                       f"{sorted(present)}; kept dense: {sorted(kept)})")
            for group in spec.pruning.rates if group not in present]


def main() -> None:
    """The child's side of ``sweeps.preflight_child.ModelCheck``: read the spec (after this
    module's imports), print its problems."""
    spec = parse(json.load(sys.stdin))
    json.dump(model_problems(spec), sys.stdout)
