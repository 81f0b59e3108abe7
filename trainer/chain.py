"""The chain trial: dense pretraining and IMP levels of one trunk replicate, and its masks.

IMP with reset to θ0 (Frankle & Carbin 2019, §1 and App. B strategy 1; open_lth
``lottery/runner.py``): level 0 trains θ0 densely; level L trains θ0 ⊙ m_L, where m_L prunes the
trained weights of level L-1 to sparsity ``1 - (1 - rate) ** L``. The level schedule does not
depend on the requested sparsities, so adding a sparsity to a sweep reuses every stored level.
A requested sparsity s between levels gets its mask from one extra pruning step of level
L = ``level_for(s)``'s trained weights (a shorter last round). One-shot masks (the ``omp_*``
methods; Ma et al. 2021 §2.1) prune level 0's trained weights θT straight to s, and are stored
right after level 0. With ``lth_rewind`` in the grid the trial then walks the trunk's rewind
walk: levels 1.. again, each resetting to θk and training from step k (see
``trainer.methods.lth_rewind``), with masks and stages of its own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from trainer import checkpoint
from trainer import levels
from trainer import masks
from trainer import methods
from trainer import rows
from trainer.checkpoint import Blobs
from trainer.hparams import steps_per_epoch
from trainer.jobs import REWIND
from trainer.jobs import THETA0
from trainer.jobs import ChainJob
from trainer.jobs import Point
from trainer.jobs import Target
from trainer.jobs import curves_part
from trainer.loop import EpochRecord
from trainer.loop import StageOptions
from trainer.loop import StageResult
from trainer.rows import Sink
from trainer.stage import run_stage
from trainer.trunk import State
from trainer.trunk import TrunkContext
from trainer.trunk import dense_correlation
from trainer.trunk import open_trunk
from trainer.trunk import rewind_blob
from trainer.trunk import rewind_state
from trainer.trunk import rewind_steps


def target_mask(ctx: TrunkContext, level: int, level_mask: State, trained: StageResult,
                target: float) -> tuple[State, int]:
    """The mask at ``target`` sparsity and the IMP rounds behind it.

    Args:
        ctx: The trunk.
        level: ``levels.level_for(target, ctx.schedule)``.
        level_mask: m_level (full for level 0).
        trained: Level ``level``'s trained result.
        target: Requested sparsity (fraction).
    Returns:
        (mask, mask_level): m_level itself when ``target`` is the level's sparsity, else
        ``level_mask`` pruned further from the level's trained weights (one more round).
    """
    rounds = levels.mask_level(target, ctx.schedule)
    if rounds == level:
        return level_mask, level
    pruned = masks.magnitude_prune(ctx.prunable(trained.state), level_mask,
                                   ctx.prune_target(level, target), ctx.trunk.prune.scope,
                                   ctx.exclude)
    return pruned, rounds


LevelHook = Callable[[str, int], None]


def run_chain(job: ChainJob, artifacts: Blobs, sink: Sink, device: torch.device,
              on_epoch: Callable[[EpochRecord], None] | None = None,
              on_level: LevelHook | None = None) -> None:
    """Train levels 0..``job.levels`` (then the rewind walk), store every target mask, write
    the chain's rows.

    Each level's ``curves`` part and its own commit record (keyed by the part) are written
    when the level is done; a point's ``runs`` and ``layers`` parts and its commit record
    follow (``rows.write_point``).

    Args:
        job: What to walk and which rows to write (``dense``, on-level ``lth`` and
            ``lth_rewind``).
        artifacts: The sweep's ``artifacts/`` directory.
        sink: Row sink (table parts and commit records).
        device: Training device.
        on_epoch: Progress hook called after every epoch.
        on_level: Called as ``on_level(walk, level)`` once a level's masks and rows are
            stored (walk ``THETA0`` or ``REWIND``), so the branches needing them may start.
    Raises:
        ValueError, FileNotFoundError: from loading the trunk (bad model, data or layers).
    """
    ctx = open_trunk(job.trunk, artifacts, device)
    k = rewind_steps(ctx, job.rewind.hparams) if job.rewind else 0
    dense = _walk(ctx, job, sink, Walk(job.trial_id, "", job.levels, job.targets,
                                       job.level_targets, job.points), on_epoch, k,
                  on_level=on_level)
    if job.rewind is not None:
        w = job.rewind
        walk = Walk(w.part, w.root, w.levels, w.targets, w.level_targets, w.points,
                    start=rewind_state(ctx, k), start_step=k)
        _walk(ctx, job, sink, walk, on_epoch, 0, dense, on_level)


@dataclass(frozen=True)
class Walk:
    """One IMP walk of a chain: the θ0 levels, or the rewind walk's levels 1.. from θk.

    Attributes:
        part: Prefix of its levels' curves parts.
        root: Its directory in the trunk's artifacts ("" for the θ0 levels).
        levels: Deepest level.
        targets: Masks it stores.
        level_targets: Curves ``target_sparsity`` labels by level.
        points: Rows it writes.
        start: Weights every level resets to (None: θ0).
        start_step: First step of every level (k when rewinding).
    """

    part: str
    root: str
    levels: int
    targets: tuple[Target, ...]
    level_targets: tuple[float, ...]
    points: tuple[Point, ...]
    start: State | None = None
    start_step: int = 0


def _walk(ctx: TrunkContext, job: ChainJob, sink: Sink, walk: Walk,
          on_epoch: Callable[[EpochRecord], None] | None, snapshot: int,
          dense: StageResult | None = None, on_level: LevelHook | None = None) -> StageResult:
    """Train the walk's levels (level 0, the dense run, unless ``dense`` is given) and return
    level 0's result; ``snapshot`` > 0 keeps θ_snapshot of the dense run (for rewinding)."""
    prune = job.trunk.prune
    mask = masks.full_mask(ctx.init, ctx.names)
    labels, prev = None, dense
    start = ctx.init if walk.start is None else walk.start
    if dense is not None:  # the shared dense run is this walk's level 0: a target below the
        _store_masks(ctx, walk, 0, mask, dense)  # first level prunes θT once, as on θ0's walk
        if on_level is not None:
            on_level(REWIND if walk.root else THETA0, 0)
    for level in range(0 if dense is None else 1, walk.levels + 1):
        if level > 0:
            mask = masks.magnitude_prune(ctx.prunable(prev.state), mask,
                                         ctx.prune_target(level), prune.scope, ctx.exclude)
        blobs = ctx.blobs.child(*filter(None, (walk.root, f"level_{level}")))
        options = StageOptions(start_step=walk.start_step if level else 0,
                               on_step=_snapshot(ctx, snapshot) if level == 0 else None)
        result = run_stage(blobs, ctx.model, start if level else ctx.init,
                           ctx.to_device(mask) if level else {}, ctx.data, job.trunk.train,
                           job.trunk.seed, on_epoch, options)
        if dense is None:  # level 0 just trained
            dense = result
        if labels is None:
            rp_dense, rp_layers = dense_correlation(ctx, dense.state)
            labels = rows.Labels(job.sweep, job.trial_id, job.code_version, rp_dense, rp_layers)
        part = curves_part(walk.part, level)
        method = "dense" if level == 0 else "lth_rewind" if walk.root else "lth"
        sink.write_part("curves", part,
                        rows.curve_rows(ctx, labels, method, walk.level_targets[level], level,
                                        masks.sparsity(mask), result))
        sink.commit(part, {"curves": [part]})  # the level's own record: its curves are done
        _store_masks(ctx, walk, level, mask, result)
        for point in walk.points:
            _write_point(ctx, labels, sink, point, level, mask, result, walk)
        if on_level is not None:
            on_level(REWIND if walk.root else THETA0, level)
        prev = result
    return dense


