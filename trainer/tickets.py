"""Tickets as artifacts: a mask plus the weights it resets to, in one self-describing file.

A ticket of method M at sparsity s is what M trains from: its mask m and its start weights
θ_start (θ0 for ``lth``/``omp_lth``, θ0' for the random-reinit arms, θT for the P&F arms, the
transformed weights for RST; never the weights a branch ended with), stored as θ_start ⊙ m
together with the model key, the example shape, the class count and the trunk's
hyperparameters, so it can be rebuilt without the sweep (Frankle & Carbin 2019 §1: "the
winning ticket" is (m, θ0)).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch
from torch import nn

from trainer import checkpoint
from trainer import data as datasets
from trainer import masks
from trainer import methods
from trainer import models
from trainer import seeding
from trainer.checkpoint import Blobs
from trainer.jobs import Trunk
from trainer.jobs import to_dict
from trainer.stage import load_result

FORMAT = "lottery-sweeps-ticket/1"
State = dict[str, torch.Tensor]


def make_ticket(trunk: Trunk, method: str, target_sparsity: float, mask_blob: str,
                artifacts: Blobs, stage_dir: str = "") -> dict[str, Any]:
    """Build the ticket of ``method`` at ``target_sparsity`` from a trunk's stored artifacts.

    Args:
        trunk: The trunk (its ``artifact_dir`` locates θ0, θT and the masks).
        method: A method key with a start (not ``dense``).
        target_sparsity: Requested sparsity, fraction in [0, 1).
        mask_blob: The stored mask's blob name (``sweeps.plan.mask_blob``).
        artifacts: The sweep's ``artifacts/`` directory.
        stage_dir: The branch's stage directory: methods that train before their stage
            (RST) export what that phase stored there (the transformed weights under m).
    Returns:
        The ticket: ``format``, ``model``, ``input_shape`` (C, H, W), ``num_classes``,
        ``method``, ``target_sparsity``, ``seed``, ``trunk`` (the trunk as a dict), ``mask``
        (bool tensors by layer) and ``state`` (θ_start ⊙ m, a full state_dict on the CPU).
    Raises:
        ValueError: ``method`` has no start (``dense``) or is unknown.
        FileNotFoundError: the trunk's θ0, θT or mask is not stored (or unreadable) yet.
    """
    m = methods.get(method)
    if m.start is None:
        raise ValueError(f"method {method!r} trains the dense net: it has no ticket")
    info = datasets.get(trunk.data.name)
    blobs = artifacts.child(trunk.artifact_dir)
    if m.prepare is not None:
        start = _prepared(m, blobs, stage_dir)
    else:
        start = _start(m, trunk, blobs, mask_blob, target_sparsity)
    state = {k: v * start.mask[k] if k in start.mask else v.clone()
             for k, v in start.state.items()}
    return {"format": FORMAT, "model": trunk.model, "input_shape": list(info.input_shape),
            "num_classes": info.num_classes, "method": method,
            "target_sparsity": float(target_sparsity), "seed": trunk.seed,
            "trunk": _plain(to_dict(trunk)), "mask": dict(start.mask), "state": state}


def _start(m: methods.Method, trunk: Trunk, blobs: Blobs, mask_blob: str,
           target_sparsity: float) -> methods.Start:
    info = datasets.get(trunk.data.name)
    init = checkpoint.load_or_none(blobs, "init.pt", ("state",))
    dense = load_result(blobs.child("level_0"))
    saved = checkpoint.load_or_none(blobs, mask_blob, ("mask",))
    if init is None or dense is None or saved is None:
        raise FileNotFoundError(f"{trunk.artifact_dir}: θ0, θT or the mask {mask_blob} is not "
                                "stored yet; run (or resume) the sweep first")

    def build(generator: torch.Generator) -> nn.Module:
        return models.build(trunk.model, info.input_shape, info.num_classes, generator)

    return m.start(methods.Sources(init=init["state"], dense_final=dense.state,
                                   mask=saved["mask"], build_model=build, seed=trunk.seed,
                                   target_sparsity=target_sparsity))


def _prepared(m: methods.Method, blobs: Blobs, stage_dir: str) -> methods.Start:
    """The stored result of a method's own phase (RST's transformed weights and mask)."""
    done = checkpoint.load_or_none(blobs.child(stage_dir, "prepare"), "final.pt",
                                   ("state", "mask"))
    if done is None:
        raise FileNotFoundError(f"{stage_dir}: the {m.name} phase has not finished yet; run "
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
                         seeding.generator(0, "ticket"))
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


