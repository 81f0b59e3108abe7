"""Tickets as artifacts: a mask plus the weights it resets to, in one self-describing file.

A ticket of method M at sparsity s is what M trains from: its mask m and its start weights
θ_start (θ0 for ``lth``/``omp_lth``, θk for ``lth_rewind``, θ0' for the random-reinit arms,
θT for the P&F arms, θS / θ0 / θ0' with the target's head for ``transfer``, the transformed
weights for RST, the small network's init for ``sdt``; never the weights a branch ended
with), stored as θ_start ⊙ m together with the model key, the example shape, the class
count, the width and the hyperparameters, so it can be rebuilt without the sweep (Frankle &
Carbin 2019 §1: "the winning ticket" is (m, θ0)).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch
from torch import nn

from trainer import branch
from trainer import checkpoint
from trainer import masks
from trainer import methods
from trainer import models
from trainer import seeding
from trainer.checkpoint import Blobs
from trainer.jobs import BranchJob
from trainer.jobs import to_dict
from trainer.trunk import open_trunk

FORMAT = "lottery-sweeps-ticket/1"
State = dict[str, torch.Tensor]


def make_ticket(job: BranchJob, artifacts: Blobs) -> dict[str, Any]:
    """Build the ticket of a grid point from its trunk's stored artifacts (nothing trains).

    Args:
        job: The point's branch job (``sweeps.plan.Plan.tickets`` also makes these for the
            points a chain trains): its trunk, method, sparsity, mask blob, the method's
            hparams, and for methods with a phase of their own (RST) ``prepare_dir``, whose
            stored result (the transformed weights under m) is the ticket.
        artifacts: The sweep's ``artifacts/`` directory.
    Returns:
        The ticket: ``format``, ``model``, ``input_shape`` (C, H, W), ``num_classes`` (of
        the data it trains on: a transfer target's), ``width`` (sdt's factor; 1 otherwise),
        ``method``, ``target_sparsity``, ``seed``, ``trunk`` (the trunk as a dict),
        ``hparams`` (the method's), ``mask`` (bool tensors by layer) and ``state``
        (θ_start ⊙ m, a full state_dict on the CPU).
    Raises:
        ValueError: the method has no start (``dense``) or is unknown.
        FileNotFoundError: the trunk's θ0, θT, θk or mask is not stored (or unreadable) yet.
    """
    m = methods.get(job.point.method)
    if m.start is None:
        raise ValueError(f"method {m.name!r} trains the dense net: it has no ticket")
    hparams = m.hparams(**job.method_hparams) if m.hparams else None
    trunk = job.trunk
    blobs = artifacts.child(trunk.artifact_dir)
    if checkpoint.load_or_none(blobs, "init.pt", ("state",)) is None:
        raise FileNotFoundError(f"{trunk.artifact_dir}: θ0 is not stored yet; run (or "
                                "resume) the sweep first")
    ctx = open_trunk(trunk, artifacts, torch.device("cpu"),
                     m.retarget(hparams, trunk.data) if m.retarget else None)
    try:
        src = branch.sources(ctx, job, m, hparams)
    except RuntimeError as err:
        raise FileNotFoundError(f"{err}; run (or resume) the sweep first") from None
    start = _prepared(m, ctx.blobs, job.prepare_dir) if m.prepare else m.start(src)
    state = {k: v * start.mask[k] if k in start.mask else v.clone()
             for k, v in start.state.items()}
    return {"format": FORMAT, "model": trunk.model, "input_shape": list(ctx.data.input_shape),
            "num_classes": ctx.data.num_classes, "width": start.width, "method": m.name,
            "target_sparsity": float(job.point.target_sparsity), "seed": trunk.seed,
            "trunk": _plain(to_dict(trunk)), "hparams": _plain(job.method_hparams),
            "mask": dict(start.mask), "state": state}


def _prepared(m: methods.Method, blobs: Blobs, prepare_dir: str) -> methods.Start:
    """The stored result of a method's own phase (RST's transformed weights and mask)."""
    done = checkpoint.load_or_none(blobs.child(prepare_dir), "final.pt", ("state", "mask"))
    if done is None:
        raise FileNotFoundError(f"{prepare_dir}: the {m.name} phase has not finished yet; run "
                                "(or resume) the sweep first")
    return methods.Start(state=done["state"], mask=done["mask"])


def save_ticket(ticket: dict[str, Any], path: str | Path) -> None:
    """Write a ticket with ``torch.save`` (tensors and plain containers only)."""
    buffer = io.BytesIO()
    torch.save(ticket, buffer)
    Path(path).write_bytes(buffer.getvalue())


def load_ticket(path: str | Path) -> tuple[nn.Module, State]:
    """Rebuild a ticket's network holding θ_start ⊙ m, and its mask.

    Loaded with ``torch.load(weights_only=True)``, so a tampered file cannot run code.

    Args:
        path: A file written by ``save_ticket`` (``lottery export``).
    Returns:
        (model, mask): the model on the CPU with the ticket's weights (masked entries exactly
        zero), mapping (B, C, H, W) to (B, num_classes) logits; the mask as bool tensors by
        parameter name, True = kept. Train it with the mask enforced (``masks.apply`` after
        every step) to retrain the ticket.
    Raises:
        ValueError: the file is not a lottery-sweeps ticket (or is damaged).
    """
    try:
        ticket = torch.load(Path(path), map_location="cpu", weights_only=True)
    except Exception as err:  # any unpickling failure: see trainer.checkpoint
        raise ValueError(f"{path}: not a readable ticket ({type(err).__name__}: {err})") from err
    if not isinstance(ticket, dict) or ticket.get("format") != FORMAT:
        raise ValueError(f"{path}: not a lottery-sweeps ticket (format {FORMAT!r})")
    model = models.build(ticket["model"], tuple(ticket["input_shape"]), ticket["num_classes"],
                         seeding.generator(0, "ticket"),
                         models.Arch(width=ticket.get("width", 1.0)))
    model.load_state_dict(ticket["state"])
    masks.apply(model, ticket["mask"])
    return model, ticket["mask"]


def _plain(obj: Any) -> Any:
    """JSON-like containers (tuples as lists) that ``weights_only`` loading accepts."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


