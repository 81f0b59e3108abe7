"""`lottery run`'s own local Ray listens on loopback only (``sweeps.loopback``): every
listening socket of the driver's process tree, sampled while a small sweep runs, is bound to
a loopback address, and the driver did not warn of a routable node address."""

from __future__ import annotations

import subprocess
import sys
import time

import psutil
import pytest
from conftest import write_spec

from sweeps import loopback

pytestmark = pytest.mark.ray

SPEC = {"name": "lo", "dataset": "digits", "model": "lenet_300_100", "methods": ["dense", "lth"],
        "lrs": [0.1], "sparsities": [0.5], "seeds": [0], "training": {"epochs": 2},
        "resources": {"cpu": 1, "gpu": 0}}


def _listening(root: int) -> set[tuple[str, str]]:
    """(process name, listening IP) of every TCP/UDP socket of ``root``'s process tree."""
    try:
        procs = [psutil.Process(root), *psutil.Process(root).children(recursive=True)]
    except psutil.Error:
        return set()
    names = {}
    for p in procs:
        try:
            names[p.pid] = p.name()
        except psutil.Error:
            pass
    return {(names[c.pid], c.laddr.ip) for c in psutil.net_connections(kind="inet")
            if c.pid in names and c.laddr and (c.status == psutil.CONN_LISTEN or not c.raddr)}


def test_lottery_runs_own_ray_listens_on_loopback_only(tmp_path, ray_env) -> None:
    env = {k: v for k, v in ray_env.items() if k not in (loopback.ENV, "RAY_ADDRESS")}
    spec = write_spec(tmp_path / "lo.yaml", SPEC)
    proc = subprocess.Popen([sys.executable, "-m", "sweeps", "run", str(spec), "--storage",
                             str(tmp_path / "results")], env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen: set[tuple[str, str]] = set()
    while proc.poll() is None:
        seen |= _listening(proc.pid)
        time.sleep(0.2)
    _, err = proc.communicate()
    assert proc.returncode == 0, err[-4000:]
    names = {name for name, _ in seen}
    assert {"gcs_server", "raylet"} <= names, seen  # Ray's own servers were sampled
    assert all(loopback.is_loopback(ip) for _, ip in seen), sorted(seen)
    assert "not only on loopback" not in err
