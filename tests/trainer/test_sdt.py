"""Tests for ``sdt`` (trainer/methods/sdt.py): the small-dense network of the sparse net's size."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import run_in_process
from typer.testing import CliRunner

from analysis import load
from sweeps.cli import app
from trainer import masks
from trainer import methods
from trainer import models
from trainer import seeding
from trainer import tickets
from trainer.methods import sdt
from trainer.models import Arch

CPU = torch.device("cpu")


def _sources(model: str, shape: tuple[int, int, int], classes: int, target: float,
             scope: str = "layerwise", keep: tuple[str, ...] = ("output",)) -> methods.Sources:
    net = models.build(model, shape, classes, seeding.generator(0, "init"))
    names = masks.prunable_names(net)
    init = {k: v.detach().clone() for k, v in net.state_dict().items()}

    def build(generator: torch.Generator, arch: Arch | None = None) -> torch.nn.Module:
        return models.build(model, shape, classes, generator, arch or Arch())

    return methods.Sources(init=init, dense_final=init, mask=masks.full_mask(init, names),
                           build_model=build, seed=0, target_sparsity=target,
                           exclude=masks.resolve_keep_dense(net, keep), scope=scope,
                           count_weights=lambda arch: models.count_weights(model, shape,
                                                                           classes, arch))


@pytest.mark.parametrize("model,shape,target,tolerance", [
    *((m, s, t, 0.02) for m, s in (("lenet_300_100", (1, 28, 28)), ("lenet_300_100", (1, 8, 8)),
                                   ("conv2", (1, 28, 28))) for t in (0.5, 0.8, 0.9, 0.95)),
    ("resnet20", (3, 32, 32), 0.5, 0.02), ("resnet20", (3, 32, 32), 0.8, 0.02),
    # 16/32/64 channels scaled by one factor: at 5-10 % density one channel of the last stage
    # moves the count by several percent, so the nearest width is within 5 % there
    ("resnet20", (3, 32, 32), 0.9, 0.05), ("resnet20", (3, 32, 32), 0.95, 0.05)])
def test_sdt_weight_count_is_within_2_percent_of_the_sparse_nets_nonzeros(
        model: str, shape: tuple[int, int, int], target: float, tolerance: float) -> None:
    src = _sources(model, shape, 10, target)
    start = sdt.start(src)
    built = models.build(model, shape, 10, torch.Generator().manual_seed(0),
                         Arch(width=start.width))
    count = sum(built.state_dict()[n].numel() for n in masks.prunable_names(built))
    wanted = sdt.sparse_weights(src)
    assert abs(count - wanted) <= tolerance * wanted, (count, wanted, start.width)
    assert start.mask == {}
    assert start.sparsity == pytest.approx(1 - count / models.count_weights(model, shape, 10))
    assert set(start.state) == set(built.state_dict())  # the small network's own state


def test_sparse_weights_counts_as_the_trunks_masks_keep_them() -> None:
    layerwise = _sources("lenet_300_100", (1, 8, 8), 10, 0.8)
    # fc1 64x300, fc2 300x100 pruned per layer; fc3 100x10 kept dense
    assert sdt.sparse_weights(layerwise) == round(0.2 * 19200) + round(0.2 * 30000) + 1000
    pooled = _sources("lenet_300_100", (1, 8, 8), 10, 0.8, scope="global", keep=())
    assert sdt.sparse_weights(pooled) == round(0.2 * (19200 + 30000 + 1000))
    mask = masks.magnitude_prune(layerwise.init, layerwise.mask, 0.8, "layerwise",
                                 layerwise.exclude)
    assert sdt.sparse_weights(layerwise) == sum(int(m.sum()) for m in mask.values())


def test_a_wider_target_never_gets_a_narrower_network() -> None:
    widths = [sdt.width_for(_sources("lenet_300_100", (1, 28, 28), 10, s))
              for s in (0.95, 0.9, 0.8, 0.5, 0.0)]
    assert widths == sorted(widths)
    assert widths[-1] == 1.0  # sparsity 0 is the full network


def test_sdt_rows_report_the_small_networks_sparsity_and_layers(tmp_path: Path) -> None:
    plan, store = run_in_process({"name": "sd", "dataset": "digits",
                                  "methods": ["dense", "sdt"], "sparsities": [0.8],
                                  "training": {"epochs": 1}}, tmp_path)
    job = plan.branches[0]
    assert job.stage_dir.startswith("small_dense/sdt-") and job.mask_blob == ""
    row = load.load_runs(store.path, method="sdt").iloc[0]
    src = _sources("lenet_300_100", (1, 8, 8), 10, 0.8)
    start = sdt.start(src)
    assert (row.level, row.total_epochs, row.epochs) == (0, 1, 1)
    assert row.sparsity == pytest.approx(start.sparsity)
    layers = load.load_layers(store.path, method="sdt").set_index("layer")
    assert layers.loc["fc1.weight", "n_weights"] == 64 * round(300 * start.width)
    assert (layers.n_kept == layers.n_weights).all()

    out = tmp_path / "t.pt"
    result = CliRunner().invoke(app, ["export", "sd", "--storage", str(tmp_path), "--method",
                                      "sdt", "--sparsity", "0.8", "--out", str(out)])
    assert result.exit_code == 0, result.output
    model, mask = tickets.load_ticket(out)
    assert mask == {}
    assert all(torch.equal(model.state_dict()[k], v) for k, v in start.state.items())
