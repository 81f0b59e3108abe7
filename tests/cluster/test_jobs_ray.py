"""Integration: a sweep submitted with `ray job submit` to a real local Ray head.

The head runs on loopback with its own ports and temp dir and token authentication on; the test
stops it by signalling its own `ray start --block` process (never `ray stop`, which would stop
every Ray on the machine; RAY_FACTS.md §9).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil
import pytest
import torch
from conftest import ROOT
from conftest import kill_tree
from conftest import lottery
from conftest import write_spec

from analysis.load import load_runs
from sweeps import loopback

pytestmark = pytest.mark.ray

SPEC = {"name": "jobs", "dataset": "digits", "methods": ["dense", "lth", "pf"], "lrs": [0.1],
        "sparsities": [0.5], "seeds": [0], "training": {"epochs": 1},
        "resources": {"cpu": 1, "gpu": 0.5}}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_status(url: str, token: str | None = None) -> int:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as err:
        return err.code
    except urllib.error.URLError:
        return 0  # not listening yet


def listening_addresses(port: int) -> set[str]:
    """Local addresses with a TCP socket in LISTEN state on ``port`` (an IPv4-mapped IPv6
    address as its IPv4 one)."""
    found = set()
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr.port == port:
            ip = ipaddress.ip_address(conn.laddr.ip)
            found.add(str(getattr(ip, "ipv4_mapped", None) or ip))
    return found


@pytest.fixture
def head(tmp_path, ray_env):
    """A Ray head on 127.0.0.1 with token auth; yields (dashboard URL, env, token)."""
    temp_dir = tempfile.mkdtemp(prefix="lsh", dir="/tmp")
    token = secrets.token_hex(16)
    # ray_env's single-machine mode keeps every port of this stand-in head on loopback
    # (``sweeps.loopback``); a real cluster's head leaves it unset so that workers can join.
    env = {**ray_env, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token,
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{ray_env['PATH']}"}
    port, dash = free_port(), free_port()
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "ray"), "start", "--head", "--block",
         "--node-ip-address=127.0.0.1", "--dashboard-host=127.0.0.1", f"--port={port}",
         f"--dashboard-port={dash}", f"--temp-dir={temp_dir}", "--num-cpus=2",
         # every agent on its own free port: another Ray on this machine may hold the defaults
         f"--dashboard-agent-listen-port={free_port()}",
         f"--dashboard-agent-grpc-port={free_port()}",
         f"--runtime-env-agent-port={free_port()}", f"--metrics-export-port={free_port()}",
         f"--ray-client-server-port={free_port()}",
         "--num-gpus=1"],  # a GPU resource for scheduling only (no CUDA here)
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{dash}"
    try:
        deadline = time.monotonic() + 90
        while http_status(f"{url}/api/version", token) != 200:
            assert proc.poll() is None, "ray start exited"
            assert time.monotonic() < deadline, "dashboard did not come up"
            time.sleep(1)
        yield url, env, token, dash, port
    finally:
        # SIGTERM to `ray start` alone: it stops its node (RAY_FACTS §9); the same signal to
        # its whole group left it waiting on its half-stopped children until the timeout.
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # whatever of the group is left
        proc.wait()
        kill_tree(temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)


def test_ray_job_submit_runs_a_sweep_on_the_cluster(tmp_path, head):
    url, env, token, dash, port = head
    # The dashboard (Jobs API) answers only on loopback, and only with the token.
    assert listening_addresses(dash) == {"127.0.0.1"}
    assert listening_addresses(port) == {"127.0.0.1"}  # the GCS too (sweeps.loopback)
    assert http_status(f"{url}/api/version") == 401
    spec_path = write_spec(tmp_path / "jobs.yaml", SPEC)
    storage = tmp_path / "results"
    command = [str(Path(sys.executable).parent / "ray"), "job", "submit", "--address", url,
               "--working-dir", str(ROOT), "--", "python", "-m", "sweeps", "run",
               str(spec_path), "--storage", str(storage)]
    deadline = time.monotonic() + 120
    while True:
        submit = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True,
                                timeout=600)
        # the dashboard answers before its job agent is up; Ray says "try again later"
        if "No available agent" not in submit.stderr or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert submit.returncode == 0, submit.stdout[-4000:] + submit.stderr[-4000:]
    assert "succeeded" in submit.stdout
    assert "Final test accuracy" in submit.stdout

    runs = load_runs(storage / "jobs")
    assert sorted(zip(runs.method, runs.target_sparsity, strict=True)) == [
        ("dense", 0.0), ("lth", 0.5), ("pf", 0.5)]
    # trials asked for half a GPU each and ran; without CUDA the trainer used the CPU
    assert set(runs.device) == ({"cuda"} if torch.cuda.is_available() else {"cpu"})
    status = lottery(["status", "jobs", "--storage", str(storage)], env, tmp_path)
    assert "grid points done: 3 of 3" in status.stdout
    # the driver ran on the cluster: its preflight probed the storage from a worker, cleanly
    assert not list((storage / "jobs").glob(".probe-*"))


def test_with_address_missing_data_on_the_workers_is_refused_before_any_trial(tmp_path, head):
    """`lottery run --address`: dataset files are checked where trials run, not on the driver."""
    _, env, _, _, port = head
    spec = write_spec(tmp_path / "remote.yaml", {**SPEC, "name": "remote", "dataset": "mnist",
                                                  "resources": {"cpu": 1, "gpu": 0}})
    storage = tmp_path / "results"
    proc = lottery(["run", str(spec), "--storage", str(storage), "--address",
                    f"127.0.0.1:{port}"], env, tmp_path, check=False)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "dataset: mnist files missing on" in proc.stderr and "Traceback" not in proc.stderr
    assert not (storage / "remote").exists()  # the lease and the probe were cleaned up
    plan = lottery(["plan", "--check", str(spec)], env, tmp_path)  # plan only warns
    assert "warning: dataset: mnist files missing" in plan.stderr


def test_a_driver_outside_single_machine_mode_is_told_what_to_set_at_once(tmp_path, head):
    """The head runs in single-machine mode, on loopback only (``sweeps.loopback``). A driver
    without the variable turns 127.0.0.1 into the routable address, where ``ray.init`` would
    retry for minutes; ``sweeps.ray_address`` fails in seconds and names the fix."""
    _, env, _, _, port = head
    env = {k: v for k, v in env.items() if k != loopback.ENV}
    spec = write_spec(tmp_path / "outside.yaml", {**SPEC, "name": "outside",
                                                   "resources": {"cpu": 1, "gpu": 0}})
    storage = tmp_path / "results"
    proc = lottery(["run", str(spec), "--storage", str(storage), "--address",
                    f"127.0.0.1:{port}"], env, tmp_path, timeout=120, check=False)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert (f"a Ray listens on 127.0.0.1:{port} only (single-machine mode): set "
            f"{loopback.ENV}=0 for this command too") in proc.stderr
    assert "Traceback" not in proc.stderr and not (storage / "outside").exists()


DISCONNECT = """
import sys
import ray
from sweeps import spec as spec_module
from sweeps.run import run_sweep

spec = spec_module.load(sys.argv[1])
outcome = run_sweep(spec, storage=sys.argv[2], address=sys.argv[3])
print("launched", outcome.launched, "failed", len(outcome.failed))
print("connected after the run:", ray.is_initialized())
ray.init(address=sys.argv[3], logging_level="ERROR", log_to_driver=False)
print("cluster CPUs:", int(ray.cluster_resources()["CPU"]))
"""


def test_a_run_on_a_running_ray_disconnects_at_its_end_and_leaves_the_cluster_up(tmp_path,
                                                                                  head):
    """The driver disconnects itself when the sweep ends (Ray's disconnect at exit sleeps
    half a second); the cluster it used keeps running."""
    _, env, _, _, port = head
    spec = write_spec(tmp_path / "connected.yaml", {**SPEC, "name": "connected",
                                                     "methods": ["dense"],
                                                     "resources": {"cpu": 1, "gpu": 0}})
    proc = subprocess.run([sys.executable, "-c", DISCONNECT, str(spec), str(tmp_path / "r"),
                           f"127.0.0.1:{port}"], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert proc.stdout.splitlines()[-3:] == ["launched 1 failed 0",
                                             "connected after the run: False",
                                             "cluster CPUs: 2"]
