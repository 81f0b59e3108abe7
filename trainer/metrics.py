"""Evaluation metrics: classification accuracy and the R_p weight-correlation indicator."""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor


def accuracy(logits: Tensor, labels: Tensor) -> float:
    """Fraction of examples whose arg-max logit is the label.

    Args:
        logits: (B, K) scores for K classes; ties go to the lowest class index.
        labels: (B,) int class labels in [0, K).
    Returns:
        Accuracy as a fraction in [0, 1] (never percent).
    Raises:
        ValueError: logits are not (B, K) with B >= 1 or labels are not (B,).
    """
    if logits.dim() != 2 or logits.shape[0] == 0:
        raise ValueError(f"logits must be (B, K) with B >= 1, got shape {tuple(logits.shape)}")
    if labels.shape != logits.shape[:1]:
        raise ValueError(
            f"labels must be ({logits.shape[0]},) to match logits, got {tuple(labels.shape)}"
        )
    correct = logits.argmax(dim=1) == labels.to(logits.device)  # (B,) bool
    return correct.float().mean().item()


def _ranks(weight: Tensor, surviving: Tensor | None) -> Tensor:
    """(N,) int64: each entry's place in descending |w| order, 0 = largest; pruned entries
    come after every survivor and ties go to the lower flat index. The top-k set is
    ``ranks < k``, for every k from one sort."""
    scores = weight.detach().abs().flatten().float()  # (out, in, ...) -> (N,)
    if surviving is not None:
        scores = scores.masked_fill(~surviving.flatten().to(scores.device), -1.0)
    order = torch.sort(scores, descending=True, stable=True).indices
    ranks = torch.empty_like(order)
    ranks[order] = torch.arange(order.numel(), device=order.device)
    return ranks


def _check_pair(a: Mapping[str, Tensor], b: Mapping[str, Tensor], ps: Iterable[float]) -> None:
    for p in ps:
        if not 0.0 < p <= 1.0:  # also rejects NaN
            raise ValueError(f"p must be a fraction in (0, 1], got {p!r}")
    for name in a:
        if name not in b:
            raise ValueError(f"layer {name!r} is in a but not in b")
        if a[name].shape != b[name].shape:
            raise ValueError(
                f"layer {name!r} has shape {tuple(a[name].shape)} in a but "
                f"{tuple(b[name].shape)} in b"
            )
    extra = [name for name in b if name not in a]
    if extra:
        raise ValueError(f"layers {extra} are in b but not in a")


def _surviving(name: str, shape: torch.Size, mask: Mapping[str, Tensor] | None) -> Tensor | None:
    """The layer's bool mask, or None (all weights survive) when it has none."""
    if mask is None or name not in mask:
        return None
    if mask[name].shape != shape or mask[name].dtype != torch.bool:
        raise ValueError(
            f"mask for layer {name!r} must be bool with shape {tuple(shape)}, "
            f"got {mask[name].dtype} with shape {tuple(mask[name].shape)}"
        )
    return mask[name]


@dataclass(frozen=True)
class Overlaps:
    """Top-set overlaps of two weight sets: ``counts[p][layer] = (|T_p(a^l) ∩ T_p(b^l)|, k_l)``
    for every p asked and every layer with k_l >= 1 (``overlaps``)."""

    counts: dict[float, dict[str, tuple[int, int]]]

    def pooled(self, p: float) -> float:
        """R_p = Σ_l |T_p(a^l) ∩ T_p(b^l)| / Σ_l k_l (Liu et al. 2021, Eq. 1), in [0, 1]."""
        layers = self.counts[p].values()
        return sum(overlap for overlap, _ in layers) / sum(k for _, k in layers)

    def per_layer(self, p: float) -> dict[str, float]:
        """``{layer: |T_p(a^l) ∩ T_p(b^l)| / k_l}``, in [0, 1]."""
        return {name: overlap / k for name, (overlap, k) in self.counts[p].items()}


