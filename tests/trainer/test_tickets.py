"""Tests for trainer/tickets.py and ``lottery export``: a ticket is the stored mask and θ_start."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from sweeps import spec as spec_module
from sweeps.cli import app
from sweeps.keys import mask_blob
from sweeps.plan import make_plan
from sweeps.store import Store
from sweeps.trial_run import run_job
from trainer import checkpoint
from trainer import models
from trainer import seeding
from trainer import tickets
from trainer.stage import load_result

SPEC = {"name": "tk", "dataset": "digits", "methods": ["dense", "lth", "random_reinit", "pf",
                                                          "omp_lth", "rst"],
        "lrs": [0.1, 0.05], "sparsities": [0.36, 0.5], "seeds": [0], "training": {"epochs": 1},
        "rst": {"reg_step": 0.1, "stabilize_iterations": 10}}


@pytest.fixture(scope="module")
def storage(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("tickets")
    spec = spec_module.parse(SPEC)
    store = Store(str(root)).child("tk")
    store.put_json("spec.json", spec.to_json())
    plan = make_plan(spec)
    for job in (*plan.chains, *plan.branches):
        run_job(job, store, torch.device("cpu"))
    return root


def _export(storage: Path, tmp_path: Path, *args: str):
    out = tmp_path / "ticket.pt"
    result = CliRunner().invoke(app, ["export", "tk", "--storage", str(storage), "--out",
                                      str(out), *args])
    return result, out


def _trunk_blobs(storage: Path, lr: float) -> Store:
    chain = next(c for c in make_plan(spec_module.parse(SPEC)).chains if c.trunk.train.lr == lr)
    return Store(str(storage)).child("tk", "artifacts", chain.trunk.artifact_dir)


def _equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("method,sparsity,producer", [
    ("lth", 0.36, "imp"), ("lth", 0.5, "imp"), ("pf", 0.5, "imp"),
    ("random_reinit", 0.36, "imp"), ("omp_lth", 0.5, "one_shot")])
def test_an_exported_ticket_is_the_stored_mask_and_its_start_weights(
        storage: Path, tmp_path: Path, method: str, sparsity: float, producer: str) -> None:
    result, out = _export(storage, tmp_path, "--method", method, "--sparsity", str(sparsity),
                          "--lr", "0.1")
    assert result.exit_code == 0, result.output
    model, mask = tickets.load_ticket(out)
    blobs = _trunk_blobs(storage, 0.1)
    stored = checkpoint.load(blobs, mask_blob(sparsity, producer))["mask"]
    assert _equal(mask, stored)
    theta0 = checkpoint.load(blobs, "init.pt")["state"]
    reinit = models.build("lenet_300_100", (1, 8, 8), 10, seeding.generator(0, "reinit"))
    start = {"lth": theta0, "omp_lth": theta0, "random_reinit": reinit.state_dict(),
             "pf": load_result(blobs.child("level_0")).state}[method]
    state = model.state_dict()
    for name, value in start.items():
        expected = value * mask[name] if name in mask else value
        assert torch.equal(state[name], expected), name
    if method == "random_reinit":  # θ0' from (seed, "reinit"), not θ0
        assert not torch.equal(state["fc1.weight"], theta0["fc1.weight"] * mask["fc1.weight"])
    assert model(torch.zeros(2, 1, 8, 8)).shape == (2, 10)
    raw = torch.load(out, weights_only=True)
    assert (raw["method"], raw["target_sparsity"], raw["model"]) == (method, sparsity,
                                                                    "lenet_300_100")


def test_an_rst_ticket_is_its_transformed_weights_under_its_random_mask(
        storage: Path, tmp_path: Path) -> None:
    result, out = _export(storage, tmp_path, "--method", "rst", "--sparsity", "0.5", "--lr",
                          "0.1")
    assert result.exit_code == 0, result.output
    model, mask = tickets.load_ticket(out)
    job = next(j for j in make_plan(spec_module.parse(SPEC)).branches
               if j.point.method == "rst" and j.point.target_sparsity == 0.5
               and j.trunk.train.lr == 0.1)
    done = checkpoint.load(_trunk_blobs(storage, 0.1).child(job.stage_dir, "prepare"),
                           "final.pt")
    assert _equal(mask, done["mask"])
    state = model.state_dict()
    assert torch.equal(state["fc1.weight"], done["state"]["fc1.weight"] * mask["fc1.weight"])


def test_export_refuses_dense_unknown_points_and_ambiguous_ones(storage: Path,
                                                               tmp_path: Path) -> None:
    result, out = _export(storage, tmp_path, "--method", "dense", "--sparsity", "0",
                          "--lr", "0.1")
    assert result.exit_code == 2 and "has no ticket" in result.stderr
    result, _ = _export(storage, tmp_path, "--method", "lth", "--sparsity", "0.8")
    assert result.exit_code == 2 and "no grid point method=lth sparsity=0.8" in result.stderr
    assert "its grid: sparsities [0.36, 0.5], lrs [0.1, 0.05], seeds [0]" in result.stderr
    result, _ = _export(storage, tmp_path, "--method", "magic", "--sparsity", "0.5")
    assert result.exit_code == 2 and "sweep 'tk' has no method 'magic'; its methods: dense, " \
        "lth, random_reinit, pf, omp_lth, rst" in result.stderr
    result, _ = _export(storage, tmp_path, "--method", "lth", "--sparsity", "0.5")
    assert result.exit_code == 2 and "--lr 0.05" in result.stderr and "--lr 0.1" in result.stderr
    assert not out.exists()


def test_export_to_a_path_it_cannot_write_exits_2_naming_it(storage: Path,
                                                           tmp_path: Path) -> None:
    out = tmp_path / "no-such-dir" / "ticket.pt"
    result = CliRunner().invoke(app, ["export", "tk", "--storage", str(storage), "--out",
                                      str(out), "--method", "lth", "--sparsity", "0.5",
                                      "--lr", "0.1"])
    assert result.exit_code == 2
    assert f"cannot write {out}: No such file or directory" in result.stderr


def test_a_file_that_is_not_a_ticket_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "x.pt"
    torch.save({"state": {}}, path)
    with pytest.raises(ValueError, match="not a lottery-sweeps ticket"):
        tickets.load_ticket(path)
    path.write_bytes(b"garbage")
    with pytest.raises(ValueError, match="not a readable ticket"):
        tickets.load_ticket(path)
