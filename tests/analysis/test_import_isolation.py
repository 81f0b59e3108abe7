"""`analysis` must import without the training stack (STYLE.md 2.2)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = ("torch", "ray", "trainer", "sweeps", "optuna")
MODULES = ("analysis", *sorted(f"analysis.{p.stem}" for p in (REPO_ROOT / "analysis").glob("*.py")
                                if p.stem != "__init__"))


def _imported_after(statement: str) -> set[str]:
    """Top-level packages in sys.modules after running `statement` in a fresh interpreter."""
    code = f"{statement}\nimport sys\nprint('\\n'.join(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    return {name.split(".")[0] for name in result.stdout.split()}


def test_importing_analysis_leaves_torch_and_ray_out_of_sys_modules() -> None:
    code = (
        "import analysis, analysis.load, analysis.stats, analysis.report, sys; "
        "assert 'torch' not in sys.modules and 'ray' not in sys.modules, "
        "sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'ray'))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("module", MODULES)
def test_each_analysis_module_imports_no_training_stack(module: str) -> None:
    imported = _imported_after(f"import {module}")
    assert module.split(".")[0] in imported
    assert not imported & set(FORBIDDEN), sorted(imported & set(FORBIDDEN))


def test_the_base_install_is_the_analysis_install() -> None:
    """`pip install lottery-sweeps[analysis]` brings no training stack: torch, ray and optuna
    are in the `train` extra only, and `analysis` needs nothing outside the base."""
    import tomllib

    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    base = {d.split(">")[0].split("=")[0].split("[")[0] for d in project["dependencies"]}
    assert not base & {"torch", "torchvision", "ray", "optuna", "scikit-learn"}, base
    assert project["optional-dependencies"]["analysis"] == []
    assert {"pandas", "pyarrow", "numpy", "scipy", "matplotlib"} <= base


def test_every_submodule_is_an_attribute_of_the_package() -> None:
    """``analysis.tables`` etc. work after a bare ``import analysis`` (imported on first
    access), and the list of them is the package's modules."""
    from pathlib import Path

    import analysis

    modules = {p.stem for p in Path(analysis.__file__).parent.glob("*.py")} - {"__init__"}
    assert set(analysis._SUBMODULES) == modules
    assert callable(analysis.tables.accuracy) and callable(analysis.verdicts.ticket_verdicts)
