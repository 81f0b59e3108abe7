"""A run's start-up and exit: what Ray's workers import ahead of the trials, Tune's trial
runtime environment, the preflight's checks after Ray started, and the CLI's fast exit."""

from __future__ import annotations

import importlib
import importlib.util
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import lottery
from conftest import write_spec

from sweeps import spec as spec_module
from sweeps.ray_session import _preloaded_actors
from sweeps.ray_session import worker_preload
from trainer import data as datasets

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "sweeps" / "configs" / "quickstart.yaml"


def _spec(**over):
    raw = {"name": "p", "dataset": "digits", "model": "lenet_300_100", "methods": ["lth"],
           "lrs": [0.1], "sparsities": [0.5], "training": {"epochs": 1}, **over}
    return spec_module.parse(raw, "test")


@pytest.mark.parametrize("name", sorted(datasets.DATASETS))
def test_every_dataset_names_an_importable_loader_module(name):
    module = datasets.loader_module(name)
    assert module is not None and module.startswith("trainer.data.")
    assert importlib.util.find_spec(module) is not None
    loader = datasets.get(name).load
    assert hasattr(importlib.import_module(module), loader.function)


def test_loader_module_of_an_unknown_dataset_raises():
    with pytest.raises(ValueError, match="unknown dataset 'nope'"):
        datasets.loader_module("nope")


def test_workers_preload_tune_the_trainable_and_each_loader_once():
    spec = _spec(dataset=["digits", "fashion-mnist", "mnist"])
    assert worker_preload(spec) == ("ray.tune", "sweeps.trial_run", "torch._dynamo",
                                    "trainer.data.digits", "trainer.data.mnist_family")
    assert all(importlib.util.find_spec(m) is not None for m in worker_preload(spec))


def test_the_readme_ray_start_line_preloads_what_every_spec_preloads():
    """The README's `ray start --system-config` for repeated runs on a running Ray lists the
    modules every spec's workers preload (the loaders differ by spec and are left out)."""
    import json
    import re

    readme = (ROOT / "README.md").read_text()
    found = re.search(r"--system-config='(\{.*?\})'", readme)
    assert found, "README has no `ray start --system-config='...'` line"
    listed = json.loads(found.group(1))["preload_python_modules"]
    spec = _spec()
    assert tuple(listed) == tuple(m for m in worker_preload(spec)
                                  if m != datasets.loader_module(spec.datasets[0]))