def _store_masks(ctx: TrunkContext, walk: Walk, level: int, mask: State,
                 result: StageResult) -> None:
    """Save the masks of the walk's targets that ``level`` produces."""
    prune = ctx.trunk.prune
    for target in walk.targets:
        if target.producer == "one_shot" and level == 0:
            m = masks.magnitude_prune(ctx.prunable(result.state), mask,
                                      ctx.one_shot_target(target.sparsity), prune.scope,
                                      ctx.exclude)
            checkpoint.save(ctx.blobs, target.mask_blob, {"mask": m})
        elif target.producer in ("imp", "rewind") and \
                levels.level_for(target.sparsity, ctx.schedule) == level:
            m, _ = target_mask(ctx, level, mask, result, target.sparsity)
            checkpoint.save(ctx.blobs, target.mask_blob, {"mask": m})


def _snapshot(ctx: TrunkContext, k: int) -> Callable[[int, torch.nn.Module], None] | None:
    """A step hook that stores the dense run's weights after step ``k`` (None for k = 0)."""
    if k == 0:
        return None

    def keep(step: int, model: torch.nn.Module) -> None:
        if step == k:
            state = {n: v.detach().cpu().clone() for n, v in model.state_dict().items()}
            checkpoint.save(ctx.blobs.child("level_0"), rewind_blob(k), {"state": state})

    return keep


def _write_point(ctx: TrunkContext, labels: rows.Labels, sink: Sink, point: Point, level: int,
                 mask: State, result: StageResult, walk: Walk) -> None:
    """Write the rows of ``point`` if it is produced by ``level`` of ``walk``."""
    trunk = ctx.trunk
    if point.method == "dense":
        if level != 0:
            return
        mask = {}
    elif levels.level_for(point.target_sparsity, ctx.schedule) != level:
        return
    per_epoch = steps_per_epoch(len(ctx.data.train_y), trunk.train.batch_size)
    method = methods.get(point.method)
    total = methods.total_epochs(method, level, trunk.train.run_epochs(per_epoch), trunk.prune,
                                 walk.start_step / per_epoch)
    start = ctx.init if walk.start is None else walk.start
    run = rows.Run(point=point, result=result, start=start, mask=mask, level=level,
                   total_epochs=total, sparsity=rows.measured_sparsity(mask),
                   columns=rows.method_columns(method, None, walk.start_step))
    rows.write_point(sink, ctx, labels, run)
