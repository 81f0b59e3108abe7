"""The CLI answers at once: `lottery --help`, `plan`, `status`, `report` and `compact` import
neither torch, torchvision, scikit-learn nor ray (issue 14, item 5), and work on the base
install (the `train` extra's modules blocked); `plan --check` does import torch (it builds
the models), `run` leaves torch to the preflight's child and the trials, and a trial's
loaders are reached through the registries when first called.

Each command runs in a fresh interpreter, which then lists the heavy modules it loaded.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_in_process

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "sweeps" / "configs" / "quickstart.yaml"
HEAVY = ("torch", "torchvision", "sklearn", "ray")
SPEC = {"name": "lazy", "dataset": "digits", "methods": ["dense", "lth", "pf"], "lrs": [0.1],
        "sparsities": [0.5], "seeds": [0], "training": {"epochs": 1}}

# Runs the CLI in-process (as the `lottery` script does), then prints the heavy modules loaded.
PROBE = """
import json, sys
from sweeps.cli import app
try:
    app(sys.argv[1:], prog_name="lottery")
except SystemExit as done:
    code = done.code
print(json.dumps({"code": code, "heavy": [m for m in %r if m in sys.modules]}))
""" % (HEAVY,)


# The same through the console script's entry point, with every module that only the `train`
# extra installs unimportable, as on `pip install lottery-sweeps`.
BASE_PROBE = """
import importlib.abc, json, sys
from sweeps.cli import TRAIN_ONLY

class NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in TRAIN_ONLY:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)

sys.meta_path.insert(0, NotInstalled())
from sweeps.cli import main
try:
    main()
except SystemExit as done:
    code = done.code
print(json.dumps({"code": code, "heavy": [m for m in %r if m in sys.modules]}))
""" % (HEAVY,)
RATES_SPEC = ROOT / "sweeps" / "configs" / "papers" / "frankle2019_lenet_mnist_cpu.yaml"


def _base_install(args: list[str], cwd: Path) -> tuple[int, list[str], str]:
    proc = subprocess.run([sys.executable, "-c", BASE_PROBE, *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return result["code"], result["heavy"], proc.stderr


def _heavy_modules(args: list[str], cwd: Path) -> tuple[int, list[str]]:
    proc = subprocess.run([sys.executable, "-c", PROBE, *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return result["code"], result["heavy"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("lazy")
    run_in_process(SPEC, root / "results")
    return root


@pytest.mark.parametrize("args", [["--help"], ["plan", str(QUICKSTART)],
                                  ["status", "lazy"], ["report", "lazy"],
                                  ["report", "results/lazy"], ["compact", "lazy"]],
                         ids=["help", "plan", "status", "report", "report_path", "compact"])
def test_reading_commands_import_no_training_stack(args: list[str], finished: Path) -> None:
    code, heavy = _heavy_modules(args, finished)
    assert code in (0, None)
    assert heavy == []
    code, heavy, err = _base_install(args, finished)
    assert code in (0, None), err[-3000:]
    assert heavy == []


def test_a_command_that_needs_the_training_stack_says_so_on_the_base_install(
        finished: Path) -> None:
    """Per-layer `pruning.rates` levels need the layers' sizes (models built on torch's meta
    device): on the base install `plan` names what to install instead of a traceback."""
    code, _, err = _base_install(["plan", str(RATES_SPEC)], finished)
    assert code == 2
    assert "needs the training stack" in err and 'pip install "lottery-sweeps[train]"' in err
    assert "Traceback" not in err


def test_plan_check_builds_the_models_so_it_imports_torch(finished: Path) -> None:
    code, heavy = _heavy_modules(["plan", "--check", str(QUICKSTART)], finished)
    assert code in (0, None)
    assert "torch" in heavy and "ray" not in heavy


def test_registries_describe_without_torch_and_load_through_it() -> None:
    probe = """
import sys
from trainer import data, methods, models
from trainer.hparams import DataHparams
from sweeps import spec, plan
p = plan.make_plan(spec.parse({"name": "x", "dataset": "mnist", "model": "conv2",
                               "methods": ["dense", "lth", "rst", "random_pruning", "sdt"]}))
assert len(p.points) > 0 and data.sizes(DataHparams(name="cifar10")) == (50000, 10000)
assert models.get("conv2") is not None   # imports the model module (and torch)
assert "torch" in sys.modules and "torchvision" not in sys.modules
d = data.load(DataHparams(name="digits", train_subset=10))
print(tuple(d.train_x.shape), "trainer.data.digits" in sys.modules, "torchvision" in sys.modules)
"""
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split() == ["(10,", "1,", "8,", "8)", "True", "False"]


def test_planning_imports_no_torch_before_a_model_is_built() -> None:
    probe = """
import sys
from sweeps import spec, plan
plan.make_plan(spec.parse({"name": "x", "dataset": "mnist", "model": "conv2",
                           "methods": ["dense", "lth", "rst", "random_pruning", "sdt"]}))
print([m for m in %r if m in sys.modules])
""" % (HEAVY,)
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "[]"


def test_run_refuses_a_model_problem_found_by_the_preflight_child_without_torch(
        tmp_path: Path) -> None:
    """`lottery run` builds the models in a child process (``sweeps.preflight_child``): the
    driver names the child's problem, exits 2, writes nothing and never imports torch."""
    bad = tmp_path / "bad.json"  # JSON is YAML
    bad.write_text(json.dumps({**SPEC, "pruning": {"keep_dense": ["no_such_layer"]}}))
    proc = subprocess.run([sys.executable, "-c", PROBE, "run", str(bad), "--storage",
                           str(tmp_path / "results")], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["code"] == 2 and "torch" not in result["heavy"]
    assert "pruning.keep_dense[0]" in proc.stderr and "no_such_layer" in proc.stderr
    assert not (tmp_path / "results").exists()


def test_the_blocked_modules_are_those_of_the_train_extra() -> None:
    """``TRAIN_ONLY`` (what the base-install probe blocks, and what the CLI names as missing)
    is the top-level modules of pyproject's `train` extra, so a dependency moved there is
    caught by the base-install tests above."""
    import re
    import tomllib

    from sweeps.cli import TRAIN_ONLY

    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]["train"]
    dists = {re.match(r"[A-Za-z0-9_.-]+", d).group(0).lower() for d in extra}
    modules = {{"scikit-learn": "sklearn"}.get(d, d) for d in dists}
    assert modules == set(TRAIN_ONLY)
