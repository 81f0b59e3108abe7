"""The paper specs (sweeps/configs/papers/): each has a CPU-scale sibling on data this machine
has, Frankle & Carbin's sparsities are IMP levels of their per-layer rates, and one CPU spec
runs end to end on a subset."""

from __future__ import annotations

from pathlib import Path

import pytest

import sweeps
from analysis.load import load_layers
from analysis.load import load_runs
from sweeps import preflight
from sweeps.spec import load
from sweeps.spec_yaml import read_yaml
from tests.conftest import run_in_process
from trainer import levels
from trainer.levels import level_schedule

PAPERS = Path(sweeps.__file__).parent / "configs" / "papers"
FULL = sorted(p for p in PAPERS.glob("*.yaml") if not p.stem.endswith("_cpu"))
CPU = sorted(PAPERS.glob("*_cpu.yaml"))


def test_every_paper_spec_has_a_cpu_sibling_and_back() -> None:
    assert len(FULL) >= 9
    assert {p.stem for p in FULL} == {p.stem.removesuffix("_cpu") for p in CPU}


@pytest.mark.parametrize("path", CPU, ids=[p.stem for p in CPU])
def test_a_cpu_spec_uses_only_data_of_this_machine(path: Path) -> None:
    spec = load(path)
    names = {hp.name for hp in preflight.data_fields(spec).values()}
    assert names <= {"digits", "fashion-mnist"}, names
    assert spec.resources.gpu == 0 and spec.resources.cpu == 1


@pytest.mark.parametrize("path", [p for p in (*FULL, *CPU) if p.stem.startswith("frankle")],
                         ids=lambda p: p.stem)
def test_frankle_carbin_sparsities_are_imp_levels_of_their_rates(path: Path) -> None:
    from sweeps.plan import make_plan

    spec = load(path)
    assert spec.pruning.rates  # F&C's per-layer rule
    trunk = make_plan(spec).chains[0].trunk
    schedule = level_schedule(trunk)
    assert not schedule.is_uniform
    for s in spec.sparsities:
        assert levels.is_level_sparsity(s, schedule), s


def test_frankle_carbin_lenet_levels_are_the_papers_p_m() -> None:
    from sweeps.plan import make_plan

    trunk = make_plan(load(PAPERS / "frankle2019_lenet_mnist.yaml")).chains[0].trunk
    schedule = level_schedule(trunk)
    p_m = {3: 51.3, 7: 21.1, 12: 7.0, 15: 3.6, 18: 1.9}  # F&C §2, Fig. 3
    for level, percent in p_m.items():
        assert round(100 * schedule.density(level), 1) == percent


def test_a_cpu_paper_spec_runs_on_a_subset(tmp_path: Path) -> None:
    raw = read_yaml((PAPERS / "frankle2019_conv2_cifar10_cpu.yaml").read_text())
    raw.update(seeds=[0], sparsities=raw["sparsities"][:2],
               training={**raw["training"], "iterations": 20},
               data={"train_subset": 400, "test_subset": 100, "validation": 100})
    plan, sweep = run_in_process(raw, tmp_path)
    runs = load_runs(sweep.path)
    assert len(runs) == len(plan.points) == 7  # dense + 3 arms x 2 sparsities
    assert set(runs.method) == {"dense", "lth", "random_reinit", "random_pruning"}
    assert runs.test_acc.between(0, 1).all() and runs.val_acc.notna().all()
    layers = load_layers(sweep.path)
    lth = layers[(layers.method == "lth") & (layers.target_sparsity == raw["sparsities"][0])]
    by_layer = lth.set_index("layer").sparsity
    level = levels.level_for(raw["sparsities"][0], level_schedule(plan.chains[0].trunk))
    assert by_layer["convs.0.weight"] == pytest.approx(1 - 0.9 ** level, abs=2e-3)
    assert by_layer["fc1.weight"] == pytest.approx(1 - 0.8 ** level, abs=2e-3)
    assert by_layer["fc3.weight"] == pytest.approx(1 - 0.9 ** level, abs=2e-2)
