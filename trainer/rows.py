"""Stage results -> rows of the ``runs``, ``curves`` and ``layers`` tables (analysis/schema.py)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from typing import Protocol

from trainer import masks
from trainer import metrics
from trainer.hparams import steps_per_epoch
from trainer.jobs import Point
from trainer.loop import StageResult
from trainer.trunk import State
from trainer.trunk import TrunkContext

MIN_KEPT_FOR_RP = 5


class Sink(Protocol):
    """Where rows go (``sweeps.store.Store`` is one): table parts, then commit records."""

    def write_part(self, table_name: str, part: str, rows: list[dict[str, Any]]) -> None:
        """Write ``rows`` as one part of ``table_name``, atomically, replacing an older one."""

    def commit(self, key: str, parts: Mapping[str, Sequence[str]]) -> None:
        """Record that grid point ``key`` is complete: its parts (table -> part keys) exist."""


@dataclass(frozen=True)
class Run:
    """One finished row-producing training, with what is needed to describe it.

    Attributes:
        point: The grid point.
        result: The training result.
        start: Initial state_dict of the run (before masking).
        mask: The run's mask over prunable layers (empty for dense).
        level: IMP rounds behind the mask (0 for dense).
        total_epochs: All training epochs behind the row.
        sparsity: The row's measured sparsity (of the mask; sdt's from its width).
        pairs: Liu et al.'s mechanism pairs (``mechanism_pairs``) for P&F rows, else {}.
        columns: Method-specific columns (``METHOD_COLUMNS``; ``Method.columns``).
    """

    point: Point
    result: StageResult
    start: State
    mask: State
    level: int
    total_epochs: int
    sparsity: float
    pairs: dict[str, float | None] = dataclasses.field(default_factory=dict)
    columns: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclass(frozen=True)
class Labels:
    """Columns shared by every row of one trial."""

    sweep: str
    trial_id: str
    code_version: str
    rp_dense: dict[float, float]
    rp_dense_layers: dict[str, float]


def _keys(ctx: TrunkContext, labels: Labels) -> dict[str, Any]:
    t = ctx.trunk
    return {"sweep": labels.sweep, "trial_id": labels.trial_id, "model": t.model,
            "dataset": ctx.data_hp.label, "lr": t.train.lr, "seed": t.seed}


# Columns only some methods fill (``Method.columns``); null in every other row.
METHOD_COLUMNS = ("transfer_init", "transfer_regime", "rewind_step")


def measured_sparsity(mask: State, given: float | None = None) -> float:
    """The ``sparsity`` column: ``given`` when the method sets it (sdt: from its width), else
    the mask's removed fraction (0 without a mask: dense)."""
    if given is not None:
        return given
    return masks.sparsity(mask) if mask else 0.0


def method_columns(method: Any, hparams: Any, rewind_step: int) -> dict[str, Any]:
    """``METHOD_COLUMNS`` values of a row: the method's own (``Method.columns``), and k for
    rows whose mask comes from a rewind walk."""
    out = dict(method.columns(hparams)) if method.columns else {}
    if method.mask == "rewind":
        out["rewind_step"] = rewind_step
    return out


def run_overlaps(ctx: TrunkContext, run: Run) -> metrics.Overlaps:
    """R_0.2 of the run's masked start vs its trained weights, over the survivors (Liu et al.
    2021 Eq. 1): the ``rp_run_p20`` columns of its ``runs`` and ``layers`` rows. The mask
    ranks the pruned entries last, so the start needs no masking here."""
    return metrics.overlaps(ctx.prunable(run.start), ctx.prunable(run.result.state), (0.2,),
                            run.mask or None)


def run_row(ctx: TrunkContext, labels: Labels, run: Run,
            rp_run: metrics.Overlaps) -> dict[str, Any]:
    """The ``runs`` row of ``run`` (accuracies are fractions, R_p per Liu et al. 2021 Eq. 1;
    ``rp_run`` = ``run_overlaps(ctx, run)``)."""
    t, res = ctx.trunk, run.result
    return {**_keys(ctx, labels), "config_hash": run.point.config_hash,
            "method": run.point.method, "target_sparsity": run.point.target_sparsity,
            "sparsity": run.sparsity, "level": run.level,
            "epochs": len(res.records), "total_epochs": run.total_epochs,
            "test_acc": res.final.test_acc, "best_test_acc": res.best.test_acc,
            "best_epoch": res.best.epoch, "test_loss": res.final.test_loss,
            "train_loss": res.final.train_loss,
            **{f"rp_dense_p{round(p * 100)}": v for p, v in labels.rp_dense.items()},
            "rp_run_p20": rp_run.pooled(0.2), "optimizer": t.train.optimizer,
            "batch_size": t.train.batch_size, "momentum": t.train.momentum,
            "weight_decay": t.train.weight_decay, "prune_rate": t.prune.rate,
            "prune_scope": t.prune.scope, "device": ctx.device.type,
            "wall_time_s": res.wall_time_s, "code_version": labels.code_version,
            **_validation(ctx, res), **{c: run.pairs.get(c) for c in PAIR_COLUMNS},
            "recipe": run.point.recipe, "source_dataset": t.data.label,
            "target_dataset": ctx.data_hp.label,
            **{c: run.columns.get(c) for c in METHOD_COLUMNS}, **_search(run.point)}


def _search(point: Point) -> dict[str, Any]:
    """The ``search*`` columns of a runs row (nulls for grid points)."""
    if not point.search:
        return {"search": None, "search_trial": None, "search_params": None}
    return {"search": point.search, "search_trial": point.search_trial,
            "search_params": point.search_params}


