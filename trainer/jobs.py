"""What a trial asks the trainer to do, as frozen dataclasses that travel as plain dicts.

The planner (``sweeps.plan``) builds these, including content keys and artifact paths, so the
trainer never hashes or lays out paths itself.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from trainer.hparams import DataHparams
from trainer.hparams import PruneHparams
from trainer.hparams import RecipeHparams
from trainer.hparams import TrainHparams

# The walks a chain reports levels of (``ChainJob``'s IMP walk from θ0, its ``RewindWalk``).
THETA0, REWIND = "theta0", "rewind"

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
    """One grid point a trial must turn into a ``runs`` row (and its ``layers`` rows).

    Attributes:
        method: Method key.
        target_sparsity: Requested sparsity, fraction in [0, 1); 0 for ``dense``.
        config_hash: Content key of the point; names its ``runs``/``layers`` parts and its
            commit record.
        curves: ``curves`` part keys of every training stage behind the row (the trunk
            levels behind its mask, then its own stage); its commit record lists them.
        recipe: Name of the retraining recipe (the ``recipes:`` key; ``base`` = plain).
        search: Name of the search that tried this point ("" for a grid point).
        search_trial: Its trial number in the search cell's study (-1 for a grid point).
        search_params: The searched values as JSON ("" for a grid point).
    """

    method: str
    target_sparsity: float
    config_hash: str
    curves: tuple[str, ...] = ()
    recipe: str = "base"
    search: str = ""
    search_trial: int = -1
    search_params: str = ""


@dataclass(frozen=True, kw_only=True)
class Target:
    """A sparsity whose mask a chain stores, and the blob (content-keyed) it goes to.

    Attributes:
        sparsity: Requested sparsity, fraction in [0, 1).
        mask_blob: Blob name inside the trunk's artifact directory.
        producer: ``imp`` (stored when its IMP level is trained) or ``one_shot`` (θT pruned
            straight to ``sparsity``, stored after level 0); see ``trainer.methods.PRODUCERS``.
    """

    sparsity: float
    mask_blob: str
    producer: str = "imp"


@dataclass(frozen=True, kw_only=True)
class RewindWalk:
    """A trunk's IMP walk that resets to θk (``lth_rewind``'s own chain; see ``chain``).

    Attributes:
        hparams: The rewind point (``trainer.methods.lth_rewind.RewindHparams`` as a dict).
        root: Its directory inside the trunk's artifact directory (levels, masks).
        part: Prefix of its levels' ``curves`` parts (``curves_part(part, level)``).
        levels: Deepest level to train (its level 0 is the trunk's dense run).
        targets: Sparsities whose masks it stores (producer ``rewind``), with blob names.
        level_targets: ``target_sparsity`` of the curves rows of levels 0..``levels``.
        points: The ``lth_rewind`` rows it writes (plain recipe, on an IMP level).
    """

    hparams: dict
    root: str
    part: str
    levels: int
    targets: tuple[Target, ...]
    level_targets: tuple[float, ...]
    points: tuple[Point, ...]


@dataclass(frozen=True, kw_only=True)
class ChainJob:
    """Walk IMP levels 0..``levels`` and store the mask of every target sparsity.

    Attributes:
        sweep: Sweep name (a column of every row).
        trial_id: Deterministic trial key.
        code_version: Written into every row.
        trunk: The trunk being walked.
        levels: Deepest level to train (0 = dense only).
        targets: Sparsities whose masks later branch trials need, with their blob names.
        level_targets: ``target_sparsity`` of the curves rows of levels 0..``levels``: the
            requested sparsity that is that level (as in its ``runs`` rows), else the level's.
        points: Rows this trial writes (``dense`` and on-level ``lth`` points).
        rewind: The trunk's rewind walk, walked after the θ0 levels (None = no
            ``lth_rewind`` in the grid).
    """

    sweep: str
    trial_id: str
    code_version: str
    trunk: Trunk
    levels: int
    targets: tuple[Target, ...]
    level_targets: tuple[float, ...]
    points: tuple[Point, ...]
    rewind: RewindWalk | None = None

    @property
    def all_points(self) -> tuple[Point, ...]:
        """Every row the trial writes: its own and its rewind walk's."""
        return self.points + (self.rewind.points if self.rewind else ())

    @property
    def stage_parts(self) -> tuple[str, ...]:
        """The ``curves`` parts of every level it trains (each committed on its own)."""
        own = tuple(curves_part(self.trial_id, level) for level in range(self.levels + 1))
        walk = self.rewind
        return own + (tuple(curves_part(walk.part, level) for level in
                            range(1, walk.levels + 1)) if walk else ())

    def stored(self, done: Collection[str]) -> bool:
        """Whether everything this trial writes is committed: its rows (``all_points``) and
        every level's curves part (``stage_parts``); ``done`` holds the committed keys
        (``sweeps.integrity``). Until then the trial is still to run (or running)."""
        return all(p.config_hash in done for p in self.all_points) and \
            all(part in done for part in self.stage_parts)


@dataclass(frozen=True, kw_only=True)
class BranchJob:
    """Train one method at one target sparsity from a finished trunk's weights and mask.

    Attributes:
        sweep: Sweep name.
        trial_id: Deterministic trial key.
        code_version: Written into every row.
        trunk: The trunk whose θ0, θT and mask the branch starts from.
        point: The row it writes.
        mask_blob: The trunk's stored mask at the point's sparsity (see ``Target``); "" for
            methods that draw their own mask.
        stage_dir: The branch stage's directory inside the trunk's artifact directory,
            named by the point's content key.
        method_hparams: The method's own hparams as a dict of JSON values ({} if none).
        recipe: The retraining recipe of the branch's stage (``point.recipe`` names it).
        prepare_dir: Directory of the method's own phase (RST's transformation), shared by
            every recipe of the ticket ("" = none).
    """

    sweep: str
    trial_id: str
    code_version: str
    trunk: Trunk
    point: Point
    mask_blob: str
    stage_dir: str
    method_hparams: dict = dataclasses.field(default_factory=dict)
    recipe: RecipeHparams = RecipeHparams()
    prepare_dir: str = ""


def curves_part(trial_id: str, level: int | None = None) -> str:
    """The ``curves`` part key of a trial's stage: ``<trial_id>-L<level>`` for a chain level,
    ``<trial_id>`` for a branch's one stage. The one naming rule of curves parts."""
    return trial_id if level is None else f"{trial_id}-L{level}"


_TYPES = {"DataHparams": DataHparams, "TrainHparams": TrainHparams,
          "PruneHparams": PruneHparams, "RecipeHparams": RecipeHparams, "Trunk": Trunk,
          "RewindWalk": RewindWalk, "Point": Point, "Target": Target,
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
