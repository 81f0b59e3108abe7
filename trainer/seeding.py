"""Explicit randomness: every draw gets a generator seeded from (replicate seed, role, ...).

Source of the rule: STYLE.md 2.6 (open_lth never seeded its init; we always do).
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def seed_for(seed: int, role: str, *parts: object) -> int:
    """A 63-bit seed derived from the replicate seed, a role name and optional parts.

    Args:
        seed: The replicate seed from the sweep spec.
        role: What the randomness is for, e.g. ``init``, ``reinit``, ``data_order``,
            ``random_mask``, ``augment``.
        parts: Further distinguishing values, e.g. the epoch number.
    Returns:
        An int in [0, 2**63).
    """
    text = "/".join(str(p) for p in (seed, role, *parts))
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big") >> 1


def generator(seed: int, role: str, *parts: object) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded with ``seed_for(seed, role, *parts)``."""
    import torch  # here, so that planning (which only needs ``seed_for``) never loads torch

    return torch.Generator().manual_seed(seed_for(seed, role, *parts))
