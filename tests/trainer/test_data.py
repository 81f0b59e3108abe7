"""Tests for trainer/data: the registry, each loader, subsets and the batched augmentation.

MNIST and CIFAR are exercised on tiny files written in the real on-disk formats (gzip'd and
decompressed idx; python pickles), never downloaded. torchvision 0.29 checks each CIFAR file's
md5 against a hard-coded table of the real release, so the CIFAR round-trip tests replace only
that table (``train_list``/``test_list``/``meta`` class attributes, restored by monkeypatch) with
the md5s of the tiny files; everything else, torchvision's pickle reader included, is real.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.metadata
import os
import pickle
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.datasets import CIFAR10
from torchvision.datasets import CIFAR100

from trainer import data
from trainer.data import cifar
from trainer.data import digits
from trainer.data import mnist_family
from trainer.hparams import DataHparams

ROOT = Path(__file__).resolve().parents[2]


# file writers in the real formats
def _write_idx(path: Path, array: np.ndarray) -> None:
    """Write ``array`` (uint8) as ``path.gz`` (as downloaded) and ``path`` (as extracted)."""
    magic = 0x0800 | array.ndim  # 0x08 = unsigned byte; 2049 for labels, 2051 for images
    header = struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    gz = path.with_name(path.name + ".gz")
    gz.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))
    path.write_bytes(gzip.decompress(gz.read_bytes()))


def _write_mnist(root: Path, rng: np.random.Generator) -> dict:
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (6, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, (6,), dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (3, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, (3,), dtype=np.uint8),
    }
    for name, array in arrays.items():
        _write_idx(root / "MNIST" / "raw" / name, array)
    return arrays


def _pickle(path: Path, obj: dict) -> list:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(obj, protocol=2))
    return [path.name, hashlib.md5(path.read_bytes()).hexdigest()]


def _batch(images: np.ndarray, label_key: str, labels: np.ndarray) -> dict:
    # the release stores each image as 3072 bytes: the R, G, B planes, each row-major 32x32
    rows = images.transpose(0, 3, 1, 2).reshape(len(images), 3072)  # (N,32,32,3) -> (N,3072)
    return {"batch_label": "tiny", label_key: labels.tolist(), "data": rows, "filenames": []}


def _write_cifar(root: Path, cls: type, rng: np.random.Generator) -> dict:
    """Write a tiny CIFAR-10/100 in the python-pickle layout; return arrays and md5 tables."""
    ten = cls is CIFAR10
    label_key = "labels" if ten else "fine_labels"
    k = 10 if ten else 100
    folder = root / cls.base_folder
    train_x = rng.integers(0, 256, (10, 32, 32, 3), dtype=np.uint8)
    train_y = rng.integers(0, k, (10,))
    test_x = rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    test_y = rng.integers(0, k, (4,))
    if ten:  # five training batches of two images each
        train_list = [
            _pickle(
                folder / f"data_batch_{i + 1}",
                _batch(train_x[2 * i : 2 * i + 2], label_key, train_y[2 * i : 2 * i + 2]),
            )
            for i in range(5)
        ]
        meta = {"label_names": [f"c{i}" for i in range(k)], "num_vis": 3072}
    else:
        train_list = [_pickle(folder / "train", _batch(train_x, label_key, train_y))]
        meta = {"fine_label_names": [f"c{i}" for i in range(k)], "coarse_label_names": []}
    test_list = [_pickle(folder / cls.test_list[0][0], _batch(test_x, label_key, test_y))]
    meta_md5 = _pickle(folder / cls.meta["filename"], meta)[1]
    tables = dict(train_list=train_list, test_list=test_list, meta={**cls.meta, "md5": meta_md5})
    return {"train": (train_x, train_y), "test": (test_x, test_y), "tables": tables}


# registry
def test_registry_keys_are_the_public_names():
    assert set(data.DATASETS) == {"digits", "fashion-mnist", "mnist", "cifar10", "cifar100",
                                  "svhn", "smallnorb", "tiny-imagenet"}
    entry = data.get("digits")  # its loader module is named, and imported on the first call
    assert (entry.load.module, entry.load.function) == ("digits", "load")
    hp = DataHparams(name="digits")
    loaded, direct = entry.load(hp), digits.load(hp)
    assert torch.equal(loaded.train_x, direct.train_x)


def test_unknown_dataset_names_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown dataset 'imagenet'; known: \['cifar10'"):
        data.get("imagenet")
    with pytest.raises(ValueError, match="unknown dataset"):
        data.load(DataHparams(name="imagenet"))


# digits
def test_digits_shapes_dtypes_range_and_split_sizes():
    d = data.load(DataHparams(name="digits"))
    assert d.train_x.shape == (1437, 1, 8, 8) and d.test_x.shape == (360, 1, 8, 8)
    assert d.train_y.shape == (1437,) and d.test_y.shape == (360,)
    assert d.train_x.dtype == torch.float32 and d.train_y.dtype == torch.int64
    assert d.num_classes == 10 and d.input_shape == (1, 8, 8) and d.augment is None
    assert d.train_x.min() == 0.0 and d.train_x.max() == 1.0
    assert torch.equal(d.train_x * 16, (d.train_x * 16).round())  # counts 0..16 scaled by 1/16
    assert set(d.train_y.tolist()) == set(range(10)) == set(d.test_y.tolist())


def test_digits_split_is_stratified_and_deterministic():
    a = digits.load(DataHparams())
    b = digits.load(DataHparams())
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.test_y, b.test_y)
    counts = torch.bincount(a.test_y, minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37  # ~20 % of each class of ~180


def test_the_digits_split_is_kept_per_scikit_learn_version_and_read_back_unchanged(
        tmp_path, monkeypatch):
    monkeypatch.setenv("LOTTERY_DATA_CACHE", str(tmp_path))
    path = digits.split_cache()
    assert path.parent == tmp_path / "digits"
    assert path.name.startswith(
        f"split-scikit-learn-{importlib.metadata.version('scikit-learn')}-")
    # another split rule is another file: a split made by the old rule is never read
    monkeypatch.setitem(digits.SPLIT, "random_state", 1)
    assert digits.split_cache() != path
    monkeypatch.setitem(digits.SPLIT, "random_state", 0)
    assert digits.split_cache() == path
    made = digits.load(DataHparams())  # no file yet: made by scikit-learn, then kept
    assert path.is_file()
    read = digits.load(DataHparams())
    fresh = digits.split()
    for d in (made, read):
        for got, key in ((d.train_x, "x_train"), (d.test_x, "x_test"), (d.train_y, "y_train"),
                         (d.test_y, "y_test")):
            assert got.dtype == torch.from_numpy(fresh[key]).dtype
            assert np.array_equal(got.numpy(), fresh[key]) and got.is_contiguous()


def test_an_unreadable_digits_split_file_is_made_again(tmp_path, monkeypatch):
    monkeypatch.setenv("LOTTERY_DATA_CACHE", str(tmp_path))
    path = digits.split_cache()
    path.parent.mkdir(parents=True)
    path.write_bytes(b"PK\x03\x04 cut short")
    d = digits.load(DataHparams())
    assert d.train_x.shape == (1437, 1, 8, 8)
    with np.load(path) as npz:  # rewritten whole
        assert np.array_equal(npz["y_test"], d.test_y.numpy())


def test_digits_load_when_the_cache_cannot_be_written(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("not a directory")
    monkeypatch.setenv("LOTTERY_DATA_CACHE", str(tmp_path / "file" / "cache"))
    d = digits.load(DataHparams())
    assert d.train_x.shape == (1437, 1, 8, 8) and not digits.split_cache().exists()


def test_a_kept_digits_split_loads_without_importing_scikit_learn(tmp_path):
    probe = ("import sys; from trainer.data import digits; from trainer.hparams import "
             "DataHparams; digits.load(DataHparams()); print('sklearn' in sys.modules)")
    env = {**os.environ, "LOTTERY_DATA_CACHE": str(tmp_path)}
    runs = [subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True,
                           text=True, timeout=300, cwd=ROOT) for _ in range(2)]
    assert [r.stdout.strip() for r in runs] == ["True", "False"], runs[-1].stderr[-2000:]


def test_load_returns_fresh_objects_sharing_the_cached_cpu_tensors():
    a = data.load(DataHparams(name="digits"))
    b = data.load(DataHparams(name="digits"))
    assert a is not b
    assert a.train_x.data_ptr() == b.train_x.data_ptr()


def test_subsets_keep_the_first_examples_on_the_requested_device():
    full = data.load(DataHparams(name="digits"))
    sub = data.load(DataHparams(name="digits", train_subset=100, test_subset=7), device="cpu")
    assert sub.train_x.shape == (100, 1, 8, 8) and sub.test_y.shape == (7,)
    assert torch.equal(sub.train_x, full.train_x[:100])
    assert torch.equal(sub.test_y, full.test_y[:7])
    for t in (sub.train_x, sub.train_y, sub.test_x, sub.test_y):
        assert t.device == torch.device("cpu")


@pytest.mark.parametrize("field", ["train_subset", "test_subset"])
@pytest.mark.parametrize("value", [-1, 5000])
def test_subset_out_of_range_is_rejected(field, value):
    with pytest.raises(ValueError, match=f"data.{field}"):
        data.load(DataHparams(name="digits", **{field: value}))


# MNIST family
def test_mnist_round_trips_real_idx_files(tmp_path):
    arrays = _write_mnist(tmp_path, np.random.default_rng(0))
    d = data.load(DataHparams(name="mnist", root=str(tmp_path)))
    assert d.train_x.shape == (6, 1, 28, 28) and d.test_x.shape == (3, 1, 28, 28)
    assert d.train_x.dtype == torch.float32 and d.train_y.dtype == torch.int64
    pixels = (d.train_x[:, 0] * 0.3081 + 0.1307) * 255
    assert torch.allclose(
        pixels, torch.from_numpy(arrays["train-images-idx3-ubyte"]).float(), atol=1e-3
    )
    assert d.test_y.tolist() == arrays["t10k-labels-idx1-ubyte"].tolist()
    assert d.num_classes == 10 and d.augment is None


def test_mnist_with_only_gz_files_says_to_gunzip(tmp_path):
    _write_mnist(tmp_path, np.random.default_rng(0))
    (tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte").unlink()
    with pytest.raises(FileNotFoundError, match="gunzip"):
        data.load(DataHparams(name="mnist", root=str(tmp_path)))


@pytest.mark.skipif(
    not mnist_family.DEBIAN_FASHION_MNIST_DIR.is_dir(),
    reason="Debian package dataset-fashion-mnist not installed",
)
def test_fashion_mnist_from_the_debian_package(tmp_path, monkeypatch):
    monkeypatch.setenv("LOTTERY_DATA_CACHE", str(tmp_path))
    d = data.get("fashion-mnist").load(DataHparams(name="fashion-mnist"))  # uncached
    assert d.train_x.shape == (60000, 1, 28, 28) and d.test_x.shape == (10000, 1, 28, 28)
    assert d.train_y.shape == (60000,) and d.test_y.shape == (10000,)
    assert abs(d.train_x.mean().item()) < 0.01 and abs(d.train_x.std().item() - 1.0) < 0.01
    assert torch.bincount(d.train_y).tolist() == [6000] * 10
    raw = tmp_path / "debian-fashion-mnist" / "FashionMNIST" / "raw"
    assert sorted(p.name for p in raw.iterdir()) == sorted(mnist_family.IDX_FILES)


def test_fashion_mnist_without_debian_files_explains_all_options(tmp_path, monkeypatch):
    monkeypatch.setenv("LOTTERY_DATA_CACHE", str(tmp_path))
    monkeypatch.setattr(mnist_family, "DEBIAN_FASHION_MNIST_DIR", tmp_path / "absent")
    with pytest.raises(FileNotFoundError) as info:
        data.get("fashion-mnist").load(DataHparams(name="fashion-mnist"))
    message = str(info.value)
    for needle in (
        "download: true",
        "apt-get install dataset-fashion-mnist",
        "data.root",
        str(tmp_path / "torchvision" / "FashionMNIST" / "raw"),
    ):
        assert needle in message


# CIFAR
@pytest.mark.parametrize(
    ("cls", "name", "k"), [(CIFAR10, "cifar10", 10), (CIFAR100, "cifar100", 100)]
)
def test_cifar_round_trips_real_pickle_files(tmp_path, monkeypatch, cls, name, k):
    written = _write_cifar(tmp_path, cls, np.random.default_rng(1))
    for attr, value in written["tables"].items():
        monkeypatch.setattr(cls, attr, value)
    d = data.load(DataHparams(name=name, root=str(tmp_path)))
    mean = torch.tensor(cifar.CIFAR10_MEAN if k == 10 else cifar.CIFAR100_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(cifar.CIFAR10_STD if k == 10 else cifar.CIFAR100_STD).view(1, 3, 1, 1)
    for split, x, y in (("train", d.train_x, d.train_y), ("test", d.test_x, d.test_y)):
        images, labels = written[split]
        assert x.shape == (len(images), 3, 32, 32) and x.dtype == torch.float32
        assert x.is_contiguous()
        pixels = ((x * std + mean) * 255).permute(0, 2, 3, 1)  # back to (N, 32, 32, 3)
        assert torch.allclose(pixels, torch.from_numpy(images).float(), atol=1e-3)
        assert y.dtype == torch.int64 and y.tolist() == labels.tolist()
    assert d.num_classes == k and isinstance(d.augment, cifar.RandomFlipCrop)
    black = (-mean / std).flatten().tolist()  # a zero pixel, normalized: the padding value
    assert d.augment.fill == pytest.approx(black)


def test_cifar_files_failing_the_md5_check_get_a_clear_error(tmp_path):
    _write_cifar(tmp_path, CIFAR10, np.random.default_rng(1))  # md5 table left as torchvision's
    with pytest.raises(RuntimeError, match="md5 check.*download: true"):
        data.load(DataHparams(name="cifar10", root=str(tmp_path)))


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("mnist", "MNIST/raw/train-images-idx3-ubyte"),
        ("cifar10", "cifar-10-batches-py/data_batch_1"),
        ("cifar100", "cifar-100-python/train"),
    ],
)
def test_missing_dataset_lists_expected_files_and_how_to_get_them(tmp_path, name, expected):
    with pytest.raises(FileNotFoundError) as info:
        data.load(DataHparams(name=name, root=str(tmp_path)))
    message = str(info.value)
    assert str(tmp_path / expected) in message
    assert "`data: {download: true}`" in message and "data.root" in message


# augmentation
def _augment(x: torch.Tensor, seed: int, padding: int = 4) -> torch.Tensor:
    fill = (-1.0, -2.0, -3.0)
    return cifar.RandomFlipCrop(fill=fill, padding=padding)(x, torch.Generator().manual_seed(seed))


def test_augment_keeps_shape_and_is_deterministic_per_seed():
    x = torch.randn(64, 3, 32, 32)
    a, b, c = _augment(x, 0), _augment(x, 0), _augment(x, 1)
    assert a.shape == x.shape and a.dtype == x.dtype and a.device == x.device
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_augment_without_padding_only_flips_and_does_flip():
    x = torch.randn(64, 3, 8, 8)
    out = _augment(x, 0, padding=0)
    same = (out == x).flatten(1).all(1)
    flipped = (out == x.flip(-1)).flatten(1).all(1)
    assert bool((same | flipped).all())
    assert same.any() and flipped.any()


def test_augment_matches_a_per_sample_reference_and_shifts_content():
    x = torch.randn(16, 3, 8, 8)
    p = 2
    out = _augment(x, 3, padding=p)
    g = torch.Generator().manual_seed(3)  # same draws, same order: flip, row, column offsets
    flip = torch.rand(16, generator=g) < 0.5
    dy = torch.randint(0, 2 * p + 1, (16,), generator=g)
    dx = torch.randint(0, 2 * p + 1, (16,), generator=g)
    fill = torch.tensor([-1.0, -2.0, -3.0]).view(3, 1, 1)
    for i in range(16):
        padded = fill.expand(3, 8 + 2 * p, 8 + 2 * p).clone()
        padded[:, p:-p, p:-p] = x[i]
        crop = padded[:, dy[i] : dy[i] + 8, dx[i] : dx[i] + 8]
        assert torch.equal(out[i], crop.flip(-1) if flip[i] else crop)
    assert bool(((dy != p) | (dx != p)).any())  # some samples really were shifted


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_augment_gives_the_same_batch_on_cuda():
    x = torch.randn(32, 3, 32, 32)
    on_gpu = _augment(x.cuda(), 5)
    assert on_gpu.is_cuda and torch.equal(on_gpu.cpu(), _augment(x, 5))


# validation split
def test_validation_split_is_a_fixed_disjoint_partition_of_the_training_examples():
    train, val = data.validation_split(100, 20)
    assert len(train) == 80 and len(val) == 20
    assert set(train.tolist()) | set(val.tolist()) == set(range(100))
    assert not set(train.tolist()) & set(val.tolist())
    assert torch.equal(train, train.sort().values) and torch.equal(val, val.sort().values)
    again_train, again_val = data.validation_split(100, 20)
    assert torch.equal(val, again_val) and torch.equal(train, again_train)
    assert data.validation_split(100, 0) == (None, None)
    with pytest.raises(ValueError, match="data.validation must be in"):
        data.validation_split(100, 100)


def test_load_with_validation_holds_examples_out_of_the_training_set():
    whole = data.load(DataHparams(name="digits"))
    split = data.load(DataHparams(name="digits", validation=300))
    assert whole.val_x is None and whole.val_y is None
    assert split.val_x.shape == (300, 1, 8, 8) and split.train_x.shape == (1137, 1, 8, 8)
    train_idx, val_idx = data.validation_split(1437, 300)
    assert torch.equal(split.val_x, whole.train_x[val_idx])
    assert torch.equal(split.train_y, whole.train_y[train_idx])
    assert torch.equal(split.test_x, whole.test_x)  # the test set is untouched
    subset = data.load(DataHparams(name="digits", train_subset=500, validation=100))
    assert len(subset.train_y) == 400 and len(subset.val_y) == 100
