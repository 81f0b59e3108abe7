"""Mask comparisons from the ``layers`` table, without torch: every row holds its layer's
mask packed in ``mask_bits`` (``trainer.rows.pack_mask``).

``overlap`` gives the Jaccard index |a ∩ b| / |a ∪ b| of the kept weights of two masks, per
layer and pooled over the layers, between the methods, seeds or learning rates of a sweep at
equal sparsity, beside the value two independent random masks of the same densities would
have at chance, d_a d_b / (d_a + d_b - d_a d_b) (``random_jaccard``).

Source: the mask-overlap comparison of Jaiswal et al. 2021's code (ToST
``hamming_distance.py``: masks compared pairwise; METHODS.md §3, "Mask overlap / Hamming"),
here as the Jaccard index (Jaccard 1912), asked of the arms, seeds and lrs of Liu et al. 2021
§4 (do tickets of different lrs share their masks?).
"""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pandas as pd

from analysis.stats import arm_labels
from analysis.stats import plain

VARY = ("arm", "seed", "lr")
POOLED = "(pooled)"
COLUMNS = ["model", "dataset", "target_sparsity", "vary", "fixed", "a", "b", "layer",
           "jaccard", "random_jaccard", "n_weights"]


def unpack(bits: bytes, n_weights: int) -> np.ndarray:
    """The (n_weights,) bool mask (1 = kept) of one ``mask_bits`` value.

    Raises:
        ValueError: ``bits`` is too short for ``n_weights``.
    """
    flat = np.unpackbits(np.frombuffer(bits, dtype=np.uint8))
    if flat.size < n_weights:
        raise ValueError(f"mask_bits hold {flat.size} bits, fewer than {n_weights} weights")
    return flat[:n_weights].astype(bool)


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """|a ∩ b| / |a ∪ b| of two bool masks of one shape, e.g. (n_weights,) (1.0 when both
    keep nothing). Source: Jaccard 1912."""
    union = int(np.logical_or(a, b).sum())
    return 1.0 if union == 0 else int(np.logical_and(a, b).sum()) / union


def random_jaccard(da: float, db: float) -> float:
    """The Jaccard index two independent uniform masks of densities da and db (fractions
    kept) have at chance: d_a d_b / (d_a + d_b - d_a d_b), the null value of ``overlap``.

    It is E|a ∩ b| / E|a ∪ b|, the ratio of expectations, which the expected Jaccard index
    approaches as layers grow (close for the thousands of weights of a layer)."""
    union = da + db - da * db
    return 1.0 if union == 0 else da * db / union


def overlap(layers: pd.DataFrame, vary: str = "arm") -> pd.DataFrame:
    """Jaccard overlap of masks between the values of ``vary`` at equal everything else.

    Args:
        layers: A layers table (``analysis.load.load_layers``) with ``mask_bits``.
        vary: ``arm`` (methods, with recipe / transfer variants), ``seed`` or ``lr``; the
            other two and (model, dataset, target_sparsity) are held equal.
    Returns:
        ``COLUMNS``: one row per pair of masks (a < b) and layer, plus a ``(pooled)`` row per
        pair over its layers but those dense in both masks (``keep_dense``), whose chance value
        sums each layer's expected intersection and union (Σ n d_a d_b / Σ n (d_a + d_b -
        d_a d_b)): layers of very different densities, as global pruning gives, make it
        higher than the pooled densities' ``random_jaccard``; ``fixed`` names the held values
        (e.g. ``seed=0, lr=0.1``).
        Rows without a mask (dense) and layers whose sizes differ (sdt) are left out.
    Raises:
        ValueError: ``vary`` is not one of ``VARY``.
    """
    if vary not in VARY:
        raise ValueError(f"vary must be one of {VARY}, got {vary!r}")
    rows = plain(layers[layers["mask_bits"].notna()])
    if rows.empty:
        return pd.DataFrame(columns=COLUMNS)
    rows = rows.assign(arm=arm_labels(rows), lr=rows["lr"].round(12),
                       target_sparsity=rows["target_sparsity"].round(12))
    fixed = [k for k in VARY if k != vary]
    out = []
    for key, group in rows.groupby(["model", "dataset", "target_sparsity", *fixed], sort=True):
        model, dataset, s, *held = key
        masks = {v: {r.layer: (unpack(r.mask_bits, int(r.n_weights)), int(r.n_weights))
                     for r in g.itertuples()} for v, g in group.groupby(vary, sort=True)}
        label = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                          for k, v in zip(fixed, held, strict=True))
        for a, b in combinations(sorted(masks), 2):
            common = sorted(set(masks[a]) & set(masks[b]))
            inter = union = total = 0
            chance_inter = chance_union = 0.0
            for layer in common:
                (ma, n), (mb, nb) = masks[a][layer], masks[b][layer]
                if n != nb:
                    continue
                da, db = float(ma.mean()), float(mb.mean())
                out.append([model, dataset, s, vary, label, a, b, layer, jaccard(ma, mb),
                            random_jaccard(da, db), n])
                if da == db == 1.0:  # kept dense in both (keep_dense): says nothing
                    continue
                inter += int(np.logical_and(ma, mb).sum())
                union += int(np.logical_or(ma, mb).sum())
                chance_inter += n * da * db
                chance_union += n * (da + db - da * db)
                total += n
            if total:
                out.append([model, dataset, s, vary, label, a, b, POOLED,
                            1.0 if union == 0 else inter / union,
                            1.0 if chance_union == 0 else chance_inter / chance_union, total])
    return pd.DataFrame(out, columns=COLUMNS)
