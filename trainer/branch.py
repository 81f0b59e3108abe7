"""The branch trial: one method at one target sparsity, started from a finished trunk."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from trainer import checkpoint
from trainer import levels
from trainer import masks
from trainer import methods
from trainer import rows
from trainer.checkpoint import Blobs
from trainer.jobs import BranchJob
from trainer.jobs import curves_part
from trainer.loop import EpochRecord
from trainer.rows import Sink
from trainer.stage import load_result
from trainer.stage import run_stage
from trainer.trunk import TrunkContext
from trainer.trunk import dense_correlation
from trainer.trunk import open_trunk


def _sources(ctx: TrunkContext, job: BranchJob, hparams: Any) -> methods.Sources:
    dense = load_result(ctx.blobs.child("level_0"))
    own = methods.get(job.point.method).mask == "random"  # draws its own mask
    saved = {"mask": masks.full_mask(ctx.init, ctx.names)} if own else \
        checkpoint.load_or_none(ctx.blobs, job.mask_blob, ("mask",))
    if dense is None or saved is None:
        raise RuntimeError(
            f"trunk {ctx.trunk.artifact_dir} has no good dense result or mask "
            f"{job.mask_blob}: its chain trial must finish (or be re-run) before its branches")
    return methods.Sources(init=ctx.init, dense_final=dense.state, mask=saved["mask"],
                           build_model=ctx.build, seed=ctx.trunk.seed,
                           target_sparsity=job.point.target_sparsity, exclude=ctx.exclude,
                           hparams=hparams)


def _start(ctx: TrunkContext, job: BranchJob, method: methods.Method,
           src: methods.Sources) -> methods.Start:
    """``method.start``, or its training phase (``prepare``) in the stage's own subdirectory."""
    if method.prepare is None:
        return method.start(src)
    phase = methods.Phase(model=ctx.model, data=ctx.data, train=ctx.trunk.train,
                          exclude=ctx.exclude, blobs=ctx.blobs.child(job.stage_dir, "prepare"),
                          hparams=src.hparams,
                          imp_rounds=levels.mask_level(job.point.target_sparsity,
                                                       ctx.trunk.prune.rate))
    return method.prepare(src, phase)


def run_branch(job: BranchJob, artifacts: Blobs, sink: Sink, device: torch.device,
               on_epoch: Callable[[EpochRecord], None] | None = None) -> None:
    """Train ``job.point.method`` at ``job.point.target_sparsity`` and write its rows.

    Args:
        job: The branch.
        artifacts: The sweep's ``artifacts/`` directory.
        sink: Row sink (table parts and commit records).
        device: Training device.
        on_epoch: Progress hook called after every epoch.
    Raises:
        RuntimeError: the trunk's dense result or target mask is missing or unreadable.
        ValueError: unknown method.
    """
    ctx = open_trunk(job.trunk, artifacts, device)
    point, prune = job.point, job.trunk.prune
    method = methods.get(point.method)
    hparams = method.hparams(**job.method_hparams) if method.hparams else None
    src = _sources(ctx, job, hparams)
    start = _start(ctx, job, method, src)
    level = methods.mask_level(method, point.target_sparsity, prune, hparams)
    result = run_stage(ctx.blobs.child(job.stage_dir), ctx.model, start.state,
                       ctx.to_device(start.mask), ctx.data, job.trunk.train, job.trunk.seed,
                       on_epoch)
    rp_dense, rp_layers = dense_correlation(ctx, src.dense_final)
    labels = rows.Labels(job.sweep, job.trial_id, job.code_version, rp_dense, rp_layers)
    epochs = job.trunk.train.epochs
    total = methods.total_epochs(method, level, epochs, prune) + start.extra_epochs
    reinit = methods.get("random_reinit").start  # θ0', drawn as that method draws it
    pairs = {} if not method.pf_pairs else rows.mechanism_pairs(
        ctx, start.mask, result.state, src.init, reinit(src).state, src.dense_final)
    run = rows.Run(point=point, result=result, start=start.state, mask=start.mask,
                   level=level, total_epochs=total, pairs=pairs)
    sink.write_part("curves", curves_part(job.trial_id),
                    rows.curve_rows(ctx, labels, point.method, point.target_sparsity, level,
                                    masks.sparsity(start.mask), result))
    rows.write_point(sink, ctx, labels, run)
