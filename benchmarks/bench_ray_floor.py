"""The floor under ``lottery run``'s time outside training: the same Ray, no sweep.

A throwaway command does only what every Ray Tune sweep of torch trials must: start (or
connect to) Ray as ``lottery run`` does (``sweeps.ray_session._init_ray`` on loopback, the
workers preloading Tune, torch and ``torch._dynamo``, the trial actors taking those workers),
run one trivial trial per slot (a LeNet-300-100-sized layer and one SGD step: what a trial
imports and constructs before its first epoch) in one ``Tuner.fit()``, shut Ray down and exit
as ``lottery run`` does (``sweeps.cli._exit``). It prints when the first and the last trial
started and how long the command ran after the last trial ended. With ``--sweep SPEC`` each
floor is followed by that sweep through ``benchmarks.bench_efficiency`` on the same Ray: the
difference is what ``lottery run`` adds (its imports, the spec, the preflight's child, the
lease, the plan, the store, the progress line, the compaction).

Usage, from the repository root:
``python -m benchmarks.bench_ray_floor [--address auto] [--sweep SPEC] [--repeat N]``.
Prints its figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PRELOAD = ("ray.tune", "torch", "torch._dynamo")


def trial(config: dict) -> None:
    """One trivial trial: torch, a (300, 784) layer, one SGD step; its times to a JSON file."""
    started = time.time()
    import torch
    from ray import tune

    layer = torch.nn.Linear(784, 300)
    opt = torch.optim.SGD(layer.parameters(), lr=0.1, momentum=0.9)
    layer(torch.zeros(4, 784)).sum().backward()
    opt.step()
    Path(config["out"], f"{config['i']}.json").write_text(
        json.dumps({"started": started, "ended": time.time()}))
    tune.report({"done": True})


def command(address: str | None, out: Path, slots: int) -> None:
    """The measured command's body (run in a child process by ``main``)."""
    from sweeps import loopback

    if loopback.own_ray(address):
        loopback.use()  # before Ray is imported, as `lottery run` does
    import ray
    from ray import tune

    from sweeps import ray_session

    started = ray_session._init_ray(address, verbose=False, preload=PRELOAD)
    logging.getLogger("ray.tune").setLevel(logging.ERROR)
    with ray_session._preloaded_actors(), ray_session._pending_trials(slots):
        tuner = tune.Tuner(
            tune.with_resources(trial, {"cpu": 1}),
            param_space={"out": str(out), "i": tune.grid_search(list(range(slots)))},
            tune_config=tune.TuneConfig(reuse_actors=True),
            run_config=tune.RunConfig(storage_path=str(out / "tune"), verbose=0))
        tuner.fit()
    if started:
        ray_session._stop_monitor()
    ray.shutdown()


def run_floor(address: list[str], slots: int) -> tuple[float, float, float, float]:
    """(first trial's start, last trial's start, after the last trial's end, whole command),
    seconds from the command's start; ``address``: ``["--address", ADDR]`` or empty."""
    out = Path(tempfile.mkdtemp(prefix="bench-floor-"))
    start = time.time()
    proc = subprocess.run([sys.executable, "-m", "benchmarks.bench_ray_floor", "--command",
                           str(out), "--slots", str(slots), *address],
                          env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0",
                               "RAY_AIR_NEW_OUTPUT": "0"},
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    end = time.time()
    if proc.returncode != 0:
        raise SystemExit(f"the floor command exited {proc.returncode}")
    times = [json.loads(p.read_text()) for p in out.glob("*.json")]
    starts = sorted(t["started"] - start for t in times)
    last_end = max(t["ended"] for t in times)
    return starts[0], starts[-1], end - last_end, end - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", help="a running Ray (e.g. one from `ray start --head`)")
    parser.add_argument("--slots", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--sweep", type=Path, help="also run this spec's sweep after each floor")
    parser.add_argument("--command", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.command:
        from sweeps.cli import _exit  # the fast exit of `lottery run`

        command(args.address, args.command, args.slots)
        _exit(0)
    where = f"on the running Ray at {args.address}" if args.address else "with its own Ray"
    address = ["--address", args.address] if args.address else []
    for _ in range(args.repeat):
        first, last, after, whole = run_floor(address, args.slots)
        print(f"floor {where}: first trial at {first:.1f} s, last of {args.slots} at "
              f"{last:.1f} s, {after:.1f} s after the last ended; whole command {whole:.1f} s, "
              f"{first + after:.1f} s outside the trials", flush=True)
        if args.sweep:
            subprocess.run([sys.executable, "-m", "benchmarks.bench_efficiency",
                            str(args.sweep), "--slots", str(args.slots), *address], check=True)


if __name__ == "__main__":
    main()
