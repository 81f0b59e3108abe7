"""The branch trial: one method at one target sparsity, started from a finished trunk."""

from __future__ import annotations

from collections.abc import Callable

import torch

from trainer import checkpoint
from trainer import masks
from trainer import methods
from trainer import rows
from trainer.checkpoint import Blobs
from trainer.jobs import BranchJob
from trainer.loop import EpochRecord
from trainer.stage import load_result
from trainer.stage import run_stage
from trainer.trunk import Emit
from trainer.trunk import TrunkContext
from trainer.trunk import dense_correlation
from trainer.trunk import mask_level
from trainer.trunk import mask_name
from trainer.trunk import open_trunk


def _sources(ctx: TrunkContext, target: float) -> methods.Sources:
    dense = load_result(ctx.blobs.child("level_0"))
    saved = checkpoint.load(ctx.blobs, mask_name(target))
    if dense is None or saved is None:
        raise RuntimeError(
            f"trunk {ctx.trunk.artifact_dir} has no dense result or no mask at sparsity "
            f"{target}: its chain trial must finish before its branches run")
    return methods.Sources(init=ctx.init, dense_final=dense.state, mask=saved["mask"],
                           build_model=ctx.build, seed=ctx.trunk.seed, target_sparsity=target)


def run_branch(job: BranchJob, artifacts: Blobs, emit: Emit, device: torch.device,
               on_epoch: Callable[[EpochRecord], None] | None = None) -> None:
    """Train ``job.point.method`` at ``job.point.target_sparsity`` and write its rows.

    Args:
        job: The branch.
        artifacts: The sweep's ``artifacts/`` directory.
        emit: Row sink, called as ``emit(table, part, rows)``.
        device: Training device.
        on_epoch: Progress hook called after every epoch.
    Raises:
        RuntimeError: the trunk's dense result or target mask is missing.
        ValueError: unknown method.
    """
    ctx = open_trunk(job.trunk, artifacts, device)
    point, prune = job.point, job.trunk.prune
    method = methods.get(point.method)
    src = _sources(ctx, point.target_sparsity)
    start = method.start(src)
    level = mask_level(point.target_sparsity, prune.rate)
    blobs = ctx.blobs.child(f"level_{level}",
                            f"{point.method}-sparsity_{point.target_sparsity:.6f}")
    result = run_stage(blobs, ctx.model, start.state, ctx.to_device(start.mask), ctx.data,
                       job.trunk.train, job.trunk.seed, on_epoch)
    rp_dense, rp_layers = dense_correlation(ctx, src.dense_final)
    labels = rows.Labels(job.sweep, job.trial_id, job.code_version, rp_dense, rp_layers)
    epochs = job.trunk.train.epochs
    run = rows.Run(point=point, result=result, start=start.state, mask=start.mask,
                   level=level, total_epochs=methods.total_epochs(method, level, epochs, prune))
    emit("curves", job.trial_id,
         rows.curve_rows(ctx, labels, point.method, point.target_sparsity, level,
                         masks.sparsity(start.mask), result))
    emit("runs", point.config_hash, [rows.run_row(ctx, labels, run)])
    emit("layers", point.config_hash, rows.layer_rows(ctx, labels, run))
