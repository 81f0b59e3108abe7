"""Every shipped spec under sweeps/configs/ validates, passes the preflight and plans."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

import sweeps
from sweeps.cli import app
from sweeps.spec import load

CONFIGS = sorted((Path(sweeps.__file__).parent / "configs").rglob("*.yaml"))


def test_the_shipped_specs_are_found() -> None:
    names = {p.stem for p in CONFIGS}
    assert {"quickstart", "fashion_mnist_lenet", "fashion_mnist_dual_lth",
            "fashion_mnist_recipes", "transfer_fashion_mnist_split"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_lottery_plan_of_a_shipped_spec_exits_0_and_prints_its_budget(path: Path) -> None:
    result = CliRunner().invoke(app, ["plan", str(path)])
    assert result.exit_code == 0, result.output
    spec = load(path)
    assert f"sweep {spec.name!r}:" in result.stdout and "budget" in result.stdout
    assert spec.name == path.stem  # one results directory per file


def test_the_real_data_specs_hold_out_a_validation_split() -> None:
    for path in CONFIGS:
        spec = load(path)
        if any(d.startswith("fashion-mnist") for d in spec.datasets):
            assert spec.data.validation > 0, path.name
