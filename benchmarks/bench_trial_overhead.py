"""Per-trial overhead: what a trial costs besides its training epochs, in-process (no Ray).

Runs every job of a spec (default: the quick start) with ``sweeps.trial_run.run_job`` on the CPU,
twice in fresh directories: with a checkpoint after every epoch (``checkpoint_every_s: 0``,
the old policy) and with the default policy (at most every 30 s; checkpoints deleted once a
stage's ``final.pt`` exists). For each it prints the jobs' summed wall time, the training
inside it (the ``wall_time_s`` of every stored stage), their difference per trial (loading θ0,
θT and masks, data from the per-process cache, checkpoint, result and row writes) and the
checkpoint writes made. It also prints the dataset's first (uncached) and cached load time.

Ray's own share (scheduling, worker start, reports) is what ``bench_efficiency`` adds on top.

Usage, from the repository root:
``python -m benchmarks.bench_trial_overhead [SPEC]``. Prints its figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from sweeps import spec as spec_module
from sweeps.plan import make_plan
from sweeps.store import Store
from sweeps.trial_run import run_job
from trainer import checkpoint
from trainer import data as datasets
from trainer import stage
from trainer.hparams import CHECKPOINT_EVERY_S

QUICKSTART = Path(__file__).resolve().parents[1] / "sweeps" / "configs" / "quickstart.yaml"


def training_seconds(sweep: Path) -> float:
    """Summed ``wall_time_s`` of every stored stage result."""
    return sum(float(torch.load(p, map_location="cpu", weights_only=True)["wall_time_s"])
               for p in sweep.glob("artifacts/**/final.pt"))


def run_all(spec_path: Path, every_s: float, root: Path) -> None:
    spec = spec_module.load(spec_path)
    plan = make_plan(spec)
    sweep = Store(str(root)).child(spec.name)
    sweep.put_json("spec.json", spec.to_json())
    writes = {"checkpoints": 0}
    real_save = checkpoint.save

    def counting_save(blobs, name, obj):  # the stage's checkpoint slots, not its final.pt
        writes["checkpoints"] += name in stage.CHECKPOINT_SLOTS
        real_save(blobs, name, obj)

    checkpoint.save = counting_save
    try:
        began = time.perf_counter()
        with stage.checkpoint_every(every_s):
            for job in (*plan.chains, *plan.branches):
                run_job(job, sweep, torch.device("cpu"))
        total = time.perf_counter() - began
    finally:
        checkpoint.save = real_save
    jobs = len(plan.chains) + len(plan.branches)
    train = training_seconds(root / spec.name)
    label = "every epoch" if every_s == 0 else f"at most every {every_s:g} s"
    print(f"checkpoints {label:<22} {jobs} trials: {total:6.2f} s, training {train:6.2f} s, "
          f"overhead {1000 * (total - train) / jobs:6.1f} ms per trial, "
          f"{writes['checkpoints']} checkpoint writes")


def bench_data(spec_path: Path) -> None:
    spec = spec_module.load(spec_path)
    hp = spec.data_hparams(spec.datasets[0])
    for label in ("first load", "cached load"):
        began = time.perf_counter()
        datasets.load(hp)
        print(f"data {hp.label}: {label} {1000 * (time.perf_counter() - began):8.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec", nargs="?", type=Path, default=QUICKSTART)
    args = parser.parse_args()
    torch.set_num_threads(1)  # as a trial with resources.cpu: 1
    bench_data(args.spec)
    for every_s in (0.0, CHECKPOINT_EVERY_S):
        with tempfile.TemporaryDirectory() as tmp:
            run_all(args.spec, every_s, Path(tmp))


if __name__ == "__main__":
    main()
