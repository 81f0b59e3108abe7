"""Loading a trunk's shared pieces: data, θ0, the model builder, stored masks."""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field

import torch
from torch import nn

from trainer import checkpoint
from trainer import data as datasets
from trainer import levels
from trainer import masks
from trainer import methods
from trainer import metrics
from trainer import models
from trainer import seeding
from trainer.checkpoint import Blobs
from trainer.data.base import InMemoryData
from trainer.hparams import DataHparams
from trainer.hparams import steps_per_epoch
from trainer.jobs import Trunk
from trainer.loop import StageOptions
from trainer.loop import train
from trainer.models import Arch

State = dict[str, torch.Tensor]
RP_DENSE_PS = (0.1, 0.2, 0.3, 0.4, 0.5)


@dataclass
class TrunkContext:
    """Everything the chain and its branches share, loaded once per trial.

    Attributes:
        trunk: The trunk description.
        blobs: The trunk's artifact directory.
        data: The dataset the trial trains on, on ``device`` (the trunk's, or a transfer
            target's).
        device: Where training runs.
        model: A network of the trunk's architecture for ``data`` on ``device`` (weights are
            scratch).
        init: θ0 state_dict on CPU (for the trunk's own dataset).
        names: Prunable parameter names.
        exclude: Names kept dense (``pruning.keep_dense`` resolved).
        data_hp: What ``data`` is.
        rates: Per-level IMP rate of every pruned layer (``masks.layer_rates``).
    """

    trunk: Trunk
    blobs: Blobs
    data: InMemoryData
    device: torch.device
    model: nn.Module
    init: State
    names: list[str]
    exclude: frozenset[str]
    data_hp: DataHparams
    rates: dict[str, float] = field(default_factory=dict)

    @property
    def schedule(self) -> levels.Schedule:
        """The trunk's IMP level schedule (``levels.level_schedule``)."""
        return levels.level_schedule(self.trunk)

    def prune_target(self, level: int, target: float | None = None) -> float | dict[str, float]:
        """What ``masks.magnitude_prune`` prunes to for IMP level ``level`` (``target`` None),
        or for an off-level ``target`` sparsity from level ``level``'s trained weights (the
        shorter last round: ``levels.Schedule.last_round`` of the next level's rates).

        Returns:
            One sparsity (a single rate: every layer, or the pool under global scope), or one
            per pruned layer (``pruning.rates``).
        """
        prune = self.trunk.prune
        if not prune.rates:
            return levels.level_sparsity(prune.rate, level) if target is None else target
        fraction = 0.0 if target is None else self.schedule.last_round(target, level)
        return {n: levels.layer_sparsity(r, level, fraction) for n, r in self.rates.items()}

    def one_shot_target(self, target: float) -> float | dict[str, float]:
        """What a one-shot mask (θT pruned straight to ``target``, OMP) prunes to: ``target``
        itself, or with ``pruning.rates`` the per-layer sparsities of the IMP mask at
        ``target`` (``prune_target`` of its level), so that one-shot and IMP masks of one
        sparsity prune every layer alike and differ only in how they got there.

        Source: Ma et al. 2021 §2.1 (OMP prunes straight to the IMP mask's sparsity);
        Frankle & Carbin 2019, App. B (per-layer rates).
        """
        if not self.trunk.prune.rates:
            return target
        level = levels.level_for(target, self.schedule)
        if levels.mask_level(target, self.schedule) == level:  # on the level
            return self.prune_target(level)
        return self.prune_target(level, target)

    def build(self, generator: torch.Generator, arch: Arch | None = None) -> nn.Module:
        """A fresh CPU network of the trunk's architecture for ``data`` (its class count),
        with architecture options ``arch`` (default: the plain ones), initialized from
        ``generator``."""
        return models.build(self.trunk.model, self.data.input_shape, self.data.num_classes,
                            generator, arch or Arch())

    def count_weights(self, arch: Arch) -> int:
        """Prunable weights of ``build(·, arch)``'s network (``models.count_weights``)."""
        return models.count_weights(self.trunk.model, self.data.input_shape,
                                    self.data.num_classes, arch)

    def prunable(self, state: State) -> State:
        """The prunable weights of ``state`` (CPU)."""
        return {n: state[n].detach().cpu() for n in self.names}

    def to_device(self, mask: State) -> State:
        return {n: m.to(self.device) for n, m in mask.items()}


