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
from trainer import seeding
from trainer.hparams import DataHparams

Problem = tuple[str, str]
REMOTE_TIMEOUT_S = 120.0  # a cluster may first have to start a node that fits a trial
_SHOWN_FILES = 3

log = logging.getLogger(__name__)


def _axis(name: str, index: int, values: list[str]) -> str:
    """``model`` or ``model[1]``, as the spec wrote the axis (one name or a list)."""
    return name if len(values) == 1 else f"{name}[{index}]"


def model_problems(spec: SweepSpec) -> list[Problem]:
    """Build every (model, dataset) pair, run a forward pass, resolve ``keep_dense``."""
    out: list[Problem] = []
    prunes = set(spec.methods) - {"dense"}
    for i, model in enumerate(spec.models):
        for dataset in spec.datasets:
            info = datasets.get(dataset)
            where = _axis("model", i, spec.models)
            try:
                net = models.build(model, info.input_shape, info.num_classes,
                                   seeding.generator(0, "preflight"))
                with torch.no_grad():
                    logits = net.eval()(torch.zeros((2, *info.input_shape)))
            except (ValueError, TypeError, RuntimeError) as err:
                out.append((where, f"{model} cannot be built for {dataset} inputs "
                                   f"{info.input_shape}: {err}"))
                continue
            if tuple(logits.shape) != (2, info.num_classes):
                out.append((where, f"{model} maps {dataset} inputs to logits of shape "
                                   f"{tuple(logits.shape)}, expected (B, {info.num_classes})"))
            out += _keep_dense_problems(spec, net, model, bool(prunes))
    return list(dict.fromkeys(out))


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
    return out


def subset_problems(spec: SweepSpec) -> list[Problem]:
    """Subsets larger than a dataset's split; a validation split that leaves no training."""
    out = []
    for dataset in spec.datasets:
        train_n, test_n = datasets.get(dataset).sizes
        for field, want, have in (("train_subset", spec.data.train_subset, train_n),
                                  ("test_subset", spec.data.test_subset, test_n)):
            if want > have:
                out.append((f"data.{field}", f"{dataset} has {have} examples in that split, "
                                             f"got {want}"))
        kept = min(spec.data.train_subset or train_n, train_n)
        if spec.data.validation >= kept:
            out.append(("data.validation", f"must leave training examples: {dataset} has "
                                           f"{kept} to split, got {spec.data.validation}"))
    return out


def missing_files(spec: SweepSpec) -> list[Problem]:
    """Each dataset whose files are not on this machine (names the first few paths)."""
    return _missing({d: spec.data_hparams(d) for d in spec.datasets}, spec.datasets)


def _missing(hps: dict[str, DataHparams], axis: list[str]) -> list[Problem]:
    out = []
    for j, (name, hp) in enumerate(hps.items()):
        paths = datasets.get(name).missing_files(hp)
        if paths:
            shown = ", ".join(str(p) for p in paths[:_SHOWN_FILES])
            more = f" and {len(paths) - _SHOWN_FILES} more" if len(paths) > _SHOWN_FILES else ""
            out.append((_axis("dataset", j, axis),
                        f"{name} files missing on {os.uname().nodename}: {shown}{more} (set "
                        "data.root to where they are, or data.download: true to fetch them)"))
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
    errors = model_problems(spec) + subset_problems(spec)
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
        ref = task.remote({d: spec.data_hparams(d) for d in spec.datasets}, spec.datasets,
                          probe)
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


def _worker_problems(hps: dict[str, DataHparams], axis: list[str],
                     probe: str | None) -> list[Problem]:
    """What a Ray worker finds missing: dataset files, and the driver's probe file."""
    out = _missing(hps, axis)
    if probe is not None and not Path(probe).is_file():
        out.append(("storage", f"workers do not see the driver's storage directory "
                               f"{Path(probe).parent} (on {os.uname().nodename}); use a path "
                               "shared by every node or an s3:// / gs:// URI"))
    return out
