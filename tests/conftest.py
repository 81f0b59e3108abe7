"""Shared fixtures: a private Ray temp dir per test, CLI runner, cleanup of Ray processes, and
the helpers of the kill-and-resume tests (a driver in its own session, an in-process reference
run, table equality)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from typing import NamedTuple

import pytest
import torch
import yaml

from sweeps import loopback

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True, scope="session")
def _private_data_cache(tmp_path_factory):
    """Loaders' caches (decompressed files, the digits split) in a temp dir, not the user's
    ``~/.cache``; subprocesses inherit it."""
    before = os.environ.get("LOTTERY_DATA_CACHE")
    os.environ["LOTTERY_DATA_CACHE"] = str(tmp_path_factory.mktemp("data-cache"))
    yield
    if before is None:
        os.environ.pop("LOTTERY_DATA_CACHE")
    else:
        os.environ["LOTTERY_DATA_CACHE"] = before


@pytest.fixture(autouse=True)
def _one_torch_thread():
    # Two cores shared with Ray workers: multi-threaded torch oversubscribes and crawls.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def ray_processes(marker: str) -> list[int]:
    """PIDs whose command line or environment mentions ``marker`` (our private Ray temp dir).

    Ray renames worker processes (``ray::ImplicitFunc.train``), so the command line alone
    misses them; they inherit ``RAY_TMPDIR`` in their environment.
    """
    pids = []
    needle = marker.encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            seen = (entry / "cmdline").read_bytes() + (entry / "environ").read_bytes()
        except OSError:
            continue
        if needle in seen:
            pids.append(int(entry.name))
    return pids


def kill_tree(marker: str) -> None:
    """SIGKILL every process of the Ray instance rooted at ``marker`` (never a bare ray stop)."""
    for _ in range(3):  # a dying raylet may still be forking workers
        for pid in ray_processes(marker):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.3)


@pytest.fixture(scope="module")
def ray_env(tmp_path_factory):
    """Environment for a CLI subprocess that starts its own Ray in a private temp dir."""
    tmp = tempfile.mkdtemp(prefix="lsr", dir="/tmp")  # short: Ray's socket paths are limited
    home = tmp_path_factory.mktemp("home")
    env = {**os.environ, "RAY_TMPDIR": tmp, "RAY_USAGE_STATS_ENABLED": "0", "HOME": str(home),
           "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1",
           "LOTTERY_DATA_CACHE": str(tmp_path_factory.getbasetemp() / "data-cache"),
           # every Ray a test starts listens on loopback only (sweeps.loopback)
           loopback.ENV: "0"}
    yield env
    kill_tree(tmp)
    time.sleep(0.5)
    shutil.rmtree(tmp, ignore_errors=True)


def write_spec(path: Path, spec: dict) -> Path:
    path.write_text(yaml.safe_dump(spec))
    return path


def lottery(args: list[str], env: dict, cwd: Path, timeout: float = 600,
            check: bool = True) -> subprocess.CompletedProcess:
    """Run ``python -m sweeps ARGS`` and return the completed process."""
    proc = subprocess.run([sys.executable, "-m", "sweeps", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"lottery {args} exited {proc.returncode}\n"
                             f"stdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-6000:]}")
    return proc


def start_driver(args: list[str], env: dict, cwd: Path) -> subprocess.Popen:
    """``python -m sweeps ARGS`` in its own session: the driver and the local Ray it starts
    form one process group, so ``os.killpg`` kills them together."""
    return subprocess.Popen([sys.executable, "-m", "sweeps", *args], env=env, cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def kill_driver(proc: subprocess.Popen, env: dict) -> None:
    """SIGKILL a driver's process group and every process of its local Ray."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.communicate()
    kill_tree(env["RAY_TMPDIR"])


def wait_for(condition, proc: subprocess.Popen, timeout: float = 300) -> None:
    """Poll ``condition`` until it holds; fail if the driver ends first or time runs out."""
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"sweep ended before the condition held:\n{err[-4000:]}")
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the sweep")
        time.sleep(0.2)


class InProcessSweep(NamedTuple):
    """What ``run_in_process`` ran: the plan and the sweep's store, with the lookups the
    trainer tests share (test modules subclass it for their own)."""

    plan: Any
    store: Any

    @property
    def trunk_blobs(self) -> Any:
        """The artifact store of the first chain's trunk (θ0, masks, level and stage dirs)."""
        return self.store.child("artifacts", self.plan.chains[0].trunk.artifact_dir)

    def branch(self, **point: object) -> Any:
        """The first branch job whose grid point has these fields, e.g. ``method="lth"``."""
        return next(b for b in self.plan.branches
                    if all(getattr(b.point, k) == v for k, v in point.items()))


def run_in_process(spec: dict | Any, root: Path, code_version: str = "") -> InProcessSweep:
    """Plan ``spec`` (a dict, or a parsed ``SweepSpec``) and run every job in-process on the
    CPU with one torch thread (as the trials of ``resources.cpu: 1`` do), under
    ``root/<name>`` with its ``spec.json``.

    Thread count changes float reductions, so it must match ``resources.cpu`` (1 here).

    Returns:
        (plan, sweep store).
    """
    from sweeps import spec as spec_module
    from sweeps.plan import make_plan
    from sweeps.store import Store
    from sweeps.trial_run import run_job

    torch.set_num_threads(1)
    parsed = spec_module.parse(spec) if isinstance(spec, dict) else spec
    plan = make_plan(parsed, code_version)
    sweep = Store(str(root)).child(parsed.name)
    sweep.put_json("spec.json", parsed.to_json())
    for job in (*plan.chains, *plan.branches):
        run_job(job, sweep, torch.device("cpu"))
    return InProcessSweep(plan, sweep)


def reference_run(spec: dict, root: Path) -> Path:
    """The uninterrupted run of ``spec``, in-process (``run_in_process``); its directory."""
    from sweeps.run import code_version

    run_in_process(spec, root, code_version())
    return root / spec["name"]


def assert_same_tables(sweep_dir: Path, reference: Path) -> None:
    """Every table equals the reference's (all columns but wall_time_s), one row per point."""
    import pandas as pd

    from analysis.load import load_curves
    from analysis.load import load_layers
    from analysis.load import load_runs

    for name, load in {"runs": load_runs, "curves": load_curves, "layers": load_layers}.items():
        got = load(sweep_dir).drop(columns=["wall_time_s"], errors="ignore")
        want = load(reference).drop(columns=["wall_time_s"], errors="ignore")
        pd.testing.assert_frame_equal(got, want, obj=name)
    assert load_runs(sweep_dir).config_hash.is_unique
