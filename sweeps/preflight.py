"""Preflight: the checks a spec needs beyond its own fields, all before any trial starts.

``sweeps.spec`` checks each field on its own; this module checks what needs the model zoo and
the data: every (model, dataset) pair is built and runs one forward pass on a tiny CPU batch of
the dataset's example shape, every ``pruning.keep_dense`` entry is resolved against every
model (``sweeps.preflight_models``, the part that needs torch), data subsets must fit the
dataset, and each dataset's files must be present. ``lottery plan`` runs only the checks that
need no torch; ``lottery plan --check`` runs them all, reporting missing files as warnings (a
GPU cluster's spec may be planned on a laptop); ``lottery run`` refuses them, checking on a
cluster worker when it drives a remote cluster, where it also checks that a worker sees a
local storage path (a probe file). ``lottery run`` builds the models in a child process
(``sweeps.preflight_child``) while the driver loads the spec and imports Ray and Tune, so
that the driver itself never imports torch (its trials do, in their workers).
"""

from __future__ import annotations

import logging
import os
import uuid
from pathlib import Path

from sweeps.errors import SpecError
from sweeps.preflight_child import ModelCheck
from sweeps.spec import SweepSpec
from sweeps.store import Store
from trainer import data as datasets
from trainer.hparams import DataHparams
from trainer.hparams import steps_per_epoch

Problem = tuple[str, str]
REMOTE_TIMEOUT_S = 120.0  # a cluster may first have to start a node that fits a trial
_SHOWN_FILES = 3

log = logging.getLogger(__name__)


def axis(name: str, index: int, values: list[str]) -> str:
    """``model`` or ``model[1]``, as the spec wrote the axis (one name or a list)."""
    return name if len(values) == 1 else f"{name}[{index}]"


def data_fields(spec: SweepSpec) -> dict[str, DataHparams]:
    """Every dataset a trial trains on, by the spec field naming it: ``dataset`` (or
    ``dataset[i]``) and, with the ``transfer`` method, ``transfer.targets[j]``."""
    out = {axis("dataset", i, spec.datasets): spec.data_hparams(d)
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


def check(spec: SweepSpec, files: bool | None = True,
          models: bool | ModelCheck = True) -> list[Problem]:
    """Run the preflight; raise on errors, return the missing-file problems not raised.

    Args:
        spec: A validated spec.
        files: Whether missing dataset files are errors (``lottery run`` on the machine that
            trains) or only returned as warnings (False: ``lottery plan --check``, or a remote
            cluster); None skips the file check (a loader module may import torchvision).
        models: Whether to build every model and run a forward pass
            (``sweeps.preflight_models``; imports torch), or a ``ModelCheck`` started
            earlier (asked about ``spec``, then closed here).
    Raises:
        SpecError: every problem found, field by field.
    """
    check_models = models if isinstance(models, ModelCheck) else ModelCheck(child=False)
    with check_models:
        errors = shape_problems(spec)
        if not errors:
            errors = (check_models.problems(spec) if models else []) + subset_problems(spec)
    missing = missing_files(spec) if files is not None else []
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