def test_the_first_optimizer_imports_only_what_the_workers_preload(tmp_path):
    """Making a torch optimizer in a fresh process imports ``OPTIMIZER_IMPORTS``; once the
    preload list is imported, it imports nothing more of torch."""
    new_torch_modules = """
        before = set(sys.modules)
        torch.optim.SGD([torch.zeros(1, requires_grad=True)])
        new = sorted(n for n in set(sys.modules) - before if n.startswith("torch"))
    """
    first = _python("""
        import sys, torch
        from sweeps.ray_session import OPTIMIZER_IMPORTS as m
    """ + new_torch_modules + """
        print(m in new, m in before)
    """, tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    assert first.stdout.split() == ["True", "False"]
    preloaded = _python("""
        import sys, importlib, torch
        from sweeps.ray_session import OPTIMIZER_IMPORTS as m
        importlib.import_module(m)
    """ + new_torch_modules + """
        print(len(new))
    """, tmp_path)
    assert preloaded.returncode == 0, preloaded.stderr[-3000:]
    assert preloaded.stdout.strip() == "0"


def test_transfer_targets_loaders_are_preloaded_too():
    spec = _spec(methods=["lth", "transfer"], transfer={"targets": ["fashion-mnist"]})
    assert "trainer.data.mnist_family" in worker_preload(spec)


@pytest.mark.parametrize(("nodes", "cpus", "gpus", "here"), [
    (["10.0.0.1"], 2, 0, True),              # `ray start --head` on this machine
    (["10.0.0.1", "10.0.0.2"], 8, 0, False),  # another node: the worker checks
    (["10.0.0.1"], 0, 0, False),             # an autoscaled cluster's head, no workers yet
    (["10.0.0.1"], 2, 0.5, True),
])
def test_the_driver_checks_files_itself_only_where_every_trial_runs(monkeypatch, nodes, cpus,
                                                                   gpus, here):
    import ray

    from sweeps import ray_session

    monkeypatch.setattr(ray.util, "get_node_ip_address", lambda: "10.0.0.1")
    monkeypatch.setattr(ray, "nodes", lambda: [{"NodeManagerAddress": n, "Alive": True}
                                               for n in nodes]
                        + [{"NodeManagerAddress": "10.9.9.9", "Alive": False}])
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": cpus, "GPU": gpus})
    spec = _spec(resources={"cpu": 1, "gpu": 0.25 if gpus else 0})
    assert ray_session._trials_run_here(spec) is here


def test_tune_trial_runtime_env_is_emptied_inside_and_restored_after():
    from ray.tune.execution import class_cache

    before = dict(class_cache.DEFAULT_ENV_VARS)
    assert before  # Tune still sets one; otherwise this workaround can go
    with _preloaded_actors():
        assert class_cache.DEFAULT_ENV_VARS == {}
    assert class_cache.DEFAULT_ENV_VARS == before
    with pytest.raises(RuntimeError), _preloaded_actors():
        raise RuntimeError("a failed sweep")
    assert class_cache.DEFAULT_ENV_VARS == before


def _python(code: str, tmp_path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("heavy", ["torch", "ray"])  # a driver of `lottery run` holds only ray
def test_fast_exit_keeps_output_threads_atexit_hooks_and_the_code(tmp_path, heavy):
    done = tmp_path / "thread-done"
    hooked = tmp_path / "atexit-ran"
    proc = _python(f"""
        import atexit, sys, threading, time
        import {heavy}
        from sweeps.cli import _exit
        atexit.register(lambda: open({str(hooked)!r}, "w").close())
        def late():
            time.sleep(0.5)
            open({str(done)!r}, "w").close()
        threading.Thread(target=late).start()
        from concurrent.futures import ThreadPoolExecutor
        idle_pool = ThreadPoolExecutor(2)  # never shut down: its idle threads must not hang us
        idle_pool.submit(time.sleep, 0.1)
        print("all of stdout", end="")
        sys.stderr.write("all of stderr")
        _exit(3)
        """, tmp_path)
    assert proc.returncode == 3
    assert proc.stdout == "all of stdout" and proc.stderr == "all of stderr"
    assert done.exists() and hooked.exists()


@pytest.mark.parametrize(("code", "rc", "stderr"), [("None", 0, ""), ("'bad spec'", 1,
                                                                       "bad spec\n")])
def test_fast_exit_reads_a_code_as_sys_exit_does(tmp_path, code, rc, stderr):
    proc = _python(f"import torch\nfrom sweeps.cli import _exit\n_exit({code})\n", tmp_path)
    assert (proc.returncode, proc.stderr) == (rc, stderr)


def test_the_command_exits_with_its_code_and_whole_output_after_importing_torch(tmp_path):
    env = {**__import__("os").environ, "PYTHONPATH": str(ROOT)}
    ok = lottery(["plan", "--check", str(QUICKSTART)], env, tmp_path)
    assert "quickstart" in ok.stdout and ok.stdout.endswith("\n")
    bad = write_spec(tmp_path / "bad.yaml", {"name": "bad", "dataset": "digits",
                                             "model": "lenet_300_100", "methods": ["lth"],
                                             "lrs": [0.1], "sparsities": [0.5],
                                             "pruning": {"keep_dense": ["no_such_layer"]}})
    proc = lottery(["plan", "--check", str(bad)], env, tmp_path, check=False)
    assert proc.returncode == 2
    assert "pruning.keep_dense[0]" in proc.stderr


def test_pending_trials_one_per_slot_here_and_enough_for_an_autoscaler_elsewhere(monkeypatch):
    import os

    import ray

    from sweeps import ray_session

    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 4})
    spec = _spec(resources={"cpu": 1})
    assert ray_session.pending_trials(spec, here=True) == 4
    assert ray_session.pending_trials(spec, here=False) == ray_session.GROWING_PENDING
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 0})  # a CPU-less head
    assert ray_session.pending_trials(spec, here=False) == ray_session.GROWING_PENDING
    monkeypatch.delenv("TUNE_MAX_PENDING_TRIALS_PG", raising=False)
    with ray_session._pending_trials(3):
        assert os.environ["TUNE_MAX_PENDING_TRIALS_PG"] == "3"
    assert "TUNE_MAX_PENDING_TRIALS_PG" not in os.environ  # restored for the next run
    monkeypatch.setenv("TUNE_MAX_PENDING_TRIALS_PG", "7")  # the user's value wins
    with ray_session._pending_trials(3):
        assert os.environ["TUNE_MAX_PENDING_TRIALS_PG"] == "7"


def test_the_readme_ray_start_line_keeps_its_ray_on_loopback():
    """The README's `ray start` for repeated runs sets the single-machine switch that
    `lottery run` sets for its own Ray (``sweeps.loopback``): `--node-ip-address 127.0.0.1`
    alone still listens on every interface."""
    from sweeps import loopback

    readme = (ROOT / "README.md").read_text()
    block = readme[readme.index(f"export {loopback.ENV}=0"):]
    assert block.splitlines()[1].startswith("ray start --head")
    assert "--address auto" in block.splitlines()[3]  # the driver shares the setting
