"""Preflight: the checks a spec needs beyond its own fields, all before any trial starts.

``sweeps.spec`` checks each field on its own; this module checks what needs the model zoo and
the data: every (model, dataset) pair is built and runs one forward pass on a tiny CPU batch of
the dataset's example shape, every ``pruning.keep_dense`` entry is resolved against every
model, data subsets must fit the dataset, and each dataset's files must be present. ``lottery
plan`` reports missing files as warnings (a GPU cluster's spec may be planned on a laptop);
``lottery run`` refuses them, checking on a cluster worker when it drives a remote cluster,
where it also checks that a worker sees a local storage path (a probe file).
"""

from __future__ import annotations

import logging
import os
import uuid
from pathlib import Path

import torch

from sweeps.errors import SpecError
from sweeps.spec import SweepSpec
from sweeps.store import Store
from trainer import data as datasets
from trainer import masks
from trainer import models
from trainer import recipes
from trainer import seeding
from trainer.hparams import DataHparams
from trainer.loop import steps_per_epoch

Problem = tuple[str, str]
REMOTE_TIMEOUT_S = 120.0  # a cluster may first have to start a node that fits a trial
_SHOWN_FILES = 3

log = logging.getLogger(__name__)


def _axis(name: str, index: int, values: list[str]) -> str:
    """``model`` or ``model[1]``, as the spec wrote the axis (one name or a list)."""
    return name if len(values) == 1 else f"{name}[{index}]"


def model_problems(spec: SweepSpec) -> list[Problem]:
    """Build every (model, dataset) pair, run a forward pass, resolve ``keep_dense``; build
    every model with each recipe's architecture options."""
    out: list[Problem] = []
    prunes = set(spec.methods) - {"dense"}
    for i, model in enumerate(spec.models):
        for dataset in spec.datasets:
            hp = spec.data_hparams(dataset)
            shape, classes = datasets.input_shape(hp), datasets.num_classes(hp)
            where = _axis("model", i, spec.models)
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


def data_fields(spec: SweepSpec) -> dict[str, DataHparams]:
    """Every dataset a trial trains on, by the spec field naming it: ``dataset`` (or
    ``dataset[i]``) and, with the ``transfer`` method, ``transfer.targets[j]``."""
    out = {_axis("dataset", i, spec.datasets): spec.data_hparams(d)
           for i, d in enumerate(spec.datasets)}
    if "transfer" in spec.methods:
        out.update({f"transfer.targets[{j}]": spec.data_hparams(t)
                    for j, t in enumerate(spec.transfer.targets)})
    return out


def shape_problems(spec: SweepSpec) -> list[Problem]:
    """Each dataset whose images cannot be expanded to ``data.shape``."""
    out = []
    for field, hp in data_fields(spec).items():
        try:
            datasets.input_shape(hp)
        except ValueError as err:
            out.append(("data.shape", f"{field} {hp.label}: {err}"))
    return out


def subset_problems(spec: SweepSpec) -> list[Problem]:
    """Subsets larger than a dataset's split; a validation split that leaves no training;
    lth_rewind's θk at or past the end of training."""
    out = []
    for hp in data_fields(spec).values():
        dataset = hp.label
        train_n, test_n = datasets.sizes(hp)
        for field, want, have in (("train_subset", spec.data.train_subset, train_n),
                                  ("test_subset", spec.data.test_subset, test_n)):
            if want > have:
                out.append((f"data.{field}", f"{dataset} has {have} examples in that split, "
                                             f"got {want}"))
        kept = min(spec.data.train_subset or train_n, train_n)
        if spec.data.validation >= kept:
            out.append(("data.validation", f"must leave training examples: {dataset} has "
                                           f"{kept} to split, got {spec.data.validation}"))
        elif "lth_rewind" in spec.methods:
            out += _rewind_problems(spec, dataset, kept - spec.data.validation)
    return list(dict.fromkeys(out))