def overlaps(
    a: Mapping[str, Tensor],
    b: Mapping[str, Tensor],
    ps: Sequence[float],
    mask: Mapping[str, Tensor] | None = None,
) -> Overlaps:
    """The top-p overlaps behind ``weight_correlation`` for several p at once.

    One sort per layer and weight set serves every p: an entry is in both top-k sets exactly
    when the larger of its two ranks is below k. Definitions, tie-break and validation as in
    ``weight_correlation``.

    Args:
        a: Weights by layer name, e.g. (out, in) or (out, in, kh, kw); its keys are the layers.
        b: Weights for the same layer names, with the same shapes as ``a``.
        ps: Fractions in (0, 1] of each layer's surviving weights in its top set.
        mask: Optional bool masks (True = surviving) by layer name, shaped like the weights.
    Returns:
        The overlap counts by p and layer.
    Raises:
        ValueError: as ``weight_correlation``, for any p of ``ps``.
    Source: Liu et al. 2021 (arXiv 2102.11068), §4.2, Eq. 1; METHODS.md 2.2.
    """
    _check_pair(a, b, ps)
    counts: dict[float, dict[str, tuple[int, int]]] = {p: {} for p in ps}
    for name, wa in a.items():
        surviving = _surviving(name, wa.shape, mask)
        n = wa.numel() if surviving is None else int(surviving.sum())
        ks = {p: round(p * n) for p in ps}
        if not any(ks.values()):
            continue  # too few survivors for a top-p set; the layer carries no information
        both = torch.maximum(_ranks(wa, surviving), _ranks(b[name].to(wa.device), surviving))
        for p, k in ks.items():
            if k:
                counts[p][name] = (int((both < k).sum()), k)
    for p, layers in counts.items():
        if not layers:
            raise ValueError(f"every layer has round(p * n_l) == 0 at p={p}; nothing to compare")
    return Overlaps(counts)


def weight_correlation(
    a: Mapping[str, Tensor],
    b: Mapping[str, Tensor],
    p: float,
    mask: Mapping[str, Tensor] | None = None,
) -> float:
    """Overlap R_p of per-layer top-p magnitude index sets, pooled over layers.

    For each layer l, T_p(θ^l) holds the indices of the k_l largest |w| among the layer's
    surviving weights (mask True; all weights if ``mask`` is None or lacks the layer), with
    k_l = round(p * n_l) (Python round, halves to even) and n_l the number of survivors. Then

        R_p = Σ_l |T_p(a^l) ∩ T_p(b^l)| / Σ_l k_l,

    which is Eq. 1's denominator p · Σ_l n_l up to the rounding of each k_l. R_p ≈ p means the
    two top sets are independent (uncorrelated weights); R_p > p means positive correlation,
    R_p < p negative. Layers with k_l == 0 are skipped. Ties in |w| go to the lower flat index in
    both tensors, so exact ties (e.g. many zeros) resolve identically and can inflate the overlap:
    pass ``mask`` rather than comparing pruned zeros. Cost is one sort per layer and
    weight set (``overlaps`` serves several p from the same sorts).

    Args:
        a: Weights by layer name, e.g. (out, in) or (out, in, kh, kw); its keys are the layers.
        b: Weights for the same layer names, with the same shapes as ``a``.
        p: Fraction in (0, 1] of each layer's surviving weights in its top set.
        mask: Optional bool masks (True = surviving) by layer name, shaped like the weights.
    Returns:
        R_p in [0, 1].
    Raises:
        ValueError: layer names or shapes differ, p is outside (0, 1], a mask has the wrong
            shape or dtype, or every layer has k_l == 0.
    Source: Liu et al. 2021 (arXiv 2102.11068), §4.2, Eq. 1; METHODS.md 2.2.
    """
    return overlaps(a, b, (p,), mask).pooled(p)


def layer_weight_correlation(
    a: Mapping[str, Tensor],
    b: Mapping[str, Tensor],
    p: float,
    mask: Mapping[str, Tensor] | None = None,
) -> dict[str, float]:
    """Per-layer R_p: |T_p(a^l) ∩ T_p(b^l)| / k_l for every layer with k_l >= 1.

    Same definitions, tie-break and validation as ``weight_correlation``, which is the
    k_l-weighted mean of these values.

    Args:
        a: Weights by layer name, e.g. (out, in) or (out, in, kh, kw); its keys are the layers.
        b: Weights for the same layer names, with the same shapes as ``a``.
        p: Fraction in (0, 1] of each layer's surviving weights in its top set.
        mask: Optional bool masks (True = surviving) by layer name, shaped like the weights.
    Returns:
        ``{layer: R_p^l}`` with values in [0, 1]; layers with k_l == 0 are absent.
    Raises:
        ValueError: as ``weight_correlation``.
    Source: Liu et al. 2021 (arXiv 2102.11068), §4.2, Eq. 1 restricted to one layer.
    """
    return overlaps(a, b, (p,), mask).per_layer(p)
