"""Sweep efficiency: training seconds / (slots x wall seconds) of a ``lottery run``.

Training seconds are the ``wall_time_s`` of every training stage the sweep stored (each
stage's ``final.pt``: the dense runs, every IMP level, every branch, RST's transformation),
so shared stages count once. Wall seconds run from the first trial's start to the last trial's
end (``trials/*.json``); the command's own wall time (Ray start and stop included) is printed
beside it when the benchmark runs the sweep itself.

Usage, from the repository root:
``python -m benchmarks.bench_efficiency SPEC [--slots 2] [--storage DIR] [--address ADDR]``
runs SPEC in a fresh storage directory (on the running Ray at ADDR, if given) and prints its
numbers; ``--cpu`` adds where the machine's CPU went before the first trial and over the
trials' span (``benchmarks.process_cpu``); ``--existing SWEEP_DIR`` reads a finished sweep
instead.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch


def training_seconds(sweep: Path) -> tuple[float, int]:
    """Summed ``wall_time_s`` of every stored stage, and the number of stages."""
    total, stages = 0.0, 0
    for final in sweep.glob("artifacts/**/final.pt"):
        saved = torch.load(final, map_location="cpu", weights_only=True)
        total += float(saved["wall_time_s"])
        stages += 1
    return total, stages


def trial_times(sweep: Path) -> tuple[float, float]:
    """(first trial's start, last trial's end), epoch seconds (``trials/*.json``)."""
    records = [json.loads(p.read_text()) for p in sweep.glob("trials/*.json")]
    starts = [r["started"] for r in records if "started" in r]
    ends = [r["updated"] for r in records if "updated" in r]
    return (min(starts), max(ends)) if starts and ends else (float("nan"), float("nan"))


def trial_span(sweep: Path) -> float:
    """Seconds from the first trial's start to the last trial's end."""
    first, last = trial_times(sweep)
    return last - first


def report(sweep: Path, slots: int, command: tuple[float, float] | None = None) -> None:
    """Print the efficiency; ``command`` = the command's (start, end), epoch seconds."""
    train_s, stages = training_seconds(sweep)
    span = trial_span(sweep)
    print(f"sweep {sweep.name}: {stages} stages, {train_s:.1f} s of training; trials span "
          f"{span:.1f} s on {slots} slots: efficiency {train_s / (slots * span):.2f}")
    if command is not None:
        command_s = command[1] - command[0]
        first, last = trial_times(sweep)
        print(f"  whole command {command_s:.1f} s: efficiency {train_s / (slots * command_s):.2f}"
              f", time outside the trials {command_s - span:.1f} s ({first - command[0]:.1f} s "
              f"before the first trial starts, {command[1] - last:.1f} s after the last ends)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec", nargs="?", type=Path)
    parser.add_argument("--slots", type=int, default=2)
    parser.add_argument("--storage", type=Path)
    parser.add_argument("--existing", type=Path)
    parser.add_argument("--address", help="a running Ray (e.g. one from `ray start --head`)")
    parser.add_argument("--cpu", action="store_true",
                        help="also sample every process's CPU time (psutil) during the run")
    args = parser.parse_args()
    if args.existing:
        report(args.existing, args.slots)
        return
    storage = args.storage or Path(tempfile.mkdtemp(prefix="bench-eff-"))
    start = time.time()
    address = ["--address", args.address] if args.address else []
    proc = subprocess.Popen([sys.executable, "-m", "sweeps", "run", str(args.spec),
                             "--storage", str(storage), *address], stdout=subprocess.DEVNULL)
    sampler = None
    if args.cpu:
        from benchmarks.process_cpu import Sampler

        sampler = Sampler(proc.pid)
        sampler.start()
    if proc.wait() != 0:
        raise SystemExit(f"lottery run exited {proc.returncode}")
    end = time.time()
    name = next(p for p in storage.iterdir() if p.is_dir())
    report(name, args.slots, (start, end))
    if sampler is not None:
        sampler.stop()
        _report_cpu(sampler, name, start)


def _report_cpu(sampler, sweep: Path, start: float) -> None:
    """Print the CPU by process kind before the first trial and over the trials' span."""
    from benchmarks.process_cpu import describe

    first, last = (t - sampler.t0 for t in trial_times(sweep))
    print(describe(sampler, "before the first trial", 0.0, first))
    print(describe(sampler, "over the trials' span", first, last))
    busy = " ".join(f"{c:.1f}" for c in sampler.busy_cores())
    print(f"  cores busy per second from the command's start ({start - sampler.t0:+.2f} s): "
          f"{busy}")


if __name__ == "__main__":
    main()
