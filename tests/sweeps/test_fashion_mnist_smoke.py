"""Real-data smoke sweep: Fashion-MNIST from the Debian package, through Ray Tune."""

from __future__ import annotations

import os

import pytest
from conftest import lottery
from conftest import write_spec

from analysis.load import load_runs
from trainer.data import mnist_family

pytestmark = pytest.mark.ray

SPEC = {"name": "fmnist_smoke", "dataset": "fashion-mnist", "model": "lenet_300_100",
        "methods": ["dense", "lth", "random_reinit", "random_pruning", "pf"], "lrs": [0.1],
        "sparsities": [0.36], "seeds": [0],
        "training": {"epochs": 1, "batch_size": 128},
        "data": {"train_subset": 6000, "test_subset": 2000}}


def test_small_sweep_on_real_fashion_mnist(tmp_path, ray_env):
    if not mnist_family.debian_fashion_mnist_available():
        if os.environ.get("CI"):
            pytest.fail("CI must install the Debian package dataset-fashion-mnist")
        pytest.skip("dataset-fashion-mnist is not installed (apt-get install it)")
    spec_path = write_spec(tmp_path / "fm.yaml", SPEC)
    proc = lottery(["run", str(spec_path), "--storage", str(tmp_path / "results")], ray_env,
                   tmp_path)
    assert "fashion-mnist" in proc.stdout
    runs = load_runs(tmp_path / "results" / "fmnist_smoke").set_index("method")
    assert sorted(runs.index) == ["dense", "lth", "pf", "random_pruning", "random_reinit"]
    # one epoch on 6,000 real images: far above chance (10 %) for every arm
    assert (runs.test_acc > 0.6).all(), runs.test_acc
    assert (runs.dataset == "fashion-mnist").all()
    assert runs.loc["lth", "sparsity"] == pytest.approx(runs.loc["pf", "sparsity"])
