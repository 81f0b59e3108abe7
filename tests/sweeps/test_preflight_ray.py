"""The preflight on a real local Ray: the worker check (``preflight.check_on_cluster``, what
`lottery run` uses on a cluster with other machines) looks for files on a worker and cleans up
the storage probe; a whole run's driver leaves torch to the preflight's child and the trial
workers."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pyarrow.parquet as pq
import pytest
from conftest import write_spec

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


DRIVER = """
import json, sys
from sweeps.cli import app
try:
    app(sys.argv[1:], prog_name="lottery")
except SystemExit as done:
    code = done.code
print(json.dumps({"code": code, "torch": "torch" in sys.modules, "ray": "ray" in sys.modules}))
"""


def test_a_whole_run_leaves_torch_to_the_preflight_child_and_the_workers(tmp_path, ray_env):
    """`lottery run`'s driver (own local Ray, in-process CLI) trains a sweep without ever
    importing torch: the preflight's child built the models, the workers trained."""
    spec = write_spec(tmp_path / "s.yaml", {
        "name": "notorch", "dataset": "digits", "model": "lenet_300_100",
        "methods": ["dense", "lth"], "lrs": [0.1], "sparsities": [0.5], "seeds": [0],
        "training": {"epochs": 1}, "resources": {"cpu": 1, "gpu": 0}})
    proc = subprocess.run([sys.executable, "-c", DRIVER, "run", str(spec), "--storage",
                           str(tmp_path / "results")], env=ray_env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert seen["code"] in (0, None) and (seen["torch"], seen["ray"]) == (False, True)
    runs = pq.read_table(tmp_path / "results" / "notorch" / "runs").to_pandas()
    assert sorted(runs["method"]) == ["dense", "lth"]
