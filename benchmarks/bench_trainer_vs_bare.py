"""Seconds per epoch: ``trainer.loop.train`` vs a bare PyTorch loop, side by side in one run.

Both train the same registry model (same θ0), on the same device-resident Fashion-MNIST
tensors, with the same batch, SGD settings and a mask of the same layers (half the weights
kept), for ``--epochs`` epochs each, alternating which goes first. The bare loop is what a
researcher would write: a per-epoch ``randperm`` on the device, slices, forward, backward,
step, mask multiply. The trainer adds its test and validation evaluation per epoch, so the
ratio is also printed without it (the trainer's evaluation timed separately and subtracted).

Usage, from the repository root:
``python -m benchmarks.bench_trainer_vs_bare [--device cuda] [--models lenet_300_100 conv2]
[--epochs 2] [--train-subset 0]``.
"""

from __future__ import annotations

import argparse
import time

import torch

from trainer import data as datasets
from trainer import masks
from trainer import models
from trainer import seeding
from trainer.hparams import DataHparams
from trainer.hparams import TrainHparams
from trainer.loop import evaluate
from trainer.loop import train


def bare_epochs(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
                mask: dict[str, torch.Tensor], epochs: int, batch: int) -> float:
    """Seconds of ``epochs`` plain epochs (no evaluation); the masks are multiplied in the
    weights' dtype, as a careful bare loop holds them (a bool mask is promoted on every
    multiply)."""
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    params = dict(model.named_parameters())
    mask = {name: m.to(params[name].dtype) for name, m in mask.items()}
    start = time.perf_counter()
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(len(y), device=x.device)
        for i in range(0, len(y), batch):
            idx = perm[i:i + batch]
            loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():
                for name, m in mask.items():
                    params[name].mul_(m)
    sync(x.device)
    return time.perf_counter() - start


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op on the CPU), so a timer reads finished work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--models", nargs="+", default=["lenet_300_100", "conv2"])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--train-subset", type=int, default=0)
    args = parser.parse_args()
    device = torch.device(args.device)
    data = datasets.load(DataHparams(name="fashion-mnist", train_subset=args.train_subset,
                                     validation=0), device)
    hp = TrainHparams(optimizer="sgd", lr=0.05, momentum=0.9, epochs=args.epochs,
                      batch_size=args.batch)
    print(f"device {device}, {len(data.train_y)} training images, batch {args.batch}, "
          f"{args.epochs} epochs, threads {torch.get_num_threads()}")
    for name in args.models:
        net = models.build(name, data.input_shape, data.num_classes,
                           seeding.generator(0, "bench")).to(device)
        theta0 = {k: v.clone() for k, v in net.state_dict().items()}
        mask = {n: (torch.rand(p.shape, generator=torch.Generator().manual_seed(1)) < 0.5)
                .to(device) for n, p in net.named_parameters() if n in masks.prunable_names(net)}
        net.load_state_dict(theta0)
        bare = bare_epochs(net, data.train_x, data.train_y, mask, args.epochs, args.batch)
        net.load_state_dict(theta0)
        start = time.perf_counter()
        result = train(net, data, hp, mask, seed=0)
        sync(device)
        trainer_s = time.perf_counter() - start
        start = time.perf_counter()
        for _ in range(args.epochs):
            evaluate(net, data.test_x, data.test_y)
        sync(device)
        eval_s = time.perf_counter() - start
        print(f"{name:15s} bare {bare / args.epochs:7.2f} s/epoch | trainer "
              f"{trainer_s / args.epochs:7.2f} s/epoch ({(trainer_s - eval_s) / args.epochs:.2f}"
              f" without its evaluation) | trainer/bare {trainer_s / bare:.2f}, without "
              f"evaluation {(trainer_s - eval_s) / bare:.2f} | final test acc "
              f"{result.final.test_acc:.3f}")


if __name__ == "__main__":
    main()
