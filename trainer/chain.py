"""The chain trial: dense pretraining and IMP levels of one trunk replicate.

IMP with reset to θ0 (Frankle & Carbin 2019, §1 and App. B strategy 1; open_lth
``lottery/runner.py``): level 0 trains θ0 densely; level L trains θ0 ⊙ m_L, where m_L prunes the
trained weights of level L-1 to sparsity ``1 - (1 - rate) ** L``. The level schedule does not
depend on the requested sparsities, so adding a sparsity to a sweep reuses every stored level.
A requested sparsity s between levels gets its mask from one extra pruning step of level
L = ``level_for(s)``'s trained weights (a shorter last round).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from trainer import checkpoint
from trainer import masks
from trainer import methods
from trainer import rows
from trainer.checkpoint import Blobs
from trainer.jobs import ChainJob
from trainer.jobs import Point
from trainer.loop import EpochRecord
from trainer.loop import StageResult
from trainer.stage import run_stage
from trainer.trunk import Emit
from trainer.trunk import State
from trainer.trunk import TrunkContext
from trainer.trunk import dense_correlation
from trainer.trunk import mask_level
from trainer.trunk import mask_name
from trainer.trunk import open_trunk


def target_mask(ctx: TrunkContext, level: int, level_mask: State, trained: StageResult,
                target: float) -> tuple[State, int]:
    """The mask at ``target`` sparsity and the IMP rounds behind it.

    Args:
        ctx: The trunk.
        level: ``masks.level_for(target, rate)``.
        level_mask: m_level (full for level 0).
        trained: Level ``level``'s trained result.
        target: Requested sparsity (fraction).
    Returns:
        (mask, mask_level): m_level itself when ``target`` is the level's sparsity, else
        ``level_mask`` pruned further from the level's trained weights (one more round).
    """
    prune = ctx.trunk.prune
    rounds = mask_level(target, prune.rate)
    if rounds == level:
        return level_mask, level
    pruned = masks.magnitude_prune(ctx.prunable(trained.state), level_mask, target,
                                   prune.scope, ctx.exclude)
    return pruned, rounds


def run_chain(job: ChainJob, artifacts: Blobs, emit: Emit, device: torch.device,
              on_epoch: Callable[[EpochRecord], None] | None = None) -> None:
    """Train levels 0..``job.levels``, store every target mask, write the chain's rows.

    Args:
        job: What to walk and which rows to write (``dense``, on-level ``lth``).
        artifacts: The sweep's ``artifacts/`` directory.
        emit: Row sink, called as ``emit(table, part, rows)``.
        device: Training device.
        on_epoch: Progress hook called after every epoch.
    Raises:
        ValueError, FileNotFoundError: from loading the trunk (bad model, data or layers).
    """
    ctx = open_trunk(job.trunk, artifacts, device)
    prune, epochs = job.trunk.prune, job.trunk.train.epochs
    mask = masks.full_mask(ctx.init, ctx.names)
    labels, prev = None, None
    for level in range(job.levels + 1):
        if level > 0:
            mask = masks.magnitude_prune(ctx.prunable(prev.state), mask,
                                         masks.level_sparsity(prune.rate, level), prune.scope,
                                         ctx.exclude)
        blobs = ctx.blobs.child(f"level_{level}")
        result = run_stage(blobs, ctx.model, ctx.init, ctx.to_device(mask) if level else {},
                           ctx.data, job.trunk.train, job.trunk.seed, on_epoch)
        if level == 0:
            rp_dense, rp_layers = dense_correlation(ctx, result.state)
            labels = rows.Labels(job.sweep, job.trial_id, job.code_version, rp_dense, rp_layers)
        sparsity = masks.sparsity(mask)
        emit("curves", f"{job.trial_id}-L{level}",
             rows.curve_rows(ctx, labels, "dense" if level == 0 else "lth",
                             masks.level_sparsity(prune.rate, level), level, sparsity, result))
        for target in job.targets:
            if masks.level_for(target, prune.rate) == level:
                m, _ = target_mask(ctx, level, mask, result, target)
                checkpoint.save(ctx.blobs, mask_name(target), {"mask": m})
        for point in job.points:
            _emit_point(ctx, labels, emit, point, level, mask, result, epochs)
        prev = result


def _emit_point(ctx: TrunkContext, labels: rows.Labels, emit: Emit, point: Point, level: int,
                mask: State, result: StageResult, epochs: int) -> None:
    """Write the rows of ``point`` if it is produced by ``level`` of the chain."""
    rate = ctx.trunk.prune.rate
    if point.method == "dense":
        if level != 0:
            return
        run = rows.Run(point=point, result=result, start=ctx.init, mask={}, level=0,
                       total_epochs=epochs)
    else:
        if masks.level_for(point.target_sparsity, rate) != level:
            return
        method = methods.get(point.method)
        run = rows.Run(point=point, result=result, start=ctx.init, mask=mask, level=level,
                       total_epochs=methods.total_epochs(method, level, epochs,
                                                         ctx.trunk.prune))
    emit("runs", point.config_hash, [rows.run_row(ctx, labels, run)])
    emit("layers", point.config_hash, rows.layer_rows(ctx, labels, run))
