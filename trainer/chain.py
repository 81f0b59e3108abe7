"""The chain trial: dense pretraining and IMP levels of one trunk replicate, and its masks.

IMP with reset to θ0 (Frankle & Carbin 2019, §1 and App. B strategy 1; open_lth
``lottery/runner.py``): level 0 trains θ0 densely; level L trains θ0 ⊙ m_L, where m_L prunes the
trained weights of level L-1 to sparsity ``1 - (1 - rate) ** L``. The level schedule does not
depend on the requested sparsities, so adding a sparsity to a sweep reuses every stored level.
A requested sparsity s between levels gets its mask from one extra pruning step of level
L = ``level_for(s)``'s trained weights (a shorter last round). One-shot masks (the ``omp_*``
methods; Ma et al. 2021 §2.1) prune level 0's trained weights θT straight to s, and are stored
right after level 0.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from trainer import checkpoint
from trainer import levels
from trainer import masks
from trainer import methods
from trainer import rows
from trainer.checkpoint import Blobs
from trainer.jobs import ChainJob
from trainer.jobs import Point
from trainer.jobs import curves_part
from trainer.loop import EpochRecord
from trainer.loop import StageResult
from trainer.rows import Sink
from trainer.stage import run_stage
from trainer.trunk import State
from trainer.trunk import TrunkContext
from trainer.trunk import dense_correlation
from trainer.trunk import open_trunk


def target_mask(ctx: TrunkContext, level: int, level_mask: State, trained: StageResult,
                target: float) -> tuple[State, int]:
    """The mask at ``target`` sparsity and the IMP rounds behind it.

    Args:
        ctx: The trunk.
        level: ``levels.level_for(target, rate)``.
        level_mask: m_level (full for level 0).
        trained: Level ``level``'s trained result.
        target: Requested sparsity (fraction).
    Returns:
        (mask, mask_level): m_level itself when ``target`` is the level's sparsity, else
        ``level_mask`` pruned further from the level's trained weights (one more round).
    """
    prune = ctx.trunk.prune
    rounds = levels.mask_level(target, prune.rate)
    if rounds == level:
        return level_mask, level
    pruned = masks.magnitude_prune(ctx.prunable(trained.state), level_mask, target,
                                   prune.scope, ctx.exclude)
    return pruned, rounds


def run_chain(job: ChainJob, artifacts: Blobs, sink: Sink, device: torch.device,
              on_epoch: Callable[[EpochRecord], None] | None = None) -> None:
    """Train levels 0..``job.levels``, store every target mask, write the chain's rows.

    Each level's ``curves`` part and its own commit record (keyed by the part) are written
    when the level is done; a point's ``runs`` and ``layers`` parts and its commit record
    follow (``rows.write_point``).

    Args:
        job: What to walk and which rows to write (``dense``, on-level ``lth``).
        artifacts: The sweep's ``artifacts/`` directory.
        sink: Row sink (table parts and commit records).
        device: Training device.
        on_epoch: Progress hook called after every epoch.
    Raises:
        ValueError, FileNotFoundError: from loading the trunk (bad model, data or layers).
    """
    ctx = open_trunk(job.trunk, artifacts, device)
    prune = job.trunk.prune
    mask = masks.full_mask(ctx.init, ctx.names)
    labels, prev = None, None
    for level in range(job.levels + 1):
        if level > 0:
            mask = masks.magnitude_prune(ctx.prunable(prev.state), mask,
                                         levels.level_sparsity(prune.rate, level), prune.scope,
                                         ctx.exclude)
        blobs = ctx.blobs.child(f"level_{level}")
        result = run_stage(blobs, ctx.model, ctx.init, ctx.to_device(mask) if level else {},
                           ctx.data, job.trunk.train, job.trunk.seed, on_epoch)
        if level == 0:
            rp_dense, rp_layers = dense_correlation(ctx, result.state)
            labels = rows.Labels(job.sweep, job.trial_id, job.code_version, rp_dense, rp_layers)
        part = curves_part(job.trial_id, level)
        sink.write_part("curves", part,
                        rows.curve_rows(ctx, labels, "dense" if level == 0 else "lth",
                                        job.level_targets[level], level, masks.sparsity(mask),
                                        result))
        sink.commit(part, {"curves": [part]})  # the level's own record: its curves are done
        for target in job.targets:
            if target.producer == "one_shot" and level == 0:
                m = masks.magnitude_prune(ctx.prunable(result.state), mask, target.sparsity,
                                          prune.scope, ctx.exclude)
                checkpoint.save(ctx.blobs, target.mask_blob, {"mask": m})
            elif target.producer == "imp" and \
                    levels.level_for(target.sparsity, prune.rate) == level:
                m, _ = target_mask(ctx, level, mask, result, target.sparsity)
                checkpoint.save(ctx.blobs, target.mask_blob, {"mask": m})
        for point in job.points:
            _write_point(ctx, labels, sink, point, level, mask, result)
        prev = result


def _write_point(ctx: TrunkContext, labels: rows.Labels, sink: Sink, point: Point, level: int,
                 mask: State, result: StageResult) -> None:
    """Write the rows of ``point`` if it is produced by ``level`` of the chain."""
    trunk = ctx.trunk
    if point.method == "dense":
        if level != 0:
            return
        mask = {}
    elif levels.level_for(point.target_sparsity, trunk.prune.rate) != level:
        return
    total = methods.total_epochs(methods.get(point.method), level, trunk.train.epochs,
                                 trunk.prune)
    run = rows.Run(point=point, result=result, start=ctx.init, mask=mask, level=level,
                   total_epochs=total)
    rows.write_point(sink, ctx, labels, run)
