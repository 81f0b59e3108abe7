"""Seconds per epoch: in-memory device tensors vs a torchvision Dataset through a DataLoader.

Trains LeNet-300-100 (Linear 784-300-100-10, ReLU; batch 128, SGD lr 0.1) on Fashion-MNIST
for one epoch each way:

(a) ``trainer.data.load`` tensors on the device, shuffled with an on-device ``randperm`` and
    sliced per batch (what the trainer does);
(b) ``torchvision.datasets.FashionMNIST`` with ``ToTensor() + Normalize`` per sample, through
    ``torch.utils.data.DataLoader(shuffle=True, num_workers=0)``.

Usage, from the repository root:
``python -m benchmarks.bench_data_path [--device cuda] [--epochs 1] [--root DIR]``.
With ``--root`` empty the Debian package ``dataset-fashion-mnist`` is used (as by the loader).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Iterator

import torch
from torch import nn
from torch.utils.data import DataLoader
from torchvision import transforms
from torchvision.datasets import FashionMNIST

from benchmarks.bench_trainer_vs_bare import sync
from trainer.data import load
from trainer.data import mnist_family
from trainer.data._common import resolve_root
from trainer.hparams import DataHparams

BATCH = 128
Batches = Callable[[], Iterable[tuple[torch.Tensor, torch.Tensor]]]


def lenet_300_100() -> nn.Module:
    """LeNet-300-100 as in Frankle & Carbin 2019 (Fig. 2): 784-300-100-10, ReLU."""
    return nn.Sequential(
        nn.Flatten(),  # (B, 1, 28, 28) -> (B, 784)
        nn.Linear(784, 300),
        nn.ReLU(),
        nn.Linear(300, 100),
        nn.ReLU(),
        nn.Linear(100, 10),
    )


def in_memory_batches(
    x: torch.Tensor, y: torch.Tensor
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield shuffled (B, 1, 28, 28), (B,) batches by indexing device tensors."""
    order = torch.randperm(len(y), device=y.device)
    for start in range(0, len(y), BATCH):
        idx = order[start : start + BATCH]
        yield x[idx], y[idx]


def time_epochs(make_batches: Batches, device: torch.device, epochs: int) -> float:
    """Train a fresh model for ``epochs`` epochs after 10 warm-up steps.

    Args:
        make_batches: Returns a new iterator over one shuffled epoch of (x, y) batches.
        device: Where the model lives; batches are moved there.
        epochs: Timed epochs.

    Returns:
        Mean wall-clock seconds per epoch.
    """
    torch.manual_seed(0)
    model = lenet_300_100().to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss_fn = nn.CrossEntropyLoss()

    def step(xb: torch.Tensor, yb: torch.Tensor) -> None:
        opt.zero_grad(set_to_none=True)
        xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
        loss_fn(model(xb), yb).backward()
        opt.step()

    for i, (xb, yb) in enumerate(make_batches()):  # warm up kernels and allocator
        step(xb, yb)
        if i == 10:
            break
    sync(device)
    start = time.perf_counter()
    for _ in range(epochs):
        for xb, yb in make_batches():
            step(xb, yb)
    sync(device)
    return (time.perf_counter() - start) / epochs



def main() -> None:
    """Run both data paths and print seconds per epoch and their ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_device = "cuda" if torch.cuda.is_available() else "cpu"
    parser.add_argument("--device", default=default_device)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--root", default="", help="torchvision root; '' = Debian package")
    args = parser.parse_args()
    device = torch.device(args.device)

    start = time.perf_counter()
    data = load(DataHparams(name="fashion-mnist", root=args.root), device)
    load_s = time.perf_counter() - start
    in_memory_s = time_epochs(
        lambda: in_memory_batches(data.train_x, data.train_y), device, args.epochs
    )

    if args.root or not mnist_family.debian_fashion_mnist_available():
        root = resolve_root(args.root)
    else:
        root = mnist_family.debian_fashion_mnist_root()
    mean, std = mnist_family.FASHION_MNIST_MEAN, mnist_family.FASHION_MNIST_STD
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize(mean, std)])
    dataset = FashionMNIST(str(root), train=True, transform=transform)
    loader = DataLoader(
        dataset, batch_size=BATCH, shuffle=True, num_workers=0, pin_memory=device.type == "cuda"
    )
    loader_s = time_epochs(lambda: iter(loader), device, args.epochs)

    print(f"device={device} threads={torch.get_num_threads()} epochs={args.epochs}")
    print(f"(a) in-memory tensors + randperm  : {in_memory_s:8.3f} s/epoch (load {load_s:.2f} s)")
    print(f"(b) Dataset + DataLoader(workers=0): {loader_s:8.3f} s/epoch")
    print(f"ratio (b)/(a): {loader_s / in_memory_s:.1f}x")


if __name__ == "__main__":
    main()
