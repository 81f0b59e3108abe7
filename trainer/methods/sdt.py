"""``sdt``: the small-dense network, as many weights as the sparse network keeps, all trained.

The trunk's architecture at the same depth with every hidden width multiplied by one factor
w (``trainer.models.Arch.width``), chosen so its prunable weights come as close as the
rounding of widths allows to the sparse network's non-zeros at the target sparsity: the
weights of the layers kept dense plus, per pruned layer, ``round((1 - s) · N_l)`` (layer-wise)
or ``round((1 - s) · Σ N_l)`` over the pruned layers (global), the counts the trunk's masks
keep. The rounding bounds how close it gets: within 2 % for LeNet-300-100 and Conv-2 at
sparsities up to 0.95, within 5 % for ResNet-20 (16/32/64 channels) at 0.9-0.95, where one
channel of the last stage is several percent of the count. It starts from a fresh
initialization (seed, "sdt") and trains ``training.epochs`` with
no mask; it uses nothing the trunk trained, so ``total_epochs`` is that one run and ``level``
is 0. Its row's ``sparsity`` is 1 - its weights / the full network's.

Source: Ma et al. 2021 (arXiv 2107.00166) §2.1 and Table 1 ("SDT", ticket criterion 2);
METHODS.md 2.3.
"""

from __future__ import annotations

from trainer import seeding
from trainer.methods.base import Method
from trainer.methods.base import Sources
from trainer.methods.base import Start
from trainer.methods.base import never
from trainer.models import Arch

_STEPS = 60  # bisection steps on the width factor: far below one unit of any layer


def sparse_weights(src: Sources) -> int:
    """Non-zeros of the sparse network at ``src.target_sparsity``, as the trunk's masks count.

    Args:
        src: The sources; ``src.mask`` keys are the prunable layers (all True here),
            ``src.exclude`` the layers kept dense, ``src.scope`` the pruning scope.
    Returns:
        Kept weights: dense layers whole, pruned layers rounded as ``masks.magnitude_prune``.
    """
    sizes = {name: m.numel() for name, m in src.mask.items()}
    density = 1.0 - src.target_sparsity
    kept = sum(n for name, n in sizes.items() if name in src.exclude)
    pruned = [n for name, n in sizes.items() if name not in src.exclude]
    if src.scope == "global":
        return kept + round(density * sum(pruned))
    return kept + sum(round(density * n) for n in pruned)


def width_for(src: Sources) -> float:
    """The width factor w in (0, 1] whose weight count is nearest ``sparse_weights(src)``.

    The count is a step function of w (widths are rounded), so bisection brackets the target
    between the widest count below it and the narrowest at or above it; the nearer wins (the
    narrower on ties).

    Raises:
        ValueError: ``src.count_weights`` is missing.
    """
    if src.count_weights is None:
        raise ValueError("sdt needs Sources.count_weights to size its network")
    target = sparse_weights(src)
    lo, hi = 0.0, 1.0  # count(lo) < target <= count(hi), with count(0) taken as 0
    if src.count_weights(Arch(width=hi)) <= target:
        return hi
    for _ in range(_STEPS):
        mid = (lo + hi) / 2
        if src.count_weights(Arch(width=mid)) >= target:
            hi = mid
        else:
            lo = mid
    if lo == 0.0:
        return hi
    below, above = src.count_weights(Arch(width=lo)), src.count_weights(Arch(width=hi))
    return lo if target - below <= above - target else hi


def start(src: Sources) -> Start:
    """A fresh small-dense network of width ``width_for(src)``, unmasked."""
    width = width_for(src)
    net = src.build_model(seeding.generator(src.seed, "sdt"), Arch(width=width))
    state = {k: v.detach().clone() for k, v in net.state_dict().items()}
    full = src.count_weights(Arch())
    return Start(state=state, mask={}, width=width,
                 sparsity=1.0 - src.count_weights(Arch(width=width)) / full)


METHOD = Method(name="sdt", start=start, needs_trained_mask=never, needs_dense=False,
                mask="small_dense",
                source="Ma et al. 2021 (arXiv 2107.00166) §2.1, Table 1 (SDT); METHODS.md 2.3")