def open_trunk(trunk: Trunk, artifacts: Blobs, device: torch.device,
               data_hp: DataHparams | None = None) -> TrunkContext:
    """Load the data and θ0 (``init.pt``; built from the seed and stored on first use).

    Args:
        trunk: The trunk.
        artifacts: The sweep's ``artifacts/`` directory.
        device: Where training runs.
        data_hp: The data the trial trains on when not the trunk's (a transfer target of the
            same example shape).
    Raises:
        ValueError: unknown model/dataset or a bad ``keep_dense`` entry.
        FileNotFoundError: the dataset is not on disk and downloading is off.
    """
    data_hp = data_hp or trunk.data
    data = datasets.load(data_hp, device)
    blobs = artifacts.child(trunk.artifact_dir)
    net = models.build(trunk.model, datasets.input_shape(trunk.data),
                       datasets.num_classes(trunk.data), seeding.generator(trunk.seed, "init"))
    # θ0 is a pure function of the seed, so a missing or corrupt init.pt is rebuilt, not fatal
    stored = checkpoint.load_or_none(blobs, "init.pt", ("state",))
    if stored is None:
        init = {k: v.detach().clone() for k, v in net.state_dict().items()}
        checkpoint.save(blobs, "init.pt", {"state": init})
    else:
        # the stored θ0 wins: every level and branch of a trunk starts from the same weights
        init = stored["state"]
        net.load_state_dict(init)
    names = masks.prunable_names(net)
    exclude = masks.resolve_keep_dense(net, trunk.prune.keep_dense)
    rates = masks.layer_rates(net, trunk.prune, exclude)
    if data.num_classes != datasets.num_classes(trunk.data):  # a transfer target's head
        net = models.build(trunk.model, data.input_shape, data.num_classes,
                           seeding.generator(trunk.seed, "init"))
    return TrunkContext(trunk=trunk, blobs=blobs, data=data, device=device,
                        model=net.to(device), init=init, names=names, exclude=exclude,
                        data_hp=data_hp, rates=rates)


def dense_correlation(ctx: TrunkContext, dense_final: State) -> tuple[dict[float, float],
                                                                       dict[str, float]]:
    """R_p(θ0, θT) pooled for p in 0.1..0.5, and per layer at p = 0.2.

    Source: Liu et al. 2021 (arXiv 2102.11068), §4.2 Eq. 1 and Fig. 4.
    """
    found = metrics.overlaps(ctx.prunable(ctx.init), ctx.prunable(dense_final), RP_DENSE_PS)
    return {p: found.pooled(p) for p in RP_DENSE_PS}, found.per_layer(0.2)


def rewind_steps(ctx: TrunkContext, hparams: dict) -> int:
    """k of a rewind point (``RewindHparams`` as a dict) on the trunk's data, in steps."""
    per_epoch = steps_per_epoch(len(ctx.data.train_y), ctx.trunk.train.batch_size)
    return methods.get("lth_rewind").hparams(**hparams).steps(per_epoch)


def rewind_blob(k: int) -> str:
    """θk's blob inside the dense run's directory ``level_0``."""
    return f"rewind-step_{k}.pt"


def rewind_state(ctx: TrunkContext, k: int) -> State:
    """θk: the dense run's stored weights after step k; when the dense run was stored without
    them, its first k steps are trained again (the same weights on the CPU) and stored.

    Source: Frankle et al. 2020; open_lth ``lottery/runner.py``; METHODS.md 2.1.
    """
    if k == 0:
        return ctx.init
    blobs = ctx.blobs.child("level_0")
    saved = checkpoint.load_or_none(blobs, rewind_blob(k), ("state",))
    if saved is not None:
        return saved["state"]
    ctx.model.load_state_dict(ctx.init)
    state = train(ctx.model, ctx.data, ctx.trunk.train, {}, ctx.trunk.seed,
                  options=StageOptions(end_step=k)).state
    checkpoint.save(blobs, rewind_blob(k), {"state": state})
    return state
