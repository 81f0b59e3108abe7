"""Mask overlaps from the layers table without torch (analysis.masks), on a real digits sweep."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import run_in_process

from analysis import masks
from analysis.load import load_layers
from sweeps.keys import mask_blob
from sweeps.store import Store
from trainer import checkpoint

SPEC = {"name": "ov", "dataset": "digits", "model": "lenet_300_100",
        "methods": ["dense", "lth", "random_reinit", "random_pruning"], "lrs": [0.05, 0.2],
        "sparsities": [0.59], "seeds": [0, 1], "training": {"epochs": 2}}


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("ov")
    plan, store = run_in_process(SPEC, root)
    return plan, store, load_layers(root / "ov")


def test_packed_bits_are_the_stored_masks(sweep) -> None:
    plan, store, layers = sweep
    chain = plan.chains[0]
    stored = checkpoint.load(Store(store.path).child("artifacts", chain.trunk.artifact_dir),
                             mask_blob(0.59))["mask"]
    rows = layers[(layers.method == "lth") & (layers.seed == chain.trunk.seed)
                  & (layers.lr == chain.trunk.train.lr)]
    assert len(rows) == len(stored)
    for r in rows.itertuples():
        want = stored[r.layer].numpy().ravel()
        assert np.array_equal(masks.unpack(r.mask_bits, r.n_weights), want)
        assert int(want.sum()) == r.n_kept
    assert layers[layers.method == "dense"].mask_bits.isna().all()


def test_overlap_between_arms_seeds_and_lrs(sweep) -> None:
    _, _, layers = sweep
    arms = masks.overlap(layers, "arm")
    pooled = arms[arms.layer == masks.POOLED].set_index(["fixed", "a", "b"])
    same = pooled.xs(("lth", "random_reinit"), level=("a", "b"))
    assert (same.jaccard == 1.0).all()  # random reinit keeps the ticket's mask
    rand = pooled.xs(("lth", "random_pruning"), level=("a", "b"))
    assert (abs(rand.jaccard - rand.random_jaccard) < 0.02).all()  # an independent draw
    # other seeds: another θ0, so IMP masks barely overlap beyond chance
    seeds = masks.overlap(layers, "seed")
    lth = seeds[(seeds.layer == masks.POOLED) & seeds.fixed.str.startswith("arm=lth")]
    assert len(lth) == 2 and (abs(lth.jaccard - lth.random_jaccard) < 0.03).all()
    # the same θ0 at two lrs: IMP masks mostly agree; random masks do not depend on the lr
    lrs = masks.overlap(layers, "lr")
    pooled = lrs[lrs.layer == masks.POOLED].set_index("fixed")
    assert (pooled.filter(like="arm=lth,", axis=0).jaccard > 0.6).all()
    assert (pooled.filter(like="arm=random_pruning,", axis=0).jaccard == 1.0).all()
    with pytest.raises(ValueError, match="vary"):
        masks.overlap(layers, "width")


def test_jaccard_and_its_random_value() -> None:
    a = np.array([1, 1, 0, 0], dtype=bool)
    b = np.array([1, 0, 1, 0], dtype=bool)
    assert masks.jaccard(a, b) == pytest.approx(1 / 3)
    g = torch.Generator().manual_seed(0)
    x, y = (torch.rand(200_000, generator=g) < 0.3).numpy(), \
        (torch.rand(200_000, generator=g) < 0.5).numpy()
    assert masks.jaccard(x, y) == pytest.approx(masks.random_jaccard(0.3, 0.5), abs=0.005)
    with pytest.raises(ValueError, match="fewer"):
        masks.unpack(b"\xff", 9)


def test_the_pooled_chance_value_sums_each_layers_expectation() -> None:
    """Global pruning leaves layers of very different densities: two independent masks
    (3 % and 60 % kept per layer) overlap at the per-layer-summed chance value, well above
    what the pooled densities give; a layer kept dense in both is left out of the pool."""
    rng = np.random.default_rng(0)
    sizes, densities = {"fc1": 200_000, "fc2": 20_000, "fc3": 1_000}, \
        {"fc1": 0.03, "fc2": 0.6, "fc3": 1.0}
    rows = [{"model": "m", "dataset": "d", "method": "lth", "lr": 0.1, "target_sparsity": 0.9,
             "seed": seed, "layer": layer, "n_weights": n,
             "mask_bits": np.packbits(rng.random(n) < densities[layer]).tobytes()}
            for seed in (0, 1) for layer, n in sizes.items()]
    pooled = masks.overlap(pd.DataFrame(rows), "seed").set_index("layer").loc[masks.POOLED]
    assert pooled.n_weights == 220_000  # fc3, dense in both, is not pooled
    expected = sum(sizes[k] * densities[k] ** 2 for k in ("fc1", "fc2")) / sum(
        sizes[k] * (2 * densities[k] - densities[k] ** 2) for k in ("fc1", "fc2"))
    assert pooled.random_jaccard == pytest.approx(expected, rel=0.01)
    assert pooled.jaccard == pytest.approx(pooled.random_jaccard, abs=0.01)  # at chance
    kept = (0.03 * 200_000 + 0.6 * 20_000) / 220_000
    assert pooled.random_jaccard > 1.5 * masks.random_jaccard(kept, kept)
