"""The preflight's worker check (``preflight.check_on_cluster``, what `lottery run` uses on a
cluster with other machines) on a real local Ray: files are looked for on a worker and the
storage probe is cleaned up."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.ray

SCRIPT = """
import sys
from pathlib import Path

import ray

from sweeps import preflight
from sweeps import spec as spec_module
from sweeps.errors import SpecError
from sweeps.store import Store

ray.init(include_dashboard=False, _node_ip_address="127.0.0.1", num_cpus=1,
         logging_level="ERROR", log_to_driver=False)
base = {"name": "p", "model": "lenet_300_100", "methods": ["lth"], "lrs": [0.1],
        "sparsities": [0.5], "resources": {"cpu": 1, "gpu": 0}}
missing = spec_module.parse({**base, "dataset": "mnist",
                             "data": {"root": sys.argv[1] + "/no-data"}}, "t")
present = spec_module.parse({**base, "dataset": "digits"}, "t")
store = Store(sys.argv[1]).child("p")
try:
    preflight.check_on_cluster(missing, store)
except SpecError as err:
    print("refused:", " ".join(str(err).split()))
preflight.check_on_cluster(present, store)
print("digits passed")
print("probes left:", sorted(p.name for p in Path(sys.argv[1], "p").glob(".probe-*")))
ray.shutdown()
"""


def test_worker_file_check_refuses_missing_files_and_cleans_its_probe(tmp_path, ray_env):
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(SCRIPT), str(tmp_path)],
                          env=ray_env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("refused:") and "dataset: mnist files missing on" in lines[0]
    assert lines[1:] == ["digits passed", "probes left: []"]
