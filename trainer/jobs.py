"""What a trial asks the trainer to do, as frozen dataclasses that travel as plain dicts.

The planner (``sweeps.plan``) builds these, including content keys and artifact paths, so the
trainer never hashes or lays out paths itself.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from trainer.hparams import DataHparams
from trainer.hparams import PruneHparams
from trainer.hparams import TrainHparams


@dataclass(frozen=True, kw_only=True)
class Trunk:
    """One replicate of an IMP trunk: everything the dense run and the IMP levels depend on.

    Attributes:
        model: Registry key in ``trainer.models.MODELS``.
        data: Dataset hparams.
        train: Training hparams (LR included) shared by every stage of the trunk.
        prune: IMP mask hparams.
        seed: Replicate seed.
        artifact_dir: Directory of the trunk's weights and masks, relative to the sweep's
            ``artifacts/`` (``<model>-<dataset>-<trunk_key>/replicate_<seed>``).
    """

    model: str
    data: DataHparams
    train: TrainHparams
    prune: PruneHparams
    seed: int
    artifact_dir: str


@dataclass(frozen=True, kw_only=True)
class Point:
    """One grid point a trial must turn into a ``runs`` row."""

    method: str
    target_sparsity: float
    config_hash: str


@dataclass(frozen=True, kw_only=True)
class ChainJob:
    """Walk IMP levels 0..``levels`` and store the mask of every target sparsity.

    Attributes:
        sweep: Sweep name (a column of every row).
        trial_id: Deterministic trial key.
        code_version: Written into every row.
        trunk: The trunk being walked.
        levels: Deepest level to train (0 = dense only).
        targets: Sparsities (fractions) whose masks later branch trials need.
        points: Rows this trial writes (``dense`` and on-level ``lth`` points).
    """

    sweep: str
    trial_id: str
    code_version: str
    trunk: Trunk
    levels: int
    targets: tuple[float, ...]
    points: tuple[Point, ...]


@dataclass(frozen=True, kw_only=True)
class BranchJob:
    """Train one method at one target sparsity from a finished trunk's weights and mask."""

    sweep: str
    trial_id: str
    code_version: str
    trunk: Trunk
    point: Point


_TYPES = {"DataHparams": DataHparams, "TrainHparams": TrainHparams,
          "PruneHparams": PruneHparams, "Trunk": Trunk, "Point": Point,
          "ChainJob": ChainJob, "BranchJob": BranchJob}


def to_dict(obj: Any) -> Any:
    """Encode a job as JSON-ready nested dicts tagged with ``__type__``."""
    if dataclasses.is_dataclass(obj):
        fields = {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
        return {"__type__": type(obj).__name__, **fields}
    if isinstance(obj, tuple):
        return [to_dict(v) for v in obj]
    return obj


def from_dict(obj: Any) -> Any:
    """Inverse of ``to_dict``; lists become tuples.

    Raises:
        ValueError: an unknown ``__type__`` tag.
    """
    if isinstance(obj, dict) and "__type__" in obj:
        name = obj["__type__"]
        if name not in _TYPES:
            raise ValueError(f"unknown job type {name!r}")
        return _TYPES[name](**{k: from_dict(v) for k, v in obj.items() if k != "__type__"})
    if isinstance(obj, list):
        return tuple(from_dict(v) for v in obj)
    return obj
