"""The branch trial: one method at one target sparsity, started from a finished trunk."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from trainer import checkpoint
from trainer import levels
from trainer import masks
from trainer import methods
from trainer import recipes
from trainer import rows
from trainer import seeding
from trainer.checkpoint import Blobs
from trainer.hparams import steps_per_epoch
from trainer.jobs import BranchJob
from trainer.jobs import curves_part
from trainer.loop import EpochRecord
from trainer.loop import StageOptions
from trainer.models import Arch
from trainer.rows import Sink
from trainer.stage import load_result
from trainer.stage import run_stage
from trainer.trunk import State
from trainer.trunk import TrunkContext
from trainer.trunk import dense_correlation
from trainer.trunk import open_trunk
from trainer.trunk import rewind_state
from trainer.trunk import rewind_steps


def sources(ctx: TrunkContext, job: BranchJob, method: methods.Method,
            hparams: Any) -> methods.Sources:
    """What the trunk gives the branch: θ0, θT, its stored mask (all True for methods that
    draw theirs or have none), θk for rewinding, the network builder for the branch's data.

    Raises:
        RuntimeError: the dense result or the mask is not stored (its chain must finish).
    """
    dense = load_result(ctx.blobs.child("level_0"))
    own = method.mask in ("random", "small_dense")  # no stored mask: drawn or none
    saved = {"mask": masks.full_mask(ctx.init, ctx.names)} if own else \
        checkpoint.load_or_none(ctx.blobs, job.mask_blob, ("mask",))
    if dense is None or saved is None:
        raise RuntimeError(
            f"trunk {ctx.trunk.artifact_dir} has no good dense result or mask "
            f"{job.mask_blob}: its chain trial must finish (or be re-run) before its branches")
    k = rewind_steps(ctx, job.method_hparams) if method.mask == "rewind" else 0
    return methods.Sources(init=ctx.init, dense_final=dense.state, mask=saved["mask"],
                           build_model=ctx.build, seed=ctx.trunk.seed,
                           target_sparsity=job.point.target_sparsity, exclude=ctx.exclude,
                           hparams=hparams, scope=ctx.trunk.prune.scope,
                           count_weights=ctx.count_weights,
                           rewound=rewind_state(ctx, k) if k else None, rewind_step=k)


def _start(ctx: TrunkContext, job: BranchJob, method: methods.Method,
           src: methods.Sources) -> methods.Start:
    """``method.start``, or its training phase (``prepare``) in its own directory."""
    if method.prepare is None:
        return method.start(src)
    phase = methods.Phase(model=ctx.model, data=ctx.data, train=ctx.trunk.train,
                          exclude=ctx.exclude, blobs=ctx.blobs.child(job.prepare_dir),
                          hparams=src.hparams,
                          imp_rounds=levels.mask_level(job.point.target_sparsity,
                                                       ctx.schedule))
    return method.prepare(src, phase)


def _network(ctx: TrunkContext, job: BranchJob, start: methods.Start) -> tuple[nn.Module, State]:
    """The network the stage trains and its start state: the trunk's network, or one with the
    recipe's architecture options and the start's width (parameters the start lacks, such as
    ToST's jump convolutions, keep their own initialization)."""
    arch = recipes.arch(job.recipe, start.width)
    if arch == Arch():
        return ctx.model, start.state
    net = ctx.build(seeding.generator(ctx.trunk.seed, "recipe"), arch)
    return net.to(ctx.device), {**net.state_dict(), **start.state}


def _teacher(ctx: TrunkContext, job: BranchJob, dense: State) -> nn.Module | None:
    """The dense θT network in eval mode, when the recipe distills from it."""
    if not job.recipe.distill_alpha:
        return None
    net = ctx.build(seeding.generator(ctx.trunk.seed, "teacher"))
    try:
        net.load_state_dict(dense)
    except RuntimeError as err:
        raise ValueError(f"cannot distill {job.point.method} on {ctx.data_hp.label} from the "
                         f"dense network of {ctx.trunk.data.label}: {err}") from None
    return net.to(ctx.device).eval()


def run_branch(job: BranchJob, artifacts: Blobs, sink: Sink, device: torch.device,
               on_epoch: Callable[[EpochRecord], None] | None = None) -> None:
    """Train ``job.point.method`` at ``job.point.target_sparsity`` and write its rows.

    The method gives the start (weights, mask, width, frozen layers, first step); the job's
    recipe gives the architecture options, the loss and the warmup of the one stage.

    Args:
        job: The branch.
        artifacts: The sweep's ``artifacts/`` directory.
        sink: Row sink (table parts and commit records).
        device: Training device.
        on_epoch: Progress hook called after every epoch.
    Raises:
        RuntimeError: the trunk's dense result or target mask is missing or unreadable.
        ValueError: unknown method, or a recipe that does not fit (distilling into another
            dataset's classes, jump convolutions on a network without residual blocks).
    """
    point, prune, train = job.point, job.trunk.prune, job.trunk.train
    method = methods.get(point.method)
    hparams = method.hparams(**job.method_hparams) if method.hparams else None
    data_hp = method.retarget(hparams, job.trunk.data) if method.retarget else None
    ctx = open_trunk(job.trunk, artifacts, device, data_hp)
    src = sources(ctx, job, method, hparams)
    start = _start(ctx, job, method, src)
    level = methods.mask_level(method, point.target_sparsity, ctx.schedule, hparams)
    model, state = _network(ctx, job, start)
    options = recipes.options(job.recipe, steps_per_epoch(len(ctx.data.train_y),
                                                          train.batch_size),
                              _teacher(ctx, job, src.dense_final),
                              StageOptions(frozen=start.frozen, start_step=start.start_step))
    result = run_stage(ctx.blobs.child(job.stage_dir), model, state, ctx.to_device(start.mask),
                       ctx.data, train, job.trunk.seed, on_epoch, options)
    rp_dense, rp_layers = dense_correlation(ctx, src.dense_final)
    labels = rows.Labels(job.sweep, job.trial_id, job.code_version, rp_dense, rp_layers)
    per_epoch = steps_per_epoch(len(ctx.data.train_y), train.batch_size)
    total = methods.total_epochs(method, level, train.run_epochs(per_epoch), prune,
                                 src.rewind_step / per_epoch) + start.extra_epochs
    reinit = methods.get("random_reinit").start  # θ0', drawn as that method draws it
    pairs = {} if not method.pf_pairs else rows.mechanism_pairs(
        ctx, start.mask, result.state, src.init, reinit(src).state, src.dense_final)
    sparsity = rows.measured_sparsity(start.mask, start.sparsity)
    run = rows.Run(point=point, result=result, start=start.state, mask=start.mask,
                   level=level, total_epochs=total, pairs=pairs, sparsity=sparsity,
                   columns=rows.method_columns(method, hparams, src.rewind_step))
    sink.write_part("curves", curves_part(job.trial_id),
                    rows.curve_rows(ctx, labels, point.method, point.target_sparsity, level,
                                    sparsity, result, point.recipe))
    rows.write_point(sink, ctx, labels, run)
