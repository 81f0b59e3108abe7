"""``transfer``: a ticket found on the trunk's (source) dataset, trained on a target dataset.

The mask m is the source trunk's IMP mask at the target sparsity (the same one ``lth`` uses).
The surviving weights start from one of three inits (``transfer.inits``): ``late_reset`` =
θS ⊙ m, the source-trained dense weights (the trunk's θT; Mehta's "late reset"),
``init`` = θ0 ⊙ m (the winning ticket's own init), ``reinit`` = θ0' ⊙ m (a fresh draw, as
``random_reinit``). Two regimes (``transfer.regimes``): ``finetune`` trains every layer, with
a new classifier head (seed, "transfer_head") only when the target has another class count;
``freeze`` keeps every parameter but the head's fixed and trains a new head. A new head is
dense: its mask entry is all ones (the source's output-layer mask is dropped), so the row's
measured ``sparsity`` counts it, as every row counts its layers kept dense. One training run of
``training.epochs`` on the target; BatchNorm running statistics still adapt in ``freeze``.
``total_epochs`` counts the source levels behind the mask (and the dense run) plus that run.

Source: Mehta 2019 (arXiv 1905.07785) §3 and Figs. 1-7; Van Soelen & Sheppard 2019 (IJCNN;
its abstract only: pruned nets retrained on similar data, no layers frozen);
METHODS.md 2.6.
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import replace
from typing import Any

from trainer import seeding
from trainer.hparams import DataHparams
from trainer.hparams import parse_dataset
from trainer.methods import random_reinit
from trainer.methods.base import Method
from trainer.methods.base import Sources
from trainer.methods.base import Start
from trainer.methods.base import always

INITS = ("late_reset", "init", "reinit")
REGIMES = ("finetune", "freeze")


@dataclass(frozen=True, kw_only=True)
class TransferHparams:
    """One transfer arm (a ``transfer:`` combination).

    Attributes:
        target: The target dataset as the spec writes it, e.g. ``fashion-mnist[5-9]``.
        init: ``late_reset`` (θS), ``init`` (θ0) or ``reinit`` (θ0').
        regime: ``finetune`` (all layers) or ``freeze`` (new head only).
    Raises:
        ValueError: an unknown ``init`` or ``regime``.
    """

    target: str
    init: str = "late_reset"
    regime: str = "finetune"

    def __post_init__(self) -> None:
        if self.init not in INITS or self.regime not in REGIMES:
            raise ValueError(f"transfer init must be one of {INITS} and regime one of "
                             f"{REGIMES}, got {self.init!r}, {self.regime!r}")


def configure(group: dict[str, Any]) -> list[TransferHparams]:
    """Every (target, init, regime) of the ``transfer:`` group, in spec order; targets in their
    canonical spelling (``digits[5,6,7]`` -> ``digits[5-7]``), so keys do not depend on it."""
    targets = [DataHparams(name=n, classes=c).label
               for n, c in (parse_dataset(t) for t in group["targets"])]
    return [TransferHparams(target=t, init=i, regime=r) for t in targets
            for i in group["inits"] for r in group["regimes"]]


def retarget(hp: TransferHparams, source: DataHparams) -> DataHparams:
    """The target's data, with the source's location, subsets and validation split."""
    name, classes = parse_dataset(hp.target)
    return replace(source, name=name, classes=classes)


def start(src: Sources) -> Start:
    """The init's weights under m, with a new dense head when the regime or the classes ask."""
    hp: TransferHparams = src.hparams
    base = {"late_reset": src.dense_final, "init": src.init}.get(hp.init) or \
        random_reinit.start(src).state
    fresh = src.build_model(seeding.generator(src.seed, "transfer_head"))
    params = dict(fresh.named_parameters())
    head = {n for n in (fresh.output_layer, fresh.output_layer.rsplit(".", 1)[0] + ".bias")
            if n in params}
    # the source's head predicts the source's classes: it fits only the same class count
    new_head = hp.regime == "freeze" or any(src.init[n].shape != params[n].shape for n in head)
    state, mask = dict(base), dict(src.mask)
    if new_head:  # dense, and still in the mask, so the row's sparsity counts it as lth's does
        import torch  # imported by the trial, not by the registry

        state.update({n: params[n].detach().clone() for n in head})
        mask.update({n: torch.ones(params[n].shape, dtype=torch.bool, device=mask[n].device)
                     for n in head if n in mask})
    frozen = frozenset(params) - head if hp.regime == "freeze" else frozenset()
    return Start(state=state, mask=mask, frozen=frozen)


def columns(hp: TransferHparams) -> dict[str, Any]:
    return {"transfer_init": hp.init, "transfer_regime": hp.regime}


METHOD = Method(name="transfer", start=start, needs_trained_mask=always, needs_dense=True,
                hparams=TransferHparams, group="transfer", configure=configure,
                retarget=retarget, columns=columns,
                source="Mehta 2019 (arXiv 1905.07785) §3; Van Soelen & Sheppard 2019; "
                       "METHODS.md 2.6")
