"""A local Ray's shutdown (``sweeps.ray_session.ray_session``): the autoscaler monitor is killed
first (``_stop_monitor``), Ray's own shutdown then stops everything else, and nothing of that
Ray is left running."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.ray

SCRIPT = """
import os
import psutil
import ray

from sweeps.ray_session import _init_ray, _stop_monitor

assert _init_ray(None, False) is True  # this process started a local Ray
tail = os.path.join("autoscaler", "_private", "monitor.py")
def monitors():
    return [c for c in psutil.Process().children() if any(a.endswith(tail) for a in c.cmdline())]
kids = psutil.Process().children(recursive=True)
print("monitors before:", len(monitors()))
_stop_monitor()
print("monitors after:", len(monitors()))
print("ray still up:", ray.get(ray.put(7)) == 7)
ray.shutdown()
gone, alive = psutil.wait_procs(kids, timeout=30)
print("left running:", len(alive))
"""


def test_the_monitor_is_killed_first_and_shutdown_leaves_nothing(tmp_path, ray_env):
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(SCRIPT)], env=ray_env,
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert proc.stdout.splitlines() == ["monitors before: 1", "monitors after: 0",
                                        "ray still up: True", "left running: 0"]