def _rewind_problems(spec: SweepSpec, dataset: str, n_train: int) -> list[Problem]:
    """θk must come before the end of the dense run (steps of ``n_train`` examples)."""
    rewind = spec.method_hparams("lth_rewind")
    per_epoch = steps_per_epoch(n_train, spec.training.batch_size)
    train = spec.train_hparams(spec.lrs[0])
    k, end = rewind.steps(per_epoch), train.steps(per_epoch)
    if k < end:
        return []
    field = "epochs" if rewind.epochs is not None else "iterations"
    return [(f"pruning.rewind.{field}", f"rewinds to step {k}, at or past the end of training "
                                        f"on {dataset} ({end} steps of {per_epoch} per "
                                        "epoch)")]


def missing_files(spec: SweepSpec) -> list[Problem]:
    """Each dataset whose files are not on this machine (names the first few paths)."""
    return _missing(data_fields(spec))


def _missing(hps: dict[str, DataHparams]) -> list[Problem]:
    """Missing files of each dataset, by the spec field naming it."""
    out = []
    for field, hp in hps.items():
        paths = datasets.get(hp.name).missing_files(hp)
        if paths:
            shown = ", ".join(str(p) for p in paths[:_SHOWN_FILES])
            more = f" and {len(paths) - _SHOWN_FILES} more" if len(paths) > _SHOWN_FILES else ""
            fetch = "or data.download: true to fetch them" if \
                datasets.get(hp.name).downloadable else "it cannot be downloaded"
            out.append((field, f"{hp.name} files missing on {os.uname().nodename}: {shown}"
                               f"{more} (set data.root to where they are; {fetch})"))
    return out


def check(spec: SweepSpec, files: bool = True) -> list[Problem]:
    """Run the preflight; raise on errors, return the missing-file problems not raised.

    Args:
        spec: A validated spec.
        files: Whether missing dataset files are errors (``lottery run`` on the machine that
            trains) or only returned as warnings (``lottery plan``, or a remote cluster).
    Raises:
        SpecError: every problem found, field by field.
    """
    errors = shape_problems(spec) or model_problems(spec) + subset_problems(spec)
    missing = missing_files(spec)
    if errors or (files and missing):
        raise SpecError(spec.name, errors + (missing if files else []))
    return missing


def check_on_cluster(spec: SweepSpec, store: Store) -> None:
    """On a remote cluster: dataset files and a local storage path, seen from a worker.

    Runs one Ray task with a trial's resources (so it lands where trials can run). When no
    node can take it within ``REMOTE_TIMEOUT_S`` (an autoscaler still starting one) the check
    is skipped with a warning.

    Raises:
        SpecError: ``dataset`` files missing on the worker, or ``storage``: the worker does not
            see the driver's local storage directory.
    """
    import ray

    probe_name = f".probe-{uuid.uuid4().hex[:12]}"
    probe = store.local_path(probe_name)
    if probe is not None:
        store.put(probe_name, b"lottery-sweeps storage probe\n")
    task = ray.remote(_worker_problems).options(num_cpus=spec.resources.cpu,
                                                num_gpus=spec.resources.gpu)
    try:
        ref = task.remote(data_fields(spec), probe)
        ready, _ = ray.wait([ref], timeout=REMOTE_TIMEOUT_S)
        if not ready:
            ray.cancel(ref, force=True)
            log.warning("preflight on a worker skipped: no node took a %s task within %.0f s",
                        spec.resources, REMOTE_TIMEOUT_S)
            return
        problems = ray.get(ref)
    finally:
        if probe is not None:
            store.delete(probe_name)
    if problems:
        raise SpecError(spec.name, problems)


def _worker_problems(hps: dict[str, DataHparams], probe: str | None) -> list[Problem]:
    """What a Ray worker finds missing: dataset files, and the driver's probe file."""
    out = _missing(hps)
    if probe is not None and not Path(probe).is_file():
        out.append(("storage", f"workers do not see the driver's storage directory "
                               f"{Path(probe).parent} (on {os.uname().nodename}); use a path "
                               "shared by every node or an s3:// / gs:// URI"))
    return out