PAIR_COLUMNS = ("rp_init_vs_pf_p20", "rp_reinit_vs_pf_p20", "rp_pf_vs_init_p20",
                "rp_pf_vs_dense_p20")


def mechanism_pairs(ctx: TrunkContext, mask: State, trained: State, init: State,
                    reinit: State, dense: State) -> dict[str, float | None]:
    """Liu et al.'s four R_0.2 pairs around a P&F run (θT ⊙ m)_T = ``trained``.

    The first two compare the masked inits with the P&F result over the survivors; the last
    two compare the P&F result with the dense θ0 and θT over whole layers, which App. F does
    only for p below the density (null when any layer's density is <= 0.2: its whole-layer
    top-20 % set would hold pruned zeros).

    Source: Liu et al. 2021 (arXiv 2102.11068) §4.4, Fig. 5c/d, App. D and App. F Table 1.
    """
    p = 0.2
    out = ctx.prunable(trained)
    # over the survivors: ``mask`` ranks the pruned entries last, as masking the inits would
    pairs = {"rp_init_vs_pf_p20": metrics.weight_correlation(ctx.prunable(init), out, p, mask),
             "rp_reinit_vs_pf_p20": metrics.weight_correlation(ctx.prunable(reinit), out, p,
                                                               mask)}
    dense_ok = min(float(m.float().mean()) for m in mask.values()) > p
    pairs["rp_pf_vs_init_p20"] = metrics.weight_correlation(out, ctx.prunable(init), p) \
        if dense_ok else None
    pairs["rp_pf_vs_dense_p20"] = metrics.weight_correlation(out, ctx.prunable(dense), p) \
        if dense_ok else None
    return pairs


def _validation(ctx: TrunkContext, res: StageResult) -> dict[str, Any]:
    """The ``val_*`` columns of a runs row (nulls without a validation split).

    ``best_val_iteration`` is the step of the schedule at the end of that epoch (an
    ``iterations`` budget caps the last one); epochs count from the schedule's start, so for
    a run resumed at step k (``lth_rewind``) it includes those k steps.
    """
    best = res.best_val
    train = ctx.trunk.train
    per_epoch = steps_per_epoch(len(ctx.data.train_y), train.batch_size)
    step = None if best is None else best.epoch * per_epoch
    if step is not None and train.iterations:
        step = min(step, train.iterations)
    return {"val_acc": res.final.val_acc, "val_loss": res.final.val_loss,
            "best_val_epoch": None if best is None else best.epoch,
            "best_val_iteration": step,
            "test_acc_at_best_val": None if best is None else best.test_acc}


def layer_rows(ctx: TrunkContext, labels: Labels, run: Run,
               rp_run: metrics.Overlaps) -> list[dict[str, Any]]:
    """One ``layers`` row per prunable layer: sizes, sparsity and per-layer R_0.2
    (``rp_run`` = ``run_overlaps(ctx, run)``)."""
    start = ctx.prunable(run.start)
    per_layer = rp_run.per_layer(0.2)
    rows = []
    for name in ctx.names:
        kept = int(run.mask[name].sum()) if name in run.mask else start[name].numel()
        rp = per_layer.get(name, math.nan) if kept >= MIN_KEPT_FOR_RP else math.nan
        n = start[name].numel()
        rows.append({**_keys(ctx, labels), "config_hash": run.point.config_hash,
                     "method": run.point.method,
                     "target_sparsity": run.point.target_sparsity, "layer": name,
                     "n_weights": n, "n_kept": kept, "sparsity": 1.0 - kept / n,
                     "rp_run_p20": rp, "rp_dense_p20": labels.rp_dense_layers[name],
                     "recipe": run.point.recipe,
                     "mask_bits": pack_mask(run.mask[name]) if name in run.mask else None})
    return rows


def pack_mask(mask: Any) -> bytes:
    """A bool mask tensor flattened in C order, packed 8 per byte (``numpy.packbits``,
    big-endian bits, 1 = kept): the ``mask_bits`` column, read by ``analysis.masks``."""
    import numpy as np

    return np.packbits(mask.detach().to("cpu").numpy().astype(bool).ravel()).tobytes()


def curve_rows(ctx: TrunkContext, labels: Labels, method: str, target_sparsity: float,
               level: int, sparsity: float, result: StageResult,
               recipe: str = "base") -> list[dict[str, Any]]:
    """One ``curves`` row per epoch of ``result``.

    Args:
        target_sparsity: The point's requested sparsity, fraction removed.
        level: The row's ``level`` (``trainer.methods.mask_level``).
        sparsity: The measured sparsity of the stage's mask, fraction removed
            (``measured_sparsity``).
    """
    return [{**_keys(ctx, labels), "method": method, "target_sparsity": target_sparsity,
             "level": level, "sparsity": sparsity, "epoch": r.epoch, "lr_epoch": r.lr,
             "train_loss": r.train_loss, "test_loss": r.test_loss, "test_acc": r.test_acc,
             "val_loss": r.val_loss, "val_acc": r.val_acc, "recipe": recipe}
            for r in result.records]


def write_point(sink: Sink, ctx: TrunkContext, labels: Labels, run: Run) -> None:
    """Write a grid point's ``runs`` and ``layers`` parts, then its commit record.

    The record is written last and lists every part of the point (including the ``curves``
    parts of the stages behind it, ``Point.curves``, which must already be written), so a
    point is done exactly when its record exists and those parts are valid.
    """
    key = run.point.config_hash
    rp_run = run_overlaps(ctx, run)
    sink.write_part("layers", key, layer_rows(ctx, labels, run, rp_run))
    sink.write_part("runs", key, [run_row(ctx, labels, run, rp_run)])
    sink.commit(key, {"runs": [key], "layers": [key], "curves": list(run.point.curves)})
