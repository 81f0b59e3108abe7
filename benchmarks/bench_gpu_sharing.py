"""Throughput of small trials sharing one GPU: P trial processes at once vs one at a time.

What a sweep's fractional ``resources.gpu`` buys: with ``gpu: 1/P`` Ray runs P trial
processes on one GPU, each with its own CUDA context and device-resident data. This measures
that packing without Ray's scheduling, so it runs wherever torch does: for each P of
``--procs``, P spawned processes each load the dataset onto the device (not timed), meet at
a barrier, then train their share of ``--trials`` trials; a trial is ``trainer.loop.train``
of ``--model`` from its own seed for ``--epochs`` epochs (its per-epoch evaluation
included), as a sweep trial's training stage runs. Printed per P: wall seconds from the
barrier to the last trial's end, trials per minute, the speed-up over P=1, the mean trial
seconds, and the GPU memory each process held at its peak (MiB).

Usage, from the repository root:
``python -m benchmarks.bench_gpu_sharing [--device cuda] [--procs 1 2 4 8] [--trials 8]
[--model lenet_300_100] [--dataset fashion-mnist] [--epochs 2] [--batch 128]``.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import time

import torch

from benchmarks.bench_trainer_vs_bare import sync
from trainer import data as datasets
from trainer import models
from trainer import seeding
from trainer.hparams import DataHparams
from trainer.hparams import TrainHparams
from trainer.loop import train


def _worker(rank: int, args: argparse.Namespace, seeds: list[int], barrier, results) -> None:
    """One trial process: load the data onto the device, wait for the others, train."""
    torch.set_num_threads(1)
    device = torch.device(args.device)
    data = datasets.load(DataHparams(name=args.dataset, validation=0), device)
    hp = TrainHparams(optimizer="sgd", lr=0.05, momentum=0.9, epochs=args.epochs,
                      batch_size=args.batch)
    barrier.wait()
    times = []
    for seed in seeds:
        start = time.perf_counter()
        net = models.build(args.model, data.input_shape, data.num_classes,
                           seeding.generator(seed, "bench")).to(device)
        train(net, data, hp, {}, seed=seed)
        sync(device)
        times.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_reserved() / 2**20 if device.type == "cuda" else 0.0
    results.put((rank, times, peak))


def run(args: argparse.Namespace, procs: int) -> tuple[float, list[float], float]:
    """Wall seconds of ``args.trials`` trials over ``procs`` processes, every trial's
    seconds, and the largest per-process peak of reserved GPU memory (MiB)."""
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(procs + 1), ctx.Queue()
    shares = [list(range(r, args.trials, procs)) for r in range(procs)]
    workers = [ctx.Process(target=_worker, args=(r, args, shares[r], barrier, results))
               for r in range(procs)]
    for w in workers:
        w.start()
    barrier.wait()
    start = time.perf_counter()
    got = [results.get() for _ in workers]
    wall = time.perf_counter() - start
    for w in workers:
        w.join()
        if w.exitcode != 0:
            raise SystemExit(f"a trial process exited {w.exitcode}")
    return wall, [t for _, times, _ in got for t in times], max(p for *_, p in got)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--procs", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--model", default="lenet_300_100")
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch", type=int, default=128)
    args = parser.parse_args()
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    print(f"device {args.device} ({name}), {args.trials} trials of {args.model} on "
          f"{args.dataset}, {args.epochs} epochs each, batch {args.batch}")
    base = None
    for procs in args.procs:
        wall, times, peak = run(args, procs)
        rate = 60 * len(times) / wall
        base = base or rate
        print(f"  {procs} at once: {wall:7.2f} s, {rate:6.1f} trials/min ({rate / base:.2f}x), "
              f"mean trial {sum(times) / len(times):.2f} s, peak {peak:.0f} MiB per process")


if __name__ == "__main__":
    main()
