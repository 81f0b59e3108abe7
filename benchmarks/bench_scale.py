"""How planning, status and loading grow with the size of a sweep.

- ``lottery plan``'s work (``make_plan`` + ``describe``) for grids of about 1,000 and 10,000
  points (LeNet-300-100 on digits, 5 methods, more lrs and sparsities);
- ``lottery status``'s work (``format_status``) of sweeps of about 100 and 1,000 trials with
  every trial record written;
- ``analysis.load_runs`` of 10,000 and 100,000 rows in loose parts (10 rows per part, with
  commit records), then after ``lottery compact`` (in a fresh process, as a user reads it);
- whole commands, each a fresh process as a user types it (median of 3): ``lottery --help``,
  ``plan`` and ``plan --check`` of the quick start, ``status`` of the 1,000-trial sweep.

Usage, from the repository root: ``python -m benchmarks.bench_scale [--rows 100000]``.
Prints seconds per case; nothing is asserted (the targets are in docs/performance.md).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from analysis import commits
from analysis import schema
from analysis.load import load_runs
from sweeps import spec as spec_module
from sweeps.compact import compact
from sweeps.plan import describe
from sweeps.plan import make_plan
from sweeps.status import format_status
from sweeps.store import Store


def grid(points: int) -> spec_module.SweepSpec:
    """A digits grid of about ``points`` points (5 methods, 5 seeds)."""
    lrs = max(1, round((points / 5 / 101) ** 0.5 * 2))
    sparsities = max(1, round((points / 5 / lrs - 1) / 4))
    return spec_module.parse({
        "name": f"scale{points}", "dataset": "digits",
        "lrs": [round(0.01 * (i + 1), 4) for i in range(lrs)],
        "sparsities": [round(0.02 + 0.95 * i / sparsities, 4) for i in range(sparsities)],
        "seeds": list(range(5))})


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def bench_plan() -> None:
    for points in (1_000, 10_000):
        spec = grid(points)
        seconds, plan = timed(lambda s=spec: describe(make_plan(s)))
        print(f"plan   {len(plan):6d} trials, {len(make_plan(spec).points):6d} points: "
              f"{seconds:6.2f} s")


def bench_status(root: Path) -> None:
    for points in (100, 1_000):
        spec = grid(points)
        plan = make_plan(spec)
        store = Store(str(root)).child(spec.name)
        store.put_json("spec.json", spec.to_json())
        for job in (*plan.chains, *plan.branches):
            store.put_json(f"trials/{job.trial_id}.json",
                           {"trial_id": job.trial_id, "state": "done", "updated": time.time()})
        seconds, _ = timed(lambda s=store: format_status(s))
        print(f"status {len(plan.chains) + len(plan.branches):6d} trials: {seconds:6.2f} s")


def fresh_load(path: str) -> tuple[float, int]:
    """(seconds, rows) of ``load_runs(path)`` in a new interpreter (imports not counted)."""
    code = ("import sys, time; from analysis.load import load_runs; t = time.perf_counter(); "
            "f = load_runs(sys.argv[1]); print(time.perf_counter() - t, len(f))")
    out = subprocess.run([sys.executable, "-c", code, path], capture_output=True, text=True,
                         check=True).stdout.split()
    return float(out[0]), int(out[1])


def bench_load(root: Path, rows: int) -> None:
    for n in sorted({rows // 10, rows}):
        store = Store(str(root)).child(f"load{n}")
        base = {f.name: {"string": "x", "int64": 0, "double": 0.5, "binary": None}[str(f.type)]
                for f in schema.RUNS}
        for part in range(n // 10):
            key = f"p{part:07d}"
            store.write_part("runs", key, [{**base, "config_hash": key, "seed": i,
                                            "search": None, "search_trial": None,
                                            "search_params": None} for i in range(10)])
            store.commit(key, {"runs": [key]})
        loose, frame = timed(lambda s=store: load_runs(s.path))
        assert len(frame) == n
        merged, _ = timed(lambda s=store: compact(s))
        assert not list(Path(store.path, "runs").glob(f"{commits.PART_PREFIX}*"))
        after, rows = fresh_load(store.path)  # as a user reading the results would
        assert rows == n
        print(f"load   {n:7d} rows: {loose:6.2f} s loose ({n // 10} parts), compact "
              f"{merged:6.2f} s, then {after:6.2f} s")


def bench_commands(root: Path) -> None:
    quickstart = Path(__file__).resolve().parents[1] / "sweeps" / "configs" / "quickstart.yaml"
    status = grid(1_000).name
    for args in (["--help"], ["plan", str(quickstart)], ["plan", "--check", str(quickstart)],
                 ["status", status, "--storage", str(root)]):
        times = []
        for _ in range(3):
            seconds, proc = timed(lambda a=args: subprocess.run(
                [sys.executable, "-m", "sweeps", *a], capture_output=True, text=True))
            assert proc.returncode == 0, proc.stderr[-2000:]
            times.append(seconds)
        label = " ".join(a for a in args[:2] if not a.endswith(".yaml") and a != status)
        print(f"lottery {label:<16}"
              f"{statistics.median(times):6.2f} s (whole command)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        bench_plan()
        bench_status(Path(tmp))
        bench_commands(Path(tmp))
        bench_load(Path(tmp), args.rows)


if __name__ == "__main__":
    main()
