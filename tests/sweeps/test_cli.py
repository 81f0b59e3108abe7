"""Tests for sweeps/cli.py: plan, and the failure paths of run/resume/status/report (no Ray).

Most tests call the Typer app in-process (CliRunner); two go through ``python -m sweeps`` to
cover the real entry point. Every ``run`` here uses a spec that must fail validation, so Ray is
never started.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner
from typer.testing import Result

import sweeps
from sweeps.cli import app

QUICKSTART = Path(sweeps.__file__).parent / "configs" / "quickstart.yaml"
REPO_ROOT = Path(sweeps.__file__).parent.parent

BAD_SPECS = {
    "unknown_method": ("methods: [dense, magic]\n", "methods[1]", "unknown method 'magic'"),
    "sparsity_one": ("sparsities: [0.5, 1.0]\n", "sparsities[1]", "must be in [0, 1)"),
    "negative_lr": ("lrs: [-1]\n", "lrs[0]", "must be > 0"),
    "empty_grid": ("lrs: []\n", "lrs", "must not be empty"),
    "unknown_key": ("training: {epochz: 3}\n", "training.epochz", "unknown key"),
    "wrong_type": ("training: {epochs: '10'}\n", "training.epochs", "valid integer"),
    "bad_storage": ("storage: 'foo://bar'\n", "storage", "unknown filesystem 'foo://'"),
}


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The default storage is the relative "results": keep anything it might create in tmp.
    monkeypatch.chdir(tmp_path)


def _invoke(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def _bad_spec(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text("name: bad\n" + body)
    return path


def _assert_empty_or_missing(directory: Path) -> None:
    assert not directory.exists() or not any(directory.iterdir()), list(directory.rglob("*"))


def test_plan_prints_trials_and_budget() -> None:
    result = _invoke("plan", str(QUICKSTART))
    assert result.exit_code == 0, result.output
    assert "chain-lenet_300_100-digits-lr0.01-seed0-53e91874" in result.stdout
    assert "pf-lenet_300_100-digits-lr0.1-seed1-s0.9-" in result.stdout
    assert "52 grid points" in result.stdout
    assert "4 chain trials + 48 branch trials" in result.stdout
    assert "budget 920 epochs" in result.stdout


def test_plan_writes_nothing(tmp_path: Path) -> None:
    result = _invoke("plan", str(QUICKSTART))
    assert result.exit_code == 0
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("case", sorted(BAD_SPECS))
def test_plan_on_bad_spec_exits_2_naming_field_and_reason(tmp_path: Path, case: str) -> None:
    body, field, reason = BAD_SPECS[case]
    result = _invoke("plan", str(_bad_spec(tmp_path, body)))
    assert result.exit_code == 2
    assert f"{field}: " in result.stderr
    assert reason in result.stderr
    assert result.stdout == ""


def test_plan_on_missing_file_exits_2() -> None:
    result = _invoke("plan", "missing.yaml")
    assert result.exit_code == 2
    assert "cannot read" in result.stderr


@pytest.mark.parametrize("case", sorted(BAD_SPECS))
def test_run_on_bad_spec_fails_before_writing_anything(tmp_path: Path, case: str) -> None:
    body, field, reason = BAD_SPECS[case]
    storage = tmp_path / "store"
    result = _invoke("run", str(_bad_spec(tmp_path, body)), "--storage", str(storage))
    assert result.exit_code == 2
    assert f"{field}: " in result.stderr and reason in result.stderr
    _assert_empty_or_missing(storage)
    _assert_empty_or_missing(tmp_path / "results")


def test_run_on_bad_spec_reports_all_problems(tmp_path: Path) -> None:
    spec = _bad_spec(tmp_path, "methods: [magic]\nlrs: [0.1, -1]\nsparsities: [1.5]\n")
    result = _invoke("run", str(spec), "--storage", str(tmp_path / "store"))
    assert result.exit_code == 2
    for field in ("methods[0]", "lrs[1]", "sparsities[0]"):
        assert f"{field}: " in result.stderr
    _assert_empty_or_missing(tmp_path / "store")


def test_status_of_missing_sweep_fails_clearly(tmp_path: Path) -> None:
    storage = tmp_path / "store"
    result = _invoke("status", "nope", "--storage", str(storage))
    assert result.exit_code != 0
    assert f"no sweep 'nope' under {storage} (no spec.json)" in result.stderr
    _assert_empty_or_missing(storage)


def test_resume_of_missing_sweep_fails_clearly(tmp_path: Path) -> None:
    storage = tmp_path / "store"
    result = _invoke("resume", "nope", "--storage", str(storage))
    assert result.exit_code != 0
    assert "no sweep 'nope'" in result.stderr and "no spec.json" in result.stderr
    _assert_empty_or_missing(storage)


def test_resume_without_storage_looks_under_results(tmp_path: Path) -> None:
    result = _invoke("resume", "nope")
    assert result.exit_code != 0
    assert f"no sweep 'nope' under {tmp_path / 'results'} (no spec.json); pass --storage" \
        in result.stderr
    _assert_empty_or_missing(tmp_path / "results")


@pytest.mark.parametrize("command", ["status", "resume", "compact", "export"])
def test_a_command_on_a_sweep_name_refuses_a_path_or_a_bad_location(
        tmp_path: Path, command: str) -> None:
    extra = ["--method", "lth", "--sparsity", "0.5", "--out", "t.pt"] if command == "export" \
        else []
    result = _invoke(command, "../elsewhere/nope", *extra)
    assert result.exit_code == 2 and "'../elsewhere/nope' is not a sweep name" in result.stderr
    result = _invoke(command, "nope", "--storage", "foo://bar", *extra)
    assert result.exit_code == 2
    assert "--storage foo://bar: unknown filesystem 'foo://'" in result.stderr
    _assert_empty_or_missing(tmp_path / "results")


def test_run_refuses_a_storage_location_no_filesystem_opens(tmp_path: Path) -> None:
    result = _invoke("run", str(QUICKSTART), "--storage", "foo://bar")
    assert result.exit_code == 2
    assert "--storage foo://bar: unknown filesystem 'foo://'" in result.stderr


def test_plan_counts_in_the_singular_for_one(tmp_path: Path) -> None:
    one = _bad_spec(tmp_path, "methods: [lth]\nsparsities: [0.5]\n")
    result = _invoke("plan", str(one))
    assert result.exit_code == 0, result.output
    assert "1 grid point, 1 chain trial + 1 branch trial," in result.stdout


def test_report_on_directory_without_results_prints_empty_message(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "empty-sweep"
    sweep_dir.mkdir()
    result = _invoke("report", str(sweep_dir))
    assert result.exit_code == 0
    assert "No runs to report: the runs table is empty." in result.stdout


def test_report_of_missing_sweep_name_exits_nonzero(tmp_path: Path) -> None:
    result = _invoke("report", "nope", "--storage", str(tmp_path / "store"))
    assert result.exit_code == 2
    assert f"no sweep results at {tmp_path / 'store' / 'nope'}" in result.stderr


def test_report_of_missing_path_names_that_path(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-dir"
    result = _invoke("report", str(missing))
    assert result.exit_code == 2
    assert f"no sweep results at {missing}" in result.stderr


@dataclass(frozen=True)
class EntryPointRuns:
    """Results of ``python -m sweeps`` calls, by name, and the ``--storage`` the run was given."""

    results: dict[str, subprocess.CompletedProcess[str]]
    storage: Path


@pytest.fixture(scope="module")
def entry_point(tmp_path_factory: pytest.TempPathFactory) -> EntryPointRuns:
    """Run ``python -m sweeps`` twice, concurrently (each start imports torch: seconds)."""
    root = tmp_path_factory.mktemp("entry")
    spec = root / "bad.yaml"
    spec.write_text("name: bad\nlrs: [-1]\nsparsities: [1.0]\n")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    commands = {"help": ["--help"],
                "run_bad": ["run", str(spec), "--storage", str(root / "store")]}
    procs = {name: subprocess.Popen([sys.executable, "-m", "sweeps", *args], cwd=root, env=env,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for name, args in commands.items()}
    results = {}
    for name, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=180)
        results[name] = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    return EntryPointRuns(results=results, storage=root / "store")


def test_python_m_sweeps_help_lists_the_commands(entry_point: EntryPointRuns) -> None:
    result = entry_point.results["help"]
    assert result.returncode == 0, result.stderr
    assert "Usage: lottery" in result.stdout
    for command in ("plan", "run", "resume", "status", "report"):
        assert re.search(rf"^\W*{command}\s{{2,}}\S", result.stdout, re.MULTILINE), command


def test_python_m_sweeps_run_bad_spec_exits_2_and_writes_nothing(
        entry_point: EntryPointRuns) -> None:
    result = entry_point.results["run_bad"]
    assert result.returncode == 2
    assert "lrs[0]: must be > 0" in result.stderr
    assert "sparsities[0]: must be in [0, 1)" in result.stderr
    assert "Traceback" not in result.stderr
    _assert_empty_or_missing(entry_point.storage)


def test_the_resume_hint_of_an_interrupt_names_the_ray_the_run_used(monkeypatch) -> None:
    from sweeps.cli import _resume_hint

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert _resume_hint("s", "results", None) == "`lottery resume s` continues the sweep"
    assert _resume_hint("s", "s3://b/x", "10.0.0.1:6379") == \
        "`lottery resume s --storage s3://b/x --address 10.0.0.1:6379` continues the sweep"
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:6379")  # as `ray job submit` sets it
    hint = _resume_hint("s", "s3://b/x", None)
    assert "on the same cluster" in hint and \
        "`ray job submit ... -- lottery resume s --storage s3://b/x`" in hint


def test_data_root_and_download_options_replace_the_specs(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """`--data-root` / `--download` change where the files are (a relative root from the
    current directory), nothing else; the preflight then looks there."""
    import yaml

    from sweeps import spec as spec_module
    from sweeps.cli import _with_data

    monkeypatch.chdir(tmp_path)
    spec = spec_module.parse({"name": "d", "dataset": "mnist", "lrs": [0.1],
                              "sparsities": [0.5]})
    assert _with_data(spec, None, None) is spec
    moved = _with_data(spec, "here/data", True)
    assert (moved.data.root, moved.data.download) == (str(tmp_path / "here" / "data"), True)
    assert moved.model_copy(update={"data": spec.data}) == spec  # only the data moved
    path = tmp_path / "d.yaml"
    path.write_text(yaml.safe_dump({"name": "d", "dataset": "mnist", "lrs": [0.1],
                                    "methods": ["dense"], "training": {"epochs": 1}}))
    result = CliRunner().invoke(app, ["run", str(path), "--storage", str(tmp_path / "r"),
                                      "--data-root", "empty-dir", "--no-download"])
    assert result.exit_code == 2, result.output
    assert str(tmp_path / "empty-dir") in result.output  # the preflight looked there
